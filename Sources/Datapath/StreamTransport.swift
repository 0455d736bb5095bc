// StreamTransport: ports that carry frames on a byte stream as a 4-byte big-endian length and
// the frame (QEMU `-netdev stream`). Owns the framing on both sides: reads fill a per-port
// reassembly buffer and every complete frame is copied into a stream buffer (the pool this file
// also hands out for frames handed over between workers); writes are serialised (one writev in
// flight per port) and batch up to `Worker.streamBatch` queued frames, a short write putting the
// rest (starting mid-frame) back at the head of the queue. StreamFraming.swift judges prefixes.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import CLiburing
import Ring

extension Worker {
    /// Bytes a stream port's reassembly buffer holds: one prefix and the largest frame.
    var streamCapacity: Int { StreamPrefix.size + bufferSize }

    /// Per-port set-up: one writev in flight (a byte stream must not interleave) and room to
    /// gather a batch. Stream reads are single-shot, so the descriptor must block.
    func setUpStreamPort(_ lp: Int) -> Bool {
        if ports[lp].batchIov == nil {
            ports[lp].batchIov = .allocate(capacity: Worker.streamBatch * Worker.iovecsPerSlot)
        }
        ports[lp].txMaxInflight = 1
        ports[lp].maxFrame = min(ports[lp].maxFrame, Int32(StreamPrefix.absoluteMaxFrame))
        return true
    }

    /// The port leaves this worker: its buffers go.
    func tearDownStreamPort(_ lp: Int) {
        ports[lp].rxBuffer?.deallocate(); ports[lp].rxBuffer = nil
        ports[lp].batchIov?.deallocate(); ports[lp].batchIov = nil
        ports[lp].rxFill = 0
    }

    /// A read appending to the port's reassembly buffer. Returns the op kind.
    @inline(__always)
    func prepareStreamRead(_ sqe: UnsafeMutablePointer<io_uring_sqe>, _ lp: Int) -> UInt8 {
        let p = ports + lp
        let cap = streamCapacity
        if p.pointee.rxBuffer == nil { p.pointee.rxBuffer = .allocate(byteCount: cap, alignment: 64) }
        sqe.prepareRead(fd: Int32(lp), into: p.pointee.rxBuffer! + Int(p.pointee.rxFill),
                        length: UInt32(cap - Int(p.pointee.rxFill)))
        return OpKind.streamRead
    }

    /// Takes a stream buffer, copies `count` bytes from `source` into it and holds one reference
    /// on it for the caller. -1: the pool is empty (the caller counts the drop). Stream buffers
    /// also carry frames handed over by other workers (WorkerControl.drainHandoffs).
    @inline(__always)
    func takeStreamBuffer(copying source: UnsafeRawPointer, count: Int) -> (buffer: Int32, address: UnsafeMutableRawPointer?) {
        guard streamFreeCount > 0 else { return (-1, nil) }
        streamFreeCount -= 1
        let b = streamFree[streamFreeCount]
        let addr = streamSlab + (Int(b) - ringCount) * bufferSize
        addr.copyMemory(from: source, byteCount: count)
        refcount[Int(b)] = 1
        return (b, addr)
    }

    /// The 4-byte big-endian length of the `payload` bytes (vnet header + frame) that follow,
    /// in the slot's scratch area, as iovec `v[0]`. Returns its size.
    @inline(__always)
    func storeStreamPrefix(payload: Int, scratch sc: UnsafeMutableRawPointer, into v: UnsafeMutablePointer<iovec>) -> Int {
        sc.storeBytes(of: UInt32(payload).bigEndian, as: UInt32.self)
        v[0] = iovec(iov_base: sc, iov_len: StreamPrefix.size)
        return StreamPrefix.size
    }

    /// One writev in flight per stream port: slot `si` and, if more wait, up to
    /// `Worker.streamBatch` frames from the port's queue in the same writev.
    @inline(__always)
    func prepareStreamWrite(_ sqe: UnsafeMutablePointer<io_uring_sqe>, _ si: Int) {
        let d = Int(slots[si].port)
        if let bi = ports[d].batchIov, ports[d].txHead >= 0 {
            sqe.prepareWritev(fd: Int32(d), iovecs: bi, count: gatherStreamBatch(si, into: bi))
        } else {
            prepareSlotWritev(sqe, si)
        }
    }

    /// A byte stream of (4-byte big-endian length, frame): each complete frame is copied into
    /// a stream buffer (it may straddle reads) and delivered; the remainder moves to the front.
    func handleStreamRead(_ c: Completion, _ ud: UserData) {
        let lp = Int(ud.port)
        let p = ports + lp
        guard p.pointee.generation == ud.generation, p.pointee.state == LocalPortState.active else { return }
        p.pointee.readArmed = false
        if c.result <= 0 {
            let e = -c.result
            if c.result == 0 {
                if p.pointee.rxFill > 0 { logTruncated(lp) }
                fail(lp, 0)
            } else if e == EAGAIN || e == EINTR { armRead(lp) } else if e != ECANCELED { fail(lp, e) }
            return
        }
        guard let buf = p.pointee.rxBuffer else { return }
        var fill = Int(p.pointee.rxFill) + Int(c.result)
        var off = 0
        // (a vnet header, if the port has one, counts as part of the announced length)
        let maxFrame = Int(p.pointee.maxFrame) + Int(p.pointee.vnetHeaderSize)
        decode: while true {
            let len: Int
            switch StreamPrefix.next(buf + off, available: fill - off, maxFrame: maxFrame) {
            case .needMore:
                break decode
            case .fatal(let e):
                // A zero or oversized prefix: the stream cannot be resynchronised, close it.
                p.pointee.counters?.countDrop(.malformed)
                cfg.log(.notice, "worker \(index): port \(p.pointee.id): closing connection: \(e)")
                p.pointee.rxFill = 0   // counted as malformed, not also as truncated
                fail(lp, EPROTO)
                return
            case .skip(let n, _):
                // A runt: skipped and counted; the next prefix is still where we expect it.
                p.pointee.counters?.countDrop(.malformed)
                off += StreamPrefix.size + n
                continue decode
            case .frame(let n):
                len = n
            }
            if streamFreeCount == 0 {
                // One read can carry hundreds of small frames, more than there are stream
                // buffers: send what was switched so far, which frees the buffers its writes
                // complete, before dropping any.
                flushWrites()
                guard p.pointee.state == LocalPortState.active else { return }
            }
            let (b, addr) = takeStreamBuffer(copying: buf + off + StreamPrefix.size, count: len)
            if let addr {
                deliver(lp, addr, len, b)
                release(b)
            } else {
                p.pointee.counters?.countDrop(.queueFull)
            }
            off += StreamPrefix.size + len
        }
        if off > 0 {
            fill -= off
            if fill > 0 { buf.copyMemory(from: buf + off, byteCount: fill) }
        }
        // The partial-frame clock: runs while the port holds part of one frame, restarts when a
        // frame completes. A healthy peer's partial frames complete within a read or two; one that
        // stalls mid-frame is closed by the engine's health check (`partialFrameTimeout`).
        if fill == 0 {
            if p.pointee.rxFill > 0 { p.pointee.counters?.store(PortCounter.partialSince, 0) }
        } else if off > 0 || p.pointee.rxFill == 0 {
            p.pointee.counters?.store(PortCounter.partialSince, context.now)
        }
        p.pointee.rxFill = Int32(fill)
        armRead(lp)
    }

    /// The peer closed mid-frame: say how much of which frame was lost (once per connection;
    /// the frame is counted as `truncated` when the descriptor goes, `streamDetached`).
    @inline(never)
    func logTruncated(_ lp: Int) {
        let p = ports + lp
        let have = Int(p.pointee.rxFill)
        var detail = "\(have) bytes of a length prefix"
        if have >= StreamPrefix.size, let buf = p.pointee.rxBuffer {
            detail = "\(FramingError.truncated(have: have - StreamPrefix.size, want: StreamPrefix.length(at: buf)))"
        }
        cfg.log(.notice, "worker \(index): port \(p.pointee.id): peer closed mid-frame: \(detail)")
    }

    /// The port's descriptor goes (failure, disconnect, reconnect, removal): a partial frame of
    /// the old connection is lost and counted as `truncated`; the partial-frame clock stops.
    func streamDetached(_ lp: Int) {
        let p = ports + lp
        if p.pointee.rxFill > 0 { p.pointee.counters?.countDrop(.truncated) }
        p.pointee.counters?.store(PortCounter.partialSince, 0)
        p.pointee.rxFill = 0
    }

    /// Writes from one stream-socket writev into `bi`: slot `si` first, then frames taken
    /// from the port's transmit queue, linked through `batchNext`. Returns the iovec count.
    func gatherStreamBatch(_ si: Int, into bi: UnsafeMutablePointer<iovec>) -> Int {
        let dp = ports + Int(slots[si].port)
        var n = 0, frames = 0, cur = si
        while true {
            let s = slots + cur, v = iov + cur * Worker.iovecsPerSlot
            for k in Int(s.pointee.iovFirst)..<Int(s.pointee.iovCount) { bi[n] = v[k]; n += 1 }
            frames += 1
            guard frames < Worker.streamBatch, dp.pointee.txHead >= 0 else { return n }
            let next = dp.pointee.txHead
            dp.pointee.txHead = slots[Int(next)].next
            if dp.pointee.txHead < 0 { dp.pointee.txTail = -1 }
            dp.pointee.txQueued -= 1
            s.pointee.batchNext = next
            slots[Int(next)].batchNext = -1
            cur = Int(next)
        }
    }

    /// A stream writev finished: the frames it carried completely are done; if the socket took
    /// only part, the rest (starting mid-frame) goes back to the head of the queue, in order.
    func completeStreamWrite(_ si: Int, _ d: Int, _ res: Int32) {
        let dp = ports + d
        guard res > 0 else {
            // A peer that went away (a VM exiting: the write may see it before the read sees
            // end of file) is no transmit error: the batch counts as sent to a port that is
            // down, as every later frame does until the VM is back, and the port goes down
            // through the usual failure path (once: a port already down is left alone). A write
            // cancelled because the port failed (its read saw the close first) counts the same.
            let peerGone = isStreamPeerGone(-res) || (res == -ECANCELED && dp.pointee.state != LocalPortState.active)
            var cur = si
            while cur >= 0 {
                let next = Int(slots[cur].batchNext)
                if let dc = dp.pointee.counters {
                    if peerGone { dc.countDrop(.portDown) } else { countWrite(dc, res == 0 ? -EIO : res, slots[cur].frameBytes) }
                }
                finishSlot(cur)
                cur = next
            }
            if peerGone { fail(d, -res) } else { kick(d) }
            return
        }
        var left = Int(res), cur = si
        while cur >= 0 && left >= Int(slots[cur].remaining) {
            let next = Int(slots[cur].batchNext)
            left -= Int(slots[cur].remaining)
            if let dc = dp.pointee.counters { countWrite(dc, 0, slots[cur].frameBytes) }
            finishSlot(cur)
            cur = next
        }
        if cur >= 0 {
            guard dp.pointee.state == LocalPortState.active else {
                finishBatch(cur)
                return
            }
            if left > 0 { skipWritten(cur, left) }
            var tail = cur, count: Int32 = 1
            while slots[tail].batchNext >= 0 {
                slots[tail].next = slots[tail].batchNext
                tail = Int(slots[tail].batchNext)
                count += 1
            }
            slots[tail].next = dp.pointee.txHead
            if dp.pointee.txHead < 0 { dp.pointee.txTail = Int32(tail) }
            dp.pointee.txHead = Int32(cur)
            dp.pointee.txQueued += count
        }
        kick(d)
    }

    /// A write error meaning a stream socket's peer is gone (closed, reset, never connected).
    @inline(__always)
    func isStreamPeerGone(_ e: Int32) -> Bool { e == EPIPE || e == ECONNRESET || e == ENOTCONN }

    /// Part of a frame went out: skip those bytes in its iovecs.
    func skipWritten(_ si: Int, _ written: Int) {
        let s = slots + si
        let v = iov + si * Worker.iovecsPerSlot
        var left = written
        var first = Int(s.pointee.iovFirst)
        while left > 0 && first < Int(s.pointee.iovCount) {
            if left >= v[first].iov_len { left -= v[first].iov_len; first += 1 } else {
                v[first].iov_base += left
                v[first].iov_len -= left
                left = 0
            }
        }
        s.pointee.iovFirst = Int32(first)
        s.pointee.remaining -= Int32(written)
    }
}
