// MulticastPackets: what the snooping switch reads out of a multicast frame, as plain values —
// the group address (IPv4 or IPv6), the membership events an IGMP/MLD message carries, and the
// forwarding class of the frame. The parsers (IGMPParser for IPv4, MLDParser for IPv6) fill
// these; MulticastSnooping acts on them. Nothing here allocates.
import Frames

/// An IP multicast group: an IPv4 address (in `low`, `high` zero) or an IPv6 address
/// (`high`: its first 8 bytes, `low`: its last 8, both big-endian as numbers).
public struct MulticastGroup: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64
    public var isIPv6: Bool

    @inlinable public init(ipv4 address: UInt32) { high = 0; low = UInt64(address); isIPv6 = false }
    @inlinable public init(ipv6High high: UInt64, low: UInt64) { self.high = high; self.low = low; isIPv6 = true }

    /// Parses "239.1.2.3" or "ff05::1:3"; nil if not an address of a multicast group.
    public init?(_ text: String) {
        if text.contains(":") {
            guard let (h, l) = MulticastGroup.parseIPv6(text), h >> 56 == 0xFF else { return nil }
            self.init(ipv6High: h, low: l)
        } else {
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 4 else { return nil }
            var a: UInt32 = 0
            for p in parts {
                guard p.count <= 3, let v = UInt8(p) else { return nil }
                a = a << 8 | UInt32(v)
            }
            guard a >> 28 == 0xE else { return nil }
            self.init(ipv4: a)
        }
    }

    /// Traffic to these groups always floods (never registered): IPv4 224.0.0.0/24 (RFC 4541
    /// 2.1.2: local network control), IPv6 all-nodes ff02::1 and the reserved and
    /// interface-local scopes ff00::/15 (RFC 4541 3), as the Linux bridge does.
    @inlinable public var alwaysFloods: Bool {
        if !isIPv6 { return low & 0xFFFF_FF00 == 0xE000_0000 }
        if high >> 49 == 0xFF00 >> 1 { return true }   // ff00::/15
        return high == 0xFF02_0000_0000_0000 && low == 1
    }

    public static func < (a: MulticastGroup, b: MulticastGroup) -> Bool {
        (a.isIPv6 ? 1 : 0, a.high, a.low) < (b.isIPv6 ? 1 : 0, b.high, b.low)
    }

    public var description: String {
        if !isIPv6 {
            let a = UInt32(truncatingIfNeeded: low)
            return "\(a >> 24).\(a >> 16 & 0xFF).\(a >> 8 & 0xFF).\(a & 0xFF)"
        }
        var words: [UInt16] = []
        for i in 0..<4 { words.append(UInt16(truncatingIfNeeded: high >> UInt64(48 - 16 * i))) }
        for i in 0..<4 { words.append(UInt16(truncatingIfNeeded: low >> UInt64(48 - 16 * i))) }
        // RFC 5952: the longest run (two or more) of zero words becomes "::".
        var best = (start: -1, length: 0), i = 0
        while i < 8 {
            if words[i] == 0 {
                var j = i
                while j < 8 && words[j] == 0 { j += 1 }
                if j - i > best.length && j - i >= 2 { best = (i, j - i) }
                i = j
            } else { i += 1 }
        }
        func hex(_ r: Range<Int>) -> String { r.map { String(words[$0], radix: 16) }.joined(separator: ":") }
        if best.start < 0 { return hex(0..<8) }
        return hex(0..<best.start) + "::" + hex((best.start + best.length)..<8)
    }

    static func parseIPv6(_ text: String) -> (UInt64, UInt64)? {
        var halves = [String(text)]
        if let r = text.firstRange(of: "::") {
            halves = [String(text[..<r.lowerBound]), String(text[r.upperBound...])]
            guard !halves[1].contains("::") else { return nil }
        }
        func words(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            for p in s.split(separator: ":", omittingEmptySubsequences: false) {
                guard p.count >= 1, p.count <= 4, let v = UInt16(p, radix: 16) else { return nil }
                out.append(v)
            }
            return out
        }
        guard let head = words(halves[0]) else { return nil }
        var all = head
        if halves.count == 2 {
            guard let tail = words(halves[1]), head.count + tail.count <= 7 else { return nil }
            all += [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<4 { h = h << 16 | UInt64(all[i]) }
        for i in 4..<8 { l = l << 16 | UInt64(all[i]) }
        return (h, l)
    }
}

/// One thing an IGMP/MLD message says, as the snooping switch uses it.
public struct MulticastEvent: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        /// A listener behind the ingress port reports membership of `group`.
        case join = 1
        /// A listener behind the ingress port leaves `group` (IGMPv2 leave, MLD done, an
        /// IGMPv3/MLDv2 change to include-nothing).
        case leave = 2
        /// A group-specific query for `group`: members must answer within `maxResponseMs`.
        case groupQuery = 3
        /// A multicast router (querier, PIM hello, MRD advertisement) is behind the ingress
        /// port; `group.isIPv6` tells the family. For a query `group` holds the querier's
        /// source address (not a group: what querier election compares), else zero.
        case router = 4
    }
    public var kind: Kind
    public var group: MulticastGroup
    /// Queries: the maximum response time they announce, in milliseconds.
    public var maxResponseMs: UInt32

    @inlinable public init(_ kind: Kind, _ group: MulticastGroup, maxResponseMs: UInt32 = 0) {
        self.kind = kind; self.group = group; self.maxResponseMs = maxResponseMs
    }
}

/// Where the parsers put the events of one message. Generic (specialised, no existential), so
/// the datapath's sink (the snooping event ring) costs a direct call.
public protocol MulticastEventSink {
    /// Takes one event; false stops the parse early (the sink is full).
    mutating func take(_ event: MulticastEvent) -> Bool
}

/// What kind of frame the parsers found, which decides how it is forwarded.
public enum MulticastFrameClass: Equatable, Sendable {
    /// Not IP multicast that snooping handles (ARP, a broadcast, unicast IP under a multicast
    /// MAC, an unknown EtherType): forwarded as before snooping.
    case notSnooped
    /// Link-local control traffic (224.0.0.x, ff02::1, PIM hellos, MRD): always floods.
    case linkLocal
    /// Data for `group`: to the group's listeners and the router ports, if the group is known.
    case data(MulticastGroup)
    /// An IGMP/MLD query: floods (every listener must hear it).
    case query
    /// An IGMP/MLD report, leave or done: to the router ports only (RFC 4541 2.1.1: other
    /// listeners must not hear it, or IGMPv1/v2 report suppression hides them from the switch);
    /// floods while no router port is known.
    case report
    /// An IGMP/MLD message that fails its length or checksum checks: dropped (as the Linux
    /// bridge drops it).
    case malformed
}

/// Reads fields of an untrusted frame: every access is checked against `count` by the caller
/// before it is made; these helpers do not check again.
struct WireBytes {
    let base: UnsafeRawPointer
    let count: Int
    @inline(__always) init(_ b: UnsafeRawBufferPointer) { base = b.baseAddress!; count = b.count }
    @inline(__always) func u8(_ o: Int) -> UInt8 { base.load(fromByteOffset: o, as: UInt8.self) }
    @inline(__always) func u16(_ o: Int) -> UInt16 { UInt16(u8(o)) << 8 | UInt16(u8(o + 1)) }
    @inline(__always) func u32(_ o: Int) -> UInt32 { UInt32(u16(o)) << 16 | UInt32(u16(o + 2)) }
    @inline(__always) func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) << 32 | UInt64(u32(o + 4)) }

    /// The 16-bit ones'-complement sum of `length` bytes at `offset` (RFC 1071), plus `initial`.
    @inline(__always) func onesComplementSum(_ offset: Int, _ length: Int, initial: UInt32 = 0) -> UInt32 {
        var sum = UInt64(initial), i = offset
        let end = offset + length
        while i + 1 < end { sum &+= UInt64(u16(i)); i += 2 }
        if i < end { sum &+= UInt64(u8(i)) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) &+ (sum >> 16) }
        return UInt32(sum)
    }
}

/// The entry point: a frame's IP multicast classification, and its IGMP/MLD events into `sink`.
public enum MulticastParser {
    /// Most group records read from one IGMPv3/MLDv2 report; the rest are ignored (counted by
    /// the caller through the sink's refusals). Bounds the work one frame can cause.
    public static let maxRecordsPerReport = 64

    /// Classifies `frame` (a whole Ethernet frame, tags included); IGMP/MLD events go to `sink`.
    public static func classify<S: MulticastEventSink>(_ frame: UnsafeRawBufferPointer, sink: inout S) -> MulticastFrameClass {
        guard frame.count >= 14, frame.baseAddress != nil else { return .notSnooped }
        let w = WireBytes(frame)
        // EtherType after at most two VLAN tags.
        var off = 12
        var type = w.u16(off)
        var tags = 0
        while type == EtherType.vlan || type == EtherType.qinq {
            tags += 1
            guard tags <= 2, off + 8 <= w.count else { return .notSnooped }
            off += 4
            type = w.u16(off)
        }
        let l3 = off + 2
        switch type {
        case EtherType.ipv4: return IGMPParser.classify(w, l3: l3, sink: &sink)
        case EtherType.ipv6: return MLDParser.classify(w, l3: l3, sink: &sink)
        default: return .notSnooped
        }
    }
}
