// MetricsServerTests: the metrics endpoint's bounds against hostile local clients, over real
// loopback TCP: a client dribbling a byte a second never delays a scrape, connections past the
// bound are refused at once (503, counted) and idle ones lose their slot at the deadline, and
// the request rules (GET/HEAD /metrics only, 8 KiB) hold.
import Foundation
import Glibc
import Testing
@testable import MetricsEndpoint

/// A blocking loopback client socket connected to `port` (receive timeout `timeout` s).
func connectLoopback(_ port: UInt16, timeout: Double = 5) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw ClientError("socket: errno \(errno)") }
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET); sa.sin_port = port.bigEndian
    sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard r == 0 else { let e = errno; close(fd); throw ClientError("connect 127.0.0.1:\(port): errno \(e)") }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

struct ClientError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Everything the server sends until it closes (or the receive timeout passes).
func readAll(_ fd: Int32) -> String {
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// One request; the status code (0: no answer) and the time it took.
func request(_ port: UInt16, _ text: String = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", timeout: Double = 5) -> (status: Int, body: String, seconds: Double) {
    let t0 = Date()
    guard let fd = try? connectLoopback(port, timeout: timeout) else { return (0, "", Date().timeIntervalSince(t0)) }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    _ = send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL))
    let reply = readAll(fd)
    let status = reply.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
    let body = reply.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
    return (status, body, Date().timeIntervalSince(t0))
}

func withServer(_ limits: MetricsServer.Limits = .init(), _ body: (MetricsServer) throws -> Void) throws {
    let server = try MetricsServer(host: "127.0.0.1", port: 0, limits: limits) { _ in "tapbridge_test_value 1\n" }
    server.start()
    defer { server.stop() }
    try body(server)
}

@Suite(.serialized) struct MetricsServerTests {
    @Test func answersOnlyWhatItServes() throws {
        try withServer { s in
            let ok = request(s.port)
            #expect(ok.status == 200 && ok.body == "tapbridge_test_value 1\n", "\(ok)")
            #expect(request(s.port, "HEAD /metrics HTTP/1.1\r\n\r\n").body == "")
            #expect(request(s.port, "GET / HTTP/1.1\r\n\r\n").status == 404)
            #expect(request(s.port, "POST /metrics HTTP/1.1\r\n\r\n").status == 405)
            #expect(request(s.port, "nonsense\r\n\r\n").status == 400)
            #expect(request(s.port, "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n").status == 431)
            #expect(s.statistics.answered == 6)
        }
    }

    /// Issue 12 item 4: one connection sending a byte every second held the old server (each
    /// byte reset its read timeout) and every scrape waited behind it.
    @Test func aDribblingClientNeverDelaysAScrape() throws {
        try withServer { s in
            let stop = ManagedFlag()
            let dribbler = Thread {
                // A byte a second for 10 s, reconnecting whenever the server cuts it off.
                var fd: Int32 = -1
                let request = Array("GET /metrics HTTP/1.1\r\nHost: slow\r\n\r\n".utf8)
                var i = 0
                let end = Date().addingTimeInterval(10)
                while Date() < end && !stop.isSet {
                    if fd < 0 { fd = (try? connectLoopback(s.port)) ?? -1 }
                    if fd >= 0 {
                        var b = request[i % 8]   // never completes a request: "GET /met" over and over
                        if send(fd, &b, 1, Int32(MSG_NOSIGNAL)) != 1 { close(fd); fd = -1 }
                        i += 1
                    }
                    usleep(1_000_000)
                }
                if fd >= 0 { close(fd) }
            }
            dribbler.start()
            defer { stop.set() }
            usleep(200_000)   // the dribbler holds its connection
            var slowest = 0.0
            var answered = 0
            let end = Date().addingTimeInterval(10)
            while Date() < end {
                let r = request(s.port, timeout: 3)
                #expect(r.status == 200, "a scrape failed while a client dribbled: \(r)")
                if r.status == 200 { answered += 1 }
                slowest = max(slowest, r.seconds)
                usleep(500_000)
            }
            #expect(answered >= 15, "scrapes answered in 10 s: \(answered)")
            #expect(slowest < 1, "slowest scrape: \(slowest) s")
            // The dribbler lost its slot at the deadline (5 s from accept), counted.
            #expect(s.statistics.timedOut >= 1, "\(s.statistics)")
        }
    }

    @Test func idleConnectionsPastTheBoundAreRefusedAndScrapesRecoverByTheDeadline() throws {
        let limits = MetricsServer.Limits(maxConnections: 16, requestDeadline: 2)
        try withServer(limits) { s in
            // Every slot taken by a client that says nothing, and one more.
            var idle: [Int32] = []
            defer { for fd in idle { close(fd) } }
            for _ in 0..<limits.maxConnections { idle.append(try connectLoopback(s.port)) }
            let deadline = Date().addingTimeInterval(2)
            while s.statistics.accepted < UInt64(limits.maxConnections) && Date() < deadline { usleep(10_000) }
            #expect(s.statistics.accepted == UInt64(limits.maxConnections))
            let extra = try connectLoopback(s.port, timeout: 1)
            idle.append(extra)
            let t0 = Date()
            #expect(readAll(extra).hasPrefix("HTTP/1.1 503"), "one connection past the bound is refused")
            #expect(Date().timeIntervalSince(t0) < 0.5)
            #expect(s.statistics.refusedBusy >= 1)
            // A scrape now: refused at once, never left hanging; it gets through by the deadline.
            let started = Date()
            var status = 0
            while status != 200 && Date().timeIntervalSince(started) < limits.requestDeadline + 2 {
                let r = request(s.port, timeout: 1)
                #expect(r.seconds < 1, "a scrape waited \(r.seconds) s")
                status = r.status
                if status != 200 { usleep(100_000) }
            }
            #expect(status == 200)
            #expect(Date().timeIntervalSince(started) < limits.requestDeadline + 1)
            #expect(s.statistics.timedOut >= UInt64(limits.maxConnections), "\(s.statistics)")
        }
    }

    @Test func stopClosesEverythingPromptly() throws {
        let server = try MetricsServer(host: "127.0.0.1", port: 0) { _ in "" }
        server.start()
        let idle = try connectLoopback(server.port, timeout: 2)
        defer { close(idle) }
        let accepted = Date().addingTimeInterval(2)
        while server.statistics.accepted < 1 && Date() < accepted { usleep(10_000) }
        let t0 = Date()
        server.stop()
        #expect(Date().timeIntervalSince(t0) < 1)
        #expect(readAll(idle) == "")   // closed unanswered, not left to a timeout
        #expect(Date().timeIntervalSince(t0) < 1)
    }
}

/// A set-once flag readable from any thread.
final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
