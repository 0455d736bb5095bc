// UserData: what a completion refers to, packed into the 64-bit io_uring user_data so a CQE is
// dispatched without any lookup table: op kind, port slot, queue, generation, index.

/// `kind` (8 bits) | `port` (16) | `queue` (8) | `generation` (8) | `index` (24).
public struct UserData: Equatable, Sendable, CustomStringConvertible {
    public var kind: UInt8
    public var port: UInt16
    public var queue: UInt8
    /// Bumped each time a port slot is reused, so late completions for a removed port are ignored.
    public var generation: UInt8
    /// Buffer index or transmit-slot index (< 2^24).
    public var index: UInt32

    @inlinable
    public init(kind: UInt8, port: UInt16 = 0, queue: UInt8 = 0, generation: UInt8 = 0, index: UInt32 = 0) {
        self.kind = kind; self.port = port; self.queue = queue; self.generation = generation; self.index = index & 0xFF_FFFF
    }

    @inlinable
    public init(rawValue v: UInt64) {
        kind = UInt8(truncatingIfNeeded: v >> 56)
        port = UInt16(truncatingIfNeeded: v >> 40)
        queue = UInt8(truncatingIfNeeded: v >> 32)
        generation = UInt8(truncatingIfNeeded: v >> 24)
        index = UInt32(truncatingIfNeeded: v) & 0xFF_FFFF
    }

    @inlinable
    public var rawValue: UInt64 {
        UInt64(kind) << 56 | UInt64(port) << 40 | UInt64(queue) << 32 | UInt64(generation) << 24 | UInt64(index & 0xFF_FFFF)
    }

    public var description: String { "ud(kind \(kind) port \(port) q \(queue) gen \(generation) idx \(index))" }
}
