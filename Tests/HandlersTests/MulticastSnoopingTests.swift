// IGMP/MLD snooping on synthetic frames: the parsers (IGMPv1/v2/v3, MLDv1/v2, PIM, bounds and
// checksums), the group table's bound, and the learning switch's multicast forwarding —
// members and router ports only, unregistered and link-local groups flooding, leave, fast
// leave, group-specific queries, membership and router timeouts, port removal.
import Testing
@testable import Frames
@testable import Handlers
import TapbridgeTesting

/// IGMP/MLD/UDP packets as a host or router sends them, checksums included.
enum MulticastPackets {
    static func checksum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt16 {
        var sum = initial
        var i = 0
        while i + 1 < bytes.count { sum &+= UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { sum &+= UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) &+ (sum >> 16) }
        return ~UInt16(sum)
    }
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    static func ip4(_ s: String) -> UInt32 { s.split(separator: ".").reduce(0) { $0 << 8 | UInt32($1)! } }
    static func ip6(_ s: String) -> [UInt8] {
        let (h, l) = MulticastGroup.parseIPv6(s)!
        return (0..<8).map { UInt8(truncatingIfNeeded: h >> UInt64(56 - 8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: l >> UInt64(56 - 8 * $0)) }
    }

    /// An IPv4 packet; `routerAlert` adds the 4-byte option IGMP carries.
    static func ipv4(from src: String = "198.18.0.1", to dst: String, proto: UInt8, _ payload: [UInt8], routerAlert: Bool = true) -> [UInt8] {
        let options: [UInt8] = routerAlert ? [0x94, 0x04, 0x00, 0x00] : []
        let hl = 20 + options.count
        var h: [UInt8] = [UInt8(0x40 | hl / 4), 0xC0] + [UInt8((hl + payload.count) >> 8), UInt8((hl + payload.count) & 0xFF)]
        h += [0, 0, 0, 0, 1, proto, 0, 0] + be32(ip4(src)) + be32(ip4(dst)) + options
        let c = checksum(h)
        h[10] = UInt8(c >> 8); h[11] = UInt8(c & 0xFF)
        return h + payload
    }
    static func withChecksum(_ m: [UInt8], at: Int = 2, initial: UInt32 = 0) -> [UInt8] {
        var m = m
        let c = checksum(m, initial: initial)
        m[at] = UInt8(c >> 8); m[at + 1] = UInt8(c & 0xFF)
        return m
    }
    static func igmp(_ type: UInt8, group: String, code: UInt8 = 0) -> [UInt8] {
        withChecksum([type, code, 0, 0] + be32(ip4(group)))
    }
    static func igmpReport(_ group: String) -> [UInt8] { ipv4(to: group, proto: 2, igmp(0x16, group: group)) }
    static func igmpLeave(_ group: String) -> [UInt8] { ipv4(to: "224.0.0.2", proto: 2, igmp(0x17, group: group)) }
    static func igmpQuery(group: String = "0.0.0.0", code: UInt8 = 100) -> [UInt8] {
        ipv4(to: group == "0.0.0.0" ? "224.0.0.1" : group, proto: 2, igmp(0x11, group: group, code: code))
    }
    /// IGMPv3 report; records: (type, group, number of sources).
    static func igmpV3Report(_ records: [(UInt8, String, Int)]) -> [UInt8] {
        var m: [UInt8] = [0x22, 0, 0, 0, 0, 0, UInt8(records.count >> 8), UInt8(records.count & 0xFF)]
        for (t, g, n) in records {
            m += [t, 0, UInt8(n >> 8), UInt8(n & 0xFF)] + be32(ip4(g))
            for i in 0..<n { m += be32(ip4("198.18.1.\(i + 1)")) }
        }
        return ipv4(to: "224.0.0.22", proto: 2, withChecksum(m))
    }
    static func udp4(to group: String, from src: String = "198.18.0.9") -> [UInt8] {
        ipv4(from: src, to: group, proto: 17, [0x30, 0x39, 0x30, 0x39, 0, 12, 0, 0, 1, 2, 3, 4], routerAlert: false)
    }

    /// An IPv6 packet; `hopByHop`: a hop-by-hop header with the MLD router alert first.
    static func ipv6(from src: String = "fe80::1", to dst: String, next: UInt8, _ payload: [UInt8], hopByHop: Bool = true) -> [UInt8] {
        let hbh: [UInt8] = hopByHop ? [next, 0, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00] : []
        let length = hbh.count + payload.count
        return [0x60, 0, 0, 0, UInt8(length >> 8), UInt8(length & 0xFF), hopByHop ? 0 : next, 1] + ip6(src) + ip6(dst) + hbh + payload
    }
    static func icmpv6(_ m: [UInt8], from src: String, to dst: String) -> [UInt8] {
        var pseudo: UInt32 = 0
        let p = ip6(src) + ip6(dst)
        for i in stride(from: 0, to: 32, by: 2) { pseudo &+= UInt32(p[i]) << 8 | UInt32(p[i + 1]) }
        pseudo &+= UInt32(m.count) + 58
        return withChecksum(m, initial: pseudo)
    }
    static func mld(_ type: UInt8, group: String, from src: String = "fe80::1", to dst: String? = nil, maxResponse: UInt16 = 0) -> [UInt8] {
        let d = dst ?? group
        let m: [UInt8] = [type, 0, 0, 0, UInt8(maxResponse >> 8), UInt8(maxResponse & 0xFF), 0, 0] + ip6(group)
        return ipv6(from: src, to: d, next: 58, icmpv6(m, from: src, to: d))
    }
    static func mldV2Report(_ records: [(UInt8, String, Int)], from src: String = "fe80::1") -> [UInt8] {
        var m: [UInt8] = [143, 0, 0, 0, 0, 0, UInt8(records.count >> 8), UInt8(records.count & 0xFF)]
        for (t, g, n) in records {
            m += [t, 0, UInt8(n >> 8), UInt8(n & 0xFF)] + ip6(g)
            for i in 0..<n { m += ip6("2001:db8::\(i + 1)") }
        }
        return ipv6(from: src, to: "ff02::16", next: 58, icmpv6(m, from: src, to: "ff02::16"))
    }
    static func udp6(to group: String) -> [UInt8] {
        ipv6(from: "2001:db8::9", to: group, next: 17, [0x30, 0x39, 0x30, 0x39, 0, 12, 0, 0, 1, 2, 3, 4], hopByHop: false)
    }

    static func mac(ipv4 group: String) -> MACAddress {
        let a = ip4(group)
        return MACAddress(0x01, 0x00, 0x5E, UInt8(a >> 16 & 0x7F), UInt8(a >> 8 & 0xFF), UInt8(a & 0xFF))
    }
    static func mac(ipv6 group: String) -> MACAddress {
        let b = ip6(group)
        return MACAddress(0x33, 0x33, b[12], b[13], b[14], b[15])
    }
}

struct CollectingSink: MulticastEventSink {
    var events: [MulticastEvent] = []
    var limit = Int.max
    mutating func take(_ event: MulticastEvent) -> Bool {
        guard events.count < limit else { return false }
        events.append(event)
        return true
    }
}

func classify(_ ip: [UInt8], etherType: UInt16 = EtherType.ipv4, dst: MACAddress? = nil) -> (MulticastFrameClass, [MulticastEvent]) {
    let b = FrameBuilder(capacity: 4096)
    let f = b.frame(from: hostA, to: dst ?? MACAddress("01:00:5e:00:00:01")!, port: 0, etherType: etherType, payload: ip)
    var sink = CollectingSink()
    let c = MulticastParser.classify(UnsafeRawBufferPointer(f.bytes), sink: &sink)
    return (c, sink.events)
}

func g(_ s: String) -> MulticastGroup { MulticastGroup(s)! }

@Suite struct MulticastParserTests {
    typealias P = MulticastPackets

    @Test func igmpV2ReportLeaveAndQueries() {
        #expect(classify(P.igmpReport("239.1.2.3")) == (.report, [MulticastEvent(.join, g("239.1.2.3"))]))
        #expect(classify(P.igmpLeave("239.1.2.3")) == (.report, [MulticastEvent(.leave, g("239.1.2.3"))]))
        // A query's router event carries the querier's source (for querier election).
        let querier = MulticastEvent(.router, MulticastGroup(ipv4: P.ip4("198.18.0.1")))
        #expect(classify(P.igmpQuery()) == (.query, [querier]))
        #expect(classify(P.igmpQuery(group: "239.1.2.3", code: 10))
                == (.query, [querier, MulticastEvent(.groupQuery, g("239.1.2.3"), maxResponseMs: 1000)]))
        // Without the router alert option too (it is not required), and IGMPv1's report.
        #expect(classify(P.ipv4(to: "239.1.2.3", proto: 2, P.igmp(0x12, group: "239.1.2.3"), routerAlert: false)).0 == .report)
    }

    @Test func igmpV3RecordsReadAsTheLinuxBridgeDoes() {
        let (c, e) = classify(P.igmpV3Report([(2, "239.1.1.1", 0), (3, "239.1.1.2", 0), (1, "239.1.1.3", 2), (4, "224.0.0.251", 0), (9, "239.1.1.4", 0)]))
        #expect(c == .report)
        #expect(e == [MulticastEvent(.join, g("239.1.1.1")), MulticastEvent(.leave, g("239.1.1.2")), MulticastEvent(.join, g("239.1.1.3"))])
    }

    @Test func dataLinkLocalAndNotSnooped() {
        #expect(classify(P.udp4(to: "239.1.2.3")).0 == .data(g("239.1.2.3")))
        #expect(classify(P.udp4(to: "224.0.0.251")).0 == .linkLocal)
        #expect(classify(P.udp4(to: "198.18.0.2")).0 == .notSnooped)
        #expect(classify([0x08, 0x06]).0 == .notSnooped)
        // A report for a link-local group says nothing.
        #expect(classify(P.igmpReport("224.0.0.251")) == (.report, []))
        // PIM hello to 224.0.0.13: a router.
        #expect(classify(P.ipv4(to: "224.0.0.13", proto: 103, [0x20, 0, 0, 0], routerAlert: false))
                == (.linkLocal, [MulticastEvent(.router, MulticastGroup(ipv4: 0))]))
    }

    @Test func malformedIGMPIsRefused() {
        var bad = P.igmpReport("239.1.2.3")
        bad[bad.count - 1] ^= 1   // IGMP checksum
        #expect(classify(bad) == (.malformed, []))
        var badHeader = P.igmpReport("239.1.2.3")
        badHeader[8] ^= 1         // TTL: the IP header checksum
        #expect(classify(badHeader).0 == .malformed)
        let report = P.igmpReport("239.1.2.3")
        for cut in 15..<report.count {   // every truncation: refused or not snooped, never a crash
            let (c, e) = classify(Array(report.prefix(cut)))
            #expect(c != .report && e.isEmpty, "cut at \(cut)")
        }
        // A v3 report claiming more records (or sources) than it carries.
        var v3 = P.igmpV3Report([(2, "239.1.1.1", 1)])
        v3[24 + 6] = 0; v3[24 + 7] = 9
        #expect(classify(P.ipv4(to: "224.0.0.22", proto: 2, P.withChecksum(Array(v3[24...])))).0 == .malformed)
        // Fragments are refused (the header checksum made right again).
        var frag = P.igmpReport("239.1.2.3")
        frag[6] = 0x20; frag[10] = 0; frag[11] = 0
        let c = P.checksum(Array(frag[0..<24]))
        frag[10] = UInt8(c >> 8); frag[11] = UInt8(c & 0xFF)
        #expect(classify(frag).0 == .malformed)
    }

    @Test func mldV1V2AndQueries() {
        let six = EtherType.ipv6
        #expect(classify(P.mld(131, group: "ff05::1:3"), etherType: six) == (.report, [MulticastEvent(.join, g("ff05::1:3"))]))
        #expect(classify(P.mld(132, group: "ff05::1:3", to: "ff02::2"), etherType: six) == (.report, [MulticastEvent(.leave, g("ff05::1:3"))]))
        let (c, e) = classify(P.mldV2Report([(4, "ff0e::1", 0), (3, "ff0e::2", 0), (2, "ff02::1", 0)]), etherType: six)
        #expect(c == .report && e == [MulticastEvent(.join, g("ff0e::1")), MulticastEvent(.leave, g("ff0e::2"))])
        let router = MulticastEvent(.router, MulticastGroup(ipv6High: 0xFE80_0000_0000_0000, low: 1))   // the querier fe80::1
        #expect(classify(P.mld(130, group: "::", to: "ff02::1", maxResponse: 10_000), etherType: six) == (.query, [router]))
        #expect(classify(P.mld(130, group: "ff05::1:3", maxResponse: 1000), etherType: six)
                == (.query, [router, MulticastEvent(.groupQuery, g("ff05::1:3"), maxResponseMs: 1000)]))
        // A query from a global address is not MLD's; nor is ICMPv6 without the hop-by-hop header.
        #expect(classify(P.mld(130, group: "::", from: "2001:db8::1", to: "ff02::1"), etherType: six).0 == .malformed)
        #expect(classify(P.udp6(to: "ff05::1:3"), etherType: six).0 == .data(g("ff05::1:3")))
        #expect(classify(P.udp6(to: "ff02::1"), etherType: six).0 == .linkLocal)
        var bad = P.mld(131, group: "ff05::1:3")
        bad[bad.count - 1] ^= 1
        #expect(classify(bad, etherType: six).0 == .malformed)
        let report = P.mldV2Report([(4, "ff0e::1", 2)])
        for cut in 0..<report.count {
            let (c, e) = classify(Array(report.prefix(cut)), etherType: six)
            #expect(c != .report && e.isEmpty, "cut at \(cut)")
        }
    }

    @Test func maxResponseCodes() {
        #expect(IGMPParser.decodeCode8(100) == 100)
        #expect(IGMPParser.decodeCode8(0x80) == 0x10 << 3)
        #expect(IGMPParser.decodeCode8(0xFF) == 0x1F << 10)
        #expect(MLDParser.decodeCode16(10_000) == 10_000)
        #expect(MLDParser.decodeCode16(0xFFFF) == 0x1FFF << 10)
    }

    @Test func groupText() {
        #expect(g("239.1.2.3").description == "239.1.2.3")
        #expect(g("ff05::1:3").description == "ff05::1:3")
        #expect(g("ff02:0:0:0:0:1:ff00:1").description == "ff02::1:ff00:1")
        #expect(MulticastGroup("198.18.0.1") == nil && MulticastGroup("fe80::1") == nil && MulticastGroup("ff05:::1") == nil)
        #expect(g("224.0.0.251").alwaysFloods && g("ff02::1").alwaysFloods && g("ff01::5").alwaysFloods)
        #expect(!g("239.1.2.3").alwaysFloods && !g("ff02::1:ff00:1").alwaysFloods)
    }
}

@Suite struct MulticastSnoopingTests {
    typealias P = MulticastPackets
    let b = FrameBuilder(capacity: 4096)

    func send(_ sw: LearningSwitch, _ ip: [UInt8], to dst: MACAddress, port: Int, etherType: UInt16 = EtherType.ipv4,
              tag: UInt16? = nil, now: UInt64 = second) -> Verdict {
        let src = MACAddress(0x52, 0x54, 0, 0, 1, UInt8(port))
        var f = b.frame(from: src, to: dst, port: port, tag: tag, etherType: etherType, payload: ip)
        return sw.handle(&f, context: HandlerContext(now: now, worker: port % 3))
    }
    func data(_ sw: LearningSwitch, _ group: String, port: Int = 0, now: UInt64 = second) -> Verdict {
        send(sw, P.udp4(to: group), to: P.mac(ipv4: group), port: port, now: now)
    }
    func join(_ sw: LearningSwitch, _ group: String, port: Int, now: UInt64 = second) {
        _ = send(sw, P.igmpReport(group), to: P.mac(ipv4: group), port: port, now: now)
    }
    func set(_ p: Int...) -> Verdict { .forwardSet(PortSet(p.map { PortID($0) })) }
    func snoopCounter(_ sw: LearningSwitch, _ name: String) -> UInt64 { counter(sw, name) }

    @Test func dataGoesOnlyToMembers() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(4))
        #expect(data(sw, "239.1.2.3") == set(1, 2, 3))   // unregistered: floods
        join(sw, "239.1.2.3", port: 1)
        join(sw, "239.1.2.3", port: 2)
        sw.snooping!.maintain(now: second)
        #expect(data(sw, "239.1.2.3") == set(1, 2))
        #expect(data(sw, "239.1.2.3", port: 1) == set(2))
        #expect(data(sw, "239.9.9.9") == set(1, 2, 3))   // another group: unregistered
        #expect(data(sw, "224.0.0.251") == set(1, 2, 3)) // link-local: always floods
        #expect(sw.snooping!.memberships().map { "\($0.group)@\($0.port.rawValue)" } == ["239.1.2.3@1", "239.1.2.3@2"])
        #expect(snoopCounter(sw, "mdb_entries") == 1 && snoopCounter(sw, "mcast_reports") == 2)
        #expect(snoopCounter(sw, "mcast_frames_registered") == 2 && snoopCounter(sw, "mcast_frames_unregistered") == 2)
    }

    @Test func routerPortsGetReportsAndData() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(4))
        // Before any router is known reports flood; then a query on port 3 makes it a router port.
        #expect(send(sw, P.igmpReport("239.1.2.3"), to: P.mac(ipv4: "239.1.2.3"), port: 1) == set(0, 2, 3))
        #expect(send(sw, P.igmpQuery(), to: P.mac(ipv4: "224.0.0.1"), port: 3) == set(0, 1, 2))
        sw.snooping!.maintain(now: second)
        #expect(sw.snooping!.routerPorts().map(\.port) == [PortID(3)])
        #expect(send(sw, P.igmpReport("239.1.2.3"), to: P.mac(ipv4: "239.1.2.3"), port: 2) == set(3))
        #expect(data(sw, "239.1.2.3") == set(1, 3))
        // IPv6 data has no IPv6 router port yet.
        #expect(send(sw, P.mld(131, group: "ff05::1:3"), to: P.mac(ipv6: "ff05::1:3"), port: 1, etherType: EtherType.ipv6) == set(0, 2, 3))
        // The router port ages out after the other querier present interval (255 s).
        sw.snooping!.maintain(now: 300 * second)
        #expect(sw.snooping!.routerPorts().isEmpty)
    }

    @Test func leaveWaitsTheLastMemberQueryTimeUnlessFast() {
        for fast in [false, true] {
            let sw = LearningSwitch(configuration: .init(multicastSnooping: .init(fastLeave: fast)))
            sw.portsChanged(ports(3))
            join(sw, "239.1.2.3", port: 1)
            join(sw, "239.1.2.3", port: 2)
            sw.snooping!.maintain(now: second)
            _ = send(sw, P.igmpLeave("239.1.2.3"), to: P.mac(ipv4: "224.0.0.2"), port: 1, now: 2 * second)
            sw.snooping!.maintain(now: 2 * second)
            #expect(data(sw, "239.1.2.3") == (fast ? set(2) : set(1, 2)))
            // Last member query time: robustness (2) x last member interval (1 s).
            sw.snooping!.maintain(now: 4 * second + 1)
            #expect(data(sw, "239.1.2.3") == set(2))
        }
    }

    @Test func membershipTimesOutAndTheGroupFloodsAgain() {
        let sw = LearningSwitch(configuration: .init(multicastSnooping: .init(queryInterval: 10, queryResponseInterval: 2)))
        sw.portsChanged(ports(3))
        join(sw, "239.1.2.3", port: 1)
        sw.snooping!.maintain(now: second)
        // Membership interval: 2 x 10 + 2 = 22 s after the report; a new report refreshes it.
        sw.snooping!.maintain(now: 20 * second)
        #expect(data(sw, "239.1.2.3") == set(1))
        join(sw, "239.1.2.3", port: 1, now: 20 * second)
        sw.snooping!.maintain(now: 30 * second)
        #expect(data(sw, "239.1.2.3") == set(1))
        sw.snooping!.maintain(now: 43 * second)
        #expect(data(sw, "239.1.2.3") == set(1, 2))
        #expect(snoopCounter(sw, "mdb_expired") == 1 && sw.snooping!.memberships().isEmpty)
    }

    @Test func groupSpecificQueryShortensTimers() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(3))
        join(sw, "239.1.2.3", port: 1)
        sw.snooping!.maintain(now: second)
        _ = send(sw, P.igmpQuery(group: "239.1.2.3", code: 10), to: P.mac(ipv4: "239.1.2.3"), port: 2, now: 5 * second)
        sw.snooping!.maintain(now: 5 * second)
        // Nobody answered within robustness x 1 s.
        sw.snooping!.maintain(now: 8 * second)
        #expect(sw.snooping!.memberships().isEmpty)
    }

    @Test func unregisteredToRoutersOnlyWhenAsked() {
        let sw = LearningSwitch(configuration: .init(multicastSnooping: .init(floodUnregistered: false)))
        sw.portsChanged(ports(3))
        #expect(data(sw, "239.1.2.3") == .drop(.noDestination))
        _ = send(sw, P.igmpQuery(), to: P.mac(ipv4: "224.0.0.1"), port: 2)
        sw.snooping!.maintain(now: second)
        #expect(data(sw, "239.1.2.3") == set(2))
        #expect(data(sw, "224.0.0.251") == set(1, 2))
    }

    @Test func mldSnoopingAndVLANsAreSeparate() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(4) { p in if p.id.rawValue < 2 { p.vlan = .access(pvid: 10) } else { p.vlan = .trunk(allowed: VLANSet([10, 20]), native: nil) } })
        let six = EtherType.ipv6
        _ = send(sw, P.mld(131, group: "ff05::1:3"), to: P.mac(ipv6: "ff05::1:3"), port: 1, etherType: six)
        sw.snooping!.maintain(now: second)
        #expect(send(sw, P.udp6(to: "ff05::1:3"), to: P.mac(ipv6: "ff05::1:3"), port: 0, etherType: six) == set(1))
        // VLAN 20 on the trunks: the group is unregistered there.
        #expect(send(sw, P.udp6(to: "ff05::1:3"), to: P.mac(ipv6: "ff05::1:3"), port: 2, etherType: six, tag: 20) == set(3))
        #expect(sw.snooping!.memberships().map(\.vlan) == [10])
    }

    @Test func tableIsBoundedAndEventsDropWhenTheQueueIsFull() {
        var config = MulticastSnooping.Configuration(capacity: 8)
        config.eventQueue = 64
        let sw = LearningSwitch(configuration: .init(multicastSnooping: config))
        sw.portsChanged(ports(2))
        for i in 0..<200 { join(sw, "239.2.\(i / 250).\(i % 250 + 1)", port: 1) }
        sw.snooping!.maintain(now: second)
        #expect(sw.snooping!.groupCount == 8)
        #expect(snoopCounter(sw, "mdb_full") == 56 && snoopCounter(sw, "mcast_events_dropped") == 136)
        // A hostile IGMPv3 report of 100 records: at most maxRecordsPerReport events.
        let big = P.igmpV3Report((0..<100).map { (2, "239.3.0.\($0 + 1)", 0) })
        _ = send(sw, big, to: P.mac(ipv4: "224.0.0.22"), port: 1)
        #expect(snoopCounter(sw, "mcast_events_dropped") == 136)
        sw.snooping!.maintain(now: second)
        #expect(sw.snooping!.groupCount == 8)
    }

    @Test func removedPortsLeaveTheirGroups() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(3))
        join(sw, "239.1.2.3", port: 1)
        join(sw, "239.1.2.3", port: 2)
        sw.snooping!.maintain(now: second)
        sw.portsChanged(PortTable([PortInfo(id: PortID(0), name: "p0"), PortInfo(id: PortID(2), name: "p2")]))
        #expect(sw.snooping!.memberships().map(\.port) == [PortID(2)])
        #expect(data(sw, "239.1.2.3") == set(2))
    }

    @Test func malformedReportsAreDropped() {
        let sw = LearningSwitch()
        sw.portsChanged(ports(3))
        var bad = P.igmpReport("239.1.2.3")
        bad[bad.count - 1] ^= 1
        #expect(send(sw, bad, to: P.mac(ipv4: "239.1.2.3"), port: 1) == .drop(.malformed))
        #expect(snoopCounter(sw, "mcast_malformed") == 1)
    }

    @Test func snoopingOffFloods() {
        let sw = LearningSwitch(configuration: .init(multicastSnooping: nil))
        sw.portsChanged(ports(3))
        join(sw, "239.1.2.3", port: 1)
        sw.expire(now: second)
        #expect(data(sw, "239.1.2.3") == set(1, 2))
        #expect(sw.snooping == nil)
    }
}

@Suite struct MulticastQuerierTests {
    let bridgeMAC = MACAddress("02:00:5e:10:00:01")!

    func parse(_ frame: [UInt8]) -> (MulticastFrameClass, [MulticastEvent]) {
        frame.withUnsafeBytes { b in
            var sink = CollectingSink()
            return (MulticastParser.classify(b, sink: &sink), sink.events)
        }
    }

    /// The queries the querier would send read back through the parser: valid checksums,
    /// router alert, a general query with the response time asked for.
    @Test func queriesParseAsGeneralQueries() {
        #expect(parse(MulticastQuerier.igmpGeneralQuery(source: bridgeMAC)) == (.query, [MulticastEvent(.router, MulticastGroup(ipv4: 0))]))
        #expect(parse(MulticastQuerier.mldGeneralQuery(source: bridgeMAC))
                == (.query, [MulticastEvent(.router, MulticastGroup(ipv6High: 0xFE80_0000_0000_0000, low: 0x0000_5EFF_FE10_0001))]))
        let q = MulticastQuerier.mldGeneralQuery(source: bridgeMAC, maxResponseSeconds: 40)
        let ms = MLDParser.decodeCode16(UInt16(q[14 + 48 + 4]) << 8 | UInt16(q[14 + 48 + 5]))   // after IPv6 + hop-by-hop
        #expect(ms <= 40_000 && ms > 39_900, "\(ms)")
    }

    @Test func responseCodesRoundTrip() {
        for v: UInt32 in [0, 100, 127, 128, 200, 1000, 31744] {
            let decoded = IGMPParser.decodeCode8(MulticastQuerier.encode8(v))
            #expect(decoded <= v && (v < 128 ? decoded == v : v - decoded < v / 16 + 8), "\(v) -> \(decoded)")
        }
        for v: UInt32 in [0, 10_000, 32_767, 32_768, 125_000, 8_387_584] {
            let decoded = MLDParser.decodeCode16(MulticastQuerier.encode16(v))
            #expect(decoded <= v && (v < 32768 ? decoded == v : v - decoded < v / 4096 + 8), "\(v) -> \(decoded)")
        }
    }
}
