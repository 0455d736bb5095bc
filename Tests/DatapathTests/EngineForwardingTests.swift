// Forwarding through the engine between two namespaced hosts behind passthru macvtaps.
import Foundation
import Testing
@testable import Datapath
import Frames
import Tap
import TestSupport

@Suite(.serialized)
struct EngineForwardingTests {
    @Test func pingAndTCPWithOffloads() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            let engine = makeEngine()
            let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
            let pa = try bridge.attach(MacvtapPort(name: a.macvtap))
            let pb = try bridge.attach(MacvtapPort(name: b.macvtap))
            try engine.start()
            defer { engine.stop() }
            #expect(bridge.offloads.contains(.tso4))
            #expect(try ping(a, b))
            let r = try iperf(t, from: a, to: b)
            #expect(delivered(r), "\(r)")
            let s = try engine.snapshot().bridgeStats("br")
            let sa = try s.stats(pa), sb = try s.stats(pb)
            print("offloads on: \(String(format: "%.2f", r.gbps)) Gbit/s; \(sa); \(sb); \(engine.snapshot().workers[0])")
            #expect(sa.rxLargeFrames > 0, "TSO super-frames from the sender cross unsegmented")
            #expect(sb.txLargeFrames > 0)
        }
    }

    @Test func pingAndTCPWithoutOffloads() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            let engine = makeEngine()
            let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]), offloads: [])
            let pa = try bridge.attach(MacvtapPort(name: a.macvtap))
            _ = try bridge.attach(MacvtapPort(name: b.macvtap, vnetHeader: false))
            try engine.start()
            defer { engine.stop() }
            #expect(bridge.offloads.isEmpty)
            #expect(try ping(a, b))
            let r = try iperf(t, from: a, to: b)
            #expect(delivered(r), "\(r)")
            let sa = try engine.snapshot().bridgeStats("br").stats(pa)
            print("offloads off: \(String(format: "%.2f", r.gbps)) Gbit/s; \(sa)")
            #expect(sa.rxLargeFrames == 0)
        }
    }

    @Test func smallFrameFloodIsWrittenNotReadAndDropped() throws {
        // A 2-second flood of small UDP datagrams: what the worker reads it writes. The excess
        // stays in the kernel's macvtap queue (dropped there, cheaply) instead of being read
        // at full cost and dropped as queue-full, which happened to half the frames while
        // write completions waited behind a ring of read completions.
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            let engine = makeEngine { $0.buffersPerWorker = 512 }
            let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
            let pa = try bridge.attach(MacvtapPort(name: a.macvtap))
            let pb = try bridge.attach(MacvtapPort(name: b.macvtap))
            try engine.start()
            defer { engine.stop() }
            #expect(try ping(a, b))
            _ = try iperfRun(t, from: a, to: b, port: 5202, seconds: 2, ["-u", "-b", "0", "-l", "18"])
            let snap = engine.snapshot()
            let s = try snap.bridgeStats("br")
            let sa = try s.stats(pa), sb = try s.stats(pb)
            print("flood: \(sa); \(sb); taken early \(snap.workers[0].writesTakenEarly)")
            #expect(sa.rxFrames > 20_000, "a flood reached the engine")
            #expect(sb.drops(.queueFull) == 0, "\(sb)")
            #expect(sb.txFrames + sb.txErrors >= sa.rxFrames - 16, "every frame read from a went out to b: \(sa) \(sb)")
            #expect(snap.workers[0].writesTakenEarly > 0)
        }
    }
}
