// SourceGuard on synthetic frames: MAC (the filter's @anti-spoofing check), ARP sender, IPv4 and
// IPv6 sources against configured addresses, the always-allowed unspecified / EUI-64 link-local
// sources, VLAN-tagged frames, truncated headers, unguarded ports, per-reason counters.
import Testing
@testable import Frames
@testable import Handlers

@Suite struct SourceGuardTests {
    static func guarded(addresses: [String]?) throws -> SourceGuard {
        var a: SourceAddresses?
        if let addresses {
            var s = SourceAddresses()
            for x in addresses { #expect(s.add(x) == nil) }
            a = s
        }
        let g = SourceGuard(policies: ["guest": .init(addresses: a)])
        g.portsChanged(twoPorts)
        return g
    }

    static func arp(sender: MACAddress = Packet.guest, ip: [UInt8], ethSource: MACAddress = Packet.guest) -> Packet {
        var p = Packet.ether(src: ethSource, type: EtherType.arp)
        p.bytes += [0, 1, 0x08, 0, 6, 4, 0, 1] + sender.octets + ip + [0, 0, 0, 0, 0, 0, 198, 18, 0, 1]
        return p
    }

    static func ipv6(source: [UInt8], vlan: UInt16? = nil) -> Packet {
        var p = Packet.ether(type: EtherType.ipv6, vlan: vlan)
        p.bytes += [0x60, 0, 0, 0, 0, 8, 17, 64] + source + [0xff, 2] + [UInt8](repeating: 0, count: 13) + [1] + [0, 1, 0, 2, 0, 8, 0, 0]
        return p
    }

    @Test func macOnlyByDefault() throws {
        let g = try Self.guarded(addresses: nil)
        #expect(Packet.ipv4(proto: 17, sport: 1, dport: 2).run(g).0 == .continue)
        #expect(Packet.ipv4(proto: 17, sport: 1, dport: 2, src: Packet.other).run(g).0 == .drop(.spoofed))
        #expect(Packet.ipv4(proto: 17, sport: 1, dport: 2, src: Packet.other).run(g, port: 1).0 == .continue, "the LAN port is not guarded")
        #expect(Self.arp(ip: [198, 18, 0, 99]).run(g).0 == .continue, "no IP checks without addresses")
    }

    @Test func addressesChecked() throws {
        let g = try Self.guarded(addresses: ["198.18.0.10", "2001:db8::10"])
        let arpDrop = DropReason.register("spoofed-arp"), v4Drop = DropReason.register("spoofed-ipv4"), v6Drop = DropReason.register("spoofed-ipv6")
        #expect(Self.arp(ip: [198, 18, 0, 10]).run(g).0 == .continue)
        #expect(Self.arp(ip: [0, 0, 0, 0]).run(g).0 == .continue, "ARP probe")
        #expect(Self.arp(ip: [198, 18, 0, 99]).run(g).0 == .drop(arpDrop))
        #expect(Self.arp(sender: Packet.other, ip: [198, 18, 0, 10]).run(g).0 == .drop(arpDrop), "ARP sender MAC is not the frame's")
        #expect(Packet.ipv4(proto: 17, sport: 1, dport: 2).run(g).0 == .continue)   // source 198.18.0.10
        var dhcp = Packet.ipv4(proto: 17, sport: 68, dport: 67); dhcp.bytes.replaceSubrange(26..<30, with: [0, 0, 0, 0])
        #expect(dhcp.run(g).0 == .continue, "DHCP discover from 0.0.0.0")
        var spoof = Packet.ipv4(proto: 17, sport: 1, dport: 2, vlan: 10); spoof.bytes.replaceSubrange(30..<34, with: [198, 18, 0, 99])
        #expect(spoof.run(g).0 == .drop(v4Drop), "VLAN tags are looked through")
        let mine: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [0x10]
        #expect(Self.ipv6(source: mine).run(g).0 == .continue)
        #expect(Self.ipv6(source: [UInt8](repeating: 0, count: 16)).run(g).0 == .continue, "DAD from ::")
        // fe80::5054:ff:fe00:10 is 52:54:00:00:00:10's EUI-64 link-local address.
        let ll: [UInt8] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0, 0, 0x10]
        #expect(Self.ipv6(source: ll).run(g).0 == .continue)
        var otherLL = ll; otherLL[15] = 0x11
        #expect(Self.ipv6(source: otherLL).run(g).0 == .drop(v6Drop))
        var cut = Self.ipv6(source: mine); cut.bytes.removeLast(30)
        #expect(cut.run(g).0 == .drop(v6Drop), "a truncated IPv6 header is not let through")
        #expect(Packet.ether(type: 0x88CC).run(g).0 == .continue, "other EtherTypes are not IP-checked")
        let c = Dictionary(uniqueKeysWithValues: g.counters().map { ($0.labels["check"] ?? "", $0.value) })
        #expect(c == ["mac": 0, "arp": 2, "ipv4": 1, "ipv6": 2])
    }

    @Test func addressParsing() {
        var a = SourceAddresses()
        #expect(a.add("198.18.0.1/24") != nil && a.add("fe80::1%eth0") != nil && a.add("host") != nil)
        for i in 0..<8 { #expect(a.add("198.18.0.\(i)") == nil) }
        #expect(a.add("198.18.0.9") == "at most 8 IPv4 addresses")
    }

    @Test func policiesFollowReload() throws {
        let g = SourceGuard(policies: [:])
        g.portsChanged(twoPorts)
        #expect(Packet.ipv4(proto: 17, sport: 1, dport: 2, src: Packet.other).run(g).0 == .continue)
        g.setPolicies(["guest": .init()])
        #expect(Packet.ipv4(proto: 17, sport: 1, dport: 2, src: Packet.other).run(g).0 == .drop(.spoofed))
    }
}
