// CaptureRing and CaptureTap: the datapath side of a capture. A tap belongs to one capture
// session and one worker: the worker (only producer) filters a frame with the session's
// compiled pcap-filter program and copies it, cut to the snapshot length, into a fixed-size
// single-producer/single-consumer byte ring; the session's capture thread (only consumer)
// drains it. A full ring drops the frame and counts it; nothing waits, nothing allocates.
#if canImport(Glibc)
import Glibc
#endif
import PacketFilter
import Synchronization

/// One record in the ring: this header, then `capturedLength` bytes, padded to 8.
/// `size == 0` marks "wrap to the start" (the rest of the ring is unused).
@usableFromInline struct CaptureRecordHeader {
    var size: UInt32
    var capturedLength: UInt32
    var originalLength: UInt32
    var interface: UInt16
    var direction: UInt8
    var pad: UInt8 = 0
    var timestamp: UInt64
}

public final class CaptureRing: @unchecked Sendable {
    @usableFromInline let capacity: Int
    @usableFromInline let mask: Int
    @usableFromInline let storage: UnsafeMutableRawPointer
    /// Producer position (bytes written, monotonic) and consumer position.
    @usableFromInline let head = Atomic<Int>(0)
    @usableFromInline let tail = Atomic<Int>(0)
    @usableFromInline let dropCount = Atomic<UInt64>(0)
    @usableFromInline let offerCount = Atomic<UInt64>(0)

    /// `bytes` is rounded up to a power of two, at least 64 KiB.
    public init(bytes: Int) {
        var c = 1 << 16
        while c < bytes && c < (1 << 30) { c <<= 1 }
        capacity = c; mask = c - 1
        storage = .allocate(byteCount: c, alignment: 64)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: c)   // pre-fault
    }

    deinit { storage.deallocate() }

    static let headerSize = MemoryLayout<CaptureRecordHeader>.stride

    /// The largest frame part one record may carry (a record takes at most half the ring).
    public var maxRecordData: Int { capacity / 2 - CaptureRing.headerSize - 8 }

    /// Frames dropped because the ring was full.
    public var dropped: UInt64 { dropCount.load(ordering: .relaxed) }
    /// Frames that matched and were offered (queued + dropped).
    public var offered: UInt64 { offerCount.load(ordering: .relaxed) }

    /// Producer: copies `frame` (cut to `snaplen`) with an 802.1Q `tag` inserted after the MAC
    /// addresses (tag != 0) or the tag at 12..<16 stripped (`strip`). False when full.
    @inline(__always)
    func push(_ frame: UnsafeRawBufferPointer, snaplen: Int, interface: UInt16, direction: CaptureDirection,
              tag: UInt32, strip: Bool, timestamp: UInt64) -> Bool {
        let len = frame.count
        let wireLength = tag != 0 ? len + 4 : (strip && len >= 16 ? len - 4 : len)
        let cap = min(wireLength, snaplen)
        let size = (CaptureRing.headerSize + cap + 7) & ~7
        let h = head.load(ordering: .relaxed)
        let t = tail.load(ordering: .acquiring)
        let pos = h & mask
        let toEnd = capacity - pos
        let need = toEnd < size ? toEnd + size : size
        offerCount.add(1, ordering: .relaxed)
        guard capacity - (h - t) >= need else {
            dropCount.add(1, ordering: .relaxed)
            return false
        }
        var at = pos
        var newHead = h
        if toEnd < size {
            storage.storeBytes(of: UInt32(0), toByteOffset: pos, as: UInt32.self)
            newHead += toEnd
            at = 0
        }
        let p = storage + at
        p.storeBytes(of: CaptureRecordHeader(size: UInt32(size), capturedLength: UInt32(cap),
                                             originalLength: UInt32(wireLength), interface: interface,
                                             direction: direction.rawValue, timestamp: timestamp),
                     as: CaptureRecordHeader.self)
        let d = p + CaptureRing.headerSize
        let src = frame.baseAddress.unsafelyUnwrapped
        if tag != 0 && len >= 12 {
            let a = min(cap, 12)
            d.copyMemory(from: src, byteCount: a)
            if cap > 12 {
                var be = tag.bigEndian
                withUnsafeBytes(of: &be) { d.advanced(by: 12).copyMemory(from: $0.baseAddress!, byteCount: min(4, cap - 12)) }
            }
            if cap > 16 { (d + 16).copyMemory(from: src + 12, byteCount: cap - 16) }
        } else if strip && len >= 16 {
            let a = min(cap, 12)
            d.copyMemory(from: src, byteCount: a)
            if cap > 12 { (d + 12).copyMemory(from: src + 16, byteCount: cap - 12) }
        } else {
            d.copyMemory(from: src, byteCount: cap)
        }
        head.store(newHead + size, ordering: .releasing)
        return true
    }

    /// Consumer: calls `body` for every queued record, then frees their space.
    /// Returns how many records it handed over.
    @discardableResult
    public func drain(_ body: (_ interface: UInt16, _ direction: CaptureDirection, _ timestamp: UInt64,
                               _ originalLength: Int, _ data: UnsafeRawBufferPointer) throws -> Void) rethrows -> Int {
        var t = tail.load(ordering: .relaxed)
        let h = head.load(ordering: .acquiring)
        var n = 0
        defer { tail.store(t, ordering: .releasing) }
        while t < h {
            let pos = t & mask
            let size = Int(storage.load(fromByteOffset: pos, as: UInt32.self))
            if size == 0 { t += capacity - pos; continue }
            let r = storage.load(fromByteOffset: pos, as: CaptureRecordHeader.self)
            let data = UnsafeRawBufferPointer(start: storage + pos + CaptureRing.headerSize, count: Int(r.capturedLength))
            try body(r.interface, CaptureDirection(rawValue: r.direction) ?? .ingress, r.timestamp,
                     Int(r.originalLength), data)
            t += size
            n += 1
        }
        return n
    }
}

/// What one worker holds for one capture session: the ring it fills, the compiled filter,
/// the snapshot length. Called through `Unmanaged` from the worker: no reference counting.
public final class CaptureTap: @unchecked Sendable {
    public let ring: CaptureRing
    public let snaplen: Int
    let program: PcapProgram?
    @usableFromInline let instructions: PcapInstructions?
    @usableFromInline let rejectCount = Atomic<UInt64>(0)

    public init(ring: CaptureRing, filter: PcapProgram?, snaplen: Int) {
        self.ring = ring
        self.program = filter
        self.instructions = filter?.instructions
        self.snaplen = max(1, min(snaplen, ring.maxRecordData))
    }

    /// Frames the expression did not match.
    public var filteredOut: UInt64 { rejectCount.load(ordering: .relaxed) }

    /// The per-frame entry: filter, then copy into the ring. `tag`/`strip`: the VLAN rewrite the
    /// egress port will apply, so the capture shows the frame as it leaves.
    public func offer(_ frame: UnsafeRawBufferPointer, interface: UInt16, direction: CaptureDirection,
                      tag: UInt32 = 0, strip: Bool = false) {
        if let insns = instructions, !insns.matches(frame) {
            rejectCount.add(1, ordering: .relaxed)
            return
        }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let now = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
        _ = ring.push(frame, snaplen: snaplen, interface: interface, direction: direction,
                      tag: tag, strip: strip, timestamp: now)
    }
}
