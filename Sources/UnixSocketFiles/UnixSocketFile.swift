// UnixSocketFile: Unix-domain socket files that tapbridge creates or connects to (the control
// socket, VM ports' stream and datagram sockets). Owns the safety rules for the file itself:
// created with the mode (and owner/group) asked for, a stale socket replaced only when nobody
// listens on it, a symlink never followed or removed, a non-socket never replaced. Thin
// wrappers over socket/bind/listen/accept/connect; errors carry errno and the path at fault.
// Depends on nothing but Glibc and SystemCalls (whose wrappers retry EINTR and own descriptors:
// a failure half-way closes what was opened), so the control protocol can use it without the datapath.
import Glibc
import SystemCalls

/// A socket-file operation that failed: what was attempted, on which path, and why.
public struct UnixSocketError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let path: String
    public let errno: Int32
    public let detail: String?
    public init(_ operation: String, _ path: String, errno: Int32, detail: String? = nil) {
        self.operation = operation; self.path = path; self.errno = errno; self.detail = detail
    }
    public var description: String {
        let why = detail ?? String(cString: strerror(errno))
        return "cannot \(operation) socket '\(path)': \(why)"
    }
}

/// Owner, group and mode of a socket file tapbridge creates (0660 so an unprivileged QEMU in the
/// group can connect; the control socket asks for 0600 without a group).
public struct SocketFileAccess: Sendable, Equatable {
    public var mode: mode_t
    public var owner: uid_t?
    public var group: gid_t?
    public init(mode: mode_t = 0o660, owner: uid_t? = nil, group: gid_t? = nil) { self.mode = mode; self.owner = owner; self.group = group }
}

/// A `sockaddr_un` for a path, checked against the kernel's length limit.
public enum UnixAddress {
    public static func with<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) throws -> R {
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let cap = MemoryLayout.size(ofValue: sa.sun_path)
        guard !bytes.isEmpty, bytes.count < cap else {
            throw UnixSocketError("use", path, errno: ENAMETOOLONG, detail: "path must be 1...\(cap - 1) bytes")
        }
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: bytes) }
        return withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}

private let sockNonblock = Int32(SOCK_NONBLOCK.rawValue)
private let sockCloexec = Int32(SOCK_CLOEXEC.rawValue)

/// Runs one SystemCalls wrapper; its failure becomes this module's error, naming `operation` and `path`.
private func attempt<R: ~Copyable>(_ operation: String, _ path: String, _ body: () throws(SyscallError) -> R) throws(UnixSocketError) -> R {
    do { return try body() } catch { throw UnixSocketError(operation, path, errno: error.errno) }
}

public enum UnixSocketFile {
    /// Removes a stale socket file at `path` if it is safe to: it must be a socket (lstat, a symlink
    /// is never followed or removed) and nobody may be accepting on it (a connect probe fails with ECONNREFUSED).
    public static func removeStaleSocket(at path: String, type: Int32) throws {
        var st = stat()
        if lstat(path, &st) != 0 {
            if errno == ENOENT { return }
            throw UnixSocketError("inspect", path, errno: errno)
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw UnixSocketError("replace", path, errno: EEXIST, detail: "a file that is not a socket is in the way (left untouched)")
        }
        let probe = try attempt("probe", path) { () throws(SyscallError) in try Syscall.socket(AF_UNIX, type | sockCloexec) }
        let outcome = try UnixAddress.with(path) { sa, len in Result { () throws(SyscallError) in try Syscall.connect(probe.rawValue, sa, len) } }
        switch outcome {
        case .success:   // connected, or a listener with a full backlog (EAGAIN)
            throw UnixSocketError("replace", path, errno: EADDRINUSE, detail: "a live process is listening on it")
        case .failure(let e) where e.errno == ECONNREFUSED:
            break
        case .failure(let e):
            throw UnixSocketError("probe", path, errno: e.errno)
        }
        if unlink(path) != 0 && errno != ENOENT { throw UnixSocketError("remove stale", path, errno: errno) }
    }

    private static func applyAccess(_ path: String, _ access: SocketFileAccess) throws {
        // chmod/chown by path right after bind: the directory is ours and the file is a socket we just made.
        if chmod(path, access.mode) != 0 { throw UnixSocketError("chmod", path, errno: errno) }
        if access.owner != nil || access.group != nil {
            if lchown(path, access.owner ?? uid_t.max, access.group ?? gid_t.max) != 0 { throw UnixSocketError("chown", path, errno: errno) }
        }
    }

    /// A nonblocking socket of `type` bound at `path` (stale file replaced safely) with the requested access.
    private static func bindSocket(at path: String, type: Int32, access: SocketFileAccess) throws -> OwnedDescriptor {
        try removeStaleSocket(at: path, type: type)
        let fd = try attempt("create", path) { () throws(SyscallError) in try Syscall.socket(AF_UNIX, type | sockNonblock | sockCloexec) }
        let bound = try UnixAddress.with(path) { sa, len in Result { () throws(SyscallError) in try Syscall.bind(fd.rawValue, sa, len) } }
        if case .failure(let e) = bound { throw UnixSocketError("bind", path, errno: e.errno) }
        try applyAccess(path, access)
        return fd
    }

    /// A nonblocking listening Unix stream socket at `path`.
    public static func listenStream(at path: String, access: SocketFileAccess = SocketFileAccess(), backlog: Int32 = 4) throws -> OwnedDescriptor {
        let fd = try bindSocket(at: path, type: Int32(SOCK_STREAM.rawValue), access: access)
        do { try Syscall.listen(fd.rawValue, backlog: backlog) } catch {
            unlink(path)
            throw UnixSocketError("listen on", path, errno: error.errno)
        }
        return fd
    }

    /// Accepts one pending connection, nonblocking, close-on-exec; nil when none is pending
    /// (or the one pending was aborted by its peer).
    public static func accept(_ listener: Int32, path: String) throws -> OwnedDescriptor? {
        let connection: OwnedDescriptor?
        do { connection = try Syscall.accept(listener) } catch {
            if error.errno == ECONNABORTED { return nil }
            throw UnixSocketError("accept on", path, errno: error.errno)
        }
        guard let connection else { return nil }
        try attempt("set O_NONBLOCK on", path) { () throws(SyscallError) in try Syscall.setNonblocking(connection.rawValue) }
        return connection
    }

    /// Connects to a listening stream socket at `path`. The returned descriptor is nonblocking.
    public static func connectStream(to path: String) throws -> OwnedDescriptor {
        let fd = try attempt("create", path) { () throws(SyscallError) in try Syscall.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | sockCloexec) }
        let outcome = try UnixAddress.with(path) { sa, len in Result { () throws(SyscallError) in try Syscall.connect(fd.rawValue, sa, len) } }
        switch outcome {
        case .success(.processed): break
        // A blocking connect does not report EINPROGRESS; EAGAIN is a listener whose backlog is full.
        case .success(.wouldBlock): throw UnixSocketError("connect to", path, errno: EAGAIN)
        case .failure(let e): throw UnixSocketError("connect to", path, errno: e.errno)
        }
        try attempt("set O_NONBLOCK on", path) { () throws(SyscallError) in try Syscall.setNonblocking(fd.rawValue) }
        return fd
    }

    /// A nonblocking datagram socket bound at `path` (stale file replaced safely).
    public static func bindDatagram(at path: String, access: SocketFileAccess = SocketFileAccess()) throws -> OwnedDescriptor {
        try bindSocket(at: path, type: Int32(SOCK_DGRAM.rawValue), access: access)
    }

    public static func setNonblocking(_ fd: Int32, path: String) throws {
        try attempt("set O_NONBLOCK on", path) { () throws(SyscallError) in try Syscall.setNonblocking(fd) }
    }
}
