// Worker: one thread, one io_uring. This file owns the worker's state (every array the hot path
// touches is preallocated here), its lifecycle (start, stop, commands in) and the loop: wait for
// completions, dispatch each by operation kind, hand buffers back, submit what was prepared.
//
// The rest of the worker, one concern per file:
//   WorkerReceive.swift      arming reads on every port, starved-read recovery
//   WorkerForward.swift      a received frame through its bridge's pipeline to its destinations
//   WorkerTransmit.swift     writev preparation, transmit queues, write completions, buffer release
//   WorkerControl.swift      commands (add/remove/disconnect port, capture, VLAN), failures, handoff rings
//   Injection.swift          frames the control side originates (Engine.inject), sent on wake-up
//   DatagramTransport.swift  one read/write = one frame (macvtap, tap, datagram sockets)
//   StreamTransport.swift    4-byte length-prefixed byte stream (QEMU -netdev stream)
//   VirtqueueTransport.swift virtio-net queues in guest memory (vhost-user)
//   Segmentation.swift       software TSO for ports without it
//   WorkerHold.swift         frames held past the pipeline run (Frame.hold): the timed queue
// A port's transport (`PortTransport`, WorkerState.swift) picks its way through receive and
// transmit by a `switch` in a few places; a new transport is one file plus one case there.
//
// Reads are always in flight on every queue the worker reads; each frame runs through its
// bridge's handler pipeline and leaves by writev (vnet header, VLAN tag and any framing prefix
// as separate iovecs, the frame itself never copied). Writes prepared while handling one batch of
// completions are submitted together by the next io_uring_enter. Buffers shared by a flood carry
// a refcount.
#if canImport(Glibc)
import Glibc
#endif
import Capture
import Dispatch
import Foundation
import Frames
import Ring
import Synchronization
import VhostUser
import VirtioNet
import CTapbridgeShim

final class Worker: @unchecked Sendable {
    static let iovecsPerSlot = 6
    /// Per transmit slot: stream length prefix (0..<4), vnet header (4..<16), 802.1Q tag
    /// (16..<20), and from `segmentHeaderOffset` the rewritten headers of a software segment.
    static let scratchPerSlot = 192
    static let segmentHeaderOffset = 32
    static let maxPorts = 512
    static let maxBridges = 64
    /// Frames one stream-socket writev carries at most.
    static let streamBatch = 64

    let index: Int
    unowned let engine: Engine
    let cfg: EngineConfiguration
    let ringCount: Int
    let streamCount: Int
    let depth: Int32
    /// Ring buffers out of the kernel's ring (being switched, queued or written), and the
    /// queue length past which a port may not take more of them once half are out.
    var buffersOut = 0
    let fairShare: Int32

    // Immutable, so the hot path touches them without retain/release. Created disabled on the
    // control thread; the worker thread enables the ring and is its only submitter.
    let ring: Ring
    let buffers: BufferRing
    let multishot: Bool
    let ringSetup: String
    let bufferSize: Int
    let completionBatch: Int

    // Preallocated state (see WorkerState.swift).
    let streamSlab: UnsafeMutableRawPointer
    let streamFree: UnsafeMutablePointer<Int32>
    var streamFreeCount = 0
    let refcount: UnsafeMutablePointer<Int32>
    let slots: UnsafeMutablePointer<TxSlot>
    let slotCount: Int
    let iov: UnsafeMutablePointer<iovec>
    let scratch: UnsafeMutableRawPointer
    var freeSlot: Int32 = -1
    let ports: UnsafeMutablePointer<LocalPort>
    /// Trunk ports' allowed-VLAN bitmaps, 64 words per local port slot.
    let vlanAllowed: UnsafeMutablePointer<UInt64>
    let bridges: UnsafeMutablePointer<LocalBridge>
    var starvedCount = 0
    let stats = CounterBlock(count: WorkerCounter.count)
    var context: HandlerContext

    // Control: commands arrive through `inbox`, announced by a write to `eventFD`.
    let eventFD: Int32
    let eventValue = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    let inbox = Mutex<[(WorkerCommand, DispatchSemaphore)]>([])
    var controlPending = false
    var stopping = false
    let hasExited = Atomic<Bool>(false)
    let ready = DispatchSemaphore(value: 0)
    let exited = DispatchSemaphore(value: 0)
    var startError: Error?
    var framesThisBatch: UInt64 = 0

    // Handoff rings (only with several workers and a single-descriptor stream port).
    var outbound: [HandoffRing?] = []
    /// The same rings unretained, for the per-frame `handOff` (reading `outbound` retains the
    /// ring); `outbound` keeps them alive. One entry per worker.
    let outboundRings: UnsafeMutablePointer<Unmanaged<HandoffRing>?>
    var inbound: [HandoffRing] = []
    /// The same unretained, for `drainHandoffs` on every pass of the loop (iterating `inbound`
    /// retained each ring per pass: one retain per loop pass while a vhost-user ring is polled).
    let inboundRings: UnsafeMutablePointer<Unmanaged<HandoffRing>>
    var inboundCount = 0
    var wakeFDs: [Int32] = []
    /// Frames the control side originates (`Engine.inject`, Injection.swift), drained on wake-up.
    let injection = InjectionQueue()
    /// Per worker: a frame was handed to it this batch (one eventfd write per owner per batch).
    /// Sized from the worker count (`Engine.maxWorkers` bounds it).
    let wakePending: UnsafeMutablePointer<Bool>
    var anyWakePending = false

    // Virtqueue ports (VirtqueueTransport.swift): one chain walk at a time, guest chains whose
    // frames are being written from guest memory (buffer ids from `guestChainBase`), and the
    // ports whose used rings wait to be published at the end of the batch.
    /// (held by pointer: an inout access to a class's stored property is checked at run time)
    let virtqueueChain: UnsafeMutablePointer<DescriptorChain>
    let guestChains: UnsafeMutablePointer<GuestChainRef>
    let guestChainNext: UnsafeMutablePointer<Int32>
    var freeGuestChain: Int32 = 0
    let virtqueuePendingList: UnsafeMutablePointer<Int16>
    var virtqueuePendingCount = 0
    /// Virtqueue ports whose transmit ring the loop polls (see `pollVirtqueues`); while there
    /// are any, the loop does not block in io_uring_enter.
    let virtqueuePollList: UnsafeMutablePointer<Int16>
    var virtqueuePollCount = 0

    /// Frames a handler asked to hold (WorkerHold.swift); by pointer, like `virtqueueChain`.
    let hold: UnsafeMutablePointer<HoldQueue>

    init(index: Int, engine: Engine, configuration: EngineConfiguration) throws {
        self.index = index; self.engine = engine; cfg = configuration
        bufferSize = configuration.bufferSize
        completionBatch = max(1, min(256, configuration.completionBatch))
        var rc = 1
        while rc < configuration.buffersPerWorker { rc <<= 1 }
        ringCount = rc
        ring = try Ring(entries: configuration.submissionQueueEntries,
                        completionEntries: configuration.completionQueueEntries, disabled: true)
        ringSetup = ring.features.setupMode
        guard ring.features.providedBufferRings else {
            throw EngineError("worker \(index): this kernel has no io_uring provided-buffer rings (5.19+ needed)")
        }
        try ring.registerFileTable(count: Worker.maxPorts)
        buffers = try BufferRing(ring: ring, group: 0, count: rc, bufferSize: configuration.bufferSize)
        multishot = ring.features.readMultishot && !configuration.forceSingleShotReads
        streamCount = max(1, configuration.streamBuffersPerWorker)
        depth = Int32(max(1, configuration.transmitQueueDepth))
        fairShare = max(1, depth / 8)
        streamSlab = .allocate(byteCount: streamCount * configuration.bufferSize, alignment: 64)
        streamFree = .allocate(capacity: streamCount)
        for i in 0..<streamCount { streamFree[i] = Int32(ringCount + i) }
        streamFreeCount = streamCount
        refcount = .allocate(capacity: ringCount + streamCount + Worker.guestChainCount)
        refcount.initialize(repeating: 0, count: ringCount + streamCount + Worker.guestChainCount)
        guestChains = .allocate(capacity: Worker.guestChainCount)
        guestChains.initialize(repeating: GuestChainRef(), count: Worker.guestChainCount)
        guestChainNext = .allocate(capacity: Worker.guestChainCount)
        for i in 0..<Worker.guestChainCount { guestChainNext[i] = i + 1 < Worker.guestChainCount ? Int32(i + 1) : -1 }
        virtqueuePendingList = .allocate(capacity: Worker.maxPorts)
        virtqueuePollList = .allocate(capacity: Worker.maxPorts)
        virtqueueChain = .allocate(capacity: 1)
        virtqueueChain.initialize(to: DescriptorChain())
        slotCount = max(64, configuration.transmitSlotsPerWorker)
        slots = .allocate(capacity: slotCount)
        slots.initialize(repeating: TxSlot(), count: slotCount)
        for i in 0..<slotCount { slots[i].next = i + 1 < slotCount ? Int32(i + 1) : -1 }
        freeSlot = 0
        iov = .allocate(capacity: slotCount * Worker.iovecsPerSlot)
        iov.initialize(repeating: iovec(), count: slotCount * Worker.iovecsPerSlot)
        scratch = .allocate(byteCount: slotCount * Worker.scratchPerSlot, alignment: 16)
        ports = .allocate(capacity: Worker.maxPorts)
        ports.initialize(repeating: LocalPort(), count: Worker.maxPorts)
        vlanAllowed = .allocate(capacity: Worker.maxPorts * 64)
        vlanAllowed.initialize(repeating: 0, count: Worker.maxPorts * 64)
        bridges = .allocate(capacity: Worker.maxBridges)
        for i in 0..<Worker.maxBridges {
            let map = UnsafeMutablePointer<Int16>.allocate(capacity: PortSet.capacity)
            map.initialize(repeating: -1, count: PortSet.capacity)
            (bridges + i).initialize(to: LocalBridge(slotByID: map))
        }
        wakePending = .allocate(capacity: max(1, configuration.workers))
        wakePending.initialize(repeating: false, count: max(1, configuration.workers))
        outboundRings = .allocate(capacity: max(1, configuration.workers))
        outboundRings.initialize(repeating: nil, count: max(1, configuration.workers))
        inboundRings = .allocate(capacity: max(1, configuration.workers))
        context = HandlerContext(now: 0, worker: index)
        hold = .allocate(capacity: 1)
        hold.initialize(to: HoldQueue(ringBuffers: rc, otherBuffers: streamCount))
        context.holdCapacity = hold.pointee.ringShare
        eventFD = tb_eventfd()
    }

    deinit {
        for i in 0..<Worker.maxPorts { ports[i].rxBuffer?.deallocate(); ports[i].batchIov?.deallocate() }
        for i in 0..<Worker.maxBridges { bridges[i].slotByID.deallocate(); bridges[i].pipeline?.release() }
        bridges.deallocate(); ports.deallocate(); scratch.deallocate(); iov.deallocate()
        slots.deallocate(); refcount.deallocate(); streamFree.deallocate(); streamSlab.deallocate()
        eventValue.deallocate(); stats.deallocate(); wakePending.deallocate(); vlanAllowed.deallocate()
        guestChains.deallocate(); guestChainNext.deallocate(); virtqueuePendingList.deallocate(); virtqueuePollList.deallocate()
        virtqueueChain.pointee.deallocate(); virtqueueChain.deallocate()
        outboundRings.deallocate()
        inboundRings.deallocate()
        hold.pointee.deallocate(); hold.deallocate()
        if eventFD >= 0 { close(eventFD) }
    }

    // MARK: lifecycle (control thread)

    func start() throws {
        if eventFD < 0 { throw EngineError("worker \(index): eventfd failed: \(String(cString: strerror(errno)))") }
        let t = Thread { [self] in self.run() }
        t.name = "tapbridge-worker-\(index)"
        t.start()
        ready.wait()
        if let e = startError { exited.wait(); throw e }
    }

    func stopAndJoin() {
        send(.stop)
        if hasExited.load(ordering: .acquiring) || startError == nil { exited.wait() }
    }

    /// Runs `command` on the worker thread and waits until it has been applied.
    func send(_ command: WorkerCommand) {
        if hasExited.load(ordering: .acquiring) { return }
        let done = DispatchSemaphore(value: 0)
        inbox.withLock { $0.append((command, done)) }
        var one: UInt64 = 1
        _ = write(eventFD, &one, 8)
        done.wait()
    }

    func describeMode() -> String {
        "io_uring \(ringSetup), reads: \(multishot ? "multishot read + provided-buffer ring" : "single-shot read + provided-buffer ring"), \(ringCount) x \(cfg.bufferSize) B buffers"
    }

    func statistics() -> WorkerStatistics {
        let s = stats
        return WorkerStatistics(index: index, ringSetup: ringSetup,
                                readMode: multishot ? "multishot" : "single-shot",
                                loops: s.load(WorkerCounter.loops), submitCalls: s.load(WorkerCounter.submitCalls),
                                submittedSQEs: s.load(WorkerCounter.submittedSQEs), completions: s.load(WorkerCounter.completions),
                                framesIn: s.load(WorkerCounter.framesIn), batches: s.load(WorkerCounter.batches),
                                largestBatch: s.load(WorkerCounter.largestBatch), bufferStarved: s.load(WorkerCounter.bufferStarved),
                                readRearms: s.load(WorkerCounter.readRearms), slotsExhausted: s.load(WorkerCounter.slotsExhausted),
                                portFailures: s.load(WorkerCounter.portFailures), handedOff: s.load(WorkerCounter.handedOff),
                                segmented: s.load(WorkerCounter.segmented),
                                writesTakenEarly: s.load(WorkerCounter.writesTakenEarly))
    }

    // MARK: thread body

    private func run() {
        tb_set_thread_name("tb-worker-\(index)")
        do {
            try ring.enable()
            armControlRead()
        } catch {
            startError = error
            hasExited.store(true, ordering: .releasing)
            ready.signal()
            exited.signal()
            return
        }
        ready.signal()
        loop()
        hasExited.store(true, ordering: .releasing)
        // Anyone still waiting for a command gets released.
        for (_, done) in inbox.withLock({ i -> [(WorkerCommand, DispatchSemaphore)] in defer { i = [] }; return i }) { done.signal() }
        exited.signal()
    }

    private func loop() {
        var failures = 0
        while !stopping {
            let r: Int32
            if virtqueuePollCount > 0 {
                // A polled virtqueue: submit and collect completions without sleeping (held
                // frames are released on each pass below, so they need no timed wait).
                r = ring.submitAndGetEvents()
            } else if let wait = holdTimeout() {
                // Something is held: sleep until the earliest is due at the latest (the timed
                // wait does not report how many SQEs it submitted: what was pending went).
                if wait > 0 {
                    let pending = Int32(ring.pendingSubmissions)
                    let w = ring.submitAndWait(1, timeoutNanoseconds: wait)
                    r = w >= 0 || w == -ETIME ? pending : w
                } else {
                    r = ring.submit()
                }
            } else {
                r = ring.submitAndWait(1)
            }
            if r > 0 { stats.add(WorkerCounter.submitCalls, 1); stats.add(WorkerCounter.submittedSQEs, UInt64(r)) }
            if r < 0 && r != -EINTR && r != -ETIME && r != -EAGAIN && r != -EBUSY {
                // A ring that keeps refusing would spin this thread: give up loudly instead.
                failures += 1
                if failures > 1000 {
                    cfg.log(.error, "worker \(index): io_uring_enter keeps failing (\(String(cString: strerror(-r)))); worker stopped")
                    break
                }
            } else {
                failures = 0
            }
            stats.add(WorkerCounter.loops, 1)
            context.now = MonotonicClock.nanoseconds()
            framesThisBatch = 0
            var total = 0
            let chunk = completionBatch
            while true {
                let n = ring.forEachCompletion(limit: chunk) { c in self.handle(c) }
                total += n
                if n < chunk { break }
                // A long burst: hand freed buffers back and send what this chunk produced now,
                // so reads keep buffers and write completions come back before the transmit
                // queues look full.
                buffers.publish()
                flushWrites()
            }
            stats.add(WorkerCounter.completions, UInt64(total))
            if framesThisBatch > 0 {
                stats.add(WorkerCounter.framesIn, framesThisBatch)
                stats.add(WorkerCounter.batches, 1)
                stats.max(WorkerCounter.largestBatch, framesThisBatch)
            }
            if inboundCount > 0 { drainHandoffs() }
            if hold.pointee.count > 0 { releaseHeld() }
            buffers.publish()
            if starvedCount > 0 { rearmStarved() }
            if anyWakePending { wakeOwners() }
            if virtqueuePollCount > 0 {
                // Nothing came back this pass: let whatever else wants this core run first (the
                // kernel finishing the frames we wrote, ksoftirqd, the other side) — polling must
                // not starve the work it waits for.
                if total == 0 { sched_yield() }
                pollVirtqueues()
            }
            if virtqueuePendingCount > 0 { flushVirtqueues() }
            if controlPending { processCommands() }
        }
    }

    /// Submits what is prepared and handles the writes that submit completed. A finished stream
    /// write may start its port's next batch at once, so this repeats (a few times at most)
    /// while such follow-up writes are waiting.
    func flushWrites(rounds: Int = 4) {
        var left = rounds
        while left > 0 && ring.pendingSubmissions > 0 {
            let mark = ring.completionMark
            let r = ring.submit()
            if r > 0 { stats.add(WorkerCounter.submitCalls, 1); stats.add(WorkerCounter.submittedSQEs, UInt64(r)) }
            takeWriteCompletions(postedSince: mark)
            left -= 1
        }
    }

    /// Writes to tap devices complete inside the submit that carries them, but their completions
    /// land behind every read completion the last wait produced (up to a ring of buffers).
    /// Handled in order, those writes would keep their buffers and count against their port's
    /// transmit queue while the reads before them are switched: a healthy port looks full and
    /// frames the kernel already copied out are dropped (half of them in a 64-byte flood, which
    /// made 1 worker 0.6x a plain read/write loop). Taken right after the submit instead.
    func takeWriteCompletions(postedSince mark: UInt32) {
        let n = ring.takeCompletions(postedSince: mark, replacingWith: UserData(kind: OpKind.taken).rawValue) { c in
            let ud = UserData(rawValue: c.userData)
            guard ud.kind == OpKind.write else { return false }
            handleWrite(c, Int(ud.index))
            return true
        }
        if n > 0 { stats.add(WorkerCounter.writesTakenEarly, UInt64(n)) }
    }

    @inline(__always)
    func handle(_ c: Completion) {
        let ud = UserData(rawValue: c.userData)
        switch ud.kind {
        case OpKind.read: handleDatagramRead(c, ud)
        case OpKind.write: handleWrite(c, Int(ud.index))
        case OpKind.streamRead: handleStreamRead(c, ud)
        case OpKind.kick: handleKick(c, ud)
        case OpKind.control:
            controlPending = true
            armControlRead()
        default: break
        }
    }
}
