// MetricsServer: the opt-in Prometheus endpoint, a deliberately small HTTP/1.1 server with
// explicit bounds: one thread running a poll() loop over nonblocking sockets, at most
// `maxConnections` connections at a time (past that a newcomer gets a 503 and is closed,
// counted), one request per connection (Connection: close), GET (or HEAD) /metrics only,
// requests bounded to 8 KiB, and an absolute deadline per connection counted from accept (the
// whole request read and the whole response written within 5 s, however the bytes dribble in).
// A slow or idle client only costs a slot until its deadline; it never blocks another one.
// A scrape calls `render` on this thread; nothing here touches the datapath.
//
// Why not an HTTP library: see docs/architecture.md ("The metrics endpoint").
import Foundation
import Glibc
import SystemCalls

/// A socket-level failure of the endpoint, naming the address.
public struct MetricsServerError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ text: String) { description = text }
}

public final class MetricsServer: @unchecked Sendable {
    /// The bounds the server holds to.
    public struct Limits: Sendable, Equatable {
        /// Connections served at once; one more is answered 503 and closed.
        public var maxConnections: Int
        /// Seconds from accept within which the request must arrive and the response leave.
        public var requestDeadline: Double
        /// Longest request (request line and headers) accepted; longer ones get a 431.
        public var maxRequest: Int
        public init(maxConnections: Int = 16, requestDeadline: Double = 5, maxRequest: Int = 8192) {
            self.maxConnections = max(1, maxConnections)
            self.requestDeadline = max(0.01, requestDeadline)
            self.maxRequest = max(64, maxRequest)
        }
    }

    /// What happened to the connections so far (read from any thread).
    public struct Statistics: Sendable, Equatable {
        /// Connections accepted and given a slot.
        public var accepted: UInt64 = 0
        /// Requests answered (any status but the busy 503).
        public var answered: UInt64 = 0
        /// Connections refused with a 503 because every slot was taken.
        public var refusedBusy: UInt64 = 0
        /// Connections closed at their deadline with the request or response unfinished.
        public var timedOut: UInt64 = 0
        public init() {}
    }

    /// `host:port` actually bound (the port filled in when 0 was asked for).
    public let address: String
    public let port: UInt16
    public let limits: Limits
    // Owned by the server, closed when it goes (after its thread has stopped).
    private let listenSocket: OwnedDescriptor
    private let wakeRead: OwnedDescriptor, wakeWrite: OwnedDescriptor
    private let render: (Statistics) -> String
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var stats = Statistics()
    private var stopRequested = false

    /// Binds and listens on `host` (an IPv4 or IPv6 literal) and `port`; `render` produces the
    /// exposition text at each scrape (given the endpoint's own statistics, to export them).
    public init(host: String, port: UInt16, limits: Limits = Limits(), render: @escaping (Statistics) -> String) throws {
        self.render = render
        self.limits = limits
        var sa4 = sockaddr_in(), sa6 = sockaddr_in6()
        let isIPv6: Bool
        let name = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        if inet_pton(AF_INET, host, &sa4.sin_addr) == 1 {
            isIPv6 = false
            sa4.sin_family = sa_family_t(AF_INET); sa4.sin_port = port.bigEndian
        } else if inet_pton(AF_INET6, host, &sa6.sin6_addr) == 1 {
            isIPv6 = true
            sa6.sin6_family = sa_family_t(AF_INET6); sa6.sin6_port = port.bigEndian
        } else {
            throw MetricsServerError("metrics \(name): '\(host)' is not an IP address")
        }
        let listener: OwnedDescriptor
        do {
            listener = try Syscall.socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        } catch { throw MetricsServerError("metrics \(name): socket: \(error.reason)") }
        let fd = listener.rawValue
        try? Syscall.setSocketOption(fd, SOL_SOCKET, SO_REUSEADDR, Int32(1))
        do {
            if isIPv6 {
                try withUnsafePointer(to: &sa6) { p throws(SyscallError) in try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { q throws(SyscallError) in try Syscall.bind(fd, q, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            } else {
                try withUnsafePointer(to: &sa4) { p throws(SyscallError) in try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { q throws(SyscallError) in try Syscall.bind(fd, q, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            }
            try Syscall.listen(fd, backlog: 64)
        } catch {
            throw MetricsServerError("metrics \(name): cannot listen: \(error.reason)")
        }
        var got = sockaddr_storage()
        var gotLen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var actual = port
        if withUnsafeMutablePointer(to: &got, { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &gotLen) } }) == 0 {
            actual = UInt16(bigEndian: withUnsafeBytes(of: &got) { raw in
                isIPv6 ? raw.load(as: sockaddr_in6.self).sin6_port : raw.load(as: sockaddr_in.self).sin_port
            })
        }
        let wake: PipeEnds
        do { wake = try Syscall.pipe(nonblocking: true) } catch {
            throw MetricsServerError("metrics \(name): wake pipe: \(error.reason)")
        }
        wakeRead = wake.readEnd; wakeWrite = wake.writeEnd
        self.port = actual
        address = isIPv6 ? "[\(host)]:\(actual)" : "\(host):\(actual)"
        listenSocket = consume listener
    }

    public var statistics: Statistics { lock.withLock { stats } }

    public func start() {
        let t = Thread { [self] in
            self.loop()
            self.done.signal()
        }
        t.name = "tb-metrics"
        thread = t
        t.start()
    }

    /// Stops the loop (open connections are closed unanswered) and waits for its thread.
    public func stop() {
        let first: Bool = lock.withLock { defer { stopRequested = true }; return !stopRequested }
        guard thread != nil, first else { return }
        var b: UInt8 = 1
        _ = try? Syscall.write(wakeWrite.rawValue, &b, 1)
        _ = done.wait(timeout: .now() + 10)
        thread = nil
    }

    deinit {
        if thread != nil { stop() }
        // (the listening socket and the wake pipe close with their owners, after this)
    }

    // MARK: the loop

    private enum Phase { case reading, writing, draining }

    /// One accepted connection, owning its socket (closed when the connection is dropped from
    /// the loop's list). `deadline`: monotonic nanoseconds by which it is done.
    private final class Connection {
        let socket: OwnedDescriptor
        var fd: Int32 { socket.rawValue }
        var deadline: UInt64
        var phase = Phase.reading
        var input: [UInt8] = []
        var output: [UInt8] = []
        var written = 0
        var drained = 0
        init(_ socket: consuming OwnedDescriptor, deadline: UInt64) { self.socket = socket; self.deadline = deadline }
    }

    private static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    private func count(_ body: (inout Statistics) -> Void) { lock.withLock { body(&stats) } }

    private func loop() {
        var connections: [Connection] = []
        var pfds: [pollfd] = []
        var scratch = [UInt8](repeating: 0, count: 4096)
        defer { connections.removeAll() }   // closes them
        while true {
            pfds.removeAll(keepingCapacity: true)
            pfds.append(pollfd(fd: wakeRead.rawValue, events: Int16(POLLIN), revents: 0))
            pfds.append(pollfd(fd: listenSocket.rawValue, events: Int16(POLLIN), revents: 0))
            var earliest = UInt64.max
            for c in connections {
                pfds.append(pollfd(fd: c.fd, events: Int16(c.phase == .writing ? POLLOUT : POLLIN), revents: 0))
                earliest = min(earliest, c.deadline)
            }
            var timeout: Int32 = -1
            if earliest != .max {
                let t = Self.now()
                timeout = earliest <= t ? 0 : Int32(min((earliest - t + 999_999) / 1_000_000, 60_000))
            }
            let n: Int
            do { n = try Syscall.poll(&pfds, pfds.count, timeout: timeout) } catch { usleep(10_000); continue }
            if pfds[0].revents != 0 { return }   // stop()

            // Connections first (their slots may free up for the newcomers below).
            let t = Self.now()
            var i = 0
            var kept: [Connection] = []
            kept.reserveCapacity(connections.count)
            for c in connections {
                let revents = n > 0 ? pfds[2 + i].revents : 0
                i += 1
                var open = true
                if revents != 0 { open = progress(c, &scratch) }
                if open && t >= c.deadline {
                    if c.phase != .draining { count { $0.timedOut += 1 } }
                    open = false
                }
                if open { kept.append(c) }   // (a dropped connection closes its socket)
            }
            connections = kept

            if n > 0 && pfds[1].revents != 0 {
                while true {
                    let accepted: OwnedDescriptor?
                    do { accepted = try Syscall.accept(listenSocket.rawValue) } catch {
                        if error.errno == ECONNABORTED { continue }
                        if error.errno == EMFILE || error.errno == ENFILE { usleep(10_000) }
                        break
                    }
                    guard let connection = accepted else { break }   // EAGAIN: none left
                    try? Syscall.setNonblocking(connection.rawValue)
                    if connections.count >= limits.maxConnections {
                        refuseBusy(connection)
                        continue
                    }
                    count { $0.accepted += 1 }
                    connections.append(Connection(connection, deadline: Self.now() + UInt64(limits.requestDeadline * 1e9)))
                }
            }
        }
    }

    /// Every slot is taken: a short 503 if the socket takes it at once, then close.
    private func refuseBusy(_ connection: consuming OwnedDescriptor) {
        count { $0.refusedBusy += 1 }
        let body = "busy: too many metrics connections\n"
        let text = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body
        var bytes = Array(text.utf8)
        _ = try? Syscall.send(connection.rawValue, &bytes, bytes.count, flags: Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
    }

    /// Moves one connection on as far as its socket allows; false when it is finished.
    private func progress(_ c: Connection, _ scratch: inout [UInt8]) -> Bool {
        switch c.phase {
        case .reading:
            while true {
                guard let r = try? Syscall.read(c.fd, &scratch, scratch.count) else { return false }
                guard case .processed(let n) = r else { return true }
                if n == 0 { return false }   // closed or failed before a whole request: nothing to answer
                let from = max(0, c.input.count - 3)
                c.input += scratch[0..<n]
                if c.input.count > limits.maxRequest {
                    respond(c, status: "431 Request Header Fields Too Large", body: "request too large\n")
                    return progress(c, &scratch)
                }
                if Self.headerEnd(c.input, from: from) {
                    answer(c)
                    return progress(c, &scratch)
                }
            }
        case .writing:
            while c.written < c.output.count {
                let written = c.written
                guard let r = try? c.output.withUnsafeBytes({ p in
                    try Syscall.send(c.fd, p.baseAddress! + written, p.count - written, flags: Int32(MSG_NOSIGNAL)) }) else { return false }
                guard case .processed(let n) = r else { return true }
                if n == 0 { return false }
                c.written += n
            }
            // Closing with unread input makes the kernel send a reset, which can destroy the
            // response before the client reads it (an oversized request's 431): stop writing,
            // read and drop what is left (bounded: 64 KiB, 1 s), then close.
            count { $0.answered += 1 }
            try? Syscall.shutdown(c.fd, Int32(SHUT_WR))
            c.phase = .draining
            c.deadline = min(c.deadline, Self.now() + 1_000_000_000)
            c.output = []
            return progress(c, &scratch)
        case .draining:
            while c.drained < 65536 {
                guard let r = try? Syscall.read(c.fd, &scratch, scratch.count) else { return false }
                guard case .processed(let n) = r else { return true }
                if n == 0 { return false }
                c.drained += n
            }
            return false
        }
    }

    /// The request is complete: decide the response.
    private func answer(_ c: Connection) {
        // (bytes, not Characters: "\r\n" is one Character in Swift)
        let firstLine = c.input.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }
        let line = String(decoding: firstLine, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
        guard line.count == 3, line[2].hasPrefix("HTTP/1.") else {
            return respond(c, status: "400 Bad Request", body: "bad request\n")
        }
        let method = line[0], target = line[1]
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" else {
            return respond(c, status: "404 Not Found", body: "not found: only /metrics is served\n")
        }
        guard method == "GET" || method == "HEAD" else {
            return respond(c, status: "405 Method Not Allowed", body: "only GET\n", extra: "Allow: GET, HEAD\r\n")
        }
        respond(c, status: "200 OK", body: render(statistics), contentType: "text/plain; version=0.0.4; charset=utf-8",
                headOnly: method == "HEAD")
    }

    private func respond(_ c: Connection, status: String, body: String, contentType: String = "text/plain; charset=utf-8",
                         extra: String = "", headOnly: Bool = false) {
        let bytes = Array(body.utf8)
        var out = Array(("HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(bytes.count)\r\n"
                         + "Connection: close\r\n\(extra)\r\n").utf8)
        if !headOnly { out += bytes }
        c.output = out
        c.written = 0
        c.input = []
        c.phase = .writing
    }

    /// Whether `bytes` holds "\r\n\r\n" starting at or after `from`.
    static func headerEnd(_ bytes: [UInt8], from: Int) -> Bool {
        guard bytes.count >= 4 else { return false }
        var i = max(0, from)
        while i + 3 < bytes.count {
            if bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 { return true }
            i += 1
        }
        return false
    }
}
