// VMPorts: the `vm` port kinds as Datapath ports. The engine's io_uring workers do all reads,
// writes and length-prefix framing (Framing.lengthPrefixed / .datagram); these ports only
// produce descriptors: an accepted connection, a connected client socket, an adopted fd, or a
// bound+connected datagram socket. A `VMPortSupervisor` thread re-attaches them when the VM
// comes back (Engine.reconnect), so the daemon never restarts for a VM restart.
import Datapath
import Frames
import Glibc
import SystemCalls
import UnixSocketFiles
import VirtioNet

let pollRDHUP: Int16 = 0x2000  // POLLRDHUP is not imported from glibc's headers

/// Common state: whether the engine holds a descriptor of ours, and a private duplicate of it
/// for the supervisor's liveness probe.
///
/// Why the duplicate: the engine owns (and closes) the descriptor it got from `openQueue`, and
/// tells us only afterwards (`descriptorsClosed`). Probing the engine's descriptor number from
/// the supervisor thread raced with that close: in between, the number could already belong to
/// something else (another port's socket, an io_uring), so the probe judged the wrong file —
/// a VM that had gone looked alive and its replacement was refused. A dup refers to the same
/// connection, is ours alone (an OwnedDescriptor: closed exactly once), and is replaced or
/// dropped only under `lock`, so the probe never sees a reused number.
public class VMPortBase: @unchecked Sendable {
    public let name: String
    public let settings: PortSettings
    public let limits: FrameLimits
    let lock = NSLockLite()
    /// Our duplicate of the engine's descriptor (nil when disconnected). Under `lock`.
    var probe: OwnedDescriptor?
    let log: (String) -> Void
    init(name: String, settings: PortSettings, limits: FrameLimits, log: @escaping (String) -> Void) {
        self.name = name; self.settings = settings; self.limits = limits; self.log = log
    }
    public var isConnected: Bool { lock.withLock { probe?.rawValue != nil } }
    public var maxFrameSize: Int { limits.maxFrame }
    /// Hands `connection` to the engine (which owns and closes the raw number from here on),
    /// keeping a duplicate for the probe; nil: no connection, no probe.
    func handedOut(_ connection: consuming OwnedDescriptor?) -> Int32? {
        guard let connection else {
            lock.withLock { probe = nil }
            return nil
        }
        var duplicate = try? connection.duplicate()   // (a failed dup reads as disconnected, as before)
        lock.withLock { probe = duplicate.take() }
        return connection.release()
    }
    public func descriptorsClosed() { lock.withLock { probe = nil } }
    /// True when the attached connection's peer hung up (or there is none). Holds the lock
    /// while polling so the duplicate cannot be closed underneath.
    func peerGone() -> Bool {
        lock.withLock {
            guard let fd = probe?.rawValue else { return true }
            let revents = (try? Syscall.poll(fd, events: pollRDHUP, timeout: 0)) ?? 0
            return (revents & (pollRDHUP | Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL))) != 0
        }
    }
    public func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction { .disconnect }
    public var vnetHeaderSize: Int { 0 }
    public var transmitOffloads: VirtioNetOffloads { [] }
}

/// tapbridge listens (QEMU: `-netdev stream,server=off,addr.type=unix,addr.path=PATH`).
/// A second connection while a live VM is attached is refused (closed, logged, counted).
public final class VMStreamServerPort: VMPortBase, Port, @unchecked Sendable {
    public let path: String
    private let listenSocket: OwnedDescriptor
    public var listenFD: Int32 { listenSocket.rawValue }
    public var kind: String { "vm-stream" }
    public var framing: Framing { .lengthPrefixed }
    /// Second connections refused while a VM was attached. Counted by the supervisor thread,
    /// read by any (stats), so under `lock` (ThreadSanitizer caught the plain counter).
    public var refusedConnections: Int { lock.withLock { refused } }
    private var refused = 0

    public init(name: String, path: String, access: SocketFileAccess = SocketFileAccess(),
                settings: PortSettings = PortSettings(), limits: FrameLimits = FrameLimits(),
                log: @escaping (String) -> Void = { _ in }) throws {
        self.path = path
        listenSocket = try UnixSocketFile.listenStream(at: path, access: access)
        super.init(name: name, settings: settings, limits: limits, log: log)
    }
    deinit {
        // (the listening socket closes with its owner, right after)
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
    }

    public func openQueue(_ index: Int) throws -> Int32? { handedOut(try UnixSocketFile.accept(listenFD, path: path)) }

    /// Supervisor hook: true when a pending connection should replace a gone (or absent) one.
    func wantsReconnect() -> Bool {
        guard let ready = try? Syscall.poll(listenFD, events: Int16(POLLIN), timeout: 0), ready != 0 else { return false }
        if peerGone() { return true }
        // A live VM is attached: refuse the newcomer.
        if let extra = try? UnixSocketFile.accept(listenFD, path: path) {
            _ = consume extra   // closed
            lock.withLock { refused += 1 }
            log("vm port \(name): refused a second connection on \(path) (a VM is already attached)")
        }
        return false
    }
}

/// tapbridge connects (QEMU: `-netdev stream,server=on,addr.type=unix,addr.path=PATH,wait=off`), retrying with backoff.
public final class VMStreamClientPort: VMPortBase, Port, @unchecked Sendable {
    public let path: String
    public var kind: String { "vm-stream-client" }
    public var framing: Framing { .lengthPrefixed }
    var backoff = ReconnectBackoff()
    var nextAttempt: UInt64 = 0

    public init(name: String, path: String, settings: PortSettings = PortSettings(), limits: FrameLimits = FrameLimits(),
                log: @escaping (String) -> Void = { _ in }) {
        self.path = path
        super.init(name: name, settings: settings, limits: limits, log: log)
    }
    public func openQueue(_ index: Int) throws -> Int32? {
        do { let fd = try UnixSocketFile.connectStream(to: path); backoff.succeeded(); return handedOut(fd) }
        catch { nextAttempt = MonotonicClock.milliseconds() + UInt64(backoff.failed()); return handedOut(nil) }
    }
    func wantsReconnect() -> Bool { !isConnected && MonotonicClock.milliseconds() >= nextAttempt }
}

/// An already-connected stream descriptor (socket activation, a socketpair handed over). Used once.
public final class VMStreamFDPort: VMPortBase, Port, @unchecked Sendable {
    private var given: Int32?
    public var kind: String { "vm-stream-fd" }
    public var framing: Framing { .lengthPrefixed }
    public init(name: String, descriptor: Int32, settings: PortSettings = PortSettings(), limits: FrameLimits = FrameLimits(),
                log: @escaping (String) -> Void = { _ in }) {
        given = descriptor
        super.init(name: name, settings: settings, limits: limits, log: log)
    }
    public func openQueue(_ index: Int) throws -> Int32? {
        guard let fd = given else { return handedOut(nil) }
        given = nil
        return handedOut(OwnedDescriptor(taking: fd))
    }
    public override func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction { .remove }
}

/// QEMU: `-netdev dgram,local.type=unix,local.path=QEMU_PATH,remote.type=unix,remote.path=OUR_PATH`.
/// We bind OUR_PATH and connect to QEMU_PATH once it exists (and again after a QEMU restart).
///
/// A VM that exits leaves nothing a datagram socket would read as end of file: only our sends
/// fail (ECONNREFUSED once, ENOTCONN after; ENOENT). The engine takes that as a failure of the
/// port (`queueFailed`), which goes down until the VM is back. We keep our socket bound while
/// down (the engine closes its descriptor; our probe duplicate survives as `pendingSocket`), so
/// a VM that comes back and sends to OUR_PATH reaches it; the supervisor reconnects when a new
/// socket appears at QEMU_PATH or a datagram arrives — not by retrying a connect to the dead
/// socket file QEMU leaves behind, which would only be refused.
public final class VMDatagramPort: VMPortBase, Port, @unchecked Sendable {
    public let localPath: String
    public let remotePath: String
    private let access: SocketFileAccess
    public var kind: String { "vm-dgram" }
    public var framing: Framing { .datagram }
    /// The inode of QEMU's socket we last connected (or were refused by). Under `lock`.
    var remoteInode: ino_t = 0
    /// Our socket, bound at `localPath`, not handed to the engine: its connect to a restarted
    /// QEMU was refused for now (EPERM: see `openQueue`), or its VM left (`vmLeft`); the next
    /// attempt connects it again without rebinding. Under `lock`.
    private var pendingSocket: OwnedDescriptor?
    /// The VM went away (its socket refused us); reconnect only once it shows signs of life.
    /// Under `lock`.
    private var vmLeft = false
    /// Set by `queueFailed` for a peer-gone error: the coming `descriptorsClosed` keeps the
    /// socket. Under `lock`.
    private var keepSocketOnClose = false

    public init(name: String, localPath: String, remotePath: String, access: SocketFileAccess = SocketFileAccess(),
                settings: PortSettings = PortSettings(), limits: FrameLimits = FrameLimits(),
                log: @escaping (String) -> Void = { _ in }) {
        self.localPath = localPath; self.remotePath = remotePath; self.access = access
        super.init(name: name, settings: settings, limits: limits, log: log)
    }
    deinit {
        // (a pending socket closes with its owner, right after)
        var st = stat(); if lstat(localPath, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK { unlink(localPath) }
    }

    /// Errors of a send to a datagram peer that no longer exists.
    static func isPeerGone(_ errno: Int32) -> Bool { errno == ECONNREFUSED || errno == ENOTCONN || errno == ENOENT }

    /// Whether the port is down waiting for its VM to come back.
    public var isWaitingForVM: Bool { lock.withLock { vmLeft } }

    private func remoteSocketInode() -> ino_t? {
        var st = stat()
        guard lstat(remotePath, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return nil }
        return st.st_ino
    }

    public func openQueue(_ index: Int) throws -> Int32? {
        guard let ino = remoteSocketInode() else { return handedOut(nil) }
        // A fresh socket each time (the engine closes the old one on disconnect), unless the
        // last one is still waiting for its connect.
        let socket: OwnedDescriptor
        if let pending = lock.withLock({ pendingSocket.take() }) { socket = pending } else { socket = try UnixSocketFile.bindDatagram(at: localPath, access: access) }
        let fd = socket.rawValue
        switch try UnixAddress.with(remotePath, { sa, len in Result { () throws(SyscallError) in try Syscall.connect(fd, sa, len) } }) {
        case .success(.processed): break
        case .success(.wouldBlock): throw UnixSocketError("connect to", remotePath, errno: EAGAIN)
        case .failure(let e) where e.errno == EPERM:
            // A restarted QEMU connects its new socket to our path while our previous socket
            // still holds it; the kernel refuses our connect (EPERM) until QEMU's socket finds
            // that peer gone (its next send). Not a failure: keep this socket bound, so QEMU's
            // sends reach it, and connect it again on the supervisor's next pass.
            var kept: OwnedDescriptor? = consume socket
            lock.withLock { pendingSocket = kept.take() }
            return handedOut(nil)
        case .failure(let e) where Self.isPeerGone(e.errno):
            // Nobody at QEMU's path (an exited QEMU leaves its socket file behind): the VM is
            // not there. Wait for it with our socket bound; what it sent meanwhile was for a
            // peer we could not answer (and would wake the supervisor again at once): dropped.
            var scratch: UInt8 = 0
            while recv(fd, &scratch, 1, Int32(MSG_DONTWAIT)) >= 0 {}
            var kept: OwnedDescriptor? = consume socket
            lock.withLock { vmLeft = true; remoteInode = ino; pendingSocket = kept.take() }
            return handedOut(nil)
        case .failure(let e): throw UnixSocketError("connect to", remotePath, errno: e.errno)
        }
        lock.withLock { vmLeft = false; remoteInode = ino }
        return handedOut(socket)
    }

    /// A send to the VM failed. Peer gone: the port goes down and keeps its bound socket.
    public override func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction {
        if Self.isPeerGone(errno) { lock.withLock { keepSocketOnClose = true } }
        return .disconnect
    }

    public override func descriptorsClosed() {
        lock.withLock {
            if keepSocketOnClose, probe != nil {
                pendingSocket = probe.take()
                vmLeft = true
            }
            keepSocketOnClose = false
            probe = nil
        }
    }

    /// QEMU appeared, or was restarted (it binds a new socket file: new inode); after the VM
    /// left, also a datagram from it reaching our bound socket.
    func wantsReconnect() -> Bool {
        guard let ino = remoteSocketInode() else { return false }
        return lock.withLock {
            if probe != nil || !vmLeft { return probe == nil || ino != remoteInode }
            if ino != remoteInode { return true }
            guard let fd = pendingSocket?.rawValue else { return true }
            let ready = (try? Syscall.poll(fd, events: Int16(POLLIN), timeout: 0)) ?? 0
            return ready & Int16(POLLIN) != 0
        }
    }
}

/// Re-attaches VM ports whose VM (re)appeared. One thread, polling every `intervalMilliseconds`
/// (control plane only; frames never pass here).
public final class VMPortSupervisor: @unchecked Sendable {
    private struct Entry { let port: any Port; let id: PortID; let bridge: Bridge }
    private let engine: Engine
    private let lock = NSLockLite()
    private var entries: [Entry] = []
    private var running = true
    private var thread: pthread_t?
    private let intervalMilliseconds: Int
    private let log: (String) -> Void

    public init(engine: Engine, intervalMilliseconds: Int = 20, log: @escaping (String) -> Void = { _ in }) {
        self.engine = engine; self.intervalMilliseconds = intervalMilliseconds; self.log = log
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        pthread_create(&t, nil, { arg in
            let s = Unmanaged<VMPortSupervisor>.fromOpaque(arg!).takeRetainedValue()
            s.loop(); return nil
        }, box.toOpaque())
        thread = t
    }

    public func watch(_ port: any Port, id: PortID, in bridge: Bridge) { lock.withLock { entries.append(Entry(port: port, id: id, bridge: bridge)) } }
    public func unwatch(_ id: PortID) { lock.withLock { entries.removeAll { $0.id == id } } }

    public func stop() {
        let t: pthread_t? = lock.withLock { running = false; defer { thread = nil }; return thread }
        if let t { pthread_join(t, nil) }
    }

    private func loop() {
        while lock.withLock({ running }) {
            for e in lock.withLock({ entries }) {
                let want: Bool
                switch e.port {
                case let p as VMStreamServerPort: want = p.wantsReconnect()
                case let p as VMStreamClientPort: want = p.wantsReconnect()
                case let p as VMDatagramPort: want = p.wantsReconnect()
                default: want = false
                }
                guard want else { continue }
                do { try engine.reconnect(e.id, in: e.bridge) }
                catch { log("vm port \(e.port.name): reconnect failed: \(error)") }
            }
            usleep(UInt32(intervalMilliseconds * 1000))
        }
    }
}

/// A pthread mutex without Foundation.
final class NSLockLite: @unchecked Sendable {
    private let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(m, nil) }
    deinit { pthread_mutex_destroy(m); m.deallocate() }
    func withLock<R: ~Copyable>(_ body: () throws -> R) rethrows -> R { pthread_mutex_lock(m); defer { pthread_mutex_unlock(m) }; return try body() }
}
