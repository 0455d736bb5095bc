// Software TSO: a port without a vnet header in a bridge whose other ports keep GSO gets the
// TCP super-frames as valid MSS-sized segments.
import Foundation
import Synchronization
import Testing
@testable import Datapath
import Frames
import Tap
import TestSupport

/// Reads datagrams from `fd` on its own thread and checks every TCP/IPv4 frame in them.
final class SegmentChecker: @unchecked Sendable {
    let valid = Atomic<Int>(0), invalid = Atomic<Int>(0), oversized = Atomic<Int>(0)
    let stop = Atomic<Bool>(false)
    let done = DispatchSemaphore(value: 0)

    func run(_ fd: Int32) {
        Thread {
            var buf = [UInt8](repeating: 0, count: 70000)
            while !self.stop.load(ordering: .relaxed) {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 50) > 0 else { continue }
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 { self.check(Array(buf[0..<n])) }
            }
            self.done.signal()
        }.start()
    }

    func check(_ f: [UInt8]) {
        guard f.count >= 54, f[12] == 0x08, f[13] == 0x00, f[23] == 6 else { return }
        if f.count > 1514 { oversized.add(1, ordering: .relaxed); return }
        let ihl = Int(f[14] & 0x0F) * 4
        let total = Int(f[16]) << 8 | Int(f[17])
        let l4 = 14 + ihl
        guard 14 + total <= f.count else { invalid.add(1, ordering: .relaxed); return }
        let ipOK = onesSum(Array(f[14..<l4])) == 0xFFFF
        let seg = Array(f[l4..<(14 + total)])
        let pseudo = Array(f[26..<34]) + [0, 6, UInt8(seg.count >> 8), UInt8(seg.count & 0xFF)]
        let tcpOK = onesSum(seg, initial: UInt32(onesSum(pseudo))) == 0xFFFF
        if ipOK && tcpOK { valid.add(1, ordering: .relaxed) } else { invalid.add(1, ordering: .relaxed) }
    }
}

@Suite(.serialized)
struct EngineSegmentationTests {
    @Test func superFramesAreSegmentedForAPortWithoutTSO() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            var sv: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &sv) == 0)
            var big: Int32 = 4 << 20
            setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, 4)
            let engine = makeEngine()
            let bridge = try hub(engine, [a, b])
            let plain = try bridge.attach(DescriptorPort(name: "plain", descriptor: sv[0]))
            try engine.start()
            defer { engine.stop() }
            #expect(bridge.offloads.contains(.tso4), "TSO stays on between the macvtaps")
            #expect(!bridge.offloads.contains(.uso4), "USO is not segmented in software: off")

            let checker = SegmentChecker()
            checker.run(sv[1])
            let r = try iperf(t, from: a, to: b, seconds: 2)
            checker.stop.store(true, ordering: .relaxed)
            checker.done.wait()
            // Counters first: once the peer is closed the engine may remove the port (its
            // descriptor failed) before a snapshot would see it.
            let snap = engine.snapshot()
            close(sv[1])
            #expect(delivered(r), "\(r)")
            let p = try snap.bridgeStats("br").stats(plain)
            print("segmentation: \(String(format: "%.2f", r.gbps)) Gbit/s between GSO ports; to the plain port: \(p); " +
                  "checked valid \(checker.valid.load(ordering: .relaxed)) invalid \(checker.invalid.load(ordering: .relaxed)) " +
                  "oversized \(checker.oversized.load(ordering: .relaxed)); super-frames segmented \(snap.workers.map(\.segmented))")
            #expect(snap.workers.map(\.segmented).reduce(0, +) > 0)
            #expect(checker.valid.load(ordering: .relaxed) > 100)
            #expect(checker.invalid.load(ordering: .relaxed) == 0)
            #expect(checker.oversized.load(ordering: .relaxed) == 0)
            #expect(p.drops(.offload) == 0)
        }
    }

    @Test func withoutSoftwareSegmentationGSOIsNegotiatedOff() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            var sv: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &sv) == 0)
            defer { close(sv[1]) }
            let engine = makeEngine()
            let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]), softwareSegmentation: false)
            try bridge.attach(MacvtapPort(name: a.macvtap))
            try bridge.attach(MacvtapPort(name: b.macvtap))
            #expect(bridge.offloads.contains(.tso4))
            let plain = try bridge.attach(DescriptorPort(name: "plain", descriptor: sv[0]))
            #expect(bridge.offloads.isEmpty)
            bridge.detach(plain)
            #expect(bridge.offloads.contains(.tso4), "renegotiated up when the port leaves")
        }
    }
}
