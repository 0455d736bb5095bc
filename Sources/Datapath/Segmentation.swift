// Segmentation: software TSO for a port that cannot take TCP super-frames (no vnet header, e.g.
// a VM stream socket) while the rest of the bridge keeps GSO. Each segment is one writev:
// rewritten headers (IP length/ID/checksum, TCP sequence/flags/checksum) from the transmit
// slot's scratch area, then its slice of the original payload, which is never copied.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import VirtioNet

extension Worker {
    /// Cuts the TCP/IPv4 or TCP/IPv6 super-frame into `gsoSize` segments for port `d`.
    /// False when the frame is not something we can segment (the caller counts `offload`).
    func segmentTCP(_ frame: Frame, to d: Int, buffer: Int32) -> Bool {
        guard let plan = TCPSegmentPlan(frame, maxHeaders: Worker.scratchPerSlot - Worker.segmentHeaderOffset),
              let base = frame.bytes.baseAddress else { return false }
        let dp = ports + d
        let count = plan.count
        guard dp.pointee.txQueued + dp.pointee.txInflight + Int32(count) <= depth, count <= freeSlotCount() else {
            dp.pointee.counters?.countDrop(.queueFull)
            return true
        }
        let hs = Int(dp.pointee.vnetHeaderSize)

        for i in 0..<count {
            let si = freeSlot
            let s = slots + Int(si)
            freeSlot = s.pointee.next
            let sc = scratch + Int(si) * Worker.scratchPerSlot
            let h = sc + Worker.segmentHeaderOffset
            let (off, chunk) = plan.writeHeaders(segment: i, of: UnsafeRawBufferPointer(frame.bytes), to: h)

            let v = iov + Int(si) * Worker.iovecsPerSlot
            var n = 0
            let frameLen = plan.headers + chunk
            let prefix = storeFramingPrefix(dp.pointee.transport, payload: frameLen + hs, scratch: sc, into: v)
            if prefix > 0 { n = 1 }
            if hs > 0 {
                var plain = VirtioNetHeader()
                plain.flags = VirtioNetHeader.flagDataValid
                plain.store(to: sc + 4, size: hs)
                v[n] = iovec(iov_base: sc + 4, iov_len: hs); n += 1
            }
            v[n] = iovec(iov_base: h, iov_len: plan.headers); n += 1
            v[n] = iovec(iov_base: base + off, iov_len: chunk); n += 1
            refcount[Int(buffer)] += 1
            s.pointee = TxSlot(buffer: buffer, port: Int16(d), generation: dp.pointee.generation, iovFirst: 0,
                               iovCount: Int32(n), remaining: Int32(prefix + frameLen + hs),
                               frameBytes: Int32(frameLen), next: -1)
            dispatch(si, to: d)
        }
        stats.add(WorkerCounter.segmented, 1)
        return true
    }

    /// Free transmit slots (walks the free list only when a super-frame needs many).
    func freeSlotCount() -> Int {
        var n = 0
        var si = freeSlot
        while si >= 0 && n < 256 { n += 1; si = slots[Int(si)].next }
        return n
    }
}
