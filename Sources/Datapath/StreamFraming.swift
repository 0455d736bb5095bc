// StreamFraming: the one place that judges a QEMU `-netdev stream` length prefix (4-byte
// big-endian length + raw Ethernet frame). The io_uring workers (Worker.handleStreamRead) and
// VMBackend's StreamFrameDecoder both ask it, so a runt, a zero prefix or an oversized prefix is
// treated the same everywhere: a runt is dropped and counted (framing is still in sync), a zero
// or oversized prefix closes the connection (the stream cannot be resynchronised).

/// Why a frame or a connection was rejected; each has its own counter and log line.
public enum FramingError: Error, Equatable, Sendable, CustomStringConvertible {
    case zeroLength                      // closes the connection: QEMU never sends it, the stream is not ours
    case tooLarge(length: Int, max: Int) // closes the connection: cannot resynchronize
    case runt(length: Int)               // drops the frame; framing stays in sync
    case truncated(have: Int, want: Int) // peer disconnected mid-frame

    public var description: String {
        switch self {
        case .zeroLength: return "length prefix 0 (not QEMU stream framing)"
        case let .tooLarge(l, m): return "length prefix \(l) exceeds maximum frame size \(m)"
        case let .runt(l): return "frame of \(l) bytes is shorter than an Ethernet header (14)"
        case let .truncated(h, w): return "peer disconnected after \(h) of \(w) bytes of a frame"
        }
    }
    /// Whether the connection must be closed (framing can no longer be trusted).
    public var isFatal: Bool { if case .runt = self { return false }; return true }
}

public enum StreamPrefix {
    /// Bytes of the length prefix.
    public static let size = 4
    /// Shortest frame delivered: an Ethernet header.
    public static let minimumFrame = 14
    /// Largest length a prefix may announce, whatever is configured (QEMU's own bound).
    public static let absoluteMaxFrame = 65535

    /// The big-endian length at `p` (4 readable bytes).
    @inline(__always)
    public static func length(at p: UnsafeRawPointer) -> Int {
        Int(UInt32(bigEndian: p.loadUnaligned(as: UInt32.self)))
    }

    /// One decoding step over `available` received bytes at `base`.
    public enum Step: Equatable {
        /// A frame of `length` bytes at `base + 4`; consume `4 + length`.
        case frame(length: Int)
        /// Not a whole prefix + frame yet.
        case needMore
        /// A runt: consume `4 + length` bytes, count a drop, go on.
        case skip(length: Int, FramingError)
        /// Close the connection.
        case fatal(FramingError)
    }

    /// The decoder: what the bytes at `base` hold. Used by the workers and StreamFrameDecoder.
    @inline(__always)
    public static func next(_ base: UnsafeRawPointer, available: Int, maxFrame: Int) -> Step {
        guard available >= size else { return .needMore }
        let len = length(at: base)
        let verdict = check(len, maxFrame: maxFrame)
        if let e = verdict, e.isFatal { return .fatal(e) }
        guard available >= size + len else { return .needMore }
        if let e = verdict { return .skip(length: len, e) }
        return .frame(length: len)
    }

    /// nil: `length` announces a frame to deliver. `.zeroLength`/`.tooLarge` are fatal; `.runt`
    /// means "skip `length` bytes and count a drop".
    @inline(__always)
    public static func check(_ length: Int, maxFrame: Int) -> FramingError? {
        if length == 0 { return .zeroLength }
        if length > maxFrame { return .tooLarge(length: length, max: maxFrame) }
        if length < minimumFrame { return .runt(length: length) }
        return nil
    }
}
