// MLDParser: IPv6 multicast frames for the snooping switch — the IPv6 header, its extension
// headers (hop-by-hop, destination options, routing, fragment; at most 8, each checked against
// the frame and the payload length), MLDv1/v2 queries, reports and dones (RFC 2710, 3810),
// PIM hellos and multicast router advertisements (RFC 4286). As in the Linux bridge, an ICMPv6
// message is MLD only behind a hop-by-hop header (MLD carries the router alert there); an MLD
// message with a bad length or checksum, or a query from a source that is not link-local, is
// `.malformed`. Untrusted input: bounded reads, bounded work.
import Frames

enum MLDParser {
    static let hopByHop: UInt8 = 0
    static let routing: UInt8 = 43
    static let fragment: UInt8 = 44
    static let destinationOptions: UInt8 = 60
    static let icmpv6: UInt8 = 58
    static let pim: UInt8 = 103
    static let maxExtensionHeaders = 8

    static func classify<S: MulticastEventSink>(_ w: WireBytes, l3: Int, sink: inout S) -> MulticastFrameClass {
        guard l3 + 40 <= w.count, w.u8(l3) >> 4 == 6 else { return .notSnooped }
        let dstHigh = w.u64(l3 + 24), dstLow = w.u64(l3 + 32)
        guard dstHigh >> 56 == 0xFF else { return .notSnooped }
        let destination = MulticastGroup(ipv6High: dstHigh, low: dstLow)
        let payloadEnd = l3 + 40 + Int(w.u16(l3 + 4))
        // Walk the extension headers to the upper-layer protocol.
        var next = w.u8(l3 + 6)
        var off = l3 + 40
        var sawHopByHop = false
        var headers = 0
        while next == hopByHop || next == routing || next == destinationOptions || next == fragment {
            headers += 1
            guard headers <= maxExtensionHeaders, off + 8 <= w.count else {
                return destination.alwaysFloods ? .linkLocal : .data(destination)
            }
            if next == hopByHop {
                // Only first (RFC 8200 4.1); elsewhere the packet is not MLD.
                guard headers == 1 else { return destination.alwaysFloods ? .linkLocal : .data(destination) }
                sawHopByHop = true
            }
            if next == fragment {
                // Fragments are data (MLD is never fragmented); forward by destination.
                return destination.alwaysFloods ? .linkLocal : .data(destination)
            }
            let length = (Int(w.u8(off + 1)) + 1) * 8
            next = w.u8(off)
            off += length
        }
        if next == icmpv6 && sawHopByHop && off + 4 <= w.count {
            let type = w.u8(off)
            switch type {
            case 130, 131, 132, 143, 151: return mld(w, l3: l3, at: off, payloadEnd: payloadEnd, type: type, sink: &sink)
            default: break
            }
        }
        if next == pim && dstHigh == 0xFF02_0000_0000_0000 && dstLow == 0x0D {
            if off + 4 <= w.count && w.u8(off) == 0x20 {   // PIMv2 hello
                _ = sink.take(MulticastEvent(.router, MulticastGroup(ipv6High: 0, low: 0)))
            }
            return .linkLocal
        }
        return destination.alwaysFloods ? .linkLocal : .data(destination)
    }

    /// An MLD (or MRD) message at `at`; `payloadEnd` is where the IPv6 payload length ends.
    static func mld<S: MulticastEventSink>(_ w: WireBytes, l3: Int, at: Int, payloadEnd: Int, type: UInt8,
                                           sink: inout S) -> MulticastFrameClass {
        guard payloadEnd <= w.count, at < payloadEnd else { return .malformed }
        let length = payloadEnd - at
        // ICMPv6 checksum over the pseudo-header (source, destination, length, next header 58).
        var pseudo = w.onesComplementSum(l3 + 8, 32)
        pseudo &+= UInt32(length >> 16) &+ UInt32(length & 0xFFFF) &+ UInt32(icmpv6)
        guard w.onesComplementSum(at, length, initial: pseudo) == 0xFFFF else { return .malformed }
        let sourceIsLinkLocal = w.u16(l3 + 8) & 0xFFC0 == 0xFE80
        switch type {
        case 130:   // query: 24 bytes (v1) or 28 and more (v2)
            guard length >= 24, length == 24 || length >= 28 else { return .malformed }
            guard sourceIsLinkLocal else { return .malformed }
            let code = UInt32(w.u16(at + 4))
            let maxResponseMs = length == 24 ? code : decodeCode16(UInt16(code))
            // The querier's source address rides in the router event (querier election).
            _ = sink.take(MulticastEvent(.router, MulticastGroup(ipv6High: w.u64(l3 + 8), low: w.u64(l3 + 16))))
            let g = MulticastGroup(ipv6High: w.u64(at + 8), low: w.u64(at + 16))
            if g.high != 0 || g.low != 0 {
                guard g.high >> 56 == 0xFF else { return .malformed }
                if !g.alwaysFloods { _ = sink.take(MulticastEvent(.groupQuery, g, maxResponseMs: maxResponseMs)) }
            }
            return .query
        case 131, 132:   // v1 report, done
            guard length >= 24 else { return .malformed }
            let g = MulticastGroup(ipv6High: w.u64(at + 8), low: w.u64(at + 16))
            guard g.high >> 56 == 0xFF else { return .malformed }
            if !g.alwaysFloods { _ = sink.take(MulticastEvent(type == 131 ? .join : .leave, g)) }
            return .report
        case 143:   // v2 report
            guard length >= 8 else { return .malformed }
            let records = Int(w.u16(at + 6))
            var r = at + 8
            let end = at + length
            var n = 0
            while n < records {
                guard r + 20 <= end else { return .malformed }
                let recordType = w.u8(r)
                let auxWords = Int(w.u8(r + 1))
                let sources = Int(w.u16(r + 2))
                let recordLength = 20 + 16 * sources + 4 * auxWords
                guard r + recordLength <= end else { return .malformed }
                let g = MulticastGroup(ipv6High: w.u64(r + 4), low: w.u64(r + 12))
                guard g.high >> 56 == 0xFF else { return .malformed }
                if n < MulticastParser.maxRecordsPerReport && !g.alwaysFloods,
                   let kind = IGMPParser.recordKind(recordType, sources: sources) {
                    if !sink.take(MulticastEvent(kind, g)) { return .report }
                }
                r += recordLength
                n += 1
            }
            return .report
        default:   // 151: multicast router advertisement
            _ = sink.take(MulticastEvent(.router, MulticastGroup(ipv6High: 0, low: 0)))
            return .linkLocal
        }
    }

    /// MLDv2's 16-bit maximum response code (RFC 3810 5.1.3): below 32768 milliseconds, else a
    /// float with a 12-bit mantissa and a 3-bit exponent.
    static func decodeCode16(_ code: UInt16) -> UInt32 {
        guard code >= 0x8000 else { return UInt32(code) }
        return (UInt32(code & 0x0FFF) | 0x1000) << (UInt32(code >> 12 & 0x07) + 3)
    }
}
