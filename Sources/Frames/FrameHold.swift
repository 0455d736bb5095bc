// FrameHold: a handler's request that a frame leave later than now, kept in its buffer by the
// engine's per-worker timed queue (Datapath/WorkerHold.swift). The one seam delay, jitter, rate
// and duplication need: the handler computes when, the engine keeps the frame and sends it then.
// Plain value, no allocation.

/// When and how often a frame's copy leaves. Set on `Frame.hold` by a handler; the engine
/// applies it to each destination's copy (an egress judge sets it for one destination).
///
/// The engine holds at most `limit` copies per egress port and at most a share of the worker's
/// buffers (a quarter) in all; a copy past either bound is dropped and counted against its
/// egress port as `limitReason`. Mirror copies (`Frame.mirror`) are never held.
public struct FrameHold: Sendable, Equatable {
    /// CLOCK_MONOTONIC nanoseconds (`HandlerContext.now`'s clock) before which the copy must not
    /// leave; 0 or a time not after `now`: leave at once.
    public var until: UInt64
    /// Copies held for one egress port at most (1 and up; 0 means no bound of the handler's own).
    public var limit: UInt32
    /// Extra copies sent besides the frame (duplication), each held like the frame.
    public var duplicates: UInt8
    /// The reason counted when the copy is refused by a bound (the handler's "queue limit").
    public var limitReason: DropReason

    @inlinable
    public init(until: UInt64 = 0, limit: UInt32 = 0, duplicates: UInt8 = 0, limitReason: DropReason = .queueFull) {
        self.until = until; self.limit = limit; self.duplicates = duplicates; self.limitReason = limitReason
    }
}
