// VhostUserPort: a vhost-user-net port (QEMU `-netdev vhost-user`, cloud-hypervisor, crosvm,
// DPDK virtio-user). Owns the front-end connection's life: its socket (server mode: a socket
// file made like a VM socket's — 0660, owner/group, a stale file replaced only if nobody
// listens; client mode: connect, retried with backoff), one protocol thread per port serving
// VhostUser.VhostUserBackend on it, and the queue pair handed to the engine: when the guest's
// receive and transmit rings both run, the port connects in the engine (`openQueue` gives a dup
// of the transmit kick eventfd, `virtqueues` the pair); when the front-end stops a ring
// (GET_VRING_BASE), resets or goes, the port disconnects first, so the worker lets go of the
// rings before their position is answered or the memory unmapped. Frames never pass here.
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

    /// Counters and state for `tapbridge ports`/`stats` and tests (read from any thread).
    public struct Status: Sendable {
        public var connections = 0
        public var connected = false
        public var negotiatedFeatures: UInt64 = 0
        public var ringsBroken = 0
        public var refused = 0
        public var lastError: String?
        public var running = false
    }

    private let lock = NSLockLite()
    private var status = Status()
    private let box = VirtioNetQueuePairBox()
    private var receiveRunning = false, transmitRunning = false
    private var kickFD: Int32 = -1
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
                log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.name = name; self.path = path; self.mode = mode; self.access = access
        self.settings = settings; self.offloads = offloads; self.log = log
    }

    deinit { stop() }

    public var currentStatus: Status { lock.withLock { status } }

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

    public func openQueue(_ index: Int) throws -> Int32? {
        lock.withLock {
            guard index == 0, receiveRunning, transmitRunning, kickFD >= 0 else { return nil }
            let fd = dup(kickFD)
            return fd >= 0 ? fd : nil
        }
    }

    public func virtqueues(_ index: Int) -> UnsafeMutablePointer<VirtioNetQueuePair>? {
        index == 0 ? box.pointer : nil
    }

    public func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction {
        // The worker stopped using the pair (a ring broke, or the kick eventfd failed). The
        // front-end resets or reconnects to run it again.
        lock.withLock { status.connected = false }   // the engine disconnects it now
        if let failure = box.pointer.pointee.failure {
            lock.withLock { status.ringsBroken += 1; status.lastError = "\(failure)" }
            log("vhost-user port '\(name)': queue broken: \(failure); waiting for the front-end to reset it")
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
                                           deviceFeatures: VirtioNetFeatures.device(offloads: offloads, queuePairs: 1))
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
    }

    /// The backend of the connection being served (protocol thread only).
    private var currentBackend: VhostUserBackend?

    // MARK: VhostUserQueueHost (protocol thread)

    public func queueStarted(_ index: Int, queue: SplitQueue, kickFD kick: Int32, callFD: Int32) {
        guard index < 2 else { return }
        let negotiated = currentBackend?.ackedFeatures ?? 0
        var connectNow = false
        lock.withLock {
            features = negotiated
            status.negotiatedFeatures = negotiated
            box.pointer.pointee.headerSize = VirtioNetFeatures.headerSize(negotiated)
            box.pointer.pointee.mergeable = negotiated & VirtioNetFeatures.mergeableRxBuffers != 0
            box.pointer.pointee.failure = nil
            if index == 0 {
                box.pointer.pointee.receive = queue
                receiveRunning = true
            } else {
                box.pointer.pointee.transmit = queue
                box.pointer.pointee.transmitKick = kick
                kickFD = kick
                transmitRunning = true
            }
            box.setCallFD(receive: index == 0, callFD)
            connectNow = receiveRunning && transmitRunning
        }
        if connectNow { connectInEngine() }
    }

    public func queueStopped(_ index: Int) -> UInt16 {
        disconnectInEngine()
        return lock.withLock {
            box.retireCalls()
            if index == 0 {
                receiveRunning = false
                let next = box.pointer.pointee.receive?.nextAvailable ?? 0
                box.pointer.pointee.receive = nil
                return next
            } else {
                transmitRunning = false
                kickFD = -1
                let next = box.pointer.pointee.transmit?.nextAvailable ?? 0
                box.pointer.pointee.transmit = nil
                return next
            }
        }
    }

    public func callChanged(_ index: Int, callFD: Int32) {
        guard index < 2 else { return }
        lock.withLock { box.setCallFD(receive: index == 0, callFD) }
    }

    private func connectInEngine() {
        guard let (engine, id, bridge) = lock.withLock({ self.engine.map { ($0, self.id!, self.bridge!) } }) else { return }
        do {
            try engine.reconnect(id, in: bridge)
            lock.withLock { status.connected = true }
            log("vhost-user port '\(name)': rings running; negotiated \(VirtioNetFeatures.describe(lock.withLock { features }))")
        } catch {
            log("vhost-user port '\(name)': cannot start its queues: \(error)")
        }
    }

    private func disconnectInEngine() {
        guard let (engine, id, bridge) = lock.withLock({ self.engine.map { ($0, self.id!, self.bridge!) } }) else { return }
        let was = lock.withLock { let c = status.connected; status.connected = false; return c }
        if was { engine.disconnect(id, in: bridge) }
    }

    /// The connection ended: the engine lets go, the pair is emptied.
    private func takeBack() {
        disconnectInEngine()
        lock.withLock {
            box.retireCalls()
            box.pointer.pointee.receive = nil
            box.pointer.pointee.transmit = nil
            receiveRunning = false; transmitRunning = false; kickFD = -1
            box.setCallFD(receive: true, -1); box.setCallFD(receive: false, -1)
            box.retireCalls()
        }
    }
}
