// Checksum: completes a partial (CHECKSUM_PARTIAL / VIRTIO_NET_HDR_F_NEEDS_CSUM) L4 checksum in
// software, for a frame leaving through a port that cannot carry the vnet header's promise.

/// Sums the bytes from `start` to the end of `frame` as big-endian 16-bit words (the checksum
/// field already holds the pseudo-header sum) and stores the folded complement at
/// `start + offset`. False if the offsets are outside the frame.
@discardableResult
func completePartialChecksum(_ frame: UnsafeMutableRawBufferPointer, start: Int, offset: Int) -> Bool {
    let n = frame.count
    guard start >= 0, offset >= 0, start + offset + 2 <= n, let base = frame.baseAddress else { return false }
    var sum: UInt64 = 0
    var i = start
    let p = base.assumingMemoryBound(to: UInt8.self)
    while i + 8 <= n {
        let w = UInt64(bigEndian: UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self))
        sum &+= (w >> 32) + (w & 0xFFFF_FFFF)
        i += 8
    }
    while i + 2 <= n { sum &+= UInt64(p[i]) << 8 | UInt64(p[i + 1]); i += 2 }
    if i < n { sum &+= UInt64(p[i]) << 8 }
    while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
    var c = ~UInt16(truncatingIfNeeded: sum)
    if c == 0 { c = 0xFFFF }   // UDP: 0 means "no checksum"; for TCP the two are equal
    p[start + offset] = UInt8(c >> 8)
    p[start + offset + 1] = UInt8(c & 0xFF)
    return true
}
