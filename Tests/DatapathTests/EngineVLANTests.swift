// 802.1Q on egress: the engine inserts/strips tags per the egress port's VLANMode for frames a
// handler classified (Frame.vlan), with the vnet header's offsets shifted for GSO frames.
import Foundation
import Synchronization
import Testing
@testable import Datapath
import Frames
import Tap
import TestSupport

/// Classifies ingress frames into VLANs per the ingress port's mode, then lets them flood.
final class VLANClassifier: FrameHandler, @unchecked Sendable {
    let name = "vlan-classifier"
    private let modes = Mutex<[VLANMode]>([VLANMode](repeating: .unaware, count: PortSet.capacity))
    private var snapshot = [VLANMode](repeating: .unaware, count: PortSet.capacity)

    func portsChanged(_ ports: PortTable) {
        var m = [VLANMode](repeating: .unaware, count: PortSet.capacity)
        for p in ports.ports { m[Int(p.id.rawValue)] = p.vlan }
        modes.withLock { $0 = m }
        snapshot = m
    }

    func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        switch snapshot[Int(frame.ingress.rawValue)] {
        case .unaware:
            return .continue
        case .access(let pvid):
            if frame.taggedVLAN != nil { return .drop(.vlan) }
            frame.vlan = pvid
        case .trunk(let allowed, let native):
            if let v = frame.taggedVLAN {
                guard allowed.contains(v) else { return .drop(.vlan) }
                frame.vlan = v
            } else if let n = native {
                frame.vlan = n
            } else {
                return .drop(.vlan)
            }
        }
        return .continue
    }
}

/// Inserts an 802.1Q tag with `vid` after the source MAC.
func tagged(_ f: [UInt8], vid: UInt16) -> [UInt8] {
    Array(f[0..<12]) + [0x81, 0x00, UInt8(vid >> 8), UInt8(vid & 0xFF)] + Array(f[12...])
}

@Suite(.serialized)
struct EngineVLANTests {
    // The kernel here has no 8021q, so the trunk is a datagram socket the test reads and
    // writes raw tagged frames on.
    @Test func accessAndTrunkPortsTagAndUntag() throws {
        try withTopology { t in
            let a = try addHost(t, 1), c = try addHost(t, 3)
            var sv: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &sv) == 0)
            defer { close(sv[1]) }
            let engine = makeEngine()
            let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([VLANClassifier()]))
            let pa = try bridge.attach(MacvtapPort(name: a.macvtap, settings: PortSettings(vlan: .access(pvid: 10))))
            let pc = try bridge.attach(MacvtapPort(name: c.macvtap, settings: PortSettings(vlan: .access(pvid: 20))))
            let trunk = try bridge.attach(DescriptorPort(name: "trunk", descriptor: sv[0], kind: "test",
                                                         settings: PortSettings(vlan: .trunk(allowed: VLANSet([10, 20]), native: nil))))
            try engine.start()
            defer { engine.stop() }

            // Tagged 10 from the trunk: stripped towards a (access 10), never reaches c (access 20);
            // a's untagged reply leaves the trunk tagged 10.
            let reply = datagramExchange(sv[1], tagged(arpRequest(for: a.address), vid: 10)) { f in
                f.count >= 46 && f[12] == 0x81 && f[13] == 0x00 && isARPReplyToTester(Array(f[0..<12]) + Array(f[16...]))
            }
            #expect(reply != nil, "a's ARP reply comes back on the trunk")
            if let r = reply { #expect(UInt16(r[14] & 0x0F) << 8 | UInt16(r[15]) == 10, "tagged with VLAN 10") }

            // Tagged 30 is not allowed on the trunk: dropped at ingress.
            var bad = tagged(arpRequest(for: a.address), vid: 30)
            _ = send(sv[1], &bad, bad.count, 0)
            // a and c are in different VLANs.
            #expect(try !ping(a, c, count: 2))
            // The counters move once the worker has handled those frames: wait for them (bounded)
            // rather than a fixed 100 ms.
            var s = try engine.snapshot().bridgeStats("br")
            _ = try pollUntil(30) {
                s = try engine.snapshot().bridgeStats("br")
                return try s.stats(trunk).drops(.vlan) >= 1 && s.stats(pc).drops(.vlan) >= 1 && s.stats(pa).txFrames >= 1
            }
            print("vlan: \(s.port(pa).map { "\($0)" } ?? "-"); \(s.port(pc).map { "\($0)" } ?? "-"); \(s.port(trunk).map { "\($0)" } ?? "-")")
            #expect(try s.stats(trunk).drops(.vlan) >= 1, "VLAN 30 dropped on ingress")
            #expect(try s.stats(pc).drops(.vlan) >= 1, "VLAN 10 not carried on c's access port")
            #expect(try s.stats(pa).txFrames >= 1)
        }
    }
}
