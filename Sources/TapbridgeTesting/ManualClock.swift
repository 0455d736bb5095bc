// ManualClock: the time a handler under test sees. Handlers read time only from
// `HandlerContext.now` (CLOCK_MONOTONIC nanoseconds in the daemon), so a test drives aging and
// rate limits by handing them contexts from a clock it advances itself.
import Frames

public final class ManualClock {
    public static let second: UInt64 = 1_000_000_000

    /// Nanoseconds; starts at 1 (0 can mean "never" in handler state).
    public private(set) var now: UInt64

    public init(now: UInt64 = 1) { self.now = now }

    /// Moves time forward by `nanoseconds`.
    public func advance(nanoseconds: UInt64) { now &+= nanoseconds }

    /// Moves time forward by `seconds`.
    public func advance(seconds: Double) { now &+= UInt64(seconds * Double(Self.second)) }

    /// The context a worker would pass to `handle` now.
    public func context(worker: Int = 0) -> HandlerContext { HandlerContext(now: now, worker: worker) }
}
