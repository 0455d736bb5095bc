// CounterRows: a handler's event counters, one cache-line-padded row per worker so concurrent
// workers never write the same line, summed when read from outside. The learning switch
// (SwitchCounters), multicast snooping (MulticastCounters) and the port guards (GuardCounters)
// each keep theirs in one. Per frame a count is one relaxed atomic add at a constant offset:
// the row's base and the event's raw value (both known once the generic code is specialized,
// which it is within this module); no allocation, no reference counting.
import Atomics

/// What a `CounterRows` counts: an enum with consecutive raw values from 0, fewer than
/// `rowStride` of them.
protocol CounterRowEvent: RawRepresentable, CaseIterable where RawValue == Int {
    /// Counters per row: 16 (two cache lines' worth of UInt64) unless the enum says fewer.
    static var rowStride: Int { get }
}

extension CounterRowEvent {
    static var rowStride: Int { 16 }
}

/// One worker's row: where that worker counts.
struct CounterRow<Event: CounterRowEvent> {
    let base: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    @inline(__always) func add(_ e: Event, _ n: UInt64 = 1) {
        UnsafeAtomic<UInt64>(at: base + e.rawValue).wrappingIncrement(by: n, ordering: .relaxed)
    }
}

/// The rows (64: workers past 63 share rows, increments stay atomic). Owns its storage.
final class CounterRows<Event: CounterRowEvent>: @unchecked Sendable {
    static var rows: Int { 64 }
    let storage: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>

    init() {
        precondition(Event.allCases.count <= Event.rowStride && Event.rowStride % 8 == 0)
        storage = .allocate(capacity: Self.rows * Event.rowStride)
        storage.initialize(repeating: .init(0), count: Self.rows * Event.rowStride)
    }
    deinit { storage.deallocate() }

    /// The row of worker `worker` in the rows at `storage` (for a datapath half that keeps
    /// only the raw pointer).
    @inline(__always) static func row(_ storage: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>, worker: Int) -> CounterRow<Event> {
        CounterRow(base: storage + (worker & (rows - 1)) * Event.rowStride)
    }
    /// The row of worker `worker`.
    @inline(__always) func slot(_ worker: Int) -> CounterRow<Event> { Self.row(storage, worker: worker) }
    @inline(__always) func add(_ e: Event, worker: Int, _ n: UInt64 = 1) { slot(worker).add(e, n) }
    /// Counts in the control thread's row (row 0).
    func add(_ e: Event, _ n: UInt64 = 1) { slot(0).add(e, n) }

    func total(_ e: Event) -> UInt64 {
        var sum: UInt64 = 0
        for r in 0..<Self.rows {
            sum &+= UnsafeAtomic<UInt64>(at: storage + r * Event.rowStride + e.rawValue).load(ordering: .relaxed)
        }
        return sum
    }
}
