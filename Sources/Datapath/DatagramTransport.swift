// DatagramTransport: ports where one read is one frame and one write is one frame (macvtap and
// tap queues, Unix/UDP datagram sockets, AF_PACKET). Reads come from the worker's provided-buffer
// ring (multishot where the kernel has it), so the frame is switched in the buffer the kernel
// filled; writes are one writev per frame, up to the transmit queue depth in flight at once.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import CLiburing
import Ring

extension Worker {
    /// A read into the provided-buffer ring (the kernel picks the buffer). Returns the op kind.
    @inline(__always)
    func prepareDatagramRead(_ sqe: UnsafeMutablePointer<io_uring_sqe>, _ lp: Int) -> UInt8 {
        if multishot {
            sqe.prepareReadMultishot(fd: Int32(lp), bufferGroup: buffers.group)
        } else {
            sqe.prepareReadSelect(fd: Int32(lp), bufferGroup: buffers.group, length: UInt32(bufferSize))
        }
        return OpKind.read
    }

    /// A datagram read completed: the buffer holds one frame (vnet header first, if any).
    @inline(__always)
    func handleDatagramRead(_ c: Completion, _ ud: UserData) {
        let lp = Int(ud.port)
        let p = ports + lp
        let current = p.pointee.generation == ud.generation && p.pointee.state != LocalPortState.free
        if let bid = c.bufferID {
            if current && p.pointee.state == LocalPortState.active && c.result > 0 {
                refcount[Int(bid)] = 1
                buffersOut += 1
                deliver(lp, buffers.address(of: bid), Int(c.result), Int32(bid))
                release(Int32(bid))
            } else {
                buffers.give(bid)
            }
        }
        guard current else { return }
        if c.result <= 0 {
            p.pointee.readArmed = false
            let e = -c.result
            if c.result == 0 { fail(lp, 0); return }
            switch e {
            case ENOBUFS:
                stats.add(WorkerCounter.bufferStarved, 1)
                markStarved(lp)
            case ECANCELED:
                break
            case EAGAIN, EINTR:
                markStarved(lp)
            default:
                fail(lp, e)
            }
            return
        }
        if !c.hasMore {
            p.pointee.readArmed = false
            armRead(lp)
        }
    }

    /// One frame, one writev: the slot's own iovecs.
    @inline(__always)
    func prepareDatagramWrite(_ sqe: UnsafeMutablePointer<io_uring_sqe>, _ si: Int) {
        prepareSlotWritev(sqe, si)
    }

    /// A datagram write finished: count it, free its slot, start the port's next queued write.
    @inline(__always)
    func completeDatagramWrite(_ si: Int, _ d: Int, _ res: Int32) {
        if let dc = ports[d].counters { countWrite(dc, res, slots[si].frameBytes) }
        kick(d)
        finishSlot(si)
    }

    /// Per-port set-up: up to the transmit queue depth in flight. Returns whether reads need a
    /// blocking descriptor (single-shot reads: io_uring waits by polling; on a non-blocking
    /// descriptor they would return EAGAIN at once).
    func setUpDatagramPort(_ lp: Int) -> Bool {
        ports[lp].txMaxInflight = depth
        return !multishot
    }
}
