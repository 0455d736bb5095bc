// SwitchCounters: the learning switch's event counters, one cache-line-padded row per worker
// so concurrent workers never write the same line; summed when read from outside.
import Atomics
import Frames

final class SwitchCounters: @unchecked Sendable {
    enum Event: Int, CaseIterable {
        case learned, moved, evicted, aged, learnFailed, unicast, flooded, hairpinned
        case dropLoop, dropIsolated, dropVLAN, dropNoDestination

        var name: String {
            switch self {
            case .learned: return "fdb_learned"
            case .moved: return "fdb_moved"
            case .evicted: return "fdb_evicted"
            case .aged: return "fdb_aged"
            case .learnFailed: return "fdb_learn_failed"
            case .unicast: return "frames_unicast"
            case .flooded: return "frames_flooded"
            case .hairpinned: return "frames_hairpinned"
            case .dropLoop, .dropIsolated, .dropVLAN, .dropNoDestination: return "frames_dropped"
            }
        }
        var reason: DropReason? {
            switch self {
            case .dropLoop: return .loop
            case .dropIsolated: return .isolated
            case .dropVLAN: return .vlan
            case .dropNoDestination: return .noDestination
            default: return nil
            }
        }
    }

    static let rows = 64
    static let stride = 16   // 16 x 8 bytes: a row never shares a cache line with another
    let storage: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>

    init() {
        precondition(Event.allCases.count <= Self.stride)
        storage = .allocate(capacity: Self.rows * Self.stride)
        storage.initialize(repeating: .init(0), count: Self.rows * Self.stride)
    }
    deinit { storage.deallocate() }

    struct Slot {
        let base: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
        @inline(__always) func add(_ e: Event, _ n: UInt64 = 1) {
            UnsafeAtomic<UInt64>(at: base + e.rawValue).wrappingIncrement(by: n, ordering: .relaxed)
        }
        @inline(__always) func drop(_ reason: DropReason) -> Verdict {
            switch reason {
            case .loop: add(.dropLoop)
            case .isolated: add(.dropIsolated)
            case .vlan: add(.dropVLAN)
            default: add(.dropNoDestination)
            }
            return .drop(reason)
        }
    }

    /// The row of worker `worker` (workers past 63 share rows; increments stay atomic).
    @inline(__always) func slot(_ worker: Int) -> Slot {
        Slot(base: storage + (worker & (Self.rows - 1)) * Self.stride)
    }

    func total(_ e: Event) -> UInt64 {
        var sum: UInt64 = 0
        for r in 0..<Self.rows {
            sum &+= UnsafeAtomic<UInt64>(at: storage + r * Self.stride + e.rawValue).load(ordering: .relaxed)
        }
        return sum
    }

    func totals() -> [HandlerCounter] {
        Event.allCases.map { e in
            if let r = e.reason { return HandlerCounter(e.name, total(e), labels: ["reason": r.name]) }
            return HandlerCounter(e.name, total(e))
        }
    }
}
