// UnixSocketFile: Unix-domain socket files that tapbridge creates or connects to (the control
// socket, VM ports' stream and datagram sockets). Owns the safety rules for the file itself:
// created with the mode (and owner/group) asked for, a stale socket replaced only when nobody
// listens on it, a symlink never followed or removed, a non-socket never replaced. Thin
// wrappers over socket/bind/listen/accept/connect; errors carry errno and the path at fault.
// Depends on nothing but Glibc, so the control protocol can use it without the datapath.
import Glibc

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

/// The one place here that retries a call interrupted by a signal.
private func retryingEINTR(_ f: () -> Int32) -> Int32 {
    while true { let r = f(); if r >= 0 || errno != EINTR { return r } }
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
        let probe = socket(AF_UNIX, type | sockCloexec, 0)
        guard probe >= 0 else { throw UnixSocketError("probe", path, errno: errno) }
        defer { close(probe) }
        let r = try UnixAddress.with(path) { sa, len in retryingEINTR { connect(probe, sa, len) } }
        if r == 0 || errno == EAGAIN {
            throw UnixSocketError("replace", path, errno: EADDRINUSE, detail: "a live process is listening on it")
        }
        guard errno == ECONNREFUSED else { throw UnixSocketError("probe", path, errno: errno) }
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
    private static func bindSocket(at path: String, type: Int32, access: SocketFileAccess) throws -> Int32 {
        try removeStaleSocket(at: path, type: type)
        let fd = socket(AF_UNIX, type | sockNonblock | sockCloexec, 0)
        guard fd >= 0 else { throw UnixSocketError("create", path, errno: errno) }
        do {
            let r = try UnixAddress.with(path) { sa, len in bind(fd, sa, len) }
            if r != 0 { throw UnixSocketError("bind", path, errno: errno) }
            try applyAccess(path, access)
            return fd
        } catch { close(fd); throw error }
    }

    /// A nonblocking listening Unix stream socket at `path`.
    public static func listenStream(at path: String, access: SocketFileAccess = SocketFileAccess(), backlog: Int32 = 4) throws -> Int32 {
        let fd = try bindSocket(at: path, type: Int32(SOCK_STREAM.rawValue), access: access)
        if listen(fd, backlog) != 0 { let e = errno; close(fd); unlink(path); throw UnixSocketError("listen on", path, errno: e) }
        return fd
    }

    /// Accepts one pending connection, nonblocking; nil when none is pending.
    public static func accept(_ listener: Int32, path: String) throws -> Int32? {
        let fd = retryingEINTR { Glibc.accept(listener, nil, nil) }
        if fd >= 0 {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            do { try setNonblocking(fd, path: path) } catch { close(fd); throw error }
            return fd
        }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED { return nil }
        throw UnixSocketError("accept on", path, errno: errno)
    }

    /// Connects to a listening stream socket at `path`. The returned fd is nonblocking.
    public static func connectStream(to path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | sockCloexec, 0)
        guard fd >= 0 else { throw UnixSocketError("create", path, errno: errno) }
        let r: Int32
        do { r = try UnixAddress.with(path) { sa, len in retryingEINTR { connect(fd, sa, len) } } } catch { close(fd); throw error }
        if r != 0 { let e = errno; close(fd); throw UnixSocketError("connect to", path, errno: e) }
        do { try setNonblocking(fd, path: path) } catch { close(fd); throw error }
        return fd
    }

    /// A nonblocking datagram socket bound at `path` (stale file replaced safely).
    public static func bindDatagram(at path: String, access: SocketFileAccess = SocketFileAccess()) throws -> Int32 {
        try bindSocket(at: path, type: Int32(SOCK_DGRAM.rawValue), access: access)
    }

    public static func setNonblocking(_ fd: Int32, path: String) throws {
        let flags = fcntl(fd, F_GETFL)
        if flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 { throw UnixSocketError("set O_NONBLOCK on", path, errno: errno) }
    }
}
