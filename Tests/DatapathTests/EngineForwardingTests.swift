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
}
