// MulticastQuerier: the general queries a snooping switch sends when no multicast router on the
// LAN does (the Linux bridge's `multicast_querier 1`): an IGMPv3 general query to 224.0.0.1
// (RFC 3376 4.1, source 0.0.0.0 as RFC 4541 2.1.1 allows a switch) and an MLDv2 general query
// to ff02::1 (RFC 3810 5.1, from a link-local address made from the bridge's MAC), each a whole
// Ethernet frame with checksums, router alert and hop limit 1. Hosts answer them with reports,
// which keep the snooped memberships alive. Only the frames live here: when to send them is
// MulticastQuerierSchedule's, and the daemon's MulticastQuerierDriver sends them with
// `Engine.inject` (`multicast-querier = true`).
import Frames

public enum MulticastQuerier {
    /// IGMPv3 general query in an Ethernet frame from `source`.
    /// - Parameters:
    ///   - maxResponseSeconds: the query response interval (encoded in tenths, RFC 3376 4.1.1).
    ///   - robustness: QRV (1-7); `queryIntervalSeconds`: QQIC (encoded as RFC 3376 4.1.7 says).
    public static func igmpGeneralQuery(source: MACAddress, maxResponseSeconds: Double = 10, robustness: Int = 2,
                                        queryIntervalSeconds: Double = 125) -> [UInt8] {
        var igmp: [UInt8] = [0x11, encode8(UInt32(max(0, maxResponseSeconds) * 10)), 0, 0, 0, 0, 0, 0,
                             UInt8(clamping: min(max(robustness, 0), 7)), encode8(UInt32(max(0, queryIntervalSeconds))), 0, 0]
        let c = checksum(igmp)
        igmp[2] = UInt8(c >> 8); igmp[3] = UInt8(c & 0xFF)
        var ip: [UInt8] = [0x46, 0xC0, 0, UInt8(24 + igmp.count), 0, 0, 0x40, 0, 1, 2, 0, 0,
                           0, 0, 0, 0, 224, 0, 0, 1, 0x94, 0x04, 0x00, 0x00]
        let h = checksum(ip)
        ip[10] = UInt8(h >> 8); ip[11] = UInt8(h & 0xFF)
        return [0x01, 0x00, 0x5E, 0x00, 0x00, 0x01] + source.octets + [0x08, 0x00] + ip + igmp
    }

    /// MLDv2 general query in an Ethernet frame from `source`, sent from fe80::/64 + EUI-64.
    public static func mldGeneralQuery(source: MACAddress, maxResponseSeconds: Double = 10, robustness: Int = 2,
                                       queryIntervalSeconds: Double = 125) -> [UInt8] {
        let o = source.octets
        let src: [UInt8] = [0xFE, 0x80, 0, 0, 0, 0, 0, 0, o[0] ^ 0x02, o[1], o[2], 0xFF, 0xFE, o[3], o[4], o[5]]
        let dst: [UInt8] = [0xFF, 0x02] + [UInt8](repeating: 0, count: 13) + [1]
        let code = encode16(UInt32(max(0, maxResponseSeconds) * 1000))
        var mld: [UInt8] = [130, 0, 0, 0, UInt8(code >> 8), UInt8(code & 0xFF), 0, 0] + [UInt8](repeating: 0, count: 16)
            + [UInt8(clamping: min(max(robustness, 0), 7)), encode8(UInt32(max(0, queryIntervalSeconds))), 0, 0]
        var pseudo: UInt32 = 0
        let addresses = src + dst
        for i in stride(from: 0, to: 32, by: 2) { pseudo &+= UInt32(addresses[i]) << 8 | UInt32(addresses[i + 1]) }
        pseudo &+= UInt32(mld.count) + UInt32(MLDParser.icmpv6)
        let c = checksum(mld, initial: pseudo)
        mld[2] = UInt8(c >> 8); mld[3] = UInt8(c & 0xFF)
        let hopByHop: [UInt8] = [MLDParser.icmpv6, 0, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00]   // router alert: MLD
        let length = hopByHop.count + mld.count
        let ip: [UInt8] = [0x60, 0, 0, 0, UInt8(length >> 8), UInt8(length & 0xFF), MLDParser.hopByHop, 1] + src + dst
        return [0x33, 0x33, 0x00, 0x00, 0x00, 0x01] + o + [0x86, 0xDD] + ip + hopByHop + mld
    }

    /// RFC 3376 4.1.1 / 4.1.7: values below 128 as they are, larger ones as a float (3-bit
    /// exponent, 4-bit mantissa), saturating at the largest.
    static func encode8(_ value: UInt32) -> UInt8 {
        if value < 128 { return UInt8(value) }
        for exp in UInt32(0)...7 {
            let mant = (value >> (exp + 3)) &- 0x10
            if value >> (exp + 3) < 0x20 { return 0x80 | UInt8(exp << 4) | UInt8(mant & 0x0F) }
        }
        return 0xFF
    }

    /// RFC 3810 5.1.3: below 32768 as it is, larger as a float (3-bit exponent, 12-bit mantissa).
    static func encode16(_ value: UInt32) -> UInt16 {
        if value < 32768 { return UInt16(value) }
        for exp in UInt32(0)...7 {
            let mant = (value >> (exp + 3)) &- 0x1000
            if value >> (exp + 3) < 0x2000 { return 0x8000 | UInt16(exp << 12) | UInt16(mant & 0x0FFF) }
        }
        return 0xFFFF
    }

    static func checksum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt16 {
        var sum = initial, i = 0
        while i + 1 < bytes.count { sum &+= UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { sum &+= UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) &+ (sum >> 16) }
        return ~UInt16(truncatingIfNeeded: sum)
    }
}
