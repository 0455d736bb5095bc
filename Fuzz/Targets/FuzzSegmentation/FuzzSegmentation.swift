// FuzzSegmentation: an arbitrary virtio-net header with an arbitrary frame (what a guest or a
// macvtap hands the datapath), through the software offloads a port without them gets:
// checksum completion (NEEDS_CSUM) and TCP segmentation (GSO TCPv4/TCPv6). Checks, beyond
// AddressSanitizer on exactly sized buffers: a completed checksum verifies; the segments'
// payloads tile the frame's payload in order; each segment's IPv4 header checksum and TCP
// checksum (recomputed here from scratch, with the pseudo-header) verify; lengths and
// sequence numbers are consistent.
// Input: 10 bytes virtio-net header (little endian, as on the wire), then the frame.
import Frames
import FuzzSupport
@testable import Datapath

/// Folded ones'-complement sum over 16-bit big-endian words, written independently of Datapath.
func sum16(_ p: UnsafeRawPointer, _ n: Int, _ initial: UInt32 = 0) -> UInt32 {
    var s = UInt64(initial)
    var i = 0
    while i + 1 < n { s += UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << 8 | UInt64(p.load(fromByteOffset: i + 1, as: UInt8.self)); i += 2 }
    if i < n { s += UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << 8 }
    while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
    return UInt32(s)
}

func fold(_ s: UInt32) -> UInt32 { var s = s; while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }; return s }

func be16(_ p: UnsafeRawPointer, _ o: Int) -> Int { Int(p.load(fromByteOffset: o, as: UInt8.self)) << 8 | Int(p.load(fromByteOffset: o + 1, as: UInt8.self)) }
func be32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 { UInt32(be16(p, o)) << 16 | UInt32(be16(p, o + 2)) }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSegmentation(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count >= 10 + Frame.minimumLength else { return 0 }
    let vnet = VirtioNetHeader(loadingFrom: data, size: 10)
    let length = count - 10
    let copy = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 16)
    defer { copy.deallocate() }
    copy.copyMemory(from: data + 10, byteCount: length)
    let bytes = UnsafeMutableRawBufferPointer(start: copy, count: length)

    // Checksum completion, as Worker.completeChecksum does it (on a copy: segmentation below
    // sees the frame as it arrived).
    if vnet.needsChecksum && !vnet.isGSO {
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 16)
        defer { scratch.deallocate() }
        scratch.copyMemory(from: copy, byteCount: length)
        let start = Int(vnet.checksumStart), offset = Int(vnet.checksumOffset)
        let done = completePartialChecksum(UnsafeMutableRawBufferPointer(start: scratch, count: length), start: start, offset: offset)
        fuzzCheck(done == (start + offset + 2 <= length), "completion \(done) for start \(start) offset \(offset) in \(length) bytes")
        if done && offset % 2 == 0 {
            // The field held the pseudo-header sum; a receiver adds that to the region with the
            // checksum filled in and must get 0xFFFF.
            let pseudo = UInt32(be16(copy, start + offset))
            fuzzCheck(fold(sum16(scratch + start, length - start) + pseudo) == 0xFFFF, "completed checksum does not verify")
        }
    }

    let frame = Frame(bytes: bytes, ingress: PortID(0), vnet: vnet)
    let maxHeaders = 160
    guard let plan = TCPSegmentPlan(frame, maxHeaders: maxHeaders) else { return 0 }
    fuzzCheck(plan.headers <= maxHeaders && plan.headers < length && plan.l3 < plan.l4, "plan outside the frame")
    fuzzCheck(plan.l4 + plan.tcpHeader == plan.headers && plan.tcpHeader >= 20, "TCP header bounds")
    // The worker refuses a super-frame of more segments than it has free slots (at most 256).
    let segments = min(plan.count, 256)
    let h = UnsafeMutableRawPointer.allocate(byteCount: plan.headers, alignment: 16)
    defer { h.deallocate() }
    var expectedOffset = plan.headers
    for i in 0..<segments {
        let (off, chunk) = plan.writeHeaders(segment: i, of: UnsafeRawBufferPointer(bytes), to: h)
        fuzzCheck(off == expectedOffset && chunk > 0 && chunk <= plan.mss && off + chunk <= length, "segment \(i): \(off)+\(chunk) of \(length)")
        expectedOffset += chunk
        let tcpLength = plan.tcpHeader + chunk
        var pseudo: UInt32
        if plan.ipv4 {
            fuzzCheck(be16(h, plan.l3 + 2) == plan.l4 - plan.l3 + tcpLength, "IPv4 total length")
            fuzzCheck(sum16(h + plan.l3, plan.l4 - plan.l3) == 0xFFFF, "IPv4 header checksum does not verify")
            pseudo = sum16(h + plan.l3 + 12, 8)
        } else {
            fuzzCheck(be16(h, plan.l3 + 4) == tcpLength, "IPv6 payload length")
            pseudo = sum16(h + plan.l3 + 8, 32)
        }
        pseudo += 6 + UInt32(tcpLength)
        // The TCP header and the payload are summed apart: the header's length is a multiple of 4.
        let tcp = fold(pseudo + sum16(h + plan.l4, plan.tcpHeader) + sum16(copy + off, chunk))
        fuzzCheck(tcp == 0xFFFF, "TCP checksum of segment \(i) does not verify")
        fuzzCheck(be32(h, plan.l4 + 4) == be32(copy, plan.l4 + 4) &+ UInt32(truncatingIfNeeded: i * plan.mss), "sequence number of segment \(i)")
    }
    if segments == plan.count { fuzzCheck(expectedOffset == length, "segments cover \(expectedOffset) of \(length) bytes") }
    return 0
}
