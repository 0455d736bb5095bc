// VirtqueueTransport: vhost-user ports, whose frames live in the guest's memory. Owns the
// worker's side of a virtio-net queue pair (VhostUser.VirtioNetQueuePair, held by pointer):
// a multishot poll on the transmit queue's kick eventfd (io_uring, like any other descriptor;
// the eventfd is never read, so the front-end's descriptor keeps its flags), draining the
// transmit ring in bounded passes — on a bridge without handlers a frame whose header and bytes
// sit in one guest buffer goes out by writev straight from guest memory, its chain returned to
// the guest when the last write completes (a "guest chain" buffer id); other frames (scattered,
// or judged by handlers, which must judge bytes the guest can no longer change) are gathered
// into a stream buffer and their chain returned at once — and frames for the guest copied from
// the transmit slot's iovecs (vnet header, tag, frame) into its receive buffers (no writev: the
// copy is the write). Used rings are published and call eventfds written once per batch
// (`flushVirtqueues`), honouring EVENT_IDX / NO_INTERRUPT. Kicks are the slow part of a busy
// ring (an eventfd write per burst on the front-end's side, a wake-up on ours): a drain that
// found frames turns them off (NO_NOTIFY; with EVENT_IDX avail_event is left behind) and the
// worker loop polls the ring instead (`pollVirtqueues`, without blocking in io_uring_enter)
// until it has stayed empty for `virtqueuePollWindow`; then kicks go back on and the ring is
// checked once more (a frame made available in between is taken, not left waiting for a kick
// that will not come). An idle ring costs nothing: no frames, no polling past the window.
// A worker may serve several pairs of one port (a multi-queue port with more pairs than
// workers: a run of neighbours from `LocalPort.virtqueues`, inactive ones skipped): kicks of
// any of them wake it (the port hands it one descriptor: the kick eventfd, or an epoll set of
// them), drains and polling cover every pair, a frame for the guest goes into the first pair
// with room. A ring the guest broke stops the port (`fail`, EPROTO) with the reason in the pair
// for the port to report; nothing crashes.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import CLiburing
import Ring
import VhostUser
import VirtioNet

/// A transmitted guest chain whose frame is being written out of guest memory.
struct GuestChainRef {
    var port: Int16 = -1
    var generation: UInt8 = 0
    /// Which of the worker's pairs of the port (offset from `LocalPort.virtqueues`).
    var pair: UInt8 = 0
    var head: UInt16 = 0
}

extension Worker {
    /// Transmit chains taken per kick before other work gets a turn (the port kicks itself
    /// to continue).
    static let virtqueueBudget = 256
    /// Guest chains out being written at once per worker (beyond: the copy path).
    static let guestChainCount = 1024
    /// How long a transmit ring that has gone empty is still polled before kicks are asked for
    /// again (ns). A front-end that refills the ring as soon as used entries come back (a guest
    /// or testpmd sending a stream) does so within microseconds; past this the ring is idle.
    static let virtqueuePollWindow: UInt64 = 50_000

    /// First buffer id of the guest-chain range (after ring and stream buffers).
    @inline(__always) var guestChainBase: Int { ringCount + streamCount }

    /// Pairs of one port one worker serves at most (a guest chain records which in a byte).
    static let maxVirtqueuePairs = 128

    func setUpVirtqueuePort(_ lp: Int, _ pair: UnsafeMutablePointer<VirtioNetQueuePair>?, count: Int) -> Bool {
        ports[lp].virtqueues = pair
        ports[lp].virtqueueCount = pair == nil ? 0 : Int32(max(1, min(count, Worker.maxVirtqueuePairs)))
        // Writes are synchronous copies: never queued behind one in flight.
        ports[lp].txMaxInflight = Int32.max
        // Start by polling: frames the guest made available before the port (re)connected are
        // taken without waiting for a kick, and when the window ends kicks are (re)enabled
        // whatever flags an earlier run of the ring left in the used ring.
        ports[lp].virtqueueIdleSince = context.now
        startPolling(lp)
        return false
    }

    /// The pair leaves this worker (disconnect, removal): chains still being written from guest
    /// memory are returned now (their writes finish from memory the guest owns again, so what
    /// leaves may be torn — never memory outside the guest), and the used ring is published.
    func tearDownVirtqueuePort(_ lp: Int) {
        let p = ports + lp
        guard let pairs = p.pointee.virtqueues else { return }
        let n = Int(p.pointee.virtqueueCount)
        for i in 0..<Worker.guestChainCount where guestChains[i].port == Int16(lp) && guestChains[i].generation == p.pointee.generation {
            let pair = pairs + Int(guestChains[i].pair)
            if Int(guestChains[i].pair) < n && pair.pointee.transmit != nil {
                pair.pointee.transmit!.completeTransmit(head: guestChains[i].head)
            }
            guestChains[i].port = -1
        }
        publishVirtqueues(lp)
        if p.pointee.virtqueuePolling {
            // The ring may run again later (the front-end stopped it, not the guest): leave it
            // asking for kicks, or the guest would wait for a poll that no longer comes.
            for k in 0..<n where pairs[k].active && pairs[k].transmit != nil { _ = try? pairs[k].transmit!.enableKicks() }
            p.pointee.virtqueuePolling = false
        }
        p.pointee.virtqueues = nil
        p.pointee.virtqueueCount = 0
        p.pointee.virtqueuePending = false
    }

    /// A multishot poll on the kick eventfd. Returns the op kind.
    @inline(__always)
    func prepareVirtqueueKick(_ sqe: UnsafeMutablePointer<io_uring_sqe>, _ lp: Int) -> UInt8 {
        sqe.preparePollMultishot(fd: Int32(lp))
        return OpKind.kick
    }

    /// The guest kicked its transmit queue (or we did, to continue a long drain).
    func handleKick(_ c: Completion, _ ud: UserData) {
        let lp = Int(ud.port)
        let p = ports + lp
        guard p.pointee.generation == ud.generation, p.pointee.state == LocalPortState.active else { return }
        if !c.hasMore { p.pointee.readArmed = false }
        if c.result < 0 {
            let e = -c.result
            if e != ECANCELED { fail(lp, e) }
            return
        }
        drainTransmit(lp)
        if !p.pointee.readArmed && p.pointee.state == LocalPortState.active { armRead(lp) }
    }

    /// Takes up to `virtqueueBudget` frames from each of the port's transmit rings this worker
    /// serves. Called on a kick and, while the port polls, once per worker loop. Frames taken
    /// (or a budget used up): kicks stay off and the port keeps polling. Nothing taken: once the
    /// rings have been empty for `virtqueuePollWindow`, kicks go back on and they are checked
    /// again.
    func drainTransmit(_ lp: Int) {
        let p = ports + lp
        guard let pairs = p.pointee.virtqueues else { return }
        let n = Int(p.pointee.virtqueueCount)
        let hs = Int(p.pointee.vnetHeaderSize)
        var taken = 0
        var k = 0
        do {
            if !p.pointee.virtqueuePolling {
                for j in 0..<n where pairs[j].active && pairs[j].transmit != nil { pairs[j].transmit!.disableKicks() }
            }
            while true {
                k = 0
                while k < n {
                    let pair = pairs + k
                    if pair.pointee.active && pair.pointee.transmit != nil {
                        var fromPair = 0
                        while fromPair < Worker.virtqueueBudget,
                              let f = try pair.pointee.transmit!.nextTransmit(headerSize: hs, chain: &virtqueueChain.pointee) {
                            pair.pointee.count(fromGuest: true)
                            guestFrame(lp, pair, k, f, hs)
                            fromPair += 1
                            guard p.pointee.state == LocalPortState.active else { return }
                        }
                        taken += fromPair
                    }
                    k += 1
                }
                if taken > 0 {
                    // Busy: look again next loop (after the writes of these frames went out).
                    p.pointee.virtqueueIdleSince = context.now
                    startPolling(lp)
                    break
                }
                if p.pointee.virtqueuePolling && context.now &- p.pointee.virtqueueIdleSince < Worker.virtqueuePollWindow { break }
                // Idle: ask for kicks again; if frames arrived meanwhile, keep going.
                var more = false
                k = 0
                while k < n {
                    if pairs[k].active && pairs[k].transmit != nil, try pairs[k].transmit!.enableKicks() { more = true }
                    k += 1
                }
                if !more {
                    p.pointee.virtqueuePolling = false
                    break
                }
                for j in 0..<n where pairs[j].active && pairs[j].transmit != nil { pairs[j].transmit!.disableKicks() }
            }
        } catch {
            virtqueueBroken(lp, pairs + min(k, n - 1), error)
            return
        }
        if taken > 0 { markVirtqueuePending(lp) }
    }

    /// The port's transmit ring is polled from the worker loop (kicks off) until it idles.
    @inline(__always)
    func startPolling(_ lp: Int) {
        let p = ports + lp
        p.pointee.virtqueuePolling = true
        guard !p.pointee.virtqueueInPollList else { return }
        p.pointee.virtqueueInPollList = true
        virtqueuePollList[virtqueuePollCount] = Int16(lp)
        virtqueuePollCount += 1
    }

    /// Once per worker loop while any port polls: drains each polling ring; ports that went
    /// back to kicks (or down) leave the list.
    func pollVirtqueues() {
        var k = 0
        while k < virtqueuePollCount {
            let lp = Int(virtqueuePollList[k])
            let p = ports + lp
            if p.pointee.virtqueuePolling {
                if p.pointee.state == LocalPortState.active && p.pointee.virtqueues != nil {
                    drainTransmit(lp)
                } else {
                    p.pointee.virtqueuePolling = false
                }
            }
            if p.pointee.virtqueuePolling {
                k += 1
            } else {
                p.pointee.virtqueueInPollList = false
                virtqueuePollCount -= 1
                virtqueuePollList[k] = virtqueuePollList[virtqueuePollCount]
            }
        }
    }

    /// One frame the guest transmitted: through the pipeline from guest memory when its header
    /// and bytes are contiguous, else gathered into a stream buffer.
    @inline(__always)
    func guestFrame(_ lp: Int, _ pair: UnsafeMutablePointer<VirtioNetQueuePair>, _ k: Int, _ f: VirtioNetTransmitFrame, _ hs: Int) {
        let p = ports + lp
        if f.length < Frame.minimumLength || f.length > Int(p.pointee.maxFrame) {
            p.pointee.counters?.countDrop(f.length < Frame.minimumLength ? .malformed : .tooBig)
            pair.pointee.transmit!.completeTransmit(head: f.head)
            return
        }
        if virtqueueChain.pointee.readableCount == 1 && freeGuestChain >= 0 && !bridges[Int(p.pointee.bridge)].judges {
            // Header + frame in one guest buffer, and no handler judges its bytes (a hub):
            // switched and written in place. (With handlers the copy below is what they judge
            // and what leaves: the guest cannot change a frame after its verdict.)
            let g = Int(freeGuestChain)
            freeGuestChain = guestChainNext[g]
            guestChains[g] = GuestChainRef(port: Int16(lp), generation: p.pointee.generation, pair: UInt8(truncatingIfNeeded: k), head: f.head)
            let b = Int32(guestChainBase + g)
            refcount[Int(b)] = 1
            deliver(lp, f.iovecs[0].iov_base! - hs, hs + f.length, b)
            release(b)
            return
        }
        // Gather: the header as decoded, then the frame's pieces. Out of stream buffers: send
        // what was switched so far (its completed writes free buffers) before dropping.
        if streamFreeCount == 0 { flushWrites() }
        guard streamFreeCount > 0, p.pointee.state == LocalPortState.active else {
            p.pointee.counters?.countDrop(.queueFull)
            pair.pointee.transmit!.completeTransmit(head: f.head)
            return
        }
        streamFreeCount -= 1
        let b = streamFree[streamFreeCount]
        let addr = streamSlab + (Int(b) - ringCount) * bufferSize
        refcount[Int(b)] = 1
        f.header.store(to: addr, size: hs)
        var at = hs
        for i in 0..<f.iovecCount {
            let v = f.iovecs[i]
            (addr + at).copyMemory(from: v.iov_base!, byteCount: v.iov_len)
            at += v.iov_len
        }
        pair.pointee.transmit!.completeTransmit(head: f.head)
        deliver(lp, addr, at, b)
        release(b)
    }

    /// The last write of a guest chain finished: give the chain back to the guest.
    @inline(__always)
    func completeGuestChain(_ g: Int) {
        let ref = guestChains[g]
        guestChains[g].port = -1
        guestChainNext[g] = freeGuestChain
        freeGuestChain = Int32(g)
        guard ref.port >= 0 else { return }
        let p = ports + Int(ref.port)
        guard p.pointee.generation == ref.generation, let pairs = p.pointee.virtqueues,
              Int32(ref.pair) < p.pointee.virtqueueCount else { return }
        let pair = pairs + Int(ref.pair)
        guard pair.pointee.transmit != nil else { return }
        pair.pointee.transmit!.completeTransmit(head: ref.head)
        markVirtqueuePending(Int(ref.port))
    }

    /// A frame for the guest: the slot's iovecs (vnet header, tag, frame) copied into its
    /// receive buffers — those of the first of this worker's pairs with room (the first pair
    /// normally, so one worker's frames stay in order). Synchronous: the slot is finished here.
    @inline(__always)
    func writeToGuest(_ si: Int) {
        let s = slots + si
        let d = Int(s.pointee.port)
        let dp = ports + d
        guard let dc = dp.pointee.counters else { finishSlot(si); return }
        guard let pairs = dp.pointee.virtqueues else {
            dc.countDrop(.portDown)
            finishSlot(si)
            return
        }
        let first = Int(s.pointee.iovFirst)
        let n = Int(dp.pointee.virtqueueCount)
        var k = 0
        var served = false
        while k < n {
            let pair = pairs + k
            if pair.pointee.active && pair.pointee.receive != nil {
                served = true
                do {
                    let r = try pair.pointee.receive!.receive(
                        segments: iov + si * Worker.iovecsPerSlot + first, count: Int(s.pointee.iovCount) - first,
                        headerSize: Int(dp.pointee.vnetHeaderSize), mergeable: pair.pointee.mergeable, chain: &virtqueueChain.pointee)
                    if case .delivered = r {
                        pair.pointee.count(fromGuest: false)
                        countWrite(dc, 0, s.pointee.frameBytes)
                        markVirtqueuePending(d)
                        finishSlot(si)
                        return
                    }
                    // No room posted on this pair: the next one may have some.
                } catch {
                    dc.add(PortCounter.txErrors, 1)
                    finishSlot(si)
                    virtqueueBroken(d, pair, error)
                    return
                }
            }
            k += 1
        }
        // The guest has not posted room (like a full transmit queue), or no pair runs here.
        dc.countDrop(served ? .queueFull : .portDown)
        finishSlot(si)
    }

    @inline(__always)
    func markVirtqueuePending(_ lp: Int) {
        guard !ports[lp].virtqueuePending else { return }
        ports[lp].virtqueuePending = true
        virtqueuePendingList[virtqueuePendingCount] = Int16(lp)
        virtqueuePendingCount += 1
    }

    /// End of a batch: publish every touched used ring and signal the guest where it asked.
    func flushVirtqueues() {
        for k in 0..<virtqueuePendingCount {
            let lp = Int(virtqueuePendingList[k])
            if ports[lp].virtqueuePending { publishVirtqueues(lp) }
        }
        virtqueuePendingCount = 0
    }

    func publishVirtqueues(_ lp: Int) {
        let p = ports + lp
        p.pointee.virtqueuePending = false
        guard let pairs = p.pointee.virtqueues else { return }
        for k in 0..<Int(p.pointee.virtqueueCount) {
            let pair = pairs + k
            // An inactive pair's fields belong to the port (it may be filling them now).
            guard pair.pointee.active else { continue }
            if pair.pointee.receive != nil {
                pair.pointee.receive!.publishUsed()
                if pair.pointee.receive!.needsInterrupt() { pair.pointee.signal(receive: true) }
            }
            if pair.pointee.transmit != nil {
                pair.pointee.transmit!.publishUsed()
                if pair.pointee.transmit!.needsInterrupt() { pair.pointee.signal(receive: false) }
            }
        }
    }

    /// The guest broke a ring of `pair`: record why (the port reports it), stop using the port.
    func virtqueueBroken(_ lp: Int, _ pair: UnsafeMutablePointer<VirtioNetQueuePair>, _ e: VirtqueueError) {
        let p = ports + lp
        guard p.pointee.virtqueues != nil else { return }
        pair.pointee.recordFailure(e)
        cfg.log(.warning, "worker \(index): port \(p.pointee.id): virtqueue broken (pair \(pair.pointee.number)): \(e)")
        fail(lp, EPROTO)
    }
}
