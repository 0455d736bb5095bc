// InterimLearningSwitchTests: the Daemon's stand-in learning switch on synthetic frames (no
// kernel): learning, flooding, aging, the FDB bound, static entries, VLANs, isolation, hairpin.
import Testing
import Frames
@testable import Daemon

private func table(_ ports: [PortInfo]) -> PortTable { PortTable(ports) }

/// Runs one frame from `src` to `dst` in through `port` (optionally tagged) and returns the verdict.
private func send(_ ls: InterimLearningSwitch, from src: UInt64, to dst: UInt64, port: Int, tag: UInt16? = nil,
                  now: UInt64 = 1, vlan: inout UInt16) -> Verdict {
    var bytes = [UInt8](repeating: 0, count: 64)
    MACAddress(rawValue: dst).write(to: &bytes)
    bytes.withUnsafeMutableBytes { MACAddress(rawValue: src).write(to: $0.baseAddress! + 6) }
    if let tag {
        bytes[12] = 0x81; bytes[13] = 0x00; bytes[14] = UInt8(tag >> 8); bytes[15] = UInt8(tag & 0xFF)
        bytes[16] = 0x08; bytes[17] = 0x00
    } else { bytes[12] = 0x08; bytes[13] = 0x00 }
    return bytes.withUnsafeMutableBytes { b -> Verdict in
        var f = Frame(bytes: b, ingress: PortID(port))
        let v = ls.handle(&f, context: HandlerContext(now: now))
        vlan = f.vlan
        return v
    }
}

private func send(_ ls: InterimLearningSwitch, from src: UInt64, to dst: UInt64, port: Int, tag: UInt16? = nil, now: UInt64 = 1) -> Verdict {
    var v: UInt16 = 0
    return send(ls, from: src, to: dst, port: port, tag: tag, now: now, vlan: &v)
}

private func counter(_ ls: InterimLearningSwitch, _ name: String) -> UInt64 {
    ls.counters().first { $0.name == name }?.value ?? 0
}

@Suite struct InterimLearningSwitchBehaviour {
    let a: UInt64 = 0x0200_0000_000A, b: UInt64 = 0x0200_0000_000B, c: UInt64 = 0x0200_0000_000C

    @Test func floodsUnknownThenForwardsLearned() {
        let ls = InterimLearningSwitch(LearningSwitchConfig())
        ls.portsChanged(table((0..<3).map { PortInfo(id: PortID($0), name: "p\($0)") }))
        #expect(send(ls, from: a, to: b, port: 0) == .forwardSet(PortSet([PortID(1), PortID(2)])))
        #expect(send(ls, from: b, to: a, port: 1) == .forward(PortID(0)))
        #expect(send(ls, from: a, to: b, port: 0) == .forward(PortID(1)))
        #expect(send(ls, from: a, to: 0xFFFF_FFFF_FFFF, port: 0) == .forwardSet(PortSet([PortID(1), PortID(2)])))
        // b moves to port 2
        #expect(send(ls, from: b, to: a, port: 2) == .forward(PortID(0)))
        #expect(send(ls, from: a, to: b, port: 0) == .forward(PortID(2)))
        #expect(counter(ls, "fdb-moves") == 1)
        // a frame for a MAC on its own ingress port is not sent back (no hairpin)
        #expect(send(ls, from: c, to: b, port: 2) == .drop(.loop))
    }

    @Test func agingAndBound() {
        var cfg = LearningSwitchConfig()
        cfg.agingSeconds = 1
        cfg.capacity = 4
        let ls = InterimLearningSwitch(cfg)
        ls.portsChanged(table((0..<2).map { PortInfo(id: PortID($0), name: "p\($0)") }))
        for i in 0..<100 { _ = send(ls, from: 0x0200_0000_1000 + UInt64(i), to: 0xFFFF_FFFF_FFFF, port: 0) }
        #expect(counter(ls, "fdb-entries") == 4)
        #expect(counter(ls, "fdb-evictions") == 96)
        _ = send(ls, from: b, to: a, port: 1, now: 10)
        #expect(send(ls, from: a, to: b, port: 0, now: 10 + 500_000_000) == .forward(PortID(1)))
        // past the aging time the entry is not used, and the sweep removes it
        #expect(send(ls, from: c, to: b, port: 0, now: 10 + 2_000_000_000) == .forwardSet(PortSet([PortID(1)])))
        ls.sweep(now: 10 + 3_000_000_000)
        #expect(counter(ls, "fdb-entries") == 0)
    }

    @Test func staticEntriesStay() {
        var cfg = LearningSwitchConfig()
        cfg.staticEntries = [StaticFDBEntry(mac: MACAddress(rawValue: b), port: "p2")]
        let ls = InterimLearningSwitch(cfg)
        ls.portsChanged(table((0..<3).map { PortInfo(id: PortID($0), name: "p\($0)") }))
        #expect(send(ls, from: a, to: b, port: 0) == .forward(PortID(2)))
        _ = send(ls, from: b, to: a, port: 1)   // b shows up elsewhere: a static entry does not move
        #expect(send(ls, from: a, to: b, port: 0) == .forward(PortID(2)))
        ls.sweep(now: UInt64.max)
        #expect(send(ls, from: a, to: b, port: 0) == .forward(PortID(2)))
    }

    @Test func vlansIsolationHairpin() {
        let ls = InterimLearningSwitch(LearningSwitchConfig())
        ls.portsChanged(table([
            PortInfo(id: PortID(0), name: "a10", vlan: .access(pvid: 10)),
            PortInfo(id: PortID(1), name: "a20", vlan: .access(pvid: 20)),
            PortInfo(id: PortID(2), name: "t", vlan: .trunk(allowed: VLANSet([10, 20]), native: nil)),
            PortInfo(id: PortID(3), name: "iso1", isolated: true),
            PortInfo(id: PortID(4), name: "iso2", isolated: true),
            PortInfo(id: PortID(5), name: "hp", hairpin: true),
        ]))
        var vlan: UInt16 = 0
        #expect(send(ls, from: a, to: 0xFFFF_FFFF_FFFF, port: 0, vlan: &vlan) == .forwardSet(PortSet([PortID(2), PortID(3), PortID(4), PortID(5)])))
        #expect(vlan == 10)
        #expect(send(ls, from: a, to: b, port: 0, tag: 10) == .drop(.vlan))          // tagged on an access port
        #expect(send(ls, from: b, to: a, port: 2, tag: 30) == .drop(.vlan))          // VLAN not allowed on the trunk
        #expect(send(ls, from: b, to: a, port: 2) == .drop(.vlan))                   // untagged, no native VLAN
        #expect(send(ls, from: b, to: a, port: 2, tag: 20, vlan: &vlan) == .forwardSet(PortSet([PortID(1), PortID(3), PortID(4), PortID(5)])))
        #expect(vlan == 20)
        #expect(send(ls, from: b, to: a, port: 2, tag: 10) == .forward(PortID(0)))   // a learned in VLAN 10
        // isolated ports reach non-isolated ones only (frames of a VLAN-unaware port are in no VLAN)
        #expect(send(ls, from: c, to: 0xFFFF_FFFF_FFFF, port: 3) == .forwardSet(PortSet([PortID(0), PortID(1), PortID(2), PortID(5)])))
        _ = send(ls, from: 0x0200_0000_00EE, to: c, port: 4)
        #expect(send(ls, from: c, to: 0x0200_0000_00EE, port: 3) == .drop(.isolated))
        // hairpin: a destination on the ingress port goes back out of it
        _ = send(ls, from: 0x0200_0000_0077, to: a, port: 5)
        #expect(send(ls, from: 0x0200_0000_0078, to: 0x0200_0000_0077, port: 5) == .forward(PortID(5)))
    }
}
