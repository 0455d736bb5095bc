// FuzzHandlers: a frame from a hostile guest through the bundled handlers' parsing, on a bridge
// of five ports (two VM ports with assigned MACs and source addresses, an access port, a trunk
// and a VLAN-unaware port): SourceGuard (MAC, ARP sender, IPv4/IPv6 source), the filter's
// built-in guards (@anti-spoofing, @only-arp-and-ip, @dhcp-server-guard, @ra-guard,
// @block-mac) and a few pcap-filter rules at ingress and egress, the learning switch's VLAN
// classification, learning and lookup (a small FDB, so it fills), and the egress tagging
// decision for every port. Checks: verdicts name ports of the bridge, the VLAN a frame is
// classified into is one its port carries, and a tag is only stripped from a tagged frame and
// only inserted into an untagged one.
// Input: 1 byte ingress port, 1 byte clock step, then the frame (at least 14 bytes).
import Frames
import FuzzSupport
import Handlers

let mac1 = MACAddress("52:54:00:00:00:01")!, mac2 = MACAddress("52:54:00:00:00:02")!
let portInfos = [
    PortInfo(id: PortID(0), name: "vm1", kind: "vm", assignedMAC: mac1),
    PortInfo(id: PortID(1), name: "vm2", kind: "vm", vlan: .access(pvid: 10), assignedMAC: mac2),
    PortInfo(id: PortID(2), name: "access20", vlan: .access(pvid: 20)),
    PortInfo(id: PortID(3), name: "trunk", vlan: .trunk(allowed: VLANSet([10, 20, 30]), native: 30)),
    PortInfo(id: PortID(4), name: "lan", isolated: true),
]
let table = PortTable(portInfos)

func makeGuard() -> SourceGuard {
    var a = SourceAddresses()
    _ = a.add("198.18.0.1"); _ = a.add("2001:db8::1")
    let g = SourceGuard(policies: ["vm1": .init(addresses: a), "vm2": .init(checkMAC: true, mac: nil, addresses: a)])
    g.portsChanged(table)
    return g
}

func makeFilter(_ direction: FilterDirection) -> FrameFilter {
    let rules = ["deny @anti-spoofing", "deny @dhcp-server-guard", "deny @ra-guard", "deny @block-mac 52:54:00:00:00:66",
                 "count @only-arp-and-ip", "deny tcp dst port 22", "allow vlan 10 and udp", "limit 1000pps udp",
                 "mirror lan icmp6"].map { try! FilterRule(parsing: $0) }
    let f = try! FrameFilter(rules: rules, ports: direction == .egress ? ["lan", "trunk"] : nil, direction: direction)
    f.portsChanged(table)
    return f
}

func makeSwitch() -> LearningSwitch {
    let s = LearningSwitch(configuration: .init(agingTime: 1, capacity: 16,
                                                staticEntries: [.init(mac: MACAddress("52:54:00:00:00:0b")!, vlan: 10, port: "trunk")]))
    s.portsChanged(table)
    return s
}

let sourceGuard = makeGuard()
let ingressFilter = makeFilter(.ingress)
let egressFilter = makeFilter(.egress)
let learningSwitch = makeSwitch()
var clock: UInt64 = 1_000_000_000
let frameBuffer = UnsafeMutableRawPointer.allocate(byteCount: 65_536, alignment: 16)

func check(_ v: Verdict, _ who: String) {
    switch v {
    case .forward(let p): fuzzCheck(table[p] != nil, "\(who) forwards to unknown \(p)")
    case .forwardSet(let s): fuzzCheck(s.intersection(table.members) == s, "\(who) forwards outside the bridge")
    default: break
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHandlers(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let ingress = portInfos[Int(input.u8()) % portInfos.count]
    clock &+= UInt64(input.u8()) * 50_000_000
    let bytes = input.rest()
    guard bytes.count >= Frame.minimumLength, bytes.count <= 65_536 else { return 0 }
    // An exactly sized copy: AddressSanitizer reports any read past the frame.
    let copy = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 2)
    defer { copy.deallocate() }
    copy.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    var frame = Frame(bytes: UnsafeMutableRawBufferPointer(start: copy, count: bytes.count), ingress: ingress.id)
    let context = HandlerContext(now: clock)

    check(sourceGuard.handle(&frame, context: context), "source guard")
    check(ingressFilter.handle(&frame, context: context), "ingress filter")
    let verdict = learningSwitch.handle(&frame, context: context)
    check(verdict, "learning switch")
    fuzzCheck(frame.length == bytes.count, "a handler changed the frame's length")

    if frame.vlan != 0 {
        // Classified: the ingress port carries that VLAN.
        switch ingress.vlan {
        case .unaware: fuzzCheck(false, "VLAN \(frame.vlan) on a VLAN-unaware port")
        case .access(let pvid): fuzzCheck(frame.vlan == pvid, "access port of \(pvid) classified into \(frame.vlan)")
        case .trunk(let allowed, let native): fuzzCheck(allowed.contains(frame.vlan) || frame.vlan == native, "trunk classified into \(frame.vlan)")
        }
    }
    for p in portInfos where p.id != ingress.id {
        _ = egressFilter.handleEgress(&frame, to: p.id, context: context)
        switch frame.egressTagging(for: p.vlan) {
        case .stripTag: fuzzCheck(frame.taggedVLAN != nil, "strip of an untagged frame")   // too short to strip: the worker drops it
        case .insertTag(let vid): fuzzCheck(frame.taggedVLAN == nil && vid == frame.vlan, "tag insert into a tagged frame")
        case .asIs, .drop: break
        }
    }
    _ = sourceGuard.counters(); _ = ingressFilter.counters(); _ = learningSwitch.counters()
    return 0
}
