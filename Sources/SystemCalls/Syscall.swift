// Syscall: the one place tapbridge calls the C library for descriptor I/O and socket set-up.
// Each wrapper retries EINTR itself (the rest of the code never sees it), returns EAGAIN as
// `IOResult.wouldBlock` (or nil for accept), and throws `SyscallError` otherwise. close() is the
// exception to retrying: on Linux the descriptor is released even when close reports EINTR, and
// closing the number again could close somebody else's newly opened file.
//
// The wrappers are thin (one C call each, no allocation on success) so they can sit on any path;
// the frame path of a worker uses io_uring submissions, not these. Modelled on swift-system's
// Internals/Syscalls.swift and swift-nio's NIOPosix/System.swift; written for this project.
import Glibc

public enum Syscall {
    // MARK: the retry loop

    /// Calls `body` until it does not fail with EINTR. A negative result throws `SyscallError(call, errno)`.
    @inlinable
    public static func retryingInterrupts<R: BinaryInteger>(_ call: String, _ body: () -> R) throws(SyscallError) -> R {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = Glibc.errno
            if e != EINTR { throw SyscallError(call, errno: e) }
        }
    }

    /// `retryingInterrupts`, with EAGAIN/EWOULDBLOCK returned as `.wouldBlock`.
    @inlinable
    public static func nonblocking<R: BinaryInteger & Sendable>(_ call: String, _ body: () -> R) throws(SyscallError) -> IOResult<R> {
        while true {
            let r = body()
            if r >= 0 { return .processed(r) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw SyscallError(call, errno: e)
        }
    }

    /// For C library functions that wrap a system call and fail with -1 and errno (libmnl's
    /// mnl_socket_sendto/recvfrom): calls `body` until it does not fail with EINTR and returns its
    /// result as is; after a failure, errno is still the call's.
    @inlinable
    public static func uninterrupted<R: BinaryInteger>(_ body: () -> R) -> R {
        while true {
            let r = body()
            if r >= 0 || Glibc.errno != EINTR { return r }
        }
    }

    // MARK: descriptors

    /// open(2). The result owns the descriptor. Pass O_CLOEXEC in `flags` (every caller here does).
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(SyscallError) -> OwnedDescriptor {
        OwnedDescriptor(taking: try retryingInterrupts("open") { Glibc.open(path, flags, mode) })
    }

    /// close(2), never retried (see the header). Errors other than EINTR are reported.
    public static func close(_ fd: Int32) throws(SyscallError) {
        if Glibc.close(fd) != 0 {
            let e = Glibc.errno
            if e != EINTR { throw SyscallError("close", errno: e) }
        }
    }

    /// A copy of `fd` with its own number (close-on-exec), owned by the result.
    public static func duplicate(_ fd: Int32) throws(SyscallError) -> OwnedDescriptor {
        OwnedDescriptor(taking: try retryingInterrupts("fcntl(F_DUPFD_CLOEXEC)") { fcntl(fd, F_DUPFD_CLOEXEC, 0) })
    }

    /// A pipe, both ends close-on-exec, nonblocking if asked.
    public static func pipe(nonblocking: Bool) throws(SyscallError) -> PipeEnds {
        // (pipe2 is not imported by Swift's Glibc module: the flags are set right after.)
        var fds: [Int32] = [-1, -1]
        _ = try retryingInterrupts("pipe") { Glibc.pipe(&fds) }
        let ends = PipeEnds(readEnd: OwnedDescriptor(taking: fds[0]), writeEnd: OwnedDescriptor(taking: fds[1]))
        for fd in fds {
            try setCloseOnExec(fd)
            if nonblocking { try setNonblocking(fd) }
        }
        return ends
    }

    /// The file status flags (O_NONBLOCK...).
    public static func statusFlags(_ fd: Int32) throws(SyscallError) -> Int32 {
        try retryingInterrupts("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
    }

    public static func setStatusFlags(_ fd: Int32, _ flags: Int32) throws(SyscallError) {
        _ = try retryingInterrupts("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags) }
    }

    /// Turns O_NONBLOCK on or off, leaving the other status flags as they are.
    public static func setNonblocking(_ fd: Int32, _ on: Bool = true) throws(SyscallError) {
        let flags = try statusFlags(fd)
        try setStatusFlags(fd, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK)
    }

    /// Sets FD_CLOEXEC (for descriptors from calls that take no flag, such as accept).
    public static func setCloseOnExec(_ fd: Int32) throws(SyscallError) {
        _ = try retryingInterrupts("fcntl(F_SETFD)") { fcntl(fd, F_SETFD, FD_CLOEXEC) }
    }

    // MARK: reading and writing

    /// read(2): bytes read (0 at end of file) or `.wouldBlock`.
    @inlinable
    public static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws(SyscallError) -> IOResult<Int> {
        try nonblocking("read") { Glibc.read(fd, buffer, count) }
    }

    /// write(2): bytes written (possibly fewer than asked) or `.wouldBlock`.
    @inlinable
    public static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws(SyscallError) -> IOResult<Int> {
        try nonblocking("write") { Glibc.write(fd, buffer, count) }
    }

    /// send(2) on a socket. Pass MSG_NOSIGNAL so a gone peer is EPIPE, not a signal.
    @inlinable
    public static func send(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, flags: Int32) throws(SyscallError) -> IOResult<Int> {
        try nonblocking("send") { Glibc.send(fd, buffer, count, flags) }
    }

    /// recv(2) on a socket: bytes received (0 when the peer closed) or `.wouldBlock`.
    @inlinable
    public static func receive(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, flags: Int32 = 0) throws(SyscallError) -> IOResult<Int> {
        try nonblocking("recv") { Glibc.recv(fd, buffer, count, flags) }
    }

    /// poll(2): the number of ready descriptors, 0 on timeout. An interrupted poll is retried
    /// with the same timeout (a signal can lengthen the wait by at most `timeout`).
    public static func poll(_ fds: UnsafeMutablePointer<pollfd>, _ count: Int, timeout milliseconds: Int32) throws(SyscallError) -> Int {
        Int(try retryingInterrupts("poll") { Glibc.poll(fds, nfds_t(count), milliseconds) })
    }

    /// poll(2) on one descriptor: its revents, 0 on timeout.
    public static func poll(_ fd: Int32, events: Int16, timeout milliseconds: Int32) throws(SyscallError) -> Int16 {
        var p = pollfd(fd: fd, events: events, revents: 0)
        return try poll(&p, 1, timeout: milliseconds) == 0 ? 0 : p.revents
    }

    // MARK: sockets

    /// socket(2); pass SOCK_CLOEXEC (and SOCK_NONBLOCK if wanted) in `type`.
    public static func socket(_ domain: Int32, _ type: Int32, _ proto: Int32 = 0) throws(SyscallError) -> OwnedDescriptor {
        OwnedDescriptor(taking: try retryingInterrupts("socket") { Glibc.socket(domain, type, proto) })
    }

    public static func bind(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) throws(SyscallError) {
        _ = try retryingInterrupts("bind") { Glibc.bind(fd, address, length) }
    }

    public static func listen(_ fd: Int32, backlog: Int32) throws(SyscallError) {
        _ = try retryingInterrupts("listen") { Glibc.listen(fd, backlog) }
    }

    /// connect(2): `.processed(())` when connected, `.wouldBlock` when a nonblocking connect is
    /// under way (EINPROGRESS, or EAGAIN from a full Unix listener backlog).
    public static func connect(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) throws(SyscallError) -> IOResult<Int32> {
        while true {
            if Glibc.connect(fd, address, length) == 0 { return .processed(0) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EINPROGRESS { return .wouldBlock }
            throw SyscallError("connect", errno: e)
        }
    }

    /// accept(2): the connection (owned, close-on-exec), or nil when none is pending (EAGAIN).
    /// ECONNABORTED and resource errors (EMFILE...) are thrown: the caller decides whether to retry.
    public static func accept(_ fd: Int32) throws(SyscallError) -> OwnedDescriptor? {
        guard case .processed(let raw) = try nonblocking("accept", { Glibc.accept(fd, nil, nil) }) else { return nil }
        let connection = OwnedDescriptor(taking: raw)
        // (accept4 is not imported by Swift's Glibc module; no fork happens between the two calls.)
        try setCloseOnExec(connection.rawValue)
        return connection
    }

    public static func shutdown(_ fd: Int32, _ how: Int32) throws(SyscallError) {
        _ = try retryingInterrupts("shutdown") { Glibc.shutdown(fd, how) }
    }

    /// setsockopt(2) with a plain value (an Int32 flag, a timeval...).
    public static func setSocketOption<T: BitwiseCopyable>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: T) throws(SyscallError) {
        _ = try withUnsafeBytes(of: value) { v throws(SyscallError) in
            try retryingInterrupts("setsockopt") { setsockopt(fd, level, name, v.baseAddress, socklen_t(v.count)) }
        }
    }
}
