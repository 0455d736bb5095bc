// SyscallError and IOResult: how every wrapper in this module reports its outcome. A failed
// call is a typed error naming the call and its errno (never a bare -1 with a global errno read
// later, by which time another call may have changed it); "would block" (EAGAIN/EWOULDBLOCK) on
// a nonblocking descriptor is not a failure but an ordinary value, `.wouldBlock`.
import Glibc

/// A system call that failed: which one and its errno. Callers wrap it with the subject (the
/// socket path, the interface, the file) when they make their own error.
public struct SyscallError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The call that failed, e.g. "connect".
    public let call: String
    public let errno: Int32
    public init(_ call: String, errno: Int32) { self.call = call; self.errno = errno }
    /// The C library's text for the errno ("Connection refused").
    public var reason: String { String(cString: strerror(errno)) }
    public var description: String { "\(call): \(reason)" }
}

/// The outcome of an I/O call on a descriptor that may be nonblocking: how much was moved (0 from
/// a read is end of file), or "nothing now, try again when it is ready".
public enum IOResult<Value>: Sendable where Value: Sendable {
    case processed(Value)
    case wouldBlock
}

extension IOResult: Equatable where Value: Equatable {}
