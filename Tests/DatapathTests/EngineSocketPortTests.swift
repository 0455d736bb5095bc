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

    /// One read from a stream port can carry hundreds of small frames, far more than the
    /// worker's 64 stream buffers: the worker sends what it switched so far (freeing the
    /// buffers those writes complete) before it would drop any. 500 frames in one write, all
    /// delivered in order.
    @Test func aBurstLargerThanTheStreamBuffersLosesNothing() throws {
        let engine = makeEngine()
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
        var a: [Int32] = [0, 0], b: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &a) == 0)
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &b) == 0)
        defer { close(a[1]); close(b[1]) }
        var big: Int32 = 1 << 20
        setsockopt(b[1], SOL_SOCKET, SO_RCVBUF, &big, 4)
        try bridge.attach(DescriptorPort(name: "in", descriptor: a[0], framing: .lengthPrefixed))
        let out = try bridge.attach(DescriptorPort(name: "out", descriptor: b[0], framing: .lengthPrefixed))
        try engine.start()
        defer { engine.stop() }
        let count = 500
        var burst: [UInt8] = []
        for i in 0..<count {
            var f = [UInt8](repeating: 0xff, count: 6) + [0x02, 0, 0, 0, 0, 0x01, 0x88, 0xb5, UInt8(i >> 8), UInt8(i & 0xff)]
            f += [UInt8](repeating: UInt8(i & 0xff), count: 60 - f.count)
            burst += [0, 0, 0, UInt8(f.count)] + f
        }
        #expect(burst.withUnsafeBytes { write(a[1], $0.baseAddress, $0.count) } == burst.count, "one write, so one read")
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        let end = Date().addingTimeInterval(10)
        while bytes.count < count * 64 && Date() < end {
            var p = pollfd(fd: b[1], events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(b[1], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { bytes += buf[0..<n] }
        }
        let frames = splitStream(bytes)
        let br = try engine.snapshot().bridgeStats("br")
        #expect(frames.count == count, "\(br.ports)")
        #expect(frames.map { Int($0[14]) << 8 | Int($0[15]) } == Array(0..<frames.count), "in order")
        #expect(br.ports.allSatisfy { $0.totalDrops == 0 }, "\(br.ports)")
        // The peer may hold the last frames a moment before their write's completion is counted.
        var sent = try br.stats(out).txFrames
        for _ in 0..<100 where sent < UInt64(count) {
            usleep(20_000)
            sent = try engine.snapshot().bridgeStats("br").stats(out).txFrames
        }
        #expect(sent == UInt64(count))
    }

    /// A slow reader behind a small socket buffer: the engine's batched stream writes (many
    /// frames per writev, resumed mid-frame after a short write) deliver every frame it did not
    /// count as dropped, intact and in order.
    @Test func batchedStreamWritesKeepFramesIntactAndInOrder() throws {
        let engine = makeEngine { $0.transmitQueueDepth = 64 }
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
        var a: [Int32] = [0, 0], b: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &a) == 0)
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &b) == 0)
        var small: Int32 = 4096
        setsockopt(b[0], SOL_SOCKET, SO_SNDBUF, &small, 4)
        setsockopt(b[1], SOL_SOCKET, SO_RCVBUF, &small, 4)
        defer { close(a[1]); close(b[1]) }
        try bridge.attach(DescriptorPort(name: "in", descriptor: a[0], framing: .lengthPrefixed))
        let out = try bridge.attach(DescriptorPort(name: "out", descriptor: b[0], framing: .lengthPrefixed))
        try engine.start()
        defer { engine.stop() }

        // Frame i: broadcast, EtherType 0x88b5, then i (4 bytes) and bytes i &+ k; 60...1514 long.
        let count = 3000
        @Sendable func frame(_ i: Int) -> [UInt8] {
            let len = 60 + (i * 97) % 1455
            var f = [UInt8](repeating: 0xff, count: 6) + [0x02, 0, 0, 0, 0, 0x01, 0x88, 0xb5]
            f += [UInt8(i >> 24 & 0xff), UInt8(i >> 16 & 0xff), UInt8(i >> 8 & 0xff), UInt8(i & 0xff)]
            while f.count < len { f.append(UInt8(truncatingIfNeeded: i &+ f.count)) }
            return f
        }
        let peer = a[1]
        let writer = Thread {
            for i in 0..<count {
                let f = frame(i)
                var msg = [UInt8(f.count >> 24 & 0xff), UInt8(f.count >> 16 & 0xff), UInt8(f.count >> 8 & 0xff), UInt8(f.count & 0xff)] + f
                var off = 0
                while off < msg.count {
                    let n = msg.withUnsafeMutableBytes { write(peer, $0.baseAddress! + off, $0.count - off) }
                    if n <= 0 { return }
                    off += n
                }
            }
        }
        writer.start()
        // Read slowly at first (the engine's queue fills, writes go short), then drain.
        var bytes: [UInt8] = []
        let end = Date().addingTimeInterval(20)
        var buf = [UInt8](repeating: 0, count: 3000)
        var quiet = 0
        while Date() < end && quiet < 20 {
            var p = pollfd(fd: b[1], events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) > 0 else { quiet += 1; continue }
            quiet = 0
            let n = buf.withUnsafeMutableBytes { recv(b[1], $0.baseAddress, bytes.count < 200_000 ? 700 : $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { bytes += buf[0..<n] }
            if bytes.count < 200_000 { usleep(200) }
        }
        let frames = splitStream(bytes)
        var last = -1, intact = true, ordered = true
        for f in frames {
            guard f.count >= 18 else { intact = false; break }
            let i = Int(f[14]) << 24 | Int(f[15]) << 16 | Int(f[16]) << 8 | Int(f[17])
            if i <= last { ordered = false }
            if f != frame(i) { intact = false }
            last = i
        }
        let br = try engine.snapshot().bridgeStats("br")
        let st = try br.stats(out)
        // Dropped at the destination's transmit queue, or on arrival when every stream buffer
        // is held by frames waiting for the slow reader (counted against the ingress port).
        let dropped = br.ports.map { $0.drops(.queueFull) }.reduce(0, +)
        print("batched stream writes: \(frames.count) of \(count) frames delivered, \(dropped) dropped (queue full), " +
              "\(bytes.count) bytes; worker submits \(engine.snapshot().workers.map(\.submitCalls))")
        #expect(intact && ordered, "frames corrupted or reordered")
        #expect(frames.count > 0)
        #expect(UInt64(frames.count) == st.txFrames, "\(st)")
        #expect(UInt64(frames.count) + dropped == UInt64(count), "\(br.ports)")
    }
}
