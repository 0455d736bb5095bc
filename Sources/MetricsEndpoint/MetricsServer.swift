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
    private let listenFD: Int32
    private let wakeRead: Int32, wakeWrite: Int32
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
        let fd = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw MetricsServerError("metrics \(name): socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = isIPv6
            ? withUnsafePointer(to: &sa6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            : withUnsafePointer(to: &sa4) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 64) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw MetricsServerError("metrics \(name): cannot listen: \(String(cString: strerror(e)))")
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
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw MetricsServerError("metrics \(name): wake pipe: \(String(cString: strerror(e)))")
        }
        for f in fds {
            _ = fcntl(f, F_SETFD, FD_CLOEXEC)
            _ = fcntl(f, F_SETFL, fcntl(f, F_GETFL) | O_NONBLOCK)
        }
        wakeRead = fds[0]; wakeWrite = fds[1]
        self.port = actual
        address = isIPv6 ? "[\(host)]:\(actual)" : "\(host):\(actual)"
        listenFD = fd
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
        _ = write(wakeWrite, &b, 1)
        _ = done.wait(timeout: .now() + 10)
        thread = nil
    }

    deinit {
        if thread != nil { stop() }
        Glibc.close(listenFD)
        Glibc.close(wakeRead)
        Glibc.close(wakeWrite)
    }

    // MARK: the loop

    private enum Phase { case reading, writing, draining }

    /// One accepted connection. `deadline`: monotonic nanoseconds by which it is done.
    private struct Connection {
        let fd: Int32
        var deadline: UInt64
        var phase = Phase.reading
        var input: [UInt8] = []
        var output: [UInt8] = []
        var written = 0
        var drained = 0
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
        defer { for c in connections { Glibc.close(c.fd) } }
        while true {
            pfds.removeAll(keepingCapacity: true)
            pfds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            pfds.append(pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0))
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
            let n = poll(&pfds, nfds_t(pfds.count), timeout)
            if n < 0 && errno != EINTR { usleep(10_000); continue }
            if pfds[0].revents != 0 { return }   // stop()

            // Connections first (their slots may free up for the newcomers below).
            let t = Self.now()
            var i = 0
            var kept: [Connection] = []
            kept.reserveCapacity(connections.count)
            for var c in connections {
                let revents = n > 0 ? pfds[2 + i].revents : 0
                i += 1
                var open = true
                if revents != 0 { open = progress(&c, &scratch) }
                if open && t >= c.deadline {
                    if c.phase != .draining { count { $0.timedOut += 1 } }
                    open = false
                }
                if open { kept.append(c) } else { Glibc.close(c.fd) }
            }
            connections = kept

            if n > 0 && pfds[1].revents != 0 {
                while true {
                    let fd = accept(listenFD, nil, nil)
                    if fd < 0 {
                        if errno == EINTR || errno == ECONNABORTED { continue }
                        if errno == EMFILE || errno == ENFILE { usleep(10_000) }
                        break   // EAGAIN: none left
                    }
                    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)   // (accept4 is not in Swift's Glibc module)
                    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                    if connections.count >= limits.maxConnections {
                        refuseBusy(fd)
                        continue
                    }
                    count { $0.accepted += 1 }
                    connections.append(Connection(fd: fd, deadline: Self.now() + UInt64(limits.requestDeadline * 1e9)))
                }
            }
        }
    }

    /// Every slot is taken: a short 503 if the socket takes it at once, then close.
    private func refuseBusy(_ fd: Int32) {
        count { $0.refusedBusy += 1 }
        let body = "busy: too many metrics connections\n"
        let text = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body
        var bytes = Array(text.utf8)
        _ = send(fd, &bytes, bytes.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
        Glibc.close(fd)
    }

    /// Moves one connection on as far as its socket allows; false when it is finished.
    private func progress(_ c: inout Connection, _ scratch: inout [UInt8]) -> Bool {
        switch c.phase {
        case .reading:
            while true {
                let n = read(c.fd, &scratch, scratch.count)
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return true }
                if n <= 0 { return false }   // closed or failed before a whole request: nothing to answer
                let from = max(0, c.input.count - 3)
                c.input += scratch[0..<n]
                if c.input.count > limits.maxRequest {
                    respond(&c, status: "431 Request Header Fields Too Large", body: "request too large\n")
                    return progress(&c, &scratch)
                }
                if Self.headerEnd(c.input, from: from) {
                    answer(&c)
                    return progress(&c, &scratch)
                }
            }
        case .writing:
            while c.written < c.output.count {
                let n = c.output.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.written, $0.count - c.written, Int32(MSG_NOSIGNAL)) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return true }
                if n <= 0 { return false }
                c.written += n
            }
            // Closing with unread input makes the kernel send a reset, which can destroy the
            // response before the client reads it (an oversized request's 431): stop writing,
            // read and drop what is left (bounded: 64 KiB, 1 s), then close.
            count { $0.answered += 1 }
            shutdown(c.fd, Int32(SHUT_WR))
            c.phase = .draining
            c.deadline = min(c.deadline, Self.now() + 1_000_000_000)
            c.output = []
            return progress(&c, &scratch)
        case .draining:
            while c.drained < 65536 {
                let n = read(c.fd, &scratch, scratch.count)
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return true }
                if n <= 0 { return false }
                c.drained += n
            }
            return false
        }
    }

    /// The request is complete: decide the response.
    private func answer(_ c: inout Connection) {
        // (bytes, not Characters: "\r\n" is one Character in Swift)
        let firstLine = c.input.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }
        let line = String(decoding: firstLine, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
        guard line.count == 3, line[2].hasPrefix("HTTP/1.") else {
            return respond(&c, status: "400 Bad Request", body: "bad request\n")
        }
        let method = line[0], target = line[1]
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" else {
            return respond(&c, status: "404 Not Found", body: "not found: only /metrics is served\n")
        }
        guard method == "GET" || method == "HEAD" else {
            return respond(&c, status: "405 Method Not Allowed", body: "only GET\n", extra: "Allow: GET, HEAD\r\n")
        }
        respond(&c, status: "200 OK", body: render(statistics), contentType: "text/plain; version=0.0.4; charset=utf-8",
                headOnly: method == "HEAD")
    }

    private func respond(_ c: inout Connection, status: String, body: String, contentType: String = "text/plain; charset=utf-8",
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
