// FrameFilter on synthetic frames: expressions, built-ins, actions, counters, live swaps under
// concurrent workers, and random frames (no crash, no out-of-bounds read).
import Foundation
import Testing
@testable import Frames
@testable import Handlers

/// Builds Ethernet/IP frames byte by byte.
struct Packet {
    var bytes: [UInt8] = []
    static let guest = MACAddress("52:54:00:00:00:10")!
    static let other = MACAddress("52:54:00:00:00:20")!

    static func ether(src: MACAddress = guest, dst: MACAddress = .broadcast, type: UInt16, vlan: UInt16? = nil) -> Packet {
        var p = Packet()
        p.bytes = dst.octets + src.octets
        if let vlan { p.bytes += [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF)] }
        p.bytes += [UInt8(type >> 8), UInt8(type & 0xFF)]
        return p
    }

    static func ipv4(proto: UInt8, sport: UInt16, dport: UInt16, src: MACAddress = guest, vlan: UInt16? = nil, payload: Int = 16) -> Packet {
        var p = ether(src: src, type: EtherType.ipv4, vlan: vlan)
        let total = 20 + 8 + payload
        p.bytes += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 1, 0, 0, 64, proto, 0, 0,
                    198, 18, 0, 10, 198, 18, 0, 20]
        p.bytes += [UInt8(sport >> 8), UInt8(sport & 0xFF), UInt8(dport >> 8), UInt8(dport & 0xFF), 0, 8, 0, 0]
        p.bytes += [UInt8](repeating: 0xAB, count: payload)
        return p
    }

    static func routerAdvertisement(withHopByHop: Bool) -> Packet {
        var p = ether(type: EtherType.ipv6)
        let next: UInt8 = withHopByHop ? 0 : 58
        p.bytes += [0x60, 0, 0, 0, 0, 24, next, 255] + [UInt8](repeating: 0xFE, count: 32)
        if withHopByHop { p.bytes += [58, 0, 1, 4, 0, 0, 0, 0] }
        p.bytes += [134, 0, 0, 0] + [UInt8](repeating: 0, count: 12)
        return p
    }

    func run(_ h: FrameHandler, port: Int = 0, worker: Int = 0, now: UInt64 = 1) -> (Verdict, PortSet) {
        var copy = bytes
        return copy.withUnsafeMutableBytes { buf in
            var f = Frame(bytes: buf, ingress: PortID(port))
            let v = h.handle(&f, context: HandlerContext(now: now, worker: worker))
            return (v, f.mirror)
        }
    }
}

let twoPorts = PortTable([PortInfo(id: PortID(0), name: "guest", assignedMAC: Packet.guest),
                          PortInfo(id: PortID(1), name: "lan"), PortInfo(id: PortID(2), name: "tap0")])

@Suite struct FrameFilterTests {
    @Test func firstMatchWinsAndPolicyDecidesTheRest() throws {
        let f = try FrameFilter(rules: [.expression("tcp dst port 22", .deny), .expression("tcp", .allow)], policy: .deny)
        #expect(Packet.ipv4(proto: 6, sport: 4000, dport: 22).run(f).0 == .drop(.filtered))
        #expect(Packet.ipv4(proto: 6, sport: 4000, dport: 80).run(f).0 == .continue)
        #expect(Packet.ipv4(proto: 17, sport: 4000, dport: 53).run(f).0 == .drop(.filtered))
        #expect(f.hits(rule: 0).packets == 1 && f.hits(rule: 1).packets == 1)
        let policyDenied = f.counters().first { $0.name == "filter_policy_denied" }?.value
        #expect(policyDenied == 1)
    }

    @Test func vlanExpressionsSeeTaggedFrames() throws {
        let f = try FrameFilter(rules: [.expression("vlan 10 and udp", .deny)])
        #expect(Packet.ipv4(proto: 17, sport: 1, dport: 2, vlan: 10).run(f).0 == .drop(.filtered))
        #expect(Packet.ipv4(proto: 17, sport: 1, dport: 2, vlan: 20).run(f).0 == .continue)
        #expect(Packet.ipv4(proto: 17, sport: 1, dport: 2).run(f).0 == .continue)
    }

    @Test func countMirrorAndLimitContinue() throws {
        let f = try FrameFilter(rules: [.expression("udp", .count), .expression("udp", .mirror("tap0")),
                                        .expression("udp", .limit(.packetsPerSecond(5))), .expression("udp", .deny)])
        f.portsChanged(twoPorts)
        let (v, mirror) = Packet.ipv4(proto: 17, sport: 1, dport: 2).run(f)
        #expect(v == .drop(.filtered) && mirror == PortSet([PortID(2)]))
        // The bucket holds 5 packets a second: past them, the excess is rate-limited.
        var limited = 0
        for _ in 0..<20 where Packet.ipv4(proto: 17, sport: 1, dport: 2).run(f, now: 2).0 == .drop(.rateLimited) { limited += 1 }
        #expect(limited >= 14 && limited <= 16)
        #expect(f.hits(rule: 0).packets == 21)
        #expect(f.hits(rule: 0).bytes == 21 * UInt64(Packet.ipv4(proto: 17, sport: 1, dport: 2).bytes.count))
    }

    @Test func badExpressionIsRefusedWithItsPosition() throws {
        let f = try FrameFilter(rules: [.expression("tcp", .deny)])
        do {
            try f.replaceRules([.expression("arp", .allow), .expression("tcp dst prot 22", .deny)])
            Issue.record("accepted a rule that does not compile")
        } catch let e as FilterError {
            #expect("\(e)".hasPrefix("rule 1 (\"tcp dst prot 22\"): "), "\(e)")
            #expect("\(e)".contains("prot"))   // libpcap's own words about the bad token
        }
        // The old set is still in force.
        #expect(f.currentRules == [.expression("tcp", .deny)] && f.currentGeneration == 0)
        #expect(Packet.ipv4(proto: 6, sport: 1, dport: 2).run(f).0 == .drop(.filtered))
        #expect(throws: FilterError.self) { try FrameFilter(rules: [.expression("udp", .limit(.bitsPerSecond(0)))]) }
    }

    @Test func builtInGuards() throws {
        let f = try FrameFilter(rules: [.builtin(.antiSpoofing), .builtin(.dhcpServerGuard), .builtin(.routerAdvertisementGuard),
                                        .builtin(.blockMAC(MACAddress("52:54:00:00:00:99")!)), .builtin(.onlyARPAndIP)],
                                ports: ["guest"])
        f.portsChanged(twoPorts)
        #expect(Packet.ipv4(proto: 17, sport: 68, dport: 67).run(f).0 == .continue)            // a DHCP client: fine
        #expect(Packet.ipv4(proto: 17, sport: 67, dport: 68).run(f).0 == .drop(.filtered))     // a rogue DHCP server
        #expect(Packet.ipv4(proto: 17, sport: 1, dport: 2, src: Packet.other).run(f).0 == .drop(.filtered))  // spoofed
        #expect(Packet.routerAdvertisement(withHopByHop: false).run(f).0 == .drop(.filtered))
        #expect(Packet.routerAdvertisement(withHopByHop: true).run(f).0 == .drop(.filtered))
        #expect(Packet.ether(dst: MACAddress("52:54:00:00:00:99")!, type: EtherType.arp).run(f).0 == .drop(.filtered))
        #expect(Packet.ether(type: 0x88CC).run(f).0 == .drop(.filtered))                     // LLDP: not ARP/IP
        #expect(Packet.ether(type: EtherType.arp).run(f).0 == .continue)
        // The LAN port is outside the filter's scope: the same rogue server passes there.
        #expect(Packet.ipv4(proto: 17, sport: 67, dport: 68, src: Packet.other).run(f, port: 1).0 == .continue)
        // A truncated IPv4 header is malformed for the DHCP guard, never a match.
        var cut = Packet.ipv4(proto: 17, sport: 67, dport: 68); cut.bytes.removeLast(30)
        #expect(cut.run(f).0 == .continue)
        #expect((f.counters().first { $0.name == "filter_malformed" }?.value ?? 0) >= 1)
    }

    /// Workers filter numbered frames while the control thread swaps rule sets: each frame is
    /// judged by exactly one complete set, so allowed + denied == sent, with nothing lost.
    @Test func liveSwapUnderLoadLosesNothing() async throws {
        let allow = [FilterRule.expression("udp", .count), .expression("udp", .allow)]
        let deny = [FilterRule.expression("udp", .count), .expression("udp", .deny)]
        let f = try FrameFilter(rules: allow)
        let perWorker = 40_000, workers = 3
        // The swapper is a thread of its own, so it runs while the workers do.
        let done = ManagedAtomicFlag()
        let swapper = Thread {
            var i = 0
            while !done.isSet { try? f.replaceRules(i % 2 == 0 ? deny : allow); i += 1; usleep(100) }
        }
        swapper.start()
        let results = await withTaskGroup(of: (Int, Int).self) { group in
            for w in 0..<workers {
                group.addTask {
                    var allowed = 0, denied = 0
                    for _ in 0..<perWorker {
                        switch Packet.ipv4(proto: 17, sport: 1, dport: 2).run(f, worker: w).0 {
                        case .continue: allowed += 1
                        case .drop(.filtered): denied += 1
                        default: break
                        }
                    }
                    return (allowed, denied)
                }
            }
            var total = (0, 0)
            for await r in group { total.0 += r.0; total.1 += r.1 }
            return total
        }
        done.set()
        #expect(results.0 + results.1 == perWorker * workers)
        #expect(results.0 > 0 && results.1 > 0, "allowed \(results.0), denied \(results.1)")
        #expect(f.currentGeneration > 10)
    }

    @Test func randomFramesNeverCrash() throws {
        let f = try FrameFilter(rules: [.expression("tcp[tcpflags] & tcp-syn != 0", .count), .expression("ip6 and udp port 53", .count),
                                        .expression("vlan and vlan and ip", .count), .builtin(.dhcpServerGuard, .count),
                                        .builtin(.routerAdvertisementGuard, .count), .builtin(.antiSpoofing, .count),
                                        .builtin(.onlyARPAndIP, .count)])
        f.portsChanged(twoPorts)
        var rng = SplitMix(seed: 0x7461_7062)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 8)
        defer { buf.deallocate() }
        let types: [UInt16] = [EtherType.ipv4, EtherType.ipv6, EtherType.vlan, EtherType.arp, 0x88A8, 0x1234]
        for _ in 0..<200_000 {
            let n = 14 + Int(rng.next() % 300)
            for i in 0..<n { buf[i] = UInt8(truncatingIfNeeded: rng.next()) }
            // Half-valid headers: a plausible EtherType (and version nibble) half the time.
            if rng.next() % 2 == 0 {
                let t = types[Int(rng.next() % UInt64(types.count))]
                buf[12] = UInt8(t >> 8); buf[13] = UInt8(t & 0xFF)
                if n > 14 { buf[14] = t == EtherType.ipv6 ? 0x60 : 0x45 }
            }
            var frame = Frame(bytes: UnsafeMutableRawBufferPointer(rebasing: buf[0..<n]), ingress: PortID(Int(rng.next() % 3)))
            _ = f.handle(&frame, context: .init(now: 1))
        }
        #expect(f.hits(rule: 5).packets > 0)
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
