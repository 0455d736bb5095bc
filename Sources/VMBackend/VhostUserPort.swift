// VhostUserPort: a vhost-user-net port (QEMU `-netdev vhost-user`, cloud-hypervisor, crosvm,
// DPDK virtio-user). Owns the front-end connection's life: its socket (server mode: a socket
// file made like a VM socket's — 0660, owner/group, a stale file replaced only if nobody
// listens; client mode: connect, retried with backoff), one protocol thread per port serving
// VhostUser.VhostUserBackend on it, and the queue pairs handed to the engine. A pair is active
// when the guest's receive and transmit rings of it both run (enabled by the driver); with at
// least one active pair the port connects in the engine (`openQueue` gives a dup of the transmit
// kick eventfd, `virtqueues` the pair). With `queuePairs` > 1 the port is multi-queue: pair i is
// served by worker i mod workers (the pairs of one worker sit side by side in the box; a worker
// with several gets an epoll set of their kick eventfds as its descriptor), and a worker none of
// whose pairs is active hands its frames for the guest to one that has one (`queueWriter`), so
// a pair the driver never enables costs nothing and loses nothing. Whenever the set of active
// pairs changes, and before the front-end stops a ring (GET_VRING_BASE), resets or goes, the
// port disconnects first, so the workers let go of the rings before their position is answered
// or the memory unmapped; then it reconnects with the pairs still active. Frames never pass here.
// Its own descriptors (the listening socket, the wake-up pipe) are OwnedDescriptors: each is
// closed once, when the port lets go of it.
import Datapath
import Frames
import Glibc
import SystemCalls
import UnixSocketFiles
import VhostUser
import VirtioNet

public final class VhostUserPort: Port, VhostUserQueueHost, @unchecked Sendable {
    public enum Mode: String, Sendable { case server, client }

    public let name: String
    public let path: String
    public let mode: Mode
    public let access: SocketFileAccess
    public let settings: PortSettings
    public var kind: String { "vhost-user" }
    public var framing: Framing { .virtqueue }
    /// Offloads offered to the front-end (the guest may take fewer).
    public let offloads: VirtioNetFeatures.Offloads
    /// Queue pairs offered (GET_QUEUE_NUM; more than 1 also offers MQ).
    public let queuePairs: Int

    /// Counters and state for `tapbridge ports`/`stats` and tests (read from any thread).
    public struct Status: Sendable {
        public var connections = 0
        public var connected = false
        public var negotiatedFeatures: UInt64 = 0
        public var ringsBroken = 0
        public var refused = 0
        public var lastError: String?
        public var running = false
        /// Pairs whose two rings run (the driver enabled them), by pair number.
        public var activePairs: [Int] = []
        /// Frames taken from (`fromGuest`) and written to (`toGuest`) each pair, by pair number.
        public var pairFrames: [(fromGuest: UInt64, toGuest: UInt64)] = []
    }

    private let lock = NSLockLite()
    private var status = Status()
    private let box: VirtioNetQueuePairBox
    /// Per pair number: its rings run; its transmit kick eventfd (the backend's, -1: none).
    private var receiveRunning: [Bool], transmitRunning: [Bool]
    private var kickFDs: [Int32]
    /// Per pair: active (both rings run, the pair is in the box for the workers): the port's
    /// own copy, read under its lock (the box's pairs belong to the workers while connected).
    private var activeFlags: [Bool]
    /// Per ring index: a started ring of a pair not active yet, kept here until its partner
    /// starts (the box's pairs are only written while no worker holds them).
    private var pendingQueues: [SplitQueue?]
    /// Pair i's storage slot in `box`; worker w's pairs are the slots groupStart[w]..<+groupCount[w].
    private var slotOfPair: [Int]
    private var groupStart: [Int] = [0], groupCount: [Int] = [1]
    private var workerCount = 1
    private var features: UInt64 = 0
    private var engine: Engine?
    private var bridge: Bridge?
    private var id: PortID?
    private var thread: pthread_t?
    private var stopping = false
    /// The wake-up pipe `stop` writes to (the protocol thread polls its read end).
    private var wakeRead: OwnedDescriptor?
    private var wakeWrite: OwnedDescriptor?
    private var connection: VhostUserConnection?
    /// Server mode: the listening socket (owned; its number is `listenFD` while it lives).
    private var listener: OwnedDescriptor?
    private var listenFD: Int32 = -1
    private var wakeFD: Int32 = -1, wakeWriteFD: Int32 = -1
    private let log: @Sendable (String) -> Void

    public init(name: String, path: String, mode: Mode = .server, access: SocketFileAccess = SocketFileAccess(),
                settings: PortSettings = PortSettings(), offloads: VirtioNetFeatures.Offloads = .all,
                queuePairs: Int = 1, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.name = name; self.path = path; self.mode = mode; self.access = access
        self.settings = settings; self.offloads = offloads; self.log = log
        let n = max(1, min(queuePairs, VhostUserLimits.maxQueues / 2))
        self.queuePairs = n
        box = VirtioNetQueuePairBox(count: n)
        receiveRunning = Array(repeating: false, count: n); transmitRunning = receiveRunning
        kickFDs = Array(repeating: -1, count: n)
        activeFlags = Array(repeating: false, count: n)
        pendingQueues = Array(repeating: nil, count: 2 * n)
        slotOfPair = Array(0..<n)
        layOut(workers: 1)
    }

    /// Places pair i in worker (i mod workers)'s run of slots (only while no pair is active:
    /// the slots are empty then).
    private func layOut(workers: Int) {
        workerCount = max(1, workers)
        if queuePairs == 1 {
            groupStart = [0]; groupCount = [1]; slotOfPair = [0]
        } else {
            groupStart = Array(repeating: 0, count: workerCount); groupCount = groupStart
            var slot = 0
            for w in 0..<workerCount {
                groupStart[w] = slot
                for i in stride(from: w, to: queuePairs, by: workerCount) {
                    slotOfPair[i] = slot
                    slot += 1
                    groupCount[w] += 1
                }
            }
        }
        for i in 0..<queuePairs { box.pointer[slotOfPair[i]].number = Int32(i) }
    }

    /// Storage of pair `i`.
    private func pair(_ i: Int) -> UnsafeMutablePointer<VirtioNetQueuePair> { box.pointer + slotOfPair[i] }

    /// Pair i has both rings running (lock held).
    private func runs(_ i: Int) -> Bool { receiveRunning[i] && transmitRunning[i] }

    deinit { stop() }

    public var currentStatus: Status {
        lock.withLock {
            var s = status
            s.activePairs = (0..<queuePairs).filter { activeFlags[$0] }
            s.pairFrames = (0..<queuePairs).map { box.frames(slot: slotOfPair[$0]) }
            return s
        }
    }

    // MARK: Port

    public var vnetHeaderSize: Int { lock.withLock { VirtioNetFeatures.headerSize(features) } }

    /// What the guest accepts from us (its negotiated GUEST_* features).
    public var transmitOffloads: VirtioNetOffloads {
        let f = lock.withLock { features }
        var o = VirtioNetOffloads()
        if f & VirtioNetFeatures.guestCsum != 0 {
            o.insert(.checksum)
            if f & VirtioNetFeatures.guestTSO4 != 0 { o.insert(.tso4) }
            if f & VirtioNetFeatures.guestTSO6 != 0 { o.insert(.tso6) }
            if f & VirtioNetFeatures.guestECN != 0 { o.insert(.tsoECN) }
        }
        return o
    }

    public var isMultiQueue: Bool { queuePairs > 1 }

    /// The descriptor worker `index` polls: the transmit kick eventfd of its one active pair (a
    /// dup), else an epoll set of its active pairs' kick eventfds (none: a set that never fires).
    /// nil while no pair is active (the port stays disconnected).
    public func openQueue(_ index: Int) throws -> Int32? {
        try lock.withLock { () throws -> Int32? in
            guard (0..<queuePairs).contains(where: { activeFlags[$0] }) else { return nil }
            guard queuePairs > 1 else {
                guard index == 0 else { return nil }
                let fd = dup(kickFDs[0])
                return fd >= 0 ? fd : nil
            }
            guard index < workerCount else { return nil }
            let mine = stride(from: index, to: queuePairs, by: workerCount).filter { activeFlags[$0] }
            if mine.count == 1 {
                let fd = dup(kickFDs[mine[0]])
                if fd < 0 { throw VhostUserPortError("vhost-user port '\(name)': dup of a kick eventfd: \(String(cString: strerror(errno)))") }
                return fd
            }
            let kicks = mine.map { kickFDs[$0] }
            let ep = makeKickSet(kicks)
            if ep < 0 { throw VhostUserPortError("vhost-user port '\(name)': an epoll set of the kick eventfds of pairs \(mine): \(String(cString: strerror(-ep)))") }
            return ep
        }
    }

    public func virtqueues(_ index: Int) -> UnsafeMutablePointer<VirtioNetQueuePair>? {
        lock.withLock {
            guard queuePairs > 1 else { return index == 0 ? box.pointer : nil }
            guard index < workerCount, groupCount[index] > 0 else { return nil }
            return box.pointer + groupStart[index]
        }
    }

    public func virtqueueCount(_ index: Int) -> Int {
        lock.withLock { queuePairs > 1 ? (index < workerCount ? groupCount[index] : 0) : 1 }
    }

    /// Worker `index` writes its frames for the guest itself when one of its pairs is active;
    /// otherwise the worker of the lowest active pair does.
    public func queueWriter(_ index: Int) -> Int {
        lock.withLock {
            guard queuePairs > 1 else { return index }
            let active = (0..<queuePairs).filter { activeFlags[$0] }
            if active.contains(where: { $0 % workerCount == index }) { return index }
            return (active.first ?? index) % workerCount
        }
    }

    public func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction {
        // The worker stopped using the pair (a ring broke, or the kick eventfd failed). The
        // front-end resets or reconnects to run it again.
        lock.withLock { status.connected = false }   // the engine disconnects it now
        for f in box.takeFailures() {
            let number = slotOfPair.firstIndex(of: f.slot) ?? f.slot
            lock.withLock { status.ringsBroken += 1; status.lastError = "\(f.error)" }
            log("vhost-user port '\(name)': queue pair \(number) broken: \(f.error); waiting for the front-end to reset it")
        }
        return .disconnect
    }

    // MARK: life

    /// Starts serving: binds (server) or connects (client) and re-attaches in `engine` as the
    /// front-end sets up its rings. `id` is the port's id in `bridge` (from `attach`).
    public func start(engine: Engine, id: PortID, bridge: Bridge) throws {
        let pipe: PipeEnds
        do { pipe = try Syscall.pipe(nonblocking: true) } catch {
            throw UnixSocketError("create a wake-up pipe for", path, errno: error.errno)
        }
        // (On a throw below, `pipe`'s ends close as it goes out of scope.)
        var listening: OwnedDescriptor?
        if mode == .server {
            listening = try UnixSocketFile.listenStream(at: path, access: access)
            // A front-end that does not retry (QEMU 7.2, testpmd) may connect from here on.
            log("vhost-user port '\(name)': listening on \(path)")
        }
        let readFD = pipe.readEnd.rawValue, writeFD = pipe.writeEnd.rawValue
        var readEnd: OwnedDescriptor? = pipe.readEnd, writeEnd: OwnedDescriptor? = pipe.writeEnd
        let listeningFD = listening?.rawValue ?? -1
        lock.withLock {
            self.engine = engine; self.id = id; self.bridge = bridge
            layOut(workers: engine.configuration.workers)
            wakeRead = readEnd.take(); wakeWrite = writeEnd.take(); wakeFD = readFD; wakeWriteFD = writeFD
            listener = listening.take(); listenFD = listeningFD
            stopping = false; status.running = true
        }
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        pthread_create(&t, nil, { arg in
            let port = Unmanaged<VhostUserPort>.fromOpaque(arg!).takeRetainedValue()
            port.run()
            return nil
        }, box.toOpaque())
        lock.withLock { thread = t }
    }

    /// Stops the protocol thread, ends the connection, removes the socket file (server).
    public func stop() {
        let (t, w): (pthread_t?, Int32) = lock.withLock {
            stopping = true
            connection?.shutdown()
            defer { thread = nil }
            return (thread, wakeWriteFD)
        }
        if w >= 0 { var b: UInt8 = 1; _ = write(w, &b, 1) }
        if let t { pthread_join(t, nil) }
        lock.withLock {
            // Each closes here, once (the protocol thread has ended; nothing polls them).
            wakeRead = nil; wakeWrite = nil; wakeFD = -1; wakeWriteFD = -1
            if listenFD >= 0 { listener = nil; listenFD = -1; unlink(path) }
            status.running = false
        }
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    /// Waits up to `ms` for `fd` to be readable or the wake-up pipe; false when stopping.
    private func wait(_ fd: Int32, _ ms: Int32) -> Bool {
        var p = [pollfd(fd: lock.withLock { wakeFD }, events: Int16(POLLIN), revents: 0),
                 pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        _ = poll(&p, fd >= 0 ? 2 : 1, ms)
        return !isStopping
    }

    private func run() {
        var backoff = ReconnectBackoff(initialMilliseconds: 100, maximumMilliseconds: 2000)
        var waitingLogged = false
        while !isStopping {
            // Guest memory of connections that ended is unmapped once its grace has passed
            // (this loop wakes at least every second while no front-end is connected).
            GuestMemoryMapping.reapRetired()
            var fd: Int32 = -1
            do {
                switch mode {
                case .server:
                    guard wait(listenFD, 1000) else { return }
                    guard let accepted = try UnixSocketFile.accept(listenFD, path: path) else { continue }
                    fd = accepted.release()
                case .client:
                    fd = try UnixSocketFile.connectStream(to: path).release()
                    backoff.succeeded()
                    waitingLogged = false
                }
            } catch {
                if mode == .client {
                    if !waitingLogged { log("vhost-user port '\(name)': \(error); retrying"); waitingLogged = true }
                    guard wait(-1, Int32(backoff.failed())) else { return }
                } else {
                    log("vhost-user port '\(name)': \(error)")
                    guard wait(-1, 500) else { return }
                }
                continue
            }
            // The protocol thread reads blocking; `stop` shuts the socket down to wake it.
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
            serve(VhostUserConnection(adopting: fd))
        }
    }

    private func serve(_ conn: VhostUserConnection) {
        let config = VhostUserDeviceConfig(name: "vhost-user port '\(name)'",
                                           deviceFeatures: VirtioNetFeatures.device(offloads: offloads, queuePairs: queuePairs),
                                           queuePairs: queuePairs)
        let backend = VhostUserBackend(config: config, host: self, log: { [log] in log($0) })
        let stopNow: Bool = lock.withLock {
            if stopping { return true }
            connection = conn
            status.connections += 1
            return false
        }
        if stopNow { return }
        log("vhost-user port '\(name)': front-end connected on \(path)")
        currentBackend = backend
        let why = backend.serve(conn)
        currentBackend = nil
        lock.withLock {
            connection = nil
            status.refused += backend.counters.refused
            status.ringsBroken += backend.counters.ringsBroken
        }
        log(why)
        takeBack()
        conn.close()
        if queuePairs > 1 {
            // Which pairs carried the traffic (the workers have let go of them now).
            let frames = lock.withLock { (0..<queuePairs).map { box.frames(slot: slotOfPair[$0]) } }
            let text = frames.enumerated().map { "\($0.offset): \($0.element.fromGuest) from / \($0.element.toGuest) to the guest" }
            log("vhost-user port '\(name)': frames per queue pair since the port started: \(text.joined(separator: "; "))")
        }
    }

    /// The backend of the connection being served (protocol thread only).
    private var currentBackend: VhostUserBackend?

    // MARK: VhostUserQueueHost (protocol thread)

    public func queueStarted(_ index: Int, queue: SplitQueue, kickFD kick: Int32, callFD: Int32) {
        let i = index / 2
        guard i < queuePairs else { return }
        let negotiated = currentBackend?.ackedFeatures ?? 0
        let receive = index % 2 == 0
        // A pair that becomes active changes what the workers serve: they let go first.
        let completes = lock.withLock { receive ? transmitRunning[i] : receiveRunning[i] }
        if completes { disconnectInEngine() }
        let connectNow: Bool = lock.withLock {
            features = negotiated
            status.negotiatedFeatures = negotiated
            pendingQueues[index] = queue
            if receive { receiveRunning[i] = true } else { transmitRunning[i] = true; kickFDs[i] = kick }
            box.setCallFD(slot: slotOfPair[i], receive: receive, callFD)
            guard completes else { return false }
            // Both rings run: the pair goes into the box (no worker holds it now).
            let p = pair(i)
            p.pointee.headerSize = VirtioNetFeatures.headerSize(negotiated)
            p.pointee.mergeable = negotiated & VirtioNetFeatures.mergeableRxBuffers != 0
            p.pointee.receive = pendingQueues[2 * i]
            p.pointee.transmit = pendingQueues[2 * i + 1]
            p.pointee.transmitKick = kickFDs[i]
            p.pointee.active = true
            pendingQueues[2 * i] = nil; pendingQueues[2 * i + 1] = nil
            activeFlags[i] = true
            return true
        }
        if connectNow { connectInEngine() }
    }

    public func queueStopped(_ index: Int) -> UInt16 {
        let i = index / 2
        guard i < queuePairs else { return 0 }
        let wasActive = lock.withLock { activeFlags[i] }
        if wasActive { disconnectInEngine() }
        let (next, reconnect): (UInt16, Bool) = lock.withLock {
            box.retireCalls()
            let receive = index % 2 == 0
            if wasActive {
                // The pair leaves the box; its other ring, still running, waits here again.
                let p = pair(i)
                pendingQueues[2 * i] = p.pointee.receive
                pendingQueues[2 * i + 1] = p.pointee.transmit
                p.pointee.receive = nil; p.pointee.transmit = nil
                p.pointee.transmitKick = -1
                p.pointee.active = false
                activeFlags[i] = false
            }
            let next = pendingQueues[index]?.nextAvailable ?? 0
            pendingQueues[index] = nil
            if receive { receiveRunning[i] = false } else { transmitRunning[i] = false; kickFDs[i] = -1 }
            return (next, wasActive && activeFlags.contains(true))
        }
        // The other pairs keep running (a driver that uses fewer pairs now).
        if reconnect { connectInEngine() }
        return next
    }

    public func callChanged(_ index: Int, callFD: Int32) {
        let i = index / 2
        guard i < queuePairs else { return }
        lock.withLock { box.setCallFD(slot: slotOfPair[i], receive: index % 2 == 0, callFD) }
    }

    private func connectInEngine() {
        guard let (engine, id, bridge) = lock.withLock({ self.engine.map { ($0, self.id!, self.bridge!) } }) else { return }
        do {
            try engine.reconnect(id, in: bridge)
            let (f, active) = lock.withLock { () -> (UInt64, [Int]) in
                status.connected = true
                return (features, (0..<queuePairs).filter { activeFlags[$0] })
            }
            let pairs = queuePairs > 1
                ? "; queue pairs active: \(active.map { "\($0) (worker \($0 % workerCount))" }.joined(separator: ", ")) of \(queuePairs)" : ""
            log("vhost-user port '\(name)': rings running; negotiated \(VirtioNetFeatures.describe(f))\(pairs)")
        } catch {
            log("vhost-user port '\(name)': cannot start its queues: \(error)")
        }
    }

    /// When this returns no worker holds any pair. Asked of the engine even when the port
    /// thinks it is not connected: after a broken ring (`queueFailed`) the engine disconnects
    /// the port a moment later, and until then the workers serving the other pairs still run
    /// them (the engine no-ops a port that is not connected, and waits for one being failed).
    private func disconnectInEngine() {
        guard let (engine, id, bridge) = lock.withLock({ self.engine.map { ($0, self.id!, self.bridge!) } }) else { return }
        lock.withLock { status.connected = false }
        engine.disconnect(id, in: bridge)
    }

    /// The connection ended: the engine lets go, the pair is emptied.
    private func takeBack() {
        disconnectInEngine()
        lock.withLock {
            box.retireCalls()
            for i in 0..<queuePairs {
                let p = pair(i)
                p.pointee.active = false
                p.pointee.receive = nil
                p.pointee.transmit = nil
                p.pointee.transmitKick = -1
                activeFlags[i] = false
                pendingQueues[2 * i] = nil; pendingQueues[2 * i + 1] = nil
                receiveRunning[i] = false; transmitRunning[i] = false; kickFDs[i] = -1
                box.setCallFD(slot: slotOfPair[i], receive: true, -1); box.setCallFD(slot: slotOfPair[i], receive: false, -1)
            }
            box.retireCalls()
        }
    }
}

/// A vhost-user port could not hand its queues to the engine.
public struct VhostUserPortError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
