// Worker: one thread, one io_uring. Reads are always in flight on every queue it reads
// (multishot read + provided-buffer ring, or single-shot reads with buffer selection); each
// frame runs through its bridge's handler pipeline and leaves by writev (vnet header, VLAN tag
// and stream length prefix as separate iovecs, the frame itself never copied). Writes prepared
// while handling one batch of completions are submitted together by the next io_uring_enter.
// Everything the hot path touches is preallocated; buffers shared by a flood carry a refcount.
#if canImport(Glibc)
import Glibc
#endif
import Capture
import Dispatch
import Foundation
import Frames
import Ring
import Synchronization
import Tap
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
    var inbound: [HandoffRing] = []
    var wakeFDs: [Int32] = []
    var wakePending: UnsafeMutablePointer<Bool> = .allocate(capacity: 256)
    var anyWakePending = false

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
        refcount = .allocate(capacity: ringCount + streamCount)
        refcount.initialize(repeating: 0, count: ringCount + streamCount)
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
        context = HandlerContext(now: 0, worker: index)
        eventFD = tb_eventfd()
    }

    deinit {
        for i in 0..<Worker.maxPorts { ports[i].rxBuffer?.deallocate(); ports[i].batchIov?.deallocate() }
        for i in 0..<Worker.maxBridges { bridges[i].slotByID.deallocate(); bridges[i].pipeline?.release() }
        bridges.deallocate(); ports.deallocate(); scratch.deallocate(); iov.deallocate()
        slots.deallocate(); refcount.deallocate(); streamFree.deallocate(); streamSlab.deallocate()
        eventValue.deallocate(); stats.deallocate(); wakePending.deallocate(); vlanAllowed.deallocate()
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
            let r = ring.submitAndWait(1)
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
            context.now = monotonicNanoseconds()
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
            if !inbound.isEmpty { drainHandoffs() }
            buffers.publish()
            if starvedCount > 0 { rearmStarved() }
            if anyWakePending { wakeOwners() }
            if controlPending { processCommands() }
        }
    }

    /// Submits what is prepared and handles the writes that submit completed. A finished stream
    /// write may start its port's next batch at once, so this repeats (a few times at most)
    /// while such follow-up writes are waiting.
    private func flushWrites(rounds: Int = 4) {
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
    private func takeWriteCompletions(postedSince mark: UInt32) {
        let n = ring.takeCompletions(postedSince: mark, replacingWith: UserData(kind: OpKind.taken).rawValue) { c in
            let ud = UserData(rawValue: c.userData)
            guard ud.kind == OpKind.write else { return false }
            handleWrite(c, Int(ud.index))
            return true
        }
        if n > 0 { stats.add(WorkerCounter.writesTakenEarly, UInt64(n)) }
    }

    @inline(__always)
    private func handle(_ c: Completion) {
        let ud = UserData(rawValue: c.userData)
        switch ud.kind {
        case OpKind.read: handleRead(c, ud)
        case OpKind.write: handleWrite(c, Int(ud.index))
        case OpKind.streamRead: handleStreamRead(c, ud)
        case OpKind.control:
            controlPending = true
            armControlRead()
        default: break
        }
    }

    // MARK: reading

    private func armControlRead() {
        guard let sqe = ring.sqe() else { return }
        sqe.prepareRead(fd: eventFD, into: UnsafeMutableRawPointer(eventValue), length: 8)
        sqe.setUserData(UserData(kind: OpKind.control))
    }

    private func armRead(_ lp: Int) {
        let p = ports + lp
        guard p.pointee.state == LocalPortState.active, p.pointee.reads, !p.pointee.readArmed,
              let sqe = ring.sqe() else { return }
        let ud: UserData
        if p.pointee.stream {
            let cap = streamCapacity
            if p.pointee.rxBuffer == nil { p.pointee.rxBuffer = .allocate(byteCount: cap, alignment: 64) }
            sqe.prepareRead(fd: Int32(lp), into: p.pointee.rxBuffer! + Int(p.pointee.rxFill),
                            length: UInt32(cap - Int(p.pointee.rxFill)))
            ud = UserData(kind: OpKind.streamRead, port: UInt16(lp), generation: p.pointee.generation)
        } else if multishot {
            sqe.prepareReadMultishot(fd: Int32(lp), bufferGroup: buffers.group)
            ud = UserData(kind: OpKind.read, port: UInt16(lp), generation: p.pointee.generation)
        } else {
            sqe.prepareReadSelect(fd: Int32(lp), bufferGroup: buffers.group, length: UInt32(bufferSize))
            ud = UserData(kind: OpKind.read, port: UInt16(lp), generation: p.pointee.generation)
        }
        sqe.useFixedFile()
        sqe.setUserData(ud)
        p.pointee.readArmed = true
    }

    private var streamCapacity: Int { 4 + bufferSize }

    private func markStarved(_ lp: Int) {
        if !ports[lp].starved { ports[lp].starved = true; starvedCount += 1 }
    }

    private func rearmStarved() {
        var left = starvedCount
        starvedCount = 0
        var lp = 0
        while left > 0 && lp < Worker.maxPorts {
            if ports[lp].starved {
                ports[lp].starved = false
                left -= 1
                armRead(lp)
                stats.add(WorkerCounter.readRearms, 1)
            }
            lp += 1
        }
    }

    @inline(__always)
    private func handleRead(_ c: Completion, _ ud: UserData) {
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

    /// A byte stream of (4-byte big-endian length, frame): each complete frame is copied into
    /// a stream buffer (it may straddle reads) and delivered; the remainder moves to the front.
    private func handleStreamRead(_ c: Completion, _ ud: UserData) {
        let lp = Int(ud.port)
        let p = ports + lp
        guard p.pointee.generation == ud.generation, p.pointee.state == LocalPortState.active else { return }
        p.pointee.readArmed = false
        if c.result <= 0 {
            let e = -c.result
            if c.result == 0 { fail(lp, 0) } else if e == EAGAIN || e == EINTR { armRead(lp) } else if e != ECANCELED { fail(lp, e) }
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
                p.pointee.counters?.add(PortCounter.firstDrop + Int(DropReason.malformed.rawValue), 1)
                cfg.log(.notice, "worker \(index): port \(p.pointee.id): closing connection: \(e)")
                fail(lp, EPROTO)
                return
            case .skip(let n, _):
                // A runt: skipped and counted; the next prefix is still where we expect it.
                p.pointee.counters?.add(PortCounter.firstDrop + Int(DropReason.malformed.rawValue), 1)
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
            if streamFreeCount > 0 {
                streamFreeCount -= 1
                let b = streamFree[streamFreeCount]
                let addr = streamSlab + (Int(b) - ringCount) * bufferSize
                addr.copyMemory(from: buf + off + 4, byteCount: len)
                refcount[Int(b)] = 1
                deliver(lp, addr, len, b)
                release(b)
            } else {
                p.pointee.counters?.add(PortCounter.firstDrop + Int(DropReason.queueFull.rawValue), 1)
            }
            off += 4 + len
        }
        if off > 0 {
            fill -= off
            if fill > 0 { buf.copyMemory(from: buf + off, byteCount: fill) }
        }
        p.pointee.rxFill = Int32(fill)
        armRead(lp)
    }

    // MARK: forwarding

    @inline(__always)
    private func drop(_ lp: Int, _ r: DropReason) {
        ports[lp].counters?.add(PortCounter.firstDrop + Int(r.rawValue), 1)
    }

    /// Runs the pipeline on the frame at `base` (vnet header first, if the port has one) and
    /// queues its transmissions. The caller holds one reference on `buffer`.
    @inline(__always)
    private func deliver(_ lp: Int, _ base: UnsafeMutableRawPointer, _ len: Int, _ buffer: Int32) {
        let p = ports + lp
        let hs = Int(p.pointee.vnetHeaderSize)
        guard let counters = p.pointee.counters else { return }
        framesThisBatch &+= 1
        if len < hs + Frame.minimumLength {
            counters.add(PortCounter.firstDrop + Int(DropReason.malformed.rawValue), 1)
            return
        }
        let vnet = hs > 0 ? VirtioNetHeader(loadingFrom: base, size: hs) : VirtioNetHeader()
        var frame = Frame(bytes: UnsafeMutableRawBufferPointer(start: base + hs, count: len - hs),
                          ingress: p.pointee.id, vnet: vnet)
        if p.pointee.captureFlags & CaptureDirection.ingress.rawValue != 0 {
            captureFrame(p, UnsafeRawBufferPointer(frame.bytes), .ingress, tagging: .asIs)
        }
        let flen = UInt64(len - hs)
        counters.add(PortCounter.rxFrames, 1)
        counters.add(PortCounter.rxBytes, flen)
        if flen > 1514 { counters.add(PortCounter.rxLarge, 1); counters.max(PortCounter.rxLargest, flen) }

        let lb = bridges + Int(p.pointee.bridge)
        guard let pipeline = lb.pointee.pipeline else { return }
        let verdict = pipeline._withUnsafeGuaranteedRef { $0.run(&frame, context: context) }

        var targets = PortSet()
        switch verdict {
        case .drop(let reason):
            counters.add(PortCounter.firstDrop + Int(reason.rawValue), 1)
        case .forward(let id):
            if lb.pointee.slotByID[Int(id.rawValue)] >= 0 { targets.insert(id) } else {
                counters.add(PortCounter.firstDrop + Int(DropReason.noDestination.rawValue), 1)
            }
        case .forwardSet(let set):
            targets = set.intersection(lb.pointee.members)
            if targets.isEmpty { counters.add(PortCounter.firstDrop + Int(DropReason.noDestination.rawValue), 1) }
        case .flood, .continue:
            targets = lb.pointee.members
            targets.remove(frame.ingress)
        }
        if pipeline._withUnsafeGuaranteedRef({ $0.hasEgressStages }) && !targets.isEmpty {
            judgeEgress(&frame, &targets, lb, pipeline)
        }
        let mirror = frame.mirror
        if frame.vnet.needsChecksum && !frame.vnet.isGSO {
            // Complete the checksum once, before any copy leaves, if any destination cannot.
            for id in targets.union(mirror) {
                let d = Int(lb.pointee.slotByID[Int(id.rawValue)])
                if d >= 0 && !ports[d].transmitOffloads.contains(.checksum) { completeChecksum(&frame); break }
            }
        }
        if !mirror.isEmpty {
            for id in mirror {
                let d = Int(lb.pointee.slotByID[Int(id.rawValue)])
                if d >= 0 { send(&frame, to: d, buffer: buffer, asIs: true) }
            }
        }
        for id in targets {
            let d = Int(lb.pointee.slotByID[Int(id.rawValue)])
            if d >= 0 { send(&frame, to: d, buffer: buffer, asIs: false) }
        }
    }

    /// Egress filters: each destination's copy is judged for that port; a drop removes the
    /// port from `targets` and is counted against it.
    @inline(never)
    private func judgeEgress(_ frame: inout Frame, _ targets: inout PortSet, _ lb: UnsafeMutablePointer<LocalBridge>,
                             _ pipeline: Unmanaged<HandlerPipeline>) {
        for id in targets {
            let v = pipeline._withUnsafeGuaranteedRef { $0.runEgress(&frame, to: id, context: context) }
            if case .drop(let reason) = v {
                targets.remove(id)
                let d = Int(lb.pointee.slotByID[Int(id.rawValue)])
                if d >= 0 { ports[d].counters?.add(PortCounter.firstDrop + Int(reason.rawValue), 1) }
            }
        }
    }

    /// Copies a frame into the port's capture tap (only called for captured ports). Egress
    /// frames get the VLAN rewrite the port applies, so the capture shows what leaves.
    @inline(never)
    private func captureFrame(_ p: UnsafeMutablePointer<LocalPort>, _ bytes: UnsafeRawBufferPointer, _ direction: CaptureDirection,
                              tagging: EgressTagging) {
        guard let tap = p.pointee.captureTap else { return }
        var tag: UInt32 = 0
        var strip = false
        switch tagging {
        case .insertTag(let vid): tag = 0x8100_0000 | UInt32(vid & 0x0FFF)
        case .stripTag: strip = true
        default: break
        }
        tap._withUnsafeGuaranteedRef {
            $0.offer(bytes, interface: p.pointee.captureInterface, direction: direction, tag: tag, strip: strip)
        }
    }

    private func completeChecksum(_ frame: inout Frame) {
        if completePartialChecksum(frame.bytes, start: Int(frame.vnet.checksumStart), offset: Int(frame.vnet.checksumOffset)) {
            frame.vnet.flags &= ~VirtioNetHeader.flagNeedsChecksum
            frame.vnet.flags |= VirtioNetHeader.flagDataValid
        }
    }

    /// Queues one transmission of `frame` to local port `d`; drops (counted against `d`) when
    /// the port is down, the VLAN is not carried there, it cannot take the offload, or its
    /// transmit queue is full.
    @inline(__always)
    private func send(_ frame: inout Frame, to d: Int, buffer: Int32, asIs: Bool) {
        let dp = ports + d
        guard let dc = dp.pointee.counters else { return }
        guard dp.pointee.state == LocalPortState.active, dp.pointee.adminUp else {
            dc.add(PortCounter.firstDrop + Int(DropReason.portDown.rawValue), 1)
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
                dc.add(PortCounter.firstDrop + Int(DropReason.vlan.rawValue), 1)
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
                dc.add(PortCounter.firstDrop + Int(DropReason.offload.rawValue), 1)
            } else if tagging != .asIs {
                dc.add(PortCounter.firstDrop + Int(DropReason.offload.rawValue), 1)
            }
            return
        }
        let held = dp.pointee.txQueued + dp.pointee.txInflight
        // Past half of the worker's ring buffers out, no port takes more than a fair share:
        // ports whose peers stopped reading cannot hold every buffer and stall all reads.
        if held >= depth || (held >= fairShare && buffersOut > ringCount / 2 && Int(buffer) < ringCount) {
            dc.add(PortCounter.firstDrop + Int(DropReason.queueFull.rawValue), 1)
            return
        }
        let si = freeSlot
        guard si >= 0 else {
            stats.add(WorkerCounter.slotsExhausted, 1)
            dc.add(PortCounter.firstDrop + Int(DropReason.queueFull.rawValue), 1)
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
        if dp.pointee.stream {
            sc.storeBytes(of: UInt32(frameLen + hs).bigEndian, as: UInt32.self)
            v[n] = iovec(iov_base: sc, iov_len: 4); n += 1
        }
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
                           iovCount: Int32(n), remaining: Int32(frameLen + hs + (dp.pointee.stream ? 4 : 0)),
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

    /// The port's owner is another worker: copy the frame into the ring to it.
    private func handOff(_ frame: Frame, to d: Int, asIs: Bool) {
        let dp = ports + d
        let owner = Int(dp.pointee.owner)
        guard owner < outbound.count, let ring = outbound[owner],
              ring.push(frame, bridge: dp.pointee.bridge, port: dp.pointee.id, asIs: asIs) else {
            dp.pointee.counters?.add(PortCounter.firstDrop + Int(DropReason.queueFull.rawValue), 1)
            return
        }
        wakePending[owner] = true
        anyWakePending = true
        stats.add(WorkerCounter.handedOff, 1)
    }

    /// One eventfd write per owner per batch, not per frame.
    private func wakeOwners() {
        anyWakePending = false
        for w in 0..<wakeFDs.count where wakePending[w] {
            wakePending[w] = false
            var one: UInt64 = 1
            _ = write(wakeFDs[w], &one, 8)
        }
    }

    /// Frames other workers handed over for ports this worker owns.
    private func drainHandoffs() {
        for link in inbound {
            link.drain { entry, bytes in
                let lp = Int(bridges[Int(entry.bridge)].slotByID[Int(entry.port.rawValue)])
                guard lp >= 0 else { return }
                guard streamFreeCount > 0 else {
                    ports[lp].counters?.add(PortCounter.firstDrop + Int(DropReason.queueFull.rawValue), 1)
                    return
                }
                streamFreeCount -= 1
                let b = streamFree[streamFreeCount]
                let addr = streamSlab + (Int(b) - ringCount) * bufferSize
                addr.copyMemory(from: bytes, byteCount: Int(entry.length))
                refcount[Int(b)] = 1
                var frame = Frame(bytes: UnsafeMutableRawBufferPointer(start: addr, count: Int(entry.length)),
                                  ingress: entry.port, vnet: entry.vnet, vlan: entry.vlan)
                send(&frame, to: lp, buffer: b, asIs: entry.asIs)
                release(b)
            }
        }
    }

    @inline(__always)
    private func submit(_ si: Int) {
        let s = slots + si
        let d = Int(s.pointee.port)
        guard let sqe = ring.sqe() else {
            ports[d].counters?.add(PortCounter.txErrors, 1)
            finishSlot(si)
            return
        }
        s.pointee.batchNext = -1
        if let bi = ports[d].batchIov, ports[d].stream, ports[d].txHead >= 0 {
            sqe.prepareWritev(fd: Int32(d), iovecs: bi, count: gatherStreamBatch(si, into: bi))
        } else {
            let first = Int(s.pointee.iovFirst)
            sqe.prepareWritev(fd: Int32(d), iovecs: iov + si * Worker.iovecsPerSlot + first,
                              count: Int(s.pointee.iovCount) - first)
        }
        sqe.useFixedFile()
        sqe.setUserData(UserData(kind: OpKind.write, index: UInt32(si)))
        ports[d].txInflight += 1
    }

    /// Writes from one stream-socket writev into `bi`: slot `si` first, then frames taken
    /// from the port's transmit queue, linked through `batchNext`. Returns the iovec count.
    private func gatherStreamBatch(_ si: Int, into bi: UnsafeMutablePointer<iovec>) -> Int {
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

    @inline(__always)
    private func handleWrite(_ c: Completion, _ si: Int) {
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
        if dp.pointee.stream {
            completeStreamWrite(si, d, res)
            return
        }
        if let dc = dp.pointee.counters { countWrite(dc, res, s.pointee.frameBytes) }
        kick(d)
        finishSlot(si)
    }

    @inline(__always)
    private func countWrite(_ dc: CounterBlock, _ res: Int32, _ frameBytes: Int32) {
        if res >= 0 {
            dc.add(PortCounter.txFrames, 1)
            dc.add(PortCounter.txBytes, UInt64(frameBytes))
            if frameBytes > 1514 { dc.add(PortCounter.txLarge, 1) }
        } else if res == -EAGAIN || res == -ENOBUFS || res == -ENOMEM {
            dc.add(PortCounter.firstDrop + Int(DropReason.queueFull.rawValue), 1)
        } else if res != -ECANCELED {
            dc.add(PortCounter.txErrors, 1)
        }
    }

    /// A stream writev finished: the frames it carried completely are done; if the socket took
    /// only part, the rest (starting mid-frame) goes back to the head of the queue, in order.
    private func completeStreamWrite(_ si: Int, _ d: Int, _ res: Int32) {
        let dp = ports + d
        guard res > 0 else {
            var cur = si
            while cur >= 0 {
                let next = Int(slots[cur].batchNext)
                if let dc = dp.pointee.counters { countWrite(dc, res == 0 ? -EIO : res, slots[cur].frameBytes) }
                finishSlot(cur)
                cur = next
            }
            if res == -EPIPE || res == -ECONNRESET { fail(d, -res) } else { kick(d) }
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

    /// Frees every slot of a write that no longer counts (its port went or was reconnected).
    private func finishBatch(_ si: Int) {
        var cur = si
        while cur >= 0 {
            let next = Int(slots[cur].batchNext)
            finishSlot(cur)
            cur = next
        }
    }

    /// Part of a frame went out: skip those bytes in its iovecs.
    private func skipWritten(_ si: Int, _ written: Int) {
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

    @inline(__always)
    private func kick(_ d: Int) {
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
    private func finishSlot(_ si: Int) {
        let s = slots + si
        release(s.pointee.buffer)
        s.pointee.buffer = -1
        s.pointee.next = freeSlot
        freeSlot = Int32(si)
    }

    /// Drops one reference; the last one returns the buffer to the kernel's ring (or the
    /// stream pool).
    @inline(__always)
    private func release(_ b: Int32) {
        let i = Int(b)
        refcount[i] -= 1
        if refcount[i] == 0 {
            if i < ringCount { buffers.give(UInt16(i)); buffersOut -= 1 } else { streamFree[streamFreeCount] = b; streamFreeCount += 1 }
        }
    }

    /// Frees queued (not yet submitted) transmissions of a port.
    private func drainQueue(_ d: Int) {
        let dp = ports + d
        var si = dp.pointee.txHead
        while si >= 0 {
            let next = slots[Int(si)].next
            finishSlot(Int(si))
            si = next
        }
        dp.pointee.txHead = -1; dp.pointee.txTail = -1; dp.pointee.txQueued = 0
    }

    // MARK: port failure and control

    /// The descriptor failed: stop using it here and let the control side decide.
    private func fail(_ lp: Int, _ err: Int32) {
        let p = ports + lp
        guard p.pointee.state == LocalPortState.active else { return }
        p.pointee.state = LocalPortState.down
        cancelAll(lp)
        drainQueue(lp)
        stats.add(WorkerCounter.portFailures, 1)
        engine.reportFailure(bridge: Int(p.pointee.bridge), port: p.pointee.id, errno: err)
    }

    private func cancelAll(_ lp: Int) {
        guard let sqe = ring.sqe() else { return }
        sqe.prepareCancelFixedFile(Int32(lp))
        sqe.setUserData(UserData(kind: OpKind.cancel))
        ring.submit()
        ports[lp].readArmed = false
    }

    /// Takes the descriptor out of this worker: cancels its operations, clears its fixed-file
    /// slot, frees queued writes. In-flight writes finish later and are ignored (generation).
    private func detachDescriptor(_ lp: Int) {
        let p = ports + lp
        if p.pointee.fd >= 0 {
            cancelAll(lp)
            try? ring.setFile(-1, at: lp)
            p.pointee.fd = -1
        }
        drainQueue(lp)
        if p.pointee.starved { p.pointee.starved = false; starvedCount -= 1 }
        p.pointee.generation &+= 1
        p.pointee.txInflight = 0
        p.pointee.readArmed = false
        p.pointee.rxFill = 0
    }

    private func processCommands() {
        controlPending = false
        let batch = inbox.withLock { i -> [(WorkerCommand, DispatchSemaphore)] in defer { i = [] }; return i }
        for (command, done) in batch {
            apply(command)
            done.signal()
        }
    }

    private func apply(_ command: WorkerCommand) {
        switch command {
        case .stop:
            stopping = true
        case .addBridge(let i, let pipeline):
            guard i < Worker.maxBridges else { return }
            bridges[i].pipeline?.release()
            bridges[i].pipeline = Unmanaged.passRetained(pipeline)
        case .addPort(let spec):
            addPort(spec)
        case .removePort(let b, let id):
            let lb = bridges + b
            let lp = Int(lb.pointee.slotByID[Int(id.rawValue)])
            guard lp >= 0 else { return }
            detachDescriptor(lp)
            ports[lp].state = LocalPortState.free
            ports[lp].counters = nil
            ports[lp].captureFlags = 0; ports[lp].captureTap = nil
            ports[lp].rxBuffer?.deallocate(); ports[lp].rxBuffer = nil
            ports[lp].batchIov?.deallocate(); ports[lp].batchIov = nil
            setVLAN(.unaware, slot: lp)
            lb.pointee.slotByID[Int(id.rawValue)] = -1
            lb.pointee.members.remove(id)
        case .disconnectPort(let b, let id):
            let lp = Int(bridges[b].slotByID[Int(id.rawValue)])
            guard lp >= 0 else { return }
            detachDescriptor(lp)
            ports[lp].state = LocalPortState.down
        case .setHandoff(let out, let inb, let fds):
            outbound = out
            inbound = inb.compactMap { $0 }
            wakeFDs = fds
            for i in 0..<min(256, fds.count) { wakePending[i] = false }
        case .setCapture(let b, let id, let flags, let interface, let tap):
            let lp = Int(bridges[b].slotByID[Int(id.rawValue)])
            guard lp >= 0 else { return }
            ports[lp].captureFlags = tap == nil ? 0 : flags
            ports[lp].captureInterface = interface
            ports[lp].captureTap = tap
        case .setUp(let b, let id, let up):
            let lp = Int(bridges[b].slotByID[Int(id.rawValue)])
            if lp >= 0 { ports[lp].adminUp = up }
        }
    }

    private func setVLAN(_ mode: VLANMode, slot lp: Int) {
        let bits = vlanAllowed + lp * 64
        bits.update(repeating: 0, count: 64)
        switch mode {
        case .unaware:
            ports[lp].vlanKind = 0; ports[lp].vlanPVID = 0
        case .access(let pvid):
            ports[lp].vlanKind = 1; ports[lp].vlanPVID = pvid
        case .trunk(let allowed, let native):
            ports[lp].vlanKind = 2; ports[lp].vlanPVID = native ?? 0
            for v in allowed.ids { bits[Int(v >> 6)] |= 1 << UInt64(v & 63) }
        }
    }

    private func addPort(_ spec: WorkerPortSpec) {
        let lb = bridges + spec.bridge
        var lp = Int(lb.pointee.slotByID[Int(spec.id.rawValue)])
        if lp >= 0 {
            detachDescriptor(lp)   // reconnect: the old descriptor (if any) goes
        } else {
            lp = (0..<Worker.maxPorts).first { ports[$0].state == LocalPortState.free && ports[$0].counters == nil } ?? -1
            guard lp >= 0 else {
                cfg.log(.error, "worker \(index): no free port slot for \(spec.id)")
                return
            }
        }
        let p = ports + lp
        p.pointee.bridge = Int32(spec.bridge)
        p.pointee.id = spec.id
        p.pointee.reads = spec.reads
        p.pointee.writable = spec.writable
        p.pointee.stream = spec.framing == .lengthPrefixed
        if p.pointee.stream && p.pointee.batchIov == nil {
            p.pointee.batchIov = .allocate(capacity: Worker.streamBatch * Worker.iovecsPerSlot)
        }
        p.pointee.maxFrame = Int32(min(spec.maxFrame, bufferSize - spec.vnetHeaderSize))
        p.pointee.vnetHeaderSize = Int32(spec.vnetHeaderSize)
        p.pointee.transmitOffloads = spec.transmitOffloads
        p.pointee.adminUp = spec.adminUp
        p.pointee.counters = spec.counters
        p.pointee.owner = Int32(spec.owner)
        p.pointee.txMaxInflight = p.pointee.stream ? 1 : depth
        p.pointee.txInflight = 0
        setVLAN(spec.vlan, slot: lp)
        p.pointee.state = LocalPortState.down
        if spec.fd >= 0 {
            do {
                try ring.setFile(spec.fd, at: lp)
                if spec.reads && (p.pointee.stream || !multishot) {
                    // Single-shot reads on a blocking file make io_uring wait by polling;
                    // on a non-blocking one they would return EAGAIN at once.
                    let fl = fcntl(spec.fd, F_GETFL)
                    if fl >= 0 { _ = fcntl(spec.fd, F_SETFL, fl & ~O_NONBLOCK) }
                }
                p.pointee.fd = spec.fd
                p.pointee.state = LocalPortState.active
                armRead(lp)
            } catch {
                cfg.log(.error, "worker \(index): port \(spec.id): \(error)")
            }
        }
        lb.pointee.slotByID[Int(spec.id.rawValue)] = Int16(lp)
        lb.pointee.members.insert(spec.id)
    }
}

@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
