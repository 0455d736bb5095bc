// Descriptor ports: the datagram and length-prefixed stream framings a VM socket port uses,
// end of file as a disconnect, and reconnecting with a new descriptor.
import Foundation
import Testing
@testable import Datapath
import Frames
import TestSupport

/// An ARP request from 02:00:00:00:00:99 / 198.18.0.99 asking for `target`.
func arpRequest(for target: String) -> [UInt8] {
    let t = target.split(separator: ".").map { UInt8($0)! }
    var f: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x99, 0x08, 0x06]
    f += [0, 1, 0x08, 0x00, 6, 4, 0, 1]                      // Ethernet/IPv4, request
    f += [0x02, 0, 0, 0, 0, 0x99, 198, 18, 0, 99]           // sender
    f += [0, 0, 0, 0, 0, 0] + t                              // target
    return f + [UInt8](repeating: 0, count: 60 - f.count)
}

/// True if `frame` is an ARP reply to 02:00:00:00:00:99.
func isARPReplyToTester(_ f: [UInt8]) -> Bool {
    f.count >= 42 && Array(f[0..<6]) == [0x02, 0, 0, 0, 0, 0x99] && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2
}

/// Reads from `fd` (non-blocking polls) until `timeout`, returning what arrived.
func readAvailable(_ fd: Int32, timeout: Double) -> [UInt8] {
    var out: [UInt8] = []
    let end = Date().addingTimeInterval(timeout)
    var buf = [UInt8](repeating: 0, count: 70000)
    while Date() < end {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        if poll(&p, 1, 50) > 0 {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { out += buf[0..<n] } else if n == 0 { break }
        }
    }
    return out
}

/// Splits a length-prefixed stream into frames.
func splitStream(_ bytes: [UInt8]) -> [[UInt8]] {
    var frames: [[UInt8]] = []
    var i = 0
    while i + 4 <= bytes.count {
        let len = Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
        guard i + 4 + len <= bytes.count else { break }
        frames.append(Array(bytes[(i + 4)..<(i + 4 + len)]))
        i += 4 + len
    }
    return frames
}

/// Descriptors handed out one by one to a port's `connect`.
final class DescriptorQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var fds: [Int32] = []
    func push(_ fd: Int32) { lock.withLock { fds.append(fd) } }
    func pop() -> Int32? { lock.withLock { fds.isEmpty ? nil : fds.removeFirst() } }
}

@Suite(.serialized)
struct EngineSocketPortTests {
    @Test(arguments: [1, 2])
    func streamPortFramesBothWaysAndReconnects(workers: Int) throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            let events = EventLog()
            let engine = makeEngine(workers: workers, events: events)
            let bridge = try hub(engine, [a, b])
            let queue = DescriptorQueue()
            var sv: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv) == 0)
            queue.push(sv[0])
            let vm = try bridge.attach(DescriptorPort(name: "vm0", kind: "vm-stream", framing: .lengthPrefixed,
                                                      onFailure: .disconnect) { queue.pop() })
            try engine.start()
            defer { engine.stop() }
            #expect(bridge.offloads.contains(.tso4), "TSO stays on; the engine segments for the stream port")

            func exchange(_ fd: Int32) -> Bool {
                let req = arpRequest(for: a.address)
                for _ in 0..<5 {   // resend: the host's link may not transmit yet (linkwatch)
                    var msg: [UInt8] = [0, 0, 0, UInt8(req.count)] + req
                    _ = write(fd, &msg, msg.count)
                    if splitStream(readAvailable(fd, timeout: 0.8)).contains(where: isARPReplyToTester) { return true }
                }
                return false
            }
            #expect(exchange(sv[1]), "ARP request in, reply out, length-prefixed")
            #expect(try ping(a, b))

            close(sv[1])
            #expect(events.wait { if case .portDisconnected(_, let id, _, _) = $0 { return id == vm }; return false })
            #expect(try engine.snapshot().bridgeStats("br").stats(vm).connected == false)
            #expect(try ping(a, b), "others keep forwarding while the VM is away")

            var sv2: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv2) == 0)
            defer { close(sv2[1]) }
            queue.push(sv2[0])
            try engine.reconnect(vm, in: bridge)
            #expect(try engine.snapshot().bridgeStats("br").stats(vm).connected)
            #expect(exchange(sv2[1]), "the same port works over the new descriptor")
            print("stream port, \(workers) worker(s): handed off \(engine.snapshot().workers.map(\.handedOff))")
        }
    }

    @Test func datagramPortOneFramePerDatagram() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            let engine = makeEngine()
            let bridge = try hub(engine, [a, b])
            var sv: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &sv) == 0)
            defer { close(sv[1]) }
            let vm = try bridge.attach(DescriptorPort(name: "vm1", descriptor: sv[0]))
            try engine.start()
            defer { engine.stop() }
            let got = datagramExchange(sv[1], arpRequest(for: b.address), match: isARPReplyToTester) != nil
            #expect(got)
            // The write's completion may be counted a moment after the peer already has the frame.
            var s = try engine.snapshot().bridgeStats("br").stats(vm)
            for _ in 0..<50 where s.txFrames == 0 { usleep(20_000); s = try engine.snapshot().bridgeStats("br").stats(vm) }
            #expect(s.rxFrames >= 1 && s.txFrames >= 1, "\(s)")
        }
    }

    @Test func singleShotReadFallbackForwards() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            let engine = makeEngine { $0.forceSingleShotReads = true }
            try hub(engine, [a, b])
            try engine.start()
            defer { engine.stop() }
            #expect(engine.snapshot().workers[0].readMode == "single-shot")
            #expect(try ping(a, b))
            let r = try iperf(t, from: a, to: b, seconds: 2)
            print("single-shot reads: \(String(format: "%.2f", r.gbps)) Gbit/s")
            #expect(r.received > 0)
        }
    }
}
