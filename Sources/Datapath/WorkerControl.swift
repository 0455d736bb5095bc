// WorkerControl: the worker's control side, all run on the worker thread between batches:
// commands from the engine (add, remove, disconnect a port; bridges, capture taps, admin state,
// VLAN modes), a failed descriptor reported to the engine, and the handoff rings that carry
// frames to a single-writer port (a stream socket) owned by another worker.
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Frames
import Ring

extension Worker {
    /// The port's owner is another worker: copy the frame into the ring to it.
    func handOff(_ frame: Frame, to d: Int, asIs: Bool) {
        let dp = ports + d
        let owner = Int(dp.pointee.owner)
        guard owner < cfg.workers, let ring = outboundRings[owner],
              ring._withUnsafeGuaranteedRef({ $0.push(frame, bridge: dp.pointee.bridge, port: dp.pointee.id, asIs: asIs) }) else {
            dp.pointee.counters?.countDrop(.queueFull)
            return
        }
        wakePending[owner] = true
        anyWakePending = true
        stats.add(WorkerCounter.handedOff, 1)
    }

    /// One eventfd write per owner per batch, not per frame.
    func wakeOwners() {
        anyWakePending = false
        for w in 0..<wakeFDs.count where wakePending[w] {
            wakePending[w] = false
            var one: UInt64 = 1
            _ = write(wakeFDs[w], &one, 8)
        }
    }

    /// Frames other workers handed over for ports this worker owns.
    func drainHandoffs() {
        for k in 0..<inboundCount {
            inboundRings[k]._withUnsafeGuaranteedRef { link in link.drain { entry, bytes in
                let lp = Int(bridges[Int(entry.bridge)].slotByID[Int(entry.port.rawValue)])
                guard lp >= 0 else { return }
                let (b, addr) = takeStreamBuffer(copying: bytes, count: Int(entry.length))
                guard let addr else {
                    ports[lp].counters?.countDrop(.queueFull)
                    return
                }
                var frame = Frame(bytes: UnsafeMutableRawBufferPointer(start: addr, count: Int(entry.length)),
                                  ingress: entry.port, vnet: entry.vnet, vlan: entry.vlan)
                send(&frame, to: lp, buffer: b, asIs: entry.asIs)
                release(b)
            } }
        }
    }

    // MARK: port failure and control

    /// The descriptor failed: stop using it here and let the control side decide.
    func fail(_ lp: Int, _ err: Int32) {
        let p = ports + lp
        guard p.pointee.state == LocalPortState.active else { return }
        p.pointee.state = LocalPortState.down
        cancelAll(lp)
        // Frames queued for it will never go out: sent to a port that is down, as the ones
        // after them are (not lost uncounted).
        if p.pointee.txQueued > 0 { p.pointee.counters?.add(PortCounter.drop(.portDown), UInt64(p.pointee.txQueued)) }
        drainQueue(lp)
        stats.add(WorkerCounter.portFailures, 1)
        engine.reportFailure(bridge: Int(p.pointee.bridge), port: p.pointee.id, errno: err, connection: p.pointee.connection)
    }

    func cancelAll(_ lp: Int) {
        guard let sqe = ring.sqe() else { return }
        sqe.prepareCancelFixedFile(Int32(lp))
        sqe.setUserData(UserData(kind: OpKind.cancel))
        ring.submit()
        ports[lp].readArmed = false
    }

    /// Takes the descriptor out of this worker: cancels its operations, clears its fixed-file
    /// slot, frees queued writes. In-flight writes finish later and are ignored (generation).
    func detachDescriptor(_ lp: Int) {
        let p = ports + lp
        if p.pointee.transport == .virtqueue { tearDownVirtqueuePort(lp) }
        if p.pointee.fd >= 0 {
            cancelAll(lp)
            try? ring.setFile(-1, at: lp)
            p.pointee.fd = -1
        }
        drainQueue(lp)
        if p.pointee.starved { p.pointee.starved = false; starvedCount -= 1 }
        p.pointee.generation &+= 1
        p.pointee.txInflight = 0
        p.pointee.txHeld = 0   // held copies now carry an old generation: released unsent
        p.pointee.readArmed = false
        switch p.pointee.transport {
        case .datagram: break
        case .lengthPrefixedStream: streamDetached(lp)
        case .virtqueue: break   // torn down above, before the generation moved on
        }
    }

    func processCommands() {
        controlPending = false
        drainInjected()
        let batch = inbox.withLock { i -> [(WorkerCommand, DispatchSemaphore)] in defer { i = [] }; return i }
        for (command, done) in batch {
            apply(command)
            done.signal()
        }
    }

    func apply(_ command: WorkerCommand) {
        switch command {
        case .stop:
            stopping = true
        case .addBridge(let i, let pipeline):
            guard i < Worker.maxBridges else { return }
            bridges[i].pipeline?.release()
            bridges[i].pipeline = Unmanaged.passRetained(pipeline)
            bridges[i].judges = !pipeline.handlers.isEmpty
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
            switch ports[lp].transport {
            case .datagram: break
            case .lengthPrefixedStream: tearDownStreamPort(lp)
            case .virtqueue: tearDownVirtqueuePort(lp)
            }
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
            for i in 0..<max(1, cfg.workers) {
                outboundRings[i] = i < out.count ? out[i].map { Unmanaged.passUnretained($0) } : nil
            }
            inbound = inb.compactMap { $0 }
            inboundCount = min(inbound.count, max(1, cfg.workers))
            for k in 0..<inboundCount { inboundRings[k] = Unmanaged.passUnretained(inbound[k]) }
            wakeFDs = fds
            for i in 0..<min(cfg.workers, fds.count) { wakePending[i] = false }
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

    func setVLAN(_ mode: VLANMode, slot lp: Int) {
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

    func addPort(_ spec: WorkerPortSpec) {
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
        p.pointee.transport = spec.transport
        p.pointee.maxFrame = Int32(min(spec.maxFrame, bufferSize - spec.vnetHeaderSize))
        p.pointee.vnetHeaderSize = Int32(spec.vnetHeaderSize)
        p.pointee.transmitOffloads = spec.transmitOffloads
        p.pointee.adminUp = spec.adminUp
        p.pointee.counters = spec.counters
        p.pointee.owner = Int32(spec.owner)
        p.pointee.connection = spec.connection
        p.pointee.txInflight = 0
        let blockingReads: Bool
        switch spec.transport {
        case .datagram: blockingReads = setUpDatagramPort(lp, descriptor: spec.fd)
        case .lengthPrefixedStream: blockingReads = setUpStreamPort(lp)
        case .virtqueue: blockingReads = setUpVirtqueuePort(lp, spec.virtqueues, count: spec.virtqueueCount)
        }
        setVLAN(spec.vlan, slot: lp)
        p.pointee.state = LocalPortState.down
        if spec.fd >= 0 {
            do {
                try ring.setFile(spec.fd, at: lp)
                if spec.reads && blockingReads {
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
