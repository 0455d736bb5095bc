// TCPSegmentPlan: how one TCP super-frame is cut into MSS-sized segments and what each
// segment's rewritten headers hold (IP length/ID/checksum, TCP sequence/flags/checksum). Pure:
// Worker.segmentTCP (Segmentation.swift) asks it and sends the result; the checks on what a
// guest's virtio-net header and headers claim are fuzzed on their own
// (Fuzz/Targets/FuzzSegmentation).
import Frames

/// How one TCP super-frame is cut: where its headers are, the segment size and count, and
/// the fields every segment's rewritten headers start from. Pure (no worker state), so the
/// checks on the guest-supplied vnet header and frame are fuzzed on their own
/// (Fuzz/Targets/FuzzSegmentation).
struct TCPSegmentPlan {
    let l3: Int, l4: Int
    let tcpHeader: Int
    /// Bytes of Ethernet + IP + TCP headers copied in front of every segment.
    let headers: Int
    let mss: Int
    let ipv4: Bool
    let count: Int
    /// Pseudo-header sum of the addresses (the part that does not change between segments).
    let addressSum: UInt64
    let seq0: UInt32, id0: UInt16, flags0: UInt8

    /// nil when `frame` is not a TCP/IPv4 or TCP/IPv6 super-frame whose vnet header agrees
    /// with its bytes, or its headers need more than `maxHeaders` bytes.
    @inline(__always)
    init?(_ frame: Frame, maxHeaders: Int) {
        let vnet = frame.vnet
        let kind = vnet.gsoType & 0x7F
        guard kind == VirtioNetHeader.gsoTCPv4 || kind == VirtioNetHeader.gsoTCPv6, vnet.needsChecksum,
              let base = frame.bytes.baseAddress else { return nil }
        let len = frame.length
        let l4 = Int(vnet.checksumStart)
        let l3 = frame.etherType == EtherType.vlan ? 18 : 14
        guard l4 + 20 <= len, l3 < l4 else { return nil }
        let tcpHeader = Int(base.load(fromByteOffset: l4 + 12, as: UInt8.self) >> 4) * 4
        let headers = l4 + tcpHeader
        let mss = Int(vnet.gsoSize)
        let ipv4 = kind == VirtioNetHeader.gsoTCPv4
        guard tcpHeader >= 20, headers < len, mss > 0, headers <= maxHeaders else { return nil }
        if ipv4 {
            let ihl = Int(base.load(fromByteOffset: l3, as: UInt8.self) & 0x0F) * 4
            guard ihl >= 20, ihl == l4 - l3 else { return nil }
        } else {
            guard l4 - l3 == 40 else { return nil }   // extension headers: not handled
        }
        self.l3 = l3; self.l4 = l4; self.tcpHeader = tcpHeader; self.headers = headers
        self.mss = mss; self.ipv4 = ipv4
        count = (len - headers + mss - 1) / mss
        addressSum = ipv4 ? onesComplementSum(base + l3 + 12, 8) : onesComplementSum(base + l3 + 8, 32)
        seq0 = UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l4 + 4, as: UInt32.self))
        id0 = ipv4 ? UInt16(bigEndian: base.loadUnaligned(fromByteOffset: l3 + 4, as: UInt16.self)) : 0
        flags0 = base.load(fromByteOffset: l4 + 13, as: UInt8.self)
    }

    /// Writes segment `i`'s headers (`headers` bytes: lengths, IPv4 ID and checksum, TCP
    /// sequence, flags and checksum) to `h`, and returns where its payload lies in `frame`.
    @inline(__always)
    func writeHeaders(segment i: Int, of frame: UnsafeRawBufferPointer, to h: UnsafeMutableRawPointer) -> (offset: Int, length: Int) {
        let base = frame.baseAddress!
        let off = headers + i * mss
        let chunk = min(mss, frame.count - off)
        h.copyMemory(from: base, byteCount: headers)
        let tcpLength = tcpHeader + chunk
        if ipv4 {
            h.storeBytes(of: UInt16(l4 - l3 + tcpLength).bigEndian, toByteOffset: l3 + 2, as: UInt16.self)
            h.storeBytes(of: (id0 &+ UInt16(truncatingIfNeeded: i)).bigEndian, toByteOffset: l3 + 4, as: UInt16.self)
            h.storeBytes(of: UInt16(0), toByteOffset: l3 + 10, as: UInt16.self)
            let ipSum = foldedChecksum(onesComplementSum(h + l3, l4 - l3))
            h.storeBytes(of: ipSum.bigEndian, toByteOffset: l3 + 10, as: UInt16.self)
        } else {
            h.storeBytes(of: UInt16(tcpLength).bigEndian, toByteOffset: l3 + 4, as: UInt16.self)
        }
        h.storeBytes(of: (seq0 &+ UInt32(truncatingIfNeeded: i * mss)).bigEndian, toByteOffset: l4 + 4, as: UInt32.self)
        var flags = flags0
        if i < count - 1 { flags &= ~0x09 }   // FIN and PSH only on the last segment
        if i > 0 { flags &= ~0x80 }           // CWR only on the first
        h.storeBytes(of: flags, toByteOffset: l4 + 13, as: UInt8.self)
        h.storeBytes(of: UInt16(0), toByteOffset: l4 + 16, as: UInt16.self)
        let sum = addressSum &+ 6 &+ UInt64(tcpLength)
            &+ onesComplementSum(h + l4, tcpHeader) &+ onesComplementSum(base + off, chunk)
        h.storeBytes(of: foldedChecksum(sum).bigEndian, toByteOffset: l4 + 16, as: UInt16.self)
        return (off, chunk)
    }
}
