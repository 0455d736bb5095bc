// Engine: the control side of the datapath. Owns the workers (one thread + one io_uring each),
// the bridges and their port records; attaches/detaches ports at run time by sending commands
// to the workers, handles failed ports, and sums counters for `snapshot()`.
#if canImport(Glibc)
import Glibc
#endif
import Capture
import Dispatch
import Foundation
import Frames
import PacketFilter
import Synchronization
import SystemCalls
import VirtioNet
import CTapbridgeShim

public struct EngineConfiguration: Sendable {
    /// Most worker threads an engine runs (`Engine.start` refuses more). Every pair of workers
    /// shares a handoff ring and each worker keeps per-worker state for every other one, so the
    /// cost grows with the square of the count; past a few dozen cores more workers do not help.
    public static let maxWorkers = 256

    /// Worker threads, each with its own io_uring; default: one per online CPU, at most
    /// `maxWorkers`. `Engine.start` refuses a count outside 1...maxWorkers.
    public var workers: Int
    /// Provided buffers per worker (a power of two) and their size. A buffer holds one vnet
    /// header + frame; 64 KiB + headroom lets TSO super-frames cross unsegmented.
    public var buffersPerWorker: Int = 512
    public var bufferSize: Int = 65536 + 512
    /// Extra buffers per worker for frames reassembled from byte streams.
    public var streamBuffersPerWorker: Int = 64
    /// Frames that may wait for or be in transmission to one port queue; beyond it frames
    /// for that port are dropped and counted as `queueFull`.
    public var transmitQueueDepth: Int = 128
    /// Transmit slots per worker (in-flight + queued writes over all ports).
    public var transmitSlotsPerWorker: Int = 4096
    /// Completions handled between two submissions (bounds the writes one burst can queue).
    public var completionBatch: Int = 64
    public var submissionQueueEntries: UInt32 = 1024
    public var completionQueueEntries: UInt32 = 8192
    /// Use single-shot reads even where multishot reads exist (for testing the fallback).
    public var forceSingleShotReads = false
    /// How often ports are asked whether their descriptors still work (`Port.checkAlive`).
    public var healthCheckInterval: Double = 0.5
    /// Seconds a stream port may hold part of one frame (a peer that stalls or dribbles a byte
    /// at a time mid-frame) before its connection is closed, as a failure with ETIMEDOUT, and
    /// the frame counted as `truncated`. An idle peer holds no partial frame and is never closed.
    /// Checked every `healthCheckInterval`.
    public var partialFrameTimeout: Double = 5
    /// Frames one worker may have waiting for another worker's single-descriptor stream port.
    public var handoffRingCapacity: Int = 32
    public var log: EngineLogHandler = { _, _ in }
    public var onEvent: EngineEventHandler = { _ in }

    public init(workers: Int? = nil) {
        self.workers = workers ?? max(1, min(Self.maxWorkers, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
    }
}

public struct EngineError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public final class Engine: @unchecked Sendable {
    public let configuration: EngineConfiguration
    let control = NSLock()            // serialises attach/detach/start/stop; never taken per frame
    private(set) var bridges: [Bridge] = []
    var workers: [Worker] = []
    public private(set) var isRunning = false
    private var handoffsReady = false
    private var portsRemovedCount = UInt64(0)

    // Failed ports reported by workers, handled off the datapath by the janitor thread.
    private let failures = Mutex<[FailureReport]>([])
    /// Failure reports that named a connection the port no longer has (counted for tests).
    let staleFailureReports = Atomic<UInt64>(0)
    private let failureSignal = DispatchSemaphore(value: 0)
    private var janitor: Thread?
    private let janitorDone = DispatchSemaphore(value: 0)
    private let janitorStop = Atomic<Bool>(false)

    public init(configuration: EngineConfiguration = EngineConfiguration()) {
        self.configuration = configuration
    }

    deinit {
        stop()
        for b in bridges {
            for r in b.records.values { r.counters.forEach { $0.deallocate() } }
        }
    }

    var log: EngineLogHandler { configuration.log }

    // Events are queued under the control lock and delivered after it is released, so an
    // event handler may call back into the engine (snapshot, detach, reconnect).
    private var pendingEvents: [EngineEvent] = []
    private func emit(_ e: EngineEvent) { pendingEvents.append(e) }
    private func unlockAndEmit() {
        let events = pendingEvents
        pendingEvents = []
        control.unlock()
        for e in events { configuration.onEvent(e) }
    }

    /// The bridge called `name`, if any.
    public func bridge(named name: String) -> Bridge? {
        control.lock(); defer { control.unlock() }
        return bridges.first { $0.name == name }
    }

    /// Every bridge, in the order they were added.
    public var allBridges: [Bridge] {
        control.lock(); defer { control.unlock() }
        return bridges
    }

    /// Adds a bridge running `pipeline`. `offloads`: the most the bridge may use (`[]`: no GSO).
    /// `softwareSegmentation`: keep TSO between the ports that take it and segment in software
    /// for those that do not (else GSO is negotiated off bridge-wide when one port lacks it).
    @discardableResult
    public func addBridge(name: String, pipeline: HandlerPipeline, offloads: VirtioNetOffloads = .all,
                          softwareSegmentation: Bool = true) -> Bridge {
        control.lock(); defer { unlockAndEmit() }
        let b = Bridge(name: name, pipeline: pipeline, offloadLimit: offloads, softwareSegmentation: softwareSegmentation,
                       index: bridges.count, engine: self)
        bridges.append(b)
        for w in workers { w.send(.addBridge(index: b.index, pipeline: pipeline)) }
        return b
    }

    /// Starts the workers: each creates its ring and buffers on its own thread. Ports attached
    /// before `start` begin forwarding now.
    public func start() throws {
        control.lock(); defer { unlockAndEmit() }
        guard !isRunning else { return }
        guard (1...EngineConfiguration.maxWorkers).contains(configuration.workers) else {
            throw EngineError("datapath: \(configuration.workers) worker threads requested; between 1 and \(EngineConfiguration.maxWorkers) are supported")
        }
        var started: [Worker] = []
        for i in 0..<configuration.workers {
            do {
                let w = try Worker(index: i, engine: self, configuration: configuration)
                try w.start()
                started.append(w)
            } catch {
                for s in started { s.stopAndJoin() }
                throw error
            }
        }
        workers = started
        isRunning = true
        log(.info, "datapath: \(workers.count) worker(s); \(workers[0].describeMode())")
        do {
            for b in bridges {
                for w in workers { w.send(.addBridge(index: b.index, pipeline: b.pipeline)) }
                for r in b.records.values.sorted(by: { $0.id < $1.id }) { try openAndAnnounce(r) }
            }
        } catch {
            // All or nothing: a port that cannot be opened stops the start.
            stopWorkersLocked()
            throw error
        }
        janitorStop.store(false, ordering: .relaxed)
        let t = Thread { [unowned self] in self.janitorLoop() }
        t.name = "tapbridge-janitor"
        janitor = t
        t.start()
    }

    /// Attaches `port` to `bridge`: opens its queues (one per worker for multi-queue ports),
    /// renegotiates the bridge's offloads, tells the handlers, then starts reading it.
    @discardableResult
    public func attach(_ port: any Port, to bridge: Bridge) throws -> PortID {
        control.lock(); defer { unlockAndEmit() }
        guard let id = bridge.allocatePortID() else {
            throw EngineError("bridge \(bridge.name): cannot attach '\(port.name)': all \(PortSet.capacity) ports in use")
        }
        if bridge.records.values.contains(where: { $0.port.name == port.name }) {
            throw EngineError("bridge \(bridge.name): a port named '\(port.name)' is already attached")
        }
        let r = PortRecord(id: id, port: port, bridge: bridge, workers: configuration.workers)
        bridge.records[Int(id.rawValue)] = r
        if isRunning {
            do { try openAndAnnounce(r) } catch {
                bridge.records[Int(id.rawValue)] = nil
                r.counters.forEach { $0.deallocate() }
                throw error
            }
        } else {
            bridge.renegotiateOffloads(log: log)
            bridge.publishPorts()
        }
        emit(.portAttached(bridge: bridge.name, port: id, name: port.name))
        log(.info, "bridge \(bridge.name): attached \(port.kind) port '\(port.name)' as \(id)")
        return id
    }

    private func openAndAnnounce(_ r: PortRecord) throws {
        let n = r.port.isMultiQueue ? workers.count : 1
        var fds: [Int32] = []
        do {
            for q in 0..<n {
                guard let fd = try r.port.openQueue(q) else { break }
                fds.append(fd)
            }
        } catch {
            fds.forEach { try? Syscall.close($0) }
            r.port.descriptorsClosed()
            throw error
        }
        if !r.port.isMultiQueue { r.owner = Int(r.id.rawValue) % workers.count }
        r.fds = fds
        r.connected = fds.count == n
        if r.connected { r.connection &+= 1 }
        if !r.connected && !fds.isEmpty { fds.forEach { try? Syscall.close($0) }; r.fds = [] }
        r.bridge.renegotiateOffloads(log: log)
        r.bridge.publishPorts()
        if !r.port.isMultiQueue && PortTransport(r.port.framing).needsSingleWriter { setUpHandoffs() }
        // A multi-queue port whose queue on some worker cannot take writes (a vhost-user port
        // with fewer enabled pairs than workers): that worker hands frames to the writer.
        if r.port.isMultiQueue && r.connected && workers.indices.contains(where: { writer(r, $0) != $0 }) { setUpHandoffs() }
        for w in workers { w.send(.addPort(portCommand(r, worker: w.index))) }
    }

    /// The worker writing a multi-queue port's frames on behalf of `worker` (itself normally).
    private func writer(_ r: PortRecord, _ worker: Int) -> Int {
        let w = r.port.queueWriter(worker)
        return w >= 0 && w < workers.count ? w : worker
    }

    func portCommand(_ r: PortRecord, worker: Int) -> WorkerPortSpec {
        let fd: Int32 = r.connected ? (r.port.isMultiQueue ? r.fds[worker] : r.fds[0]) : -1
        let multiWriter = r.port.isMultiQueue && r.connected ? writer(r, worker) : worker
        let queue = r.port.isMultiQueue ? worker : 0
        return WorkerPortSpec(bridge: r.bridge.index, id: r.id, fd: fd,
                              reads: r.port.isMultiQueue || r.owner == worker,
                              transport: PortTransport(r.port.framing), maxFrame: r.port.maxFrameSize, vnetHeaderSize: r.port.vnetHeaderSize,
                              transmitOffloads: r.port.transmitOffloads, vlan: r.port.settings.vlan,
                              adminUp: r.adminUp, counters: r.counters[worker],
                              writable: r.port.isMultiQueue ? multiWriter == worker : r.owner == worker || !PortTransport(r.port.framing).needsSingleWriter,
                              owner: r.port.isMultiQueue ? multiWriter : r.owner,
                              virtqueues: r.connected ? r.port.virtqueues(queue) : nil,
                              virtqueueCount: r.connected ? r.port.virtqueueCount(queue) : 0,
                              connection: r.connection)
    }

    /// Creates the worker-to-worker rings (once) that carry frames to single-descriptor
    /// stream ports owned by another worker.
    private func setUpHandoffs() {
        guard workers.count > 1, !handoffsReady else { return }
        let n = workers.count
        var rings = [[HandoffRing?]](repeating: [HandoffRing?](repeating: nil, count: n), count: n)
        for i in 0..<n { for j in 0..<n where i != j {
            rings[i][j] = HandoffRing(capacity: configuration.handoffRingCapacity, slotSize: configuration.bufferSize)
        } }
        let fds = workers.map(\.eventFD)
        for w in workers {
            w.send(.setHandoff(outbound: rings[w.index], inbound: (0..<n).map { rings[$0][w.index] }, wakeFDs: fds))
        }
        handoffsReady = true
    }

    /// Detaches port `id`: workers stop using it, its descriptors are closed, handlers are told.
    public func detach(_ id: PortID, from bridge: Bridge) {
        control.lock(); defer { unlockAndEmit() }
        guard let r = bridge.records[Int(id.rawValue)] else { return }
        remove(r)
        emit(.portDetached(bridge: bridge.name, port: id, name: r.port.name))
        log(.info, "bridge \(bridge.name): detached port '\(r.port.name)' (\(id))")
    }

    private func remove(_ r: PortRecord) {
        for w in workers { w.send(.removePort(bridge: r.bridge.index, id: r.id)) }
        closeDescriptors(r)
        r.bridge.records[Int(r.id.rawValue)] = nil
        // Every worker has acknowledged the removal: none will touch these counters again
        // (late completions for the port fail the generation check before counting).
        r.counters.forEach { $0.deallocate() }
        r.bridge.publishPorts()
        r.bridge.renegotiateOffloads(log: log)
    }

    private func closeDescriptors(_ r: PortRecord) {
        for fd in r.fds { try? Syscall.close(fd) }
        r.fds = []
        r.connected = false
        r.port.descriptorsClosed()
    }

    /// Opens a disconnected port again (`Port.openQueue`), e.g. when its VM reconnects.
    public func reconnect(_ id: PortID, in bridge: Bridge) throws {
        control.lock(); defer { unlockAndEmit() }
        // Opening needs workers (the reading one is chosen among them); before `start` the
        // port is opened by `start` itself.
        guard isRunning else { throw EngineError("bridge \(bridge.name): port \(id): engine not running") }
        guard let r = bridge.records[Int(id.rawValue)] else {
            throw EngineError("bridge \(bridge.name): no port \(id)")
        }
        if r.connected { disconnect(r) }
        try openAndAnnounce(r)
        if r.connected {
            emit(.portReconnected(bridge: bridge.name, port: id, name: r.port.name))
            log(.info, "bridge \(bridge.name): port '\(r.port.name)' reconnected")
        }
    }

    /// Takes a port's descriptors away while keeping the port (frames for it are dropped as
    /// `portDown` until `reconnect`). When this returns no worker uses what `openQueue` gave
    /// (a vhost-user port then owns its rings again).
    public func disconnect(_ id: PortID, in bridge: Bridge) {
        control.lock(); defer { unlockAndEmit() }
        guard let r = bridge.records[Int(id.rawValue)], r.connected else { return }
        disconnect(r)
        log(.info, "bridge \(bridge.name): port '\(r.port.name)' disconnected")
    }

    private func disconnect(_ r: PortRecord) {
        for w in workers { w.send(.disconnectPort(bridge: r.bridge.index, id: r.id)) }
        closeDescriptors(r)
    }

    /// Administrative state: frames for a port that is down are dropped as `portDown`
    /// (the daemon mirrors link state here).
    public func setPortUp(_ id: PortID, in bridge: Bridge, _ up: Bool) {
        control.lock(); defer { unlockAndEmit() }
        guard let r = bridge.records[Int(id.rawValue)] else { return }
        r.adminUp = up
        for w in workers { w.send(.setUp(bridge: bridge.index, id: id, up: up)) }
    }

    /// Stops the workers (joins them) and closes every port descriptor. Idempotent.
    public func stop() {
        control.lock()
        guard isRunning else { control.unlock(); return }
        stopWorkersLocked()
        control.unlock()
        janitorStop.store(true, ordering: .relaxed)
        failureSignal.signal()
        if janitor != nil { janitorDone.wait(); janitor = nil }
        log(.info, "datapath stopped")
    }

    private func stopWorkersLocked() {
        for w in workers { w.stopAndJoin() }
        workers = []
        isRunning = false
        handoffsReady = false
        for b in bridges { for r in b.records.values where !r.fds.isEmpty || r.connected { closeDescriptors(r) } }
    }

    // MARK: failed ports

    /// A port's descriptor failed: which one, why, and on which of its connections.
    struct FailureReport { var bridge: Int; var port: PortID; var errno: Int32; var connection: UInt32 }

    /// Called by a worker (on its thread) when a port's descriptor failed. `connection`: the
    /// port's connection (`PortRecord.connection`) the worker was given. A report may
    /// wait here while the janitor handles another one for the same connection and the port
    /// reconnects (another worker's report, a multi-queue port's other queue): it then names
    /// an old connection and is ignored.
    func reportFailure(bridge: Int, port: PortID, errno: Int32, connection: UInt32) {
        failures.withLock { $0.append(FailureReport(bridge: bridge, port: port, errno: errno, connection: connection)) }
        failureSignal.signal()
    }

    private func janitorLoop() {
        tb_set_thread_name("tb-janitor")
        while true {
            _ = failureSignal.wait(timeout: .now() + configuration.healthCheckInterval)
            if janitorStop.load(ordering: .relaxed) { break }
            let batch = failures.withLock { f -> [FailureReport] in defer { f = [] }; return f }
            for f in batch { handleFailure(f.bridge, f.port, f.errno, connection: f.connection) }
            for dead in deadPorts() { handleFailure(dead.bridge, dead.port, dead.errno, connection: dead.connection) }
        }
        janitorDone.signal()
    }

    /// Connected ports found dead, each with the connection found dead (the port may
    /// reconnect before `handleFailure` takes the lock again).
    private func deadPorts() -> [FailureReport] {
        control.lock(); defer { unlockAndEmit() }
        var dead: [FailureReport] = []
        let now = MonotonicClock.nanoseconds()
        let limit = UInt64(max(0, configuration.partialFrameTimeout) * 1e9)
        for b in bridges {
            for r in b.records.values where r.connected {
                let e = r.port.checkAlive()
                if e != 0 { dead.append(FailureReport(bridge: b.index, port: r.id, errno: e, connection: r.connection)); continue }
                // A stream peer stalled mid-frame (the reading worker starts the clock).
                let since = r.counters.reduce(UInt64(0)) { Swift.max($0, $1.load(PortCounter.partialSince)) }
                if since != 0 && now > since && now - since > limit {
                    log(.notice, "bridge \(b.name): port '\(r.port.name)': peer held a partial frame for more than \(configuration.partialFrameTimeout) s; closing the connection")
                    dead.append(FailureReport(bridge: b.index, port: r.id, errno: ETIMEDOUT, connection: r.connection))
                }
            }
        }
        return dead
    }

    private func handleFailure(_ bridgeIndex: Int, _ id: PortID, _ err: Int32, connection: UInt32) {
        control.lock(); defer { unlockAndEmit() }
        guard isRunning, bridgeIndex < bridges.count else { return }
        let b = bridges[bridgeIndex]
        guard let r = b.records[Int(id.rawValue)], r.connected else { return }
        if connection != r.connection {
            // About a connection already closed (the port has reconnected since): not this one's.
            staleFailureReports.add(1, ordering: .relaxed)
            return
        }
        let why = err == 0 ? "end of file" : String(cString: strerror(err))
        switch r.port.queueFailed(0, errno: err) {
        case .remove:
            remove(r)
            portsRemovedCount += 1
            log(.warning, "bridge \(b.name): port '\(r.port.name)' removed: \(why)")
            emit(.portRemoved(bridge: b.name, port: id, name: r.port.name, errno: err))
        case .disconnect:
            disconnect(r)
            log(.notice, "bridge \(b.name): port '\(r.port.name)' disconnected: \(why)")
            emit(.portDisconnected(bridge: b.name, port: id, name: r.port.name, errno: err))
        }
    }

    // MARK: capture

    /// Starts capturing `ports` of `bridge` (frames seen at their ingress, egress or both),
    /// optionally only those matching the pcap-filter `filter`, into `destination`. Each port
    /// is one pcapng interface, in the order given. A port is captured by one session at a time.
    /// The engine must be running. Stop with `CaptureSession.stop()`.
    public func startCapture(bridge: Bridge, ports: [PortID], direction: CaptureDirection = .both,
                             filter: String? = nil, destination: CaptureDestination,
                             options: CaptureOptions = CaptureOptions()) throws -> CaptureSession {
        let program: PcapProgram?
        if let f = filter, !f.trimmingCharacters(in: .whitespaces).isEmpty {
            do { program = try PcapProgram(f) } catch {
                throw EngineError("capture filter \"\(f)\": \(error)")
            }
        } else { program = nil }
        control.lock(); defer { unlockAndEmit() }
        guard isRunning else { throw EngineError("capture: the datapath is not running") }
        guard !ports.isEmpty, ports.count <= 65535 else { throw EngineError("capture: bridge \(bridge.name): no port to capture") }
        var names: [String] = []
        for id in ports {
            guard let r = bridge.records[Int(id.rawValue)] else { throw EngineError("capture: bridge \(bridge.name): no port \(id)") }
            guard r.capture == nil else { throw EngineError("capture: port '\(r.port.name)' is already being captured") }
            names.append(r.port.name)
        }
        let session = try CaptureSession(bridge: bridge, ports: ports, names: names, direction: direction,
                                         filter: program, destination: destination, options: options,
                                         workers: workers.count)
        session.startThread()
        for (i, id) in ports.enumerated() {
            bridge.records[Int(id.rawValue)]?.capture = ObjectIdentifier(session)
            for w in workers {
                w.send(.setCapture(bridge: bridge.index, id: id, flags: direction.rawValue, interface: UInt16(i),
                                   tap: Unmanaged.passUnretained(session.taps[w.index])))
            }
        }
        log(.info, "bridge \(bridge.name): capture of \(names.joined(separator: ", ")) (\(direction)) started")
        return session
    }

    /// Captures one port. See `startCapture(bridge:ports:...)`.
    public func startCapture(port: PortID, in bridge: Bridge, direction: CaptureDirection = .both,
                             filter: String? = nil, destination: CaptureDestination,
                             options: CaptureOptions = CaptureOptions()) throws -> CaptureSession {
        try startCapture(bridge: bridge, ports: [port], direction: direction, filter: filter,
                         destination: destination, options: options)
    }

    /// Whether a capture session holds port `id` of `bridge`.
    public func isCaptured(_ id: PortID, in bridge: Bridge) -> Bool {
        control.lock(); defer { control.unlock() }
        return bridge.records[Int(id.rawValue)]?.capture != nil
    }

    /// Every worker forgets the session's taps (acknowledged before this returns).
    func endCapture(_ session: CaptureSession) {
        control.lock(); defer { unlockAndEmit() }
        let me = ObjectIdentifier(session)
        for id in session.ports {
            guard let r = session.bridge.records[Int(id.rawValue)], r.capture == me else { continue }
            r.capture = nil
            for w in workers {
                w.send(.setCapture(bridge: session.bridge.index, id: id, flags: 0, interface: 0, tap: nil))
            }
        }
        log(.info, "bridge \(session.bridge.name): capture of \(session.interfaces.joined(separator: ", ")) stopped")
    }

    // MARK: counters

    /// Current counters of every bridge, port and worker. Lock-free for the datapath: workers
    /// never wait for a reader.
    public func snapshot() -> EngineSnapshot {
        control.lock(); defer { unlockAndEmit() }
        let reasons = DropReason.all
        let bs = bridges.map { b -> BridgeStatistics in
            let ports = b.records.keys.sorted().compactMap { b.records[$0] }.map { r -> PortStatistics in
                var s = PortStatistics(id: r.id, name: r.port.name, kind: r.port.kind, connected: r.connected)
                for c in r.counters {
                    s.rxFrames += c.load(PortCounter.rxFrames); s.rxBytes += c.load(PortCounter.rxBytes)
                    s.txFrames += c.load(PortCounter.txFrames); s.txBytes += c.load(PortCounter.txBytes)
                    s.txErrors += c.load(PortCounter.txErrors)
                    s.rxLargeFrames += c.load(PortCounter.rxLarge); s.txLargeFrames += c.load(PortCounter.txLarge)
                    s.largestRxFrame = Swift.max(s.largestRxFrame, c.load(PortCounter.rxLargest))
                    for reason in reasons {
                        let v = c.load(PortCounter.drop(reason))
                        if v > 0 { s.drops[reason, default: 0] += v }
                    }
                }
                return s
            }
            return BridgeStatistics(name: b.name, offloads: b.offloads.description, ports: ports)
        }
        let ws = workers.map { $0.statistics() }
        return EngineSnapshot(bridges: bs, workers: ws, portsRemoved: portsRemovedCount)
    }
}
