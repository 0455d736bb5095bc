// tbb-latency: UDP request/response latency for bench/run. `server PORT` echoes every datagram
// back; `client HOST PORT COUNT SECONDS [SIZE]` sends one request at a time, waits for its
// answer (100 ms timeout: counted as lost), records the round trip in an HdrHistogram and
// prints one line: `count=N lost=L p50_us=.. p99_us=.. p999_us=.. max_us=..`.
// Bounded by COUNT requests and SECONDS of wall time, whichever ends first.
import Foundation
import Histogram

func die(_ what: String) -> Never {
    FileHandle.standardError.write("tbb-latency: \(what): \(String(cString: strerror(errno)))\n".data(using: .utf8)!)
    exit(1)
}

func address(_ host: String, _ port: UInt16) -> sockaddr_in {
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = port.bigEndian
    guard inet_pton(AF_INET, host, &a.sin_addr) == 1 else { die("bad address \(host)") }
    return a
}

func nowNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

let args = CommandLine.arguments
let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
if fd < 0 { die("socket") }
var buf = [UInt8](repeating: 0, count: 2048)

if args.count == 3 && args[1] == "server" {
    var local = address("0.0.0.0", UInt16(args[2]) ?? 7)
    let ok = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if ok != 0 { die("bind port \(args[2])") }
    var peer = sockaddr_storage()
    while true {
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = withUnsafeMutablePointer(to: &peer) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, buf.count, 0, $0, &len) }
        }
        if n < 0 { if errno == EINTR { continue }; die("recvfrom") }
        _ = withUnsafePointer(to: &peer) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, buf, n, 0, $0, len) } }
    }
}

guard args.count >= 6, args[1] == "client", let port = UInt16(args[3]), let count = Int(args[4]), let seconds = Double(args[5]) else {
    FileHandle.standardError.write("usage: tbb-latency server PORT | client HOST PORT COUNT SECONDS [SIZE]\n".data(using: .utf8)!)
    exit(2)
}
let size = args.count > 6 ? Int(args[6]) ?? 18 : 18
var remote = address(args[2], port)
let connected = withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
if connected != 0 { die("connect \(args[2]):\(port)") }
var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

var histogram = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
var lost = 0, done = 0
var sequence: UInt64 = 0
let deadline = nowNanoseconds() + UInt64(seconds * 1e9)
var request = [UInt8](repeating: 0, count: max(size, 8))
while done + lost < count && nowNanoseconds() < deadline {
    sequence += 1
    withUnsafeBytes(of: sequence) { for i in 0..<8 { request[i] = $0[i] } }
    let t0 = nowNanoseconds()
    if send(fd, request, request.count, 0) < 0 { if errno == EINTR { continue }; die("send") }
    var answered = false
    while nowNanoseconds() < t0 + 100_000_000 {
        let n = recv(fd, &buf, buf.count, 0)
        if n < 0 { if errno == EINTR { continue }; break }   // timeout (EAGAIN)
        // A late answer to an earlier (timed-out) request does not count for this one.
        if n >= 8 && buf.withUnsafeBytes({ $0.loadUnaligned(as: UInt64.self) }) == sequence { answered = true; break }
    }
    if answered { _ = histogram.record(nowNanoseconds() - t0); done += 1 } else { lost += 1 }
}
func us(_ p: Double) -> String { String(format: "%.1f", Double(histogram.valueAtPercentile(p)) / 1000) }
print("count=\(done) lost=\(lost) p50_us=\(us(50)) p99_us=\(us(99)) p999_us=\(us(99.9)) max_us=\(String(format: "%.1f", Double(histogram.max) / 1000))")
