// IGMPParser: IPv4 multicast frames for the snooping switch — the IPv4 header (options
// skipped by IHL, router alert not required), IGMPv1/v2/v3 queries, reports and leaves
// (RFC 1112, 2236, 3376), PIM hellos and multicast router advertisements (RFC 4286).
// Untrusted input: every field is read only after a bounds check against the frame and the
// IP total length; IGMP messages with a bad IP header, fragmentation, a short length or a bad
// checksum are `.malformed`. Work per frame is bounded (at most
// `MulticastParser.maxRecordsPerReport` group records).
import Frames

enum IGMPParser {
    static let protocolIGMP: UInt8 = 2
    static let protocolPIM: UInt8 = 103
    static let allPIMRouters: UInt32 = 0xE000_000D   // 224.0.0.13

    static func classify<S: MulticastEventSink>(_ w: WireBytes, l3: Int, sink: inout S) -> MulticastFrameClass {
        guard l3 + 20 <= w.count else { return .notSnooped }
        let versionIHL = w.u8(l3)
        guard versionIHL >> 4 == 4 else { return .notSnooped }
        let headerLength = Int(versionIHL & 0x0F) * 4
        let destination = w.u32(l3 + 16)
        guard destination >> 28 == 0xE else { return .notSnooped }
        let group = MulticastGroup(ipv4: destination)
        let proto = w.u8(l3 + 9)
        if proto == protocolIGMP {
            return igmp(w, l3: l3, headerLength: headerLength, sink: &sink)
        }
        if proto == protocolPIM && destination == allPIMRouters {
            // PIMv2 hello (version 2, type 0): a multicast router is behind this port.
            if headerLength >= 20, l3 + headerLength + 4 <= w.count, w.u8(l3 + headerLength) == 0x20 {
                _ = sink.take(MulticastEvent(.router, MulticastGroup(ipv4: 0)))
            }
            return .linkLocal
        }
        return group.alwaysFloods ? .linkLocal : .data(group)
    }

    /// The IGMP message of an IPv4 packet whose protocol is IGMP.
    static func igmp<S: MulticastEventSink>(_ w: WireBytes, l3: Int, headerLength: Int, sink: inout S) -> MulticastFrameClass {
        guard headerLength >= 20, l3 + headerLength <= w.count else { return .malformed }
        let totalLength = Int(w.u16(l3 + 2))
        guard totalLength >= headerLength + 8, l3 + totalLength <= w.count else { return .malformed }
        // Not fragmented (MF clear, offset 0): an IGMP message always fits one packet.
        guard w.u16(l3 + 6) & 0x3FFF == 0 else { return .malformed }
        guard w.onesComplementSum(l3, headerLength) == 0xFFFF else { return .malformed }
        let at = l3 + headerLength
        let length = totalLength - headerLength
        guard w.onesComplementSum(at, length) == 0xFFFF else { return .malformed }
        let type = w.u8(at)
        let destination = MulticastGroup(ipv4: w.u32(l3 + 16))
        switch type {
        case 0x11:   // membership query (v1/v2: 8 bytes; v3: 12 or more)
            let groupAddress = w.u32(at + 4)
            let maxResponseMs: UInt32
            if length == 8 {
                let code = w.u8(at + 1)
                maxResponseMs = code == 0 ? 10_000 : UInt32(code) * 100   // IGMPv1 sends 0: 10 s
            } else {
                guard length >= 12 else { return .malformed }
                maxResponseMs = decodeCode8(w.u8(at + 1)) * 100
            }
            // The querier's source address rides in the router event (querier election).
            _ = sink.take(MulticastEvent(.router, MulticastGroup(ipv4: w.u32(l3 + 12))))
            if groupAddress != 0 {
                let g = MulticastGroup(ipv4: groupAddress)
                guard groupAddress >> 28 == 0xE else { return .malformed }
                if !g.alwaysFloods { _ = sink.take(MulticastEvent(.groupQuery, g, maxResponseMs: maxResponseMs)) }
            }
            return .query
        case 0x12, 0x16:   // v1 / v2 membership report
            let g = MulticastGroup(ipv4: w.u32(at + 4))
            guard g.low >> 28 == 0xE else { return .malformed }
            if !g.alwaysFloods { _ = sink.take(MulticastEvent(.join, g)) }
            return .report
        case 0x17:   // v2 leave group
            let g = MulticastGroup(ipv4: w.u32(at + 4))
            guard g.low >> 28 == 0xE else { return .malformed }
            if !g.alwaysFloods { _ = sink.take(MulticastEvent(.leave, g)) }
            return .report
        case 0x22:   // v3 membership report
            let records = Int(w.u16(at + 6))
            var r = at + 8
            let end = at + length
            var n = 0
            while n < records {
                guard r + 8 <= end else { return .malformed }
                let recordType = w.u8(r)
                let auxWords = Int(w.u8(r + 1))
                let sources = Int(w.u16(r + 2))
                let recordLength = 8 + 4 * sources + 4 * auxWords
                guard r + recordLength <= end else { return .malformed }
                let g = MulticastGroup(ipv4: w.u32(r + 4))
                guard g.low >> 28 == 0xE else { return .malformed }
                if n < MulticastParser.maxRecordsPerReport && !g.alwaysFloods,
                   let kind = recordKind(recordType, sources: sources) {
                    if !sink.take(MulticastEvent(kind, g)) { return .report }
                }
                r += recordLength
                n += 1
            }
            return .report
        case 0x30:   // multicast router advertisement (RFC 4286)
            _ = sink.take(MulticastEvent(.router, MulticastGroup(ipv4: 0)))
            return .linkLocal
        default:     // DVMRP, mtrace, solicitations...: forwarded by their destination
            return destination.alwaysFloods ? .linkLocal : .data(destination)
        }
    }

    /// What an IGMPv3/MLDv2 group record means without source tracking, as the Linux bridge
    /// reads it in its IGMPv2/MLDv1 mode (its default): an include-mode record with no sources
    /// (TO_IN{} or IS_IN{}) is a leave, any other known record a join. Unknown types: nil.
    static func recordKind(_ type: UInt8, sources: Int) -> MulticastEvent.Kind? {
        switch type {
        case 1, 3: return sources == 0 ? .leave : .join   // MODE_IS_INCLUDE, CHANGE_TO_INCLUDE
        case 2, 4, 5, 6: return .join                      // IS_EXCLUDE, TO_EXCLUDE, ALLOW, BLOCK
        default: return nil
        }
    }

    /// IGMPv3's 8-bit max response code (RFC 3376 4.1.1): below 128 the value itself, else a
    /// float with a 4-bit mantissa and a 3-bit exponent. In tenths of a second.
    static func decodeCode8(_ code: UInt8) -> UInt32 {
        guard code >= 128 else { return UInt32(code) }
        return (UInt32(code & 0x0F) | 0x10) << (UInt32(code >> 4 & 0x07) + 3)
    }
}
