// MetricsServer: the opt-in Prometheus endpoint, a deliberately tiny HTTP/1.1 server: one
// thread blocking in accept(), one request per connection (Connection: close), GET (or HEAD)
// /metrics only, requests bounded to 8 KiB and 5 s, 404/405/400 otherwise. It binds loopback
// addresses only unless explicitly allowed (the endpoint has no authentication). A scrape
// calls `render` on this thread; nothing here touches the datapath.
import Foundation
import Glibc

/// A parsed `HOST:PORT` (IPv4 or `[IPv6]`), checked for loopback.
public struct MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public var isIPv6: Bool

    public init(parsing text: String, allowRemote: Bool) throws {
        let hostPart: Substring, portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw DaemonError("'\(text)': expected [IPv6]:PORT")
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
            isIPv6 = true
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw DaemonError("'\(text)': expected HOST:PORT, e.g. 127.0.0.1:9417") }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            isIPv6 = false
        }
        host = hostPart == "localhost" ? "127.0.0.1" : String(hostPart)
        guard let p = UInt16(portPart) else { throw DaemonError("'\(text)': port must be 0-65535") }
        port = p
        if isIPv6 {
            var a = in6_addr()
            guard inet_pton(AF_INET6, host, &a) == 1 else { throw DaemonError("'\(text)': '\(host)' is not an IPv6 address") }
        } else {
            var a = in_addr()
            guard inet_pton(AF_INET, host, &a) == 1 else { throw DaemonError("'\(text)': '\(host)' is not an IPv4 address") }
        }
        if !allowRemote && !isLoopback {
            throw DaemonError("'\(text)' is not a loopback address; the metrics endpoint has no authentication "
                              + "(set metrics-allow-remote = true or --metrics-allow-remote to expose it)")
        }
    }

    public var isLoopback: Bool { isIPv6 ? host == "::1" : host.hasPrefix("127.") }
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public final class MetricsServer: @unchecked Sendable {
    /// The address actually bound (the port filled in when 0 was asked for).
    public private(set) var address: MetricsAddress
    private let listenFD: Int32
    private let render: () -> String
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private let stopping = ManagedAtomicFlag()
    static let maxRequest = 8192

    /// Binds and listens; `render` produces the exposition text at each scrape.
    public init(address: MetricsAddress, render: @escaping () -> String) throws {
        self.render = render
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DaemonError("metrics \(address): socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var storage = sockaddr_storage()
        var len: socklen_t
        if address.isIPv6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = address.port.bigEndian
            inet_pton(AF_INET6, address.host, &sa.sin6_addr)
            len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sa, as: sockaddr_in6.self) }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = address.port.bigEndian
            inet_pton(AF_INET, address.host, &sa.sin_addr)
            len = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sa, as: sockaddr_in.self) }
        }
        let bound = withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw DaemonError("metrics \(address): cannot listen: \(String(cString: strerror(e)))")
        }
        var actual = address
        var got = sockaddr_storage()
        var gotLen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        if withUnsafeMutablePointer(to: &got, { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &gotLen) } }) == 0 {
            let port = withUnsafeBytes(of: &got) { raw in
                address.isIPv6 ? raw.load(as: sockaddr_in6.self).sin6_port : raw.load(as: sockaddr_in.self).sin_port
            }
            actual.port = UInt16(bigEndian: port)
        }
        self.address = actual
        listenFD = fd
    }

    public func start() {
        let t = Thread { [self] in
            self.acceptLoop()
            self.done.signal()
        }
        t.name = "tb-metrics"
        thread = t
        t.start()
    }

    /// Stops accepting (shutdown wakes the blocked accept) and waits for the thread.
    public func stop() {
        guard thread != nil, stopping.set() else { return }
        shutdown(listenFD, Int32(SHUT_RDWR))
        _ = done.wait(timeout: .now() + 10)
        thread = nil
    }

    deinit {
        if thread != nil { stop() }
        Glibc.close(listenFD)
    }

    private func acceptLoop() {
        while !stopping.isSet {
            let c = accept(listenFD, nil, nil)
            if c < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE {
                    if errno == EMFILE || errno == ENFILE { usleep(100_000) }
                    continue
                }
                return   // EINVAL after shutdown(): stopping
            }
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)   // (accept4 is not in Swift's Glibc module)
            serve(c)
            lingeringClose(c)
        }
    }

    /// One request, one response, then the connection closes.
    private func serve(_ fd: Int32) {
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var request = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 2048)
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }   // closed or timed out before a whole request: nothing to answer
            request += buf[0..<n]
            if request.count > Self.maxRequest {
                respond(fd, status: "431 Request Header Fields Too Large", body: "request too large\n")
                return
            }
            if Self.contains(request, end) { break }
        }
        // (bytes, not Characters: "\r\n" is one Character in Swift)
        let firstLine = request.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }
        let line = String(decoding: firstLine, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
        guard line.count == 3, line[2].hasPrefix("HTTP/1.") else {
            respond(fd, status: "400 Bad Request", body: "bad request\n")
            return
        }
        let method = line[0], target = line[1]
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" else {
            respond(fd, status: "404 Not Found", body: "not found: only /metrics is served\n")
            return
        }
        guard method == "GET" || method == "HEAD" else {
            respond(fd, status: "405 Method Not Allowed", body: "only GET\n", extra: "Allow: GET, HEAD\r\n")
            return
        }
        let body = render()
        respond(fd, status: "200 OK", body: body, contentType: "text/plain; version=0.0.4; charset=utf-8",
                headOnly: method == "HEAD")
    }

    /// Closing with unread input makes the kernel send a reset, which can destroy the response
    /// before the client reads it (an oversized request's 431): stop writing, read and drop what
    /// is left (bounded: 64 KiB, 1 s), then close.
    private func lingeringClose(_ fd: Int32) {
        shutdown(fd, Int32(SHUT_WR))
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buf = [UInt8](repeating: 0, count: 4096)
        var drained = 0
        while drained < 65536 {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            drained += n
        }
        Glibc.close(fd)
    }

    private func respond(_ fd: Int32, status: String, body: String, contentType: String = "text/plain; charset=utf-8",
                         extra: String = "", headOnly: Bool = false) {
        let bytes = Array(body.utf8)
        var out = Array(("HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(bytes.count)\r\n"
                         + "Connection: close\r\n\(extra)\r\n").utf8)
        if !headOnly { out += bytes }
        var off = 0
        while off < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + off, out.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            off += n
        }
    }

    static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard hay.count >= needle.count else { return false }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] {
            if Array(hay[i..<(i + needle.count)]) == needle { return true }
        }
        return false
    }
}

/// A set-once flag readable from any thread.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    /// Sets the flag; true if this call set it.
    func set() -> Bool { lock.withLock { defer { value = true }; return !value } }
}
