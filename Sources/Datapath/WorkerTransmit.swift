// WorkerTransmit: a frame leaving by one port. `send` applies the port's VLAN rule and
// offloads, takes a transmit slot and builds the slot's iovecs (framing prefix, vnet header,
// VLAN tag, the frame in place); slots queue per port behind its in-flight writes and are
// submitted by `submit`. Write completions count, free the slot and start the next queued
// write; the last reference to a buffer gives it back (`release`).
#if canImport(Glibc)
import Glibc
#endif
import Frames
import Capture
import CLiburing
import Ring

extension Worker {
    /// Queues one transmission of `frame` to local port `d`; drops (counted against `d`) when
    /// the port is down, the VLAN is not carried there, it cannot take the offload, or its
    /// transmit queue is full.
    @inline(__always)
    func send(_ frame: inout Frame, to d: Int, buffer: Int32, asIs: Bool) {
        let dp = ports + d
        guard let dc = dp.pointee.counters else { return }
        guard dp.pointee.state == LocalPortState.active, dp.pointee.adminUp else {
            dc.countDrop(.portDown)
            return
        }
        var tagging = EgressTagging.asIs
        if !asIs && frame.vlan != 0 && dp.pointee.vlanKind != 0 {
            if dp.pointee.vlanKind == 1 {
                tagging = frame.egressTagging(accessPVID: dp.pointee.vlanPVID)
            } else {
                let v = Int(frame.vlan & 0x0FFF)
                let carries = vlanAllowed[d &* 64 &+ (v >> 6)] & (1 << UInt64(v & 63)) != 0
                tagging = frame.egressTagging(trunkNative: dp.pointee.vlanPVID, carries: carries)
            }
            if tagging == .drop {
                dc.countDrop(.vlan)
                return
            }
            if tagging == .stripTag && frame.bytes.count < Frame.minimumLength + 4 {
                // A handler shrank a tagged frame: untagged it would be a runt. Never sent.
                dc.countDrop(.malformed)
                return
            }
        }
        if !dp.pointee.writable {
            handOff(frame, to: d, asIs: asIs)
            return
        }
        if dp.pointee.captureFlags & CaptureDirection.egress.rawValue != 0 {
            captureFrame(dp, UnsafeRawBufferPointer(frame.bytes), .egress, tagging: tagging)
        }
        if frame.vnet.gsoType != 0 && !dp.pointee.transmitOffloads.accepts(gsoType: frame.vnet.gsoType) {
            // A TCP super-frame for a port without TSO is cut into MSS-sized segments here.
            if tagging == .asIs && !segmentTCP(frame, to: d, buffer: buffer) {
                dc.countDrop(.offload)
            } else if tagging != .asIs {
                dc.countDrop(.offload)
            }
            return
        }
        let held = dp.pointee.txQueued + dp.pointee.txInflight
        // Past half of the worker's ring buffers out, no port takes more than a fair share:
        // ports whose peers stopped reading cannot hold every buffer and stall all reads.
        if held >= depth || (held >= fairShare && buffersOut > ringCount / 2 && Int(buffer) < ringCount) {
            dc.countDrop(.queueFull)
            return
        }
        let si = freeSlot
        guard si >= 0 else {
            stats.add(WorkerCounter.slotsExhausted, 1)
            dc.countDrop(.queueFull)
            return
        }
        let s = slots + Int(si)
        freeSlot = s.pointee.next

        let v = iov + Int(si) * Worker.iovecsPerSlot
        let sc = scratch + Int(si) * Worker.scratchPerSlot
        let base = frame.bytes.baseAddress!
        let len = frame.bytes.count
        var n = 0
        var frameLen = len
        var shift = 0
        switch tagging {
        case .insertTag: frameLen += 4; shift = 4
        case .stripTag: frameLen -= 4; shift = -4
        default: break
        }
        let hs = Int(dp.pointee.vnetHeaderSize)
        let prefix = storeFramingPrefix(dp.pointee.transport, payload: frameLen + hs, scratch: sc, into: v)
        if prefix > 0 { n = 1 }
        if hs > 0 {
            var h = frame.vnet
            h.numBuffers = 0
            if shift != 0 {
                if h.needsChecksum { h.checksumStart = UInt16(truncatingIfNeeded: Int(h.checksumStart) + shift) }
                if h.headerLength != 0 { h.headerLength = UInt16(truncatingIfNeeded: Int(h.headerLength) + shift) }
            }
            h.store(to: sc + 4, size: hs)
            v[n] = iovec(iov_base: sc + 4, iov_len: hs); n += 1
        }
        switch tagging {
        case .stripTag where len >= 16:
            v[n] = iovec(iov_base: base, iov_len: 12); n += 1
            v[n] = iovec(iov_base: base + 16, iov_len: len - 16); n += 1
        case .insertTag(let vid):
            let tag = sc + 16
            tag.storeBytes(of: UInt8(0x81), toByteOffset: 0, as: UInt8.self)
            tag.storeBytes(of: UInt8(0x00), toByteOffset: 1, as: UInt8.self)
            tag.storeBytes(of: UInt8(truncatingIfNeeded: (vid >> 8) & 0x0F), toByteOffset: 2, as: UInt8.self)
            tag.storeBytes(of: UInt8(truncatingIfNeeded: vid), toByteOffset: 3, as: UInt8.self)
            v[n] = iovec(iov_base: base, iov_len: 12); n += 1
            v[n] = iovec(iov_base: tag, iov_len: 4); n += 1
            v[n] = iovec(iov_base: base + 12, iov_len: len - 12); n += 1
        default:
            v[n] = iovec(iov_base: base, iov_len: len); n += 1
        }
        refcount[Int(buffer)] += 1
        s.pointee = TxSlot(buffer: buffer, port: Int16(d), generation: dp.pointee.generation, iovFirst: 0,
                           iovCount: Int32(n), remaining: Int32(prefix + frameLen + hs),
                           frameBytes: Int32(frameLen), next: -1)
        dispatch(si, to: d)
    }

    /// Submits a filled slot now, or queues it behind the port's in-flight writes.
    @inline(__always)
    func dispatch(_ si: Int32, to d: Int) {
        let dp = ports + d
        if dp.pointee.txInflight < dp.pointee.txMaxInflight {
            submit(Int(si))
        } else {
            if dp.pointee.txTail >= 0 { slots[Int(dp.pointee.txTail)].next = si } else { dp.pointee.txHead = si }
            dp.pointee.txTail = si
            dp.pointee.txQueued += 1
        }
    }

    @inline(__always)
    func submit(_ si: Int) {
        let s = slots + si
        let d = Int(s.pointee.port)
        if ports[d].transport == .virtqueue {
            writeToGuest(si)   // a copy into the guest's receive buffers: done now
            return
        }
        guard let sqe = ring.sqe() else {
            ports[d].counters?.add(PortCounter.txErrors, 1)
            finishSlot(si)
            return
        }
        s.pointee.batchNext = -1
        switch ports[d].transport {
        case .datagram: prepareDatagramWrite(sqe, si)
        case .lengthPrefixedStream: prepareStreamWrite(sqe, si)
        case .virtqueue: break   // handled above
        }
        sqe.useFixedFile()
        sqe.setUserData(UserData(kind: OpKind.write, index: UInt32(si)))
        ports[d].txInflight += 1
    }

    /// A writev of slot `si`'s own iovecs (from the first one not yet written).
    @inline(__always)
    func prepareSlotWritev(_ sqe: UnsafeMutablePointer<io_uring_sqe>, _ si: Int) {
        let s = slots + si
        let first = Int(s.pointee.iovFirst)
        sqe.prepareWritev(fd: Int32(s.pointee.port), iovecs: iov + si * Worker.iovecsPerSlot + first,
                          count: Int(s.pointee.iovCount) - first)
    }

    /// The transport's bytes ahead of each frame written to a port (a stream's length prefix),
    /// stored in the transmit slot's scratch area `sc` and described by `v[0]`. `payload`: the
    /// vnet header and frame that follow. Returns the prefix length (0: no iovec used).
    @inline(__always)
    func storeFramingPrefix(_ transport: PortTransport, payload: Int, scratch sc: UnsafeMutableRawPointer,
                            into v: UnsafeMutablePointer<iovec>) -> Int {
        switch transport {
        case .datagram: return 0
        case .lengthPrefixedStream: return storeStreamPrefix(payload: payload, scratch: sc, into: v)
        case .virtqueue: return 0
        }
    }

    @inline(__always)
    func handleWrite(_ c: Completion, _ si: Int) {
        let s = slots + si
        let d = Int(s.pointee.port)
        let dp = ports + d
        let live = dp.pointee.state != LocalPortState.free && dp.pointee.generation == s.pointee.generation
        let res = c.result
        guard live else {
            finishBatch(si)
            return
        }
        dp.pointee.txInflight -= 1
        switch dp.pointee.transport {
        case .datagram: completeDatagramWrite(si, d, res)
        case .lengthPrefixedStream: completeStreamWrite(si, d, res)
        case .virtqueue: finishSlot(si)   // never submitted as a write
        }
    }

    @inline(__always)
    func countWrite(_ dc: CounterBlock, _ res: Int32, _ frameBytes: Int32) {
        if res >= 0 {
            dc.add(PortCounter.txFrames, 1)
            dc.add(PortCounter.txBytes, UInt64(frameBytes))
            if frameBytes > 1514 { dc.add(PortCounter.txLarge, 1) }
        } else if res == -EAGAIN || res == -ENOBUFS || res == -ENOMEM {
            dc.countDrop(.queueFull)
        } else if res != -ECANCELED {
            dc.add(PortCounter.txErrors, 1)
        }
    }

    /// Frees every slot of a write that no longer counts (its port went or was reconnected).
    func finishBatch(_ si: Int) {
        var cur = si
        while cur >= 0 {
            let next = Int(slots[cur].batchNext)
            finishSlot(cur)
            cur = next
        }
    }

    @inline(__always)
    func kick(_ d: Int) {
        let dp = ports + d
        while dp.pointee.txHead >= 0 && dp.pointee.txInflight < dp.pointee.txMaxInflight {
            let si = dp.pointee.txHead
            dp.pointee.txHead = slots[Int(si)].next
            if dp.pointee.txHead < 0 { dp.pointee.txTail = -1 }
            dp.pointee.txQueued -= 1
            submit(Int(si))
        }
    }

    @inline(__always)
    func finishSlot(_ si: Int) {
        let s = slots + si
        release(s.pointee.buffer)
        s.pointee.buffer = -1
        s.pointee.next = freeSlot
        freeSlot = Int32(si)
    }

    /// Drops one reference; the last one returns the buffer to the kernel's ring (or the
    /// stream pool).
    @inline(__always)
    func release(_ b: Int32) {
        let i = Int(b)
        refcount[i] -= 1
        if refcount[i] == 0 {
            if i < ringCount { buffers.give(UInt16(i)); buffersOut -= 1 }
            else if i < guestChainBase { streamFree[streamFreeCount] = b; streamFreeCount += 1 }
            else { completeGuestChain(i - guestChainBase) }
        }
    }

    /// Frees queued (not yet submitted) transmissions of a port.
    func drainQueue(_ d: Int) {
        let dp = ports + d
        var si = dp.pointee.txHead
        while si >= 0 {
            let next = slots[Int(si)].next
            finishSlot(Int(si))
            si = next
        }
        dp.pointee.txHead = -1; dp.pointee.txTail = -1; dp.pointee.txQueued = 0
    }
}
