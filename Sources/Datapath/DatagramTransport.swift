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

    /// Whether a read of `length` bytes (vnet header + frame) holds a whole frame the port may
    /// deliver. A read that filled its whole buffer may have been cut short: a datagram socket
    /// drops the rest of a longer datagram without a word (MSG_TRUNC is not reported to read),
    /// and no device frame is that long (64 KiB + vnet header < `bufferSize`). So a full buffer
    /// and a frame above the port's `maxFrame` are both dropped and counted as `too-big`, never
    /// forwarded cut.
    @inline(__always)
    func fitsMaxFrame(_ p: UnsafeMutablePointer<LocalPort>, _ length: Int) -> Bool {
        if length < bufferSize && length - Int(p.pointee.vnetHeaderSize) <= Int(p.pointee.maxFrame) { return true }
        p.pointee.counters?.countDrop(.tooBig)
        return false
    }

    /// A datagram read completed: the buffer holds one frame (vnet header first, if any).
    @inline(__always)
    func handleDatagramRead(_ c: Completion, _ ud: UserData) {
        let lp = Int(ud.port)
        let p = ports + lp
        let current = p.pointee.generation == ud.generation && p.pointee.state != LocalPortState.free
        if let bid = c.bufferID {
            if current && p.pointee.state == LocalPortState.active && c.result > 0 {
                if fitsMaxFrame(p, Int(c.result)) {
                    refcount[Int(bid)] = 1
                    buffersOut += 1
                    deliver(lp, buffers.address(of: bid), Int(c.result), Int32(bid))
                    release(Int32(bid))
                } else {
                    buffers.give(bid)
                }
            } else {
                buffers.give(bid)
            }
        }
        guard current else { return }
        if c.result <= 0 {
            p.pointee.readArmed = false
            let e = -c.result
            if c.result == 0 {
                if p.pointee.emptyReadIsFrame {
                    // An empty datagram: dropped and counted like a runt; the port stays up.
                    // (A multishot read ends on it; should one go on, it is still armed.)
                    p.pointee.counters?.countDrop(.malformed)
                    if c.hasMore { p.pointee.readArmed = true } else { armRead(lp) }
                } else {
                    fail(lp, 0)
                }
                return
            }
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
        if res == -ECANCELED && ports[d].state != LocalPortState.active {
            // Cancelled in flight because the port failed (`fail` cancels what is in flight):
            // sent to a port that is down, like the frames queued behind it.
            ports[d].counters?.countDrop(.portDown)
            finishSlot(si)
            return
        }
        if res < 0 && ports[d].emptyReadIsFrame && isPeerGone(-res) {
            // A datagram socket's peer went (a VM that exited): no read ever says so, only
            // sends. The port goes down (the engine asks the port what next: a VM port waits
            // for its VM) and the frame counts as sent to a port that is down, as every later
            // one does until it is back, never as a transmit error.
            ports[d].counters?.countDrop(.portDown)
            fail(d, -res)   // (once: a port already down is left alone)
            finishSlot(si)
            return
        }
        if let dc = ports[d].counters { countWrite(dc, res, slots[si].frameBytes) }
        kick(d)
        finishSlot(si)
    }

    /// A send error meaning a datagram socket's peer no longer exists (ECONNREFUSED once the
    /// peer closed, ENOTCONN after the kernel forgot it, ENOENT for a peer path gone).
    @inline(__always)
    func isPeerGone(_ e: Int32) -> Bool { e == ECONNREFUSED || e == ENOTCONN || e == ENOENT }

    /// Per-port set-up: up to the transmit queue depth in flight. Returns whether reads need a
    /// blocking descriptor (single-shot reads: io_uring waits by polling; on a non-blocking
    /// descriptor they would return EAGAIN at once).
    func setUpDatagramPort(_ lp: Int, descriptor fd: Int32) -> Bool {
        ports[lp].txMaxInflight = depth
        var type: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        ports[lp].emptyReadIsFrame = fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) == 0
            && type == Int32(SOCK_DGRAM.rawValue)
        return !multishot
    }
}
