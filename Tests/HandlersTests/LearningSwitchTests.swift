// LearningSwitch behaviour on synthetic frames: learning, flooding, aging, the FDB bound,
// moves, static entries, isolation, hairpin, VLANs, and concurrent use.
import Foundation
import Testing
@testable import Frames
@testable import Handlers
import TapbridgeTesting

let hostA = MACAddress("52:54:00:00:00:0a")!
let hostB = MACAddress("52:54:00:00:00:0b")!
let hostC = MACAddress("52:54:00:00:00:0c")!
let second: UInt64 = 1_000_000_000

func ports(_ n: Int, configure: (inout PortInfo) -> Void = { _ in }) -> PortTable {
    PortTable((0..<n).map { i in var p = PortInfo(id: PortID(i), name: "p\(i)"); configure(&p); return p })
}

func counter(_ sw: LearningSwitch, _ name: String, reason: String? = nil) -> UInt64 {
    sw.counters().first { $0.name == name && (reason == nil || $0.labels["reason"] == reason) }?.value ?? 0
}

@Suite struct LearningSwitchTests {
    let b = FrameBuilder()

    func send(_ sw: LearningSwitch, _ src: MACAddress, _ dst: MACAddress, port: Int, tag: UInt16? = nil,
              now: UInt64 = 1, worker: Int = 0) -> (Verdict, UInt16) {
        var f = b.frame(from: src, to: dst, port: port, tag: tag)
        let v = sw.handle(&f, context: HandlerContext(now: now, worker: worker))
        return (v, f.vlan)
    }

    @Test func unknownFloodsThenReplyIsUnicast() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(3))
        #expect(send(sw, hostA, hostB, port: 0).0 == .forwardSet(PortSet([PortID(1), PortID(2)])))
        #expect(send(sw, hostB, hostA, port: 1).0 == .forward(PortID(0)))
        #expect(send(sw, hostA, hostB, port: 0).0 == .forward(PortID(1)))
        #expect(counter(sw, "frames_flooded") == 1 && counter(sw, "frames_unicast") == 2)
        #expect(counter(sw, "fdb_learned") == 2 && counter(sw, "fdb_entries") == 2)
        #expect(Set(sw.entries(now: 1).map(\.mac)) == [hostA, hostB])
    }

    @Test func broadcastAndMulticastFlood() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(3))
        _ = send(sw, hostB, hostA, port: 1)
        #expect(send(sw, hostA, .broadcast, port: 0).0 == .forwardSet(PortSet([PortID(1), PortID(2)])))
        #expect(send(sw, hostA, MACAddress("33:33:00:00:00:01")!, port: 0).0 == .forwardSet(PortSet([PortID(1), PortID(2)])))
    }

    @Test func entriesAgeOut() {
        let sw = LearningSwitch(configuration: .init(agingTime: 10))
        sw.portsChanged(ports(3))
        let clock = ManualClock(now: 1 * second)   // the test kit's clock: time moves when we say
        _ = send(sw, hostB, hostA, port: 1, now: clock.now)
        clock.advance(seconds: 4)
        #expect(send(sw, hostA, hostB, port: 0, now: clock.now).0 == .forward(PortID(1)))
        // Past the aging time the entry no longer steers frames, and the sweep removes it.
        clock.advance(seconds: 7)
        if case .forwardSet = send(sw, hostC, hostB, port: 2, now: clock.now).0 {} else { Issue.record("expected flood") }
        #expect(sw.expire(now: clock.now) == 1)
        #expect(sw.entries(now: clock.now).map(\.mac) == [hostA, hostC])   // hostA spoke at 5 s
    }

    @Test func macMovesBetweenPorts() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(3))
        _ = send(sw, hostB, hostA, port: 1)
        _ = send(sw, hostB, hostA, port: 2, now: 2 * second)
        #expect(send(sw, hostA, hostB, port: 0, now: 2 * second).0 == .forward(PortID(2)))
        #expect(counter(sw, "fdb_moved") == 1)
    }

    @Test func boundedUnderMACFlood() {
        let sw = LearningSwitch(configuration: .init(capacity: 512))
        sw.portsChanged(ports(3))
        var rng = SystemRandomNumberGenerator()
        var now: UInt64 = second
        for i in 0..<100_000 {
            now += 1_000
            // The known host keeps talking; the attacker floods random source MACs.
            if i % 1000 == 0 { _ = send(sw, hostB, hostA, port: 1, now: now) }
            let random = MACAddress(rawValue: UInt64.random(in: 0...0xFFFF_FFFF_FFFF, using: &rng) & ~0x0100_0000_0000)
            _ = send(sw, random, .broadcast, port: 2, now: now)
        }
        #expect(counter(sw, "fdb_entries") <= 512 + 8)
        #expect(counter(sw, "fdb_evicted") > 90_000)
        _ = send(sw, hostB, hostA, port: 1, now: now)
        #expect(send(sw, hostA, hostB, port: 0, now: now).0 == .forward(PortID(1)))
    }

    @Test func staticEntriesNeverMoveOrAge() throws {
        let sw = LearningSwitch(configuration: .init(agingTime: 1, staticEntries: [.init(mac: hostB, port: "p1")]))
        sw.portsChanged(ports(3))
        _ = send(sw, hostB, hostA, port: 2, now: 1 * second)   // would move a learned entry
        #expect(send(sw, hostA, hostB, port: 0, now: 100 * second).0 == .forward(PortID(1)))
        #expect(sw.entries(now: 100 * second).contains { $0.mac == hostB && $0.isStatic && $0.port == PortID(1) })
        try sw.addStatic(mac: hostC, port: PortID(2))
        #expect(send(sw, hostA, hostC, port: 0, now: 100 * second).0 == .forward(PortID(2)))
        #expect(sw.removeEntry(mac: hostC))
        if case .forwardSet = send(sw, hostA, hostC, port: 0, now: 100 * second).0 {} else { Issue.record("expected flood") }
    }

    @Test func removedPortIsForgotten() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(3))
        _ = send(sw, hostB, hostA, port: 2)
        sw.portsChanged(ports(2))
        #expect(send(sw, hostA, hostB, port: 0).0 == .forwardSet(PortSet([PortID(1)])))
        #expect(send(sw, hostB, hostA, port: 2).0 == .drop(.noDestination))
    }

    @Test func isolatedPortsOnlyReachNonIsolated() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(4) { p in p.isolated = p.id.rawValue >= 2 })
        _ = send(sw, hostB, hostA, port: 2)
        _ = send(sw, hostA, hostB, port: 0)
        #expect(send(sw, hostC, .broadcast, port: 3).0 == .forwardSet(PortSet([PortID(0), PortID(1)])))
        #expect(send(sw, hostC, hostB, port: 3).0 == .drop(.isolated))
        #expect(send(sw, hostA, hostB, port: 0).0 == .forward(PortID(2)))
        #expect(counter(sw, "frames_dropped", reason: "isolated") == 1)
    }

    @Test func hairpinReflectsOnlyWhenEnabled() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(2))
        _ = send(sw, hostA, hostC, port: 0)
        #expect(send(sw, hostB, hostA, port: 0).0 == .drop(.loop))
        sw.portsChanged(ports(2) { p in p.hairpin = p.id.rawValue == 0 })
        _ = send(sw, hostA, hostC, port: 0)
        #expect(send(sw, hostB, hostA, port: 0).0 == .forward(PortID(0)))
        #expect(send(sw, hostB, .broadcast, port: 0).0 == .forwardSet(PortSet([PortID(0), PortID(1)])))
    }

    @Test func vlansKeptApart() {
        // p0: access 10, p1: access 20, p2: trunk {10, 20} native none, p3: trunk {10} native 20.
        let sw = LearningSwitch()
        sw.portsChanged(ports(4) { p in
            switch p.id.rawValue {
            case 0: p.vlan = .access(pvid: 10)
            case 1: p.vlan = .access(pvid: 20)
            case 2: p.vlan = .trunk(allowed: VLANSet([10, 20]), native: nil)
            default: p.vlan = .trunk(allowed: VLANSet([10]), native: 20)
            }
        })
        let (v0, vlan0) = send(sw, hostA, .broadcast, port: 0)
        #expect(v0 == .forwardSet(PortSet([PortID(2), PortID(3)])) && vlan0 == 10)
        let (v1, vlan1) = send(sw, hostB, .broadcast, port: 1)
        #expect(v1 == .forwardSet(PortSet([PortID(2), PortID(3)])) && vlan1 == 20)
        // Untagged on p3 is its native VLAN 20; reaches p1 and p2, never p0.
        let (v3, vlan3) = send(sw, hostC, .broadcast, port: 3)
        #expect(v3 == .forwardSet(PortSet([PortID(1), PortID(2)])) && vlan3 == 20)
        // Tagged frames: VLAN 30 is not allowed anywhere; access ports refuse tags.
        #expect(send(sw, hostC, .broadcast, port: 2, tag: 30).0 == .drop(.vlan))
        #expect(send(sw, hostA, .broadcast, port: 0, tag: 10).0 == .drop(.vlan))
        #expect(send(sw, hostC, .broadcast, port: 2, tag: nil).0 == .drop(.vlan))
        // Per-VLAN learning: hostA is known in VLAN 10 only.
        #expect(send(sw, hostC, hostA, port: 2, tag: 10).0 == .forward(PortID(0)))
        if case .forwardSet(let s) = send(sw, hostC, hostA, port: 2, tag: 20).0 {
            #expect(!s.contains(PortID(0)))
        } else { Issue.record("expected flood in VLAN 20") }
        // The engine would tag/untag per egress port from Frame.vlan.
        var f = b.frame(from: hostA, to: hostC, port: 0)
        _ = sw.handle(&f, context: .init(now: 1))
        #expect(f.egressTagging(for: .trunk(allowed: VLANSet([10, 20]), native: nil)) == .insertTag(10))
    }

    @Test func concurrentWorkersStayConsistent() async {
        let sw = LearningSwitch(configuration: .init(capacity: 1024))
        sw.portsChanged(ports(4))
        let perWorker = 50_000
        await withTaskGroup(of: Void.self) { group in
            for w in 0..<4 {
                group.addTask {
                    let fb = FrameBuilder()
                    for i in 0..<perWorker {
                        let src = MACAddress(rawValue: 0x0200_0000_0000 | UInt64(w) << 24 | UInt64(i % 2000))
                        var f = fb.frame(from: src, to: hostA, port: w)
                        _ = sw.handle(&f, context: .init(now: UInt64(i) * 1000 + second, worker: w))
                        if i % 10_000 == 0 { sw.portsChanged(ports(4)) }
                    }
                }
            }
        }
        let total = counter(sw, "frames_flooded") + counter(sw, "frames_unicast")
            + sw.counters().filter { $0.name == "frames_dropped" }.reduce(0) { $0 + $1.value }
        #expect(total == UInt64(4 * perWorker))
        #expect(counter(sw, "fdb_entries") <= 1024 + 8)
    }

    /// Issue 12 #3: 20,000 static entries asked for over the control socket stored 16,384 in a
    /// table of 8,192 and learning stopped. Static entries now stop at `maxStatic`, the table
    /// stays within its bound, and learning keeps its room.
    @Test func staticEntriesAreBoundedAndNeverStarveLearning() throws {
        let sw = LearningSwitch(configuration: .init(capacity: 64, maxStatic: 16))
        sw.portsChanged(ports(3))
        var accepted = 0, refused = 0
        for i in 0..<2000 {
            do {
                try sw.addStatic(mac: MACAddress(rawValue: 0x0200_0000_0000 | UInt64(i)), port: PortID(2))
                accepted += 1
            } catch {
                #expect(error == .limitReached(limit: 16))
                refused += 1
            }
        }
        #expect(accepted == 16 && refused == 2000 - 16)
        #expect(sw.entries(now: 1).filter(\.isStatic).count == 16)
        // Re-pinning an existing static entry is not an addition.
        try sw.addStatic(mac: MACAddress(rawValue: 0x0200_0000_0000), port: PortID(1))
        // Learning still has its full room: 64 new hosts are all learned and all reachable.
        let learned = (0..<64).map { MACAddress(rawValue: 0x0600_0000_0000 | UInt64($0) << 8) }
        for (i, mac) in learned.enumerated() { _ = send(sw, mac, .broadcast, port: i % 2, now: second) }
        let reachable = learned.enumerated().filter { i, mac in send(sw, hostA, mac, port: 2, now: second).0 == .forward(PortID(i % 2)) }
        // (A hashed table: a few may share a window and evict each other; today none was learned.)
        #expect(reachable.count >= 60, "\(reachable.count) of 64 learned hosts reachable")
        #expect(counter(sw, "fdb_entries") <= 64 + 16)
        // Removing one frees a place; port changes re-install exactly the pinned ones.
        #expect(sw.removeEntry(mac: MACAddress(rawValue: 0x0200_0000_0001)))
        try sw.addStatic(mac: hostC, port: PortID(2))
        sw.portsChanged(ports(3))
        #expect(sw.entries(now: second).filter(\.isStatic).count == 16)
    }
}
