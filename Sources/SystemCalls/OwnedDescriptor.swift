// OwnedDescriptor: a file descriptor with exactly one owner. It is ~Copyable, so the number
// cannot be duplicated by assignment; it is closed exactly once — by `close()`, or by deinit when
// the owner goes away — and after that no code holds the number, so a later open that reuses it
// cannot be closed by mistake. `release()` hands the raw number to a new owner that is not a
// Swift value (the engine's port table, which closes it itself). Borrowers use `rawValue` only
// while the owner is alive.
import Glibc

public struct OwnedDescriptor: ~Copyable, Sendable {
    /// The descriptor number; valid while this value exists.
    public let rawValue: Int32

    /// Takes ownership of `rawValue` (which must be open and owned by nobody else).
    public init(taking rawValue: Int32) {
        precondition(rawValue >= 0, "OwnedDescriptor needs an open descriptor, got \(rawValue)")
        self.rawValue = rawValue
    }

    deinit { try? Syscall.close(rawValue) }

    /// Closes now, reporting an error (the descriptor is released either way).
    public consuming func close() throws(SyscallError) {
        let fd = rawValue
        discard self
        try Syscall.close(fd)
    }

    /// Gives up ownership without closing: the caller now owns the returned number.
    public consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    /// A second owner of the same open file (its own number, close-on-exec).
    public func duplicate() throws(SyscallError) -> OwnedDescriptor { try Syscall.duplicate(rawValue) }
}

/// The two ends of a pipe, each owned. (@frozen so a caller can move the ends out one by one.)
@frozen public struct PipeEnds: ~Copyable, Sendable {
    public var readEnd: OwnedDescriptor
    public var writeEnd: OwnedDescriptor
}
