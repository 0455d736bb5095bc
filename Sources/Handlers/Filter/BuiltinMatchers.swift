// BuiltinMatchers: the typed rules' frame inspection, with an explicit bound on every read:
// VLAN tags, the IPv4 header length, at most 8 IPv6 extension headers. A truncated or
// malformed header never matches (and is reported as malformed to the caller).
import Frames

enum BuiltinMatchers {
    enum Outcome { case match, noMatch, malformed }

    static let ipProtoUDP: UInt8 = 17
    static let ipProtoICMPv6: UInt8 = 58

    /// L4 protocol and offset of the L4 header, following IPv4 options / IPv6 extension headers.
    /// nil for non-IP frames; `.malformed` when a header is cut short.
    static func transport(_ f: Frame) -> (proto: UInt8, offset: Int, isFirstFragment: Bool)?? {
        guard let (type, l3) = f.payload else { return .some(nil) }   // truncated VLAN stack
        let b = f.bytes
        switch type {
        case EtherType.ipv4:
            guard l3 + 20 <= b.count, b[l3] >> 4 == 4 else { return .some(nil) }
            let ihl = Int(b[l3] & 0x0F) * 4
            guard ihl >= 20, l3 + ihl <= b.count else { return .some(nil) }
            let fragOffset = (UInt16(b[l3 + 6]) << 8 | UInt16(b[l3 + 7])) & 0x1FFF
            return (b[l3 + 9], l3 + ihl, fragOffset == 0)
        case EtherType.ipv6:
            guard l3 + 40 <= b.count, b[l3] >> 4 == 6 else { return .some(nil) }
            var next = b[l3 + 6]
            var off = l3 + 40
            var first = true
            for _ in 0..<8 {
                switch next {
                case 0, 43, 60:   // hop-by-hop, routing, destination options
                    guard off + 8 <= b.count else { return .some(nil) }
                    let len = (Int(b[off + 1]) + 1) * 8
                    next = b[off]
                    off += len
                case 44:          // fragment
                    guard off + 8 <= b.count else { return .some(nil) }
                    first = (UInt16(b[off + 2]) << 8 | UInt16(b[off + 3])) & 0xFFF8 == 0
                    next = b[off]
                    off += 8
                default:
                    return (next, off, first)
                }
            }
            return .some(nil)   // more extension headers than we follow: treat as malformed
        default:
            return nil
        }
    }

    static func evaluate(_ rule: BuiltinRule, _ f: Frame, assignedMAC: UInt64) -> Outcome {
        switch rule {
        case .antiSpoofing:
            guard assignedMAC != 0 else { return .noMatch }
            return f.source.rawValue == assignedMAC ? .noMatch : .match
        case .blockMAC(let m):
            return f.source == m || f.destination == m ? .match : .noMatch
        case .onlyARPAndIP:
            guard let t = f.payload?.etherType else { return .malformed }
            return t == EtherType.arp || t == EtherType.ipv4 || t == EtherType.ipv6 ? .noMatch : .match
        case .dhcpServerGuard:
            guard let l4 = transport(f) else { return .noMatch }
            guard let (proto, off, first) = l4 else { return .malformed }
            guard proto == ipProtoUDP, first else { return .noMatch }
            guard let sport = f.uint16(at: off) else { return .malformed }
            let isV4 = f.payload?.etherType == EtherType.ipv4
            return (isV4 && sport == 67) || (!isV4 && sport == 547) ? .match : .noMatch
        case .routerAdvertisementGuard:
            guard f.payload?.etherType == EtherType.ipv6 else { return .noMatch }
            guard let l4 = transport(f) else { return .noMatch }
            guard let (proto, off, first) = l4 else { return .malformed }
            guard proto == ipProtoICMPv6, first else { return .noMatch }
            guard off < f.bytes.count else { return .malformed }
            return f.bytes[off] == 134 ? .match : .noMatch
        }
    }
}

extension BuiltinMatchers {
    /// A frame's claimed network-layer source, for IP anti-spoofing (SourceGuard).
    enum SourceAddress {
        case none                                 // not ARP/IPv4/IPv6
        case malformed(check: Int)                // cut short: 1 ARP, 2 IPv4, 3 IPv6
        case arp(senderMAC: UInt64, ip: UInt32)   // non-IPv4 ARP is reported malformed
        case ipv4(UInt32)
        case ipv6(high: UInt64, low: UInt64)
    }

    /// ARP sender, IPv4 source or IPv6 source (after VLAN tags), bounds-checked.
    @inline(__always)
    static func sourceAddress(_ f: Frame) -> SourceAddress {
        guard let (type, l3) = f.payload else { return .none }
        let b = f.bytes
        func u32(_ o: Int) -> UInt32 { UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3]) }
        func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) << 32 | UInt64(u32(o + 4)) }
        switch type {
        case EtherType.arp:
            // htype(2) ptype(2) hlen(1) plen(1) oper(2) sha(6) spa(4)
            guard l3 + 18 <= b.count, f.uint16(at: l3 + 2) == EtherType.ipv4, b[l3 + 4] == 6, b[l3 + 5] == 4 else {
                return .malformed(check: 1)
            }
            let sha = UInt64(u32(l3 + 8)) << 16 | UInt64(f.uint16(at: l3 + 12) ?? 0)
            return .arp(senderMAC: sha, ip: u32(l3 + 14))
        case EtherType.ipv4:
            guard l3 + 20 <= b.count, b[l3] >> 4 == 4 else { return .malformed(check: 2) }
            return .ipv4(u32(l3 + 12))
        case EtherType.ipv6:
            guard l3 + 40 <= b.count, b[l3] >> 4 == 6 else { return .malformed(check: 3) }
            return .ipv6(high: u64(l3 + 8), low: u64(l3 + 16))
        default:
            return .none
        }
    }
}
