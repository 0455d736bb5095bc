// Checksum: completes a partial (CHECKSUM_PARTIAL / VIRTIO_NET_HDR_F_NEEDS_CSUM) L4 checksum in
// software, for a frame leaving through a port that cannot carry the vnet header's promise.

/// Ones'-complement sum of `count` bytes as big-endian 16-bit words (a trailing odd byte is
/// padded with zero), not folded: callers add sums of pieces that start at even offsets.
@inline(__always)
func onesComplementSum(_ p: UnsafeRawPointer, _ count: Int) -> UInt64 {
    var sum: UInt64 = 0
    var i = 0
    while i + 8 <= count {
        let w = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: i, as: UInt64.self))
        sum &+= (w >> 32) + (w & 0xFFFF_FFFF)
        i += 8
    }
    while i + 2 <= count {
        sum &+= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << 8 | UInt64(p.load(fromByteOffset: i + 1, as: UInt8.self))
        i += 2
    }
    if i < count { sum &+= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << 8 }
    return sum
}

/// Folds a sum to 16 bits and complements it.
@inline(__always)
func foldedChecksum(_ s: UInt64) -> UInt16 {
    var sum = s
    while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(truncatingIfNeeded: sum)
}

/// Sums the bytes from `start` to the end of `frame` (the checksum field already holds the
/// pseudo-header sum) and stores the folded complement at `start + offset`. False if the
/// offsets are outside the frame.
@discardableResult
func completePartialChecksum(_ frame: UnsafeMutableRawBufferPointer, start: Int, offset: Int) -> Bool {
    let n = frame.count
    guard start >= 0, offset >= 0, start + offset + 2 <= n, let base = frame.baseAddress else { return false }
    var c = foldedChecksum(onesComplementSum(base + start, n - start))
    if c == 0 { c = 0xFFFF }   // UDP: 0 means "no checksum"; for TCP the two are equal
    base.storeBytes(of: c.bigEndian, toByteOffset: start + offset, as: UInt16.self)
    return true
}
