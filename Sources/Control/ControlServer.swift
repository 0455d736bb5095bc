// ControlServer: the daemon's control socket. A Unix stream socket (file mode 0600, or 0660 and
// group-owned when a group is configured; a stale socket file is replaced only if it is a socket
// nobody listens on — never a symlink or another file), one accept thread, one thread per
// connection (bounded), one JSON request per line (bounded size). Peers that are neither root nor
// in the group (SO_PEERCRED) get a `permission-denied` error line and are closed.
//
// Commands are registered by name. A handler returns a result, or asks to take the connection
// over (streaming commands such as `capture`): the server writes the first response line, then
// runs the body on the connection's own thread with the connected descriptor; the server closes
// the descriptor when the body returns. Nothing here touches the datapath: handlers that change
// state hand their work to the daemon's control loop.
import Foundation
import Glibc
import SystemCalls
import SystemPackage
import UnixSocketFiles

/// What a command handler answers.
public enum ControlReply {
    /// An `ok:true` response with this result; the connection stays open for more requests.
    case result(JSONValue)
    /// An `ok:true` response with `first`, then `body` owns the byte stream until it returns.
    case takeOver(first: JSONValue, body: (ControlConnection) -> Void)
}

/// A connection handed to a streaming command. The server owns (and closes) the descriptor.
public struct ControlConnection {
    /// Connected, blocking; write raw bytes to it. Do not close it.
    public let fileDescriptor: FileDescriptor
    /// Who is connected.
    public let peer: PeerCredentials
    /// Bytes the client sent after its request line (already read by the server).
    public let pending: [UInt8]
    /// True once the server is stopping: a long-running body should end.
    public let isStopping: () -> Bool
}

public typealias ControlHandler = (ControlRequest, PeerCredentials) throws -> ControlReply

public final class ControlServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var path: String
        /// Members of this group may connect too (socket file mode 0660, group-owned).
        public var group: gid_t?
        /// Connections served at once; one more gets a `busy` error line and is closed.
        public var maxConnections: Int = 16
        public var maxRequestBytes: Int = ControlProtocol.maxRequestBytes
        /// A connection idle this long between requests is closed.
        public var idleTimeout: Double = 600
        public init(path: String, group: gid_t? = nil) { self.path = path; self.group = group }
    }

    public let configuration: Configuration
    /// Called with one line per notable event (refused peer, bad request...), for the daemon's log.
    public var log: (String) -> Void = { _ in }

    // Owned here, closed by stop() (nil afterwards). The accept thread borrows their numbers
    // only while it runs, and stop() waits for it before closing.
    private var listenSocket: OwnedDescriptor?
    private var wakeReadEnd: OwnedDescriptor?
    private var wakeWriteEnd: OwnedDescriptor?
    private let lock = NSLock()
    private var handlers: [String: ControlHandler] = [:]
    /// Open connections by descriptor number; each belongs to its connection thread.
    private var connections: Set<Int32> = []
    private var stopping = false
    private var acceptThread: Thread?
    private let acceptDone = DispatchSemaphore(value: 0)
    private let allDone = NSCondition()

    /// Creates the socket file (replacing a stale one safely) and listens. Throws if another
    /// process listens there, if a non-socket is in the way, or on any socket error.
    public init(configuration: Configuration) throws {
        self.configuration = configuration
        let dir = (configuration.path as NSString).deletingLastPathComponent
        if !dir.isEmpty, !FileManager.default.fileExists(atPath: dir) {
            // /run/tapbridge by default: created root-only-writable, readable so group members can reach the socket.
            if mkdir(dir, 0o755) != 0 && errno != EEXIST { throw ControlSocketError("create directory", dir, errno: errno) }
        }
        let access = SocketFileAccess(mode: configuration.group == nil ? 0o600 : 0o660, owner: nil, group: configuration.group)
        let listener: OwnedDescriptor
        do {
            listener = try UnixSocketFile.listenStream(at: configuration.path, access: access, backlog: 64)
        } catch let e as UnixSocketError {
            // The shared socket helper's error, named for this socket; a live listener is most
            // likely another daemon.
            throw ControlSocketError(e.operation, "control socket '\(configuration.path)'", errno: e.errno,
                                     detail: e.errno == EADDRINUSE ? "another process (a running tapbridge?) is listening on it" : e.detail)
        }
        let wake: PipeEnds
        do { wake = try Syscall.pipe(nonblocking: true) } catch {
            unlink(configuration.path)   // (the listener closes as it goes out of scope)
            throw ControlSocketError("create the wake pipe of", "control socket", errno: error.errno)
        }
        listenSocket = consume listener
        wakeReadEnd = .some(wake.readEnd)
        wakeWriteEnd = .some(wake.writeEnd)
    }

    /// Adds (or replaces) the handler of `cmd`. Safe while running.
    public func register(_ cmd: String, _ handler: @escaping ControlHandler) {
        lock.withLock { handlers[cmd] = handler }
    }

    public var commands: [String] { lock.withLock { handlers.keys.sorted() } }

    /// Starts the accept thread.
    public func start() {
        let t = Thread { [self] in acceptLoop(); acceptDone.signal() }
        t.name = "control-accept"
        acceptThread = t
        t.start()
    }

    /// Stops accepting, ends every connection (streaming bodies see `isStopping` and a shut-down
    /// socket), waits up to `timeout` for their threads, removes the socket file. Idempotent.
    public func stop(timeout: Double = 5) {
        let first = lock.withLock { () -> Bool in
            if stopping { return false }
            stopping = true
            return true
        }
        guard first else { return }
        var b: UInt8 = 1
        if let wakeFD = wakeWriteEnd?.rawValue { _ = try? Syscall.write(wakeFD, &b, 1) }
        if acceptThread != nil { acceptDone.wait() }
        // Under the lock: a connection thread leaves the set before it closes its descriptor,
        // so every number here is still that connection's (never a reused descriptor).
        lock.withLock { for fd in connections { try? Syscall.shutdown(fd, Int32(SHUT_RDWR)) } }
        let deadline = Date().addingTimeInterval(timeout)
        allDone.lock()
        while lock.withLock({ !connections.isEmpty }) && Date() < deadline { _ = allDone.wait(until: min(deadline, Date().addingTimeInterval(0.1))) }
        allDone.unlock()
        // Only our own socket: it is still a socket we bound (a replacement by someone else is left alone).
        var st = stat()
        if lstat(configuration.path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK { unlink(configuration.path) }
        listenSocket = nil
        wakeReadEnd = nil
        wakeWriteEnd = nil
    }

    public var isStopping: Bool { lock.withLock { stopping } }
    public var connectionCount: Int { lock.withLock { connections.count } }

    // MARK: accepting

    private func acceptLoop() {
        guard let listenFD = listenSocket?.rawValue, let wakeFD = wakeReadEnd?.rawValue else { return }
        var fds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        while !isStopping {
            do { _ = try Syscall.poll(&fds, 2, timeout: 1000) } catch { usleep(10_000); continue }
            if fds[1].revents != 0 || isStopping { return }
            guard fds[0].revents & Int16(POLLIN) != 0 else { continue }
            let accepted: OwnedDescriptor?
            do { accepted = try Syscall.accept(listenFD) } catch {
                // EMFILE/ENFILE/ENOMEM: the connection stays queued; back off instead of spinning on it.
                if error.errno != ECONNABORTED { usleep(100_000) }
                continue
            }
            guard let connection = accepted else { continue }   // EAGAIN: someone else's, or gone
            try? Syscall.setNonblocking(connection.rawValue, false)
            admit(connection)
        }
    }

    /// Peer check and connection bound, then a thread for the connection.
    private func admit(_ connection: consuming OwnedDescriptor) {
        let fd = connection.rawValue
        SocketIO.setTimeout(fd, option: SO_SNDTIMEO, seconds: 10)
        let peer: PeerCredentials
        do { peer = try PeerCredentials.of(socket: fd) } catch {
            refuse(connection, .failed, "\(error)"); return
        }
        guard peer.isAllowed(group: configuration.group) else {
            log("control connection refused: uid \(peer.uid) gid \(peer.gid) pid \(peer.pid) is not root\(configuration.group.map { " and not in group \($0)" } ?? "")")
            refuse(connection, .permissionDenied, "permission denied: uid \(peer.uid) is not root"
                   + (configuration.group.map { " and not in the control group (gid \($0))" } ?? " (the control socket has no group configured: control.group)"))
            return
        }
        let admitted = lock.withLock { () -> Bool in
            guard !stopping, connections.count < configuration.maxConnections else { return false }
            connections.insert(fd)
            return true
        }
        guard admitted else {
            refuse(connection, .busy, "too many control connections (at most \(configuration.maxConnections)); try again"); return
        }
        // The thread owns the connection from here: the number crosses into it raw (a Thread's
        // closure cannot capture a noncopyable value) and is owned again on its first line.
        let raw = connection.release()
        let t = Thread { [self] in
            let connection = OwnedDescriptor(taking: raw)
            serve(connection.rawValue, peer: peer)
            // Out of the set before the close, so stop() never shuts down a reused number.
            lock.withLock { _ = connections.remove(raw) }
            _ = consume connection
            allDone.lock(); allDone.broadcast(); allDone.unlock()
        }
        t.name = "control-conn"
        t.start()
    }

    private func refuse(_ connection: consuming OwnedDescriptor, _ code: ControlErrorCode, _ message: String) {
        if let line = try? ControlLine.encode(ControlResponse.failure(id: 0, code, message)) {
            try? SocketIO.writeAll(connection.rawValue, line, subject: "control connection")
        }
    }

    // MARK: one connection

    private func serve(_ fd: Int32, peer: PeerCredentials) {
        var lines = LineBuffer(limit: configuration.maxRequestBytes)
        var buf = [UInt8](repeating: 0, count: 16 * 1024)
        SocketIO.setTimeout(fd, option: SO_RCVTIMEO, seconds: configuration.idleTimeout)
        func send(_ r: ControlResponse) -> Bool {
            guard let line = try? ControlLine.encode(r) else { return false }
            return (try? SocketIO.writeAll(fd, line, subject: "control connection")) != nil
        }
        while !isStopping {
            switch lines.next() {
            case .tooLong:
                log("control request refused: line longer than \(configuration.maxRequestBytes) bytes")
                _ = send(.failure(id: 0, .requestTooLarge, "request line longer than \(configuration.maxRequestBytes) bytes; closing"))
                return
            case .needMore:
                guard let n = try? SocketIO.read(fd, into: &buf, subject: "control connection"), n > 0 else { return }
                lines.append(buf[..<n])
            case .line(let line):
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                let request: ControlRequest
                switch ControlLine.decodeRequest(line) {
                case .failure(let f):
                    log("control request refused: \(f.message)")
                    if !send(f.response) { return }
                    continue
                case .success(let r): request = r
                }
                guard let handler = lock.withLock({ handlers[request.cmd] }) else {
                    if !send(.failure(id: request.id, .unknownCommand,
                                      "unknown command '\(request.cmd)' (known: \(commands.joined(separator: ", ")))")) { return }
                    continue
                }
                let reply: ControlReply
                do {
                    reply = try handler(request, peer)
                } catch let e as ControlError {
                    if !send(.failure(id: request.id, e.info.code, e.info.message)) { return }
                    continue
                } catch {
                    if !send(.failure(id: request.id, .failed, "\(error)")) { return }
                    continue
                }
                switch reply {
                case .result(let result):
                    if !send(.success(id: request.id, result)) { return }
                case .takeOver(let first, let body):
                    guard send(.success(id: request.id, first)) else { return }
                    SocketIO.setTimeout(fd, option: SO_RCVTIMEO, seconds: 0)
                    body(ControlConnection(fileDescriptor: FileDescriptor(rawValue: fd), peer: peer,
                                           pending: lines.remainder, isStopping: { [weak self] in self?.isStopping ?? true }))
                    return
                }
            }
        }
    }
}
