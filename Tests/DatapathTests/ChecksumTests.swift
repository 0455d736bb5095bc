// Software completion of partial (NEEDS_CSUM) checksums, checked against a full computation.
import Testing
@testable import Datapath

/// Ones'-complement sum of 16-bit big-endian words, folded.
func onesSum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt16 {
    var s = initial
    var i = 0
    while i + 1 < bytes.count { s += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
    if i < bytes.count { s += UInt32(bytes[i]) << 8 }
    while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
    return UInt16(s)
}

struct ChecksumTests {
    @Test(arguments: [(UInt8(17), 6, 33), (UInt8(6), 16, 1001), (UInt8(17), 6, 0)])
    func completesPartialChecksum(proto: UInt8, checksumOffset: Int, payload: Int) {
        let l4len = (proto == 6 ? 20 : 8) + payload
        var f = [UInt8](repeating: 0, count: 14 + 20 + l4len)
        f[12] = 0x08; f[13] = 0x00
        let src: [UInt8] = [198, 18, 0, 1], dst: [UInt8] = [198, 18, 0, 2]
        f[14] = 0x45; f[23] = proto
        f[26..<30] = src[...]; f[30..<34] = dst[...]
        for i in 0..<l4len { f[34 + i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3) }
        if proto == 17 { f[38] = UInt8(l4len >> 8); f[39] = UInt8(l4len & 0xFF) }
        f[34 + checksumOffset] = 0; f[35 + checksumOffset] = 0
        // What the sender's stack leaves for the device: the pseudo-header sum, not complemented.
        let pseudo = src + dst + [0, proto, UInt8(l4len >> 8), UInt8(l4len & 0xFF)]
        let partial = onesSum(pseudo)
        f[34 + checksumOffset] = UInt8(partial >> 8); f[35 + checksumOffset] = UInt8(partial & 0xFF)

        f.withUnsafeMutableBytes { b in
            #expect(completePartialChecksum(b, start: 34, offset: checksumOffset))
        }
        // Valid: pseudo header + segment (with the checksum) sums to 0xFFFF.
        #expect(onesSum(Array(f[34...]), initial: UInt32(onesSum(pseudo))) == 0xFFFF)
    }

    @Test func refusesOffsetsOutsideTheFrame() {
        var f = [UInt8](repeating: 0, count: 40)
        f.withUnsafeMutableBytes { b in
            #expect(!completePartialChecksum(b, start: 34, offset: 6))
            #expect(!completePartialChecksum(b, start: -1, offset: 0))
        }
    }
}
