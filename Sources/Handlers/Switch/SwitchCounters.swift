// SwitchCounters: the learning switch's event counters, one cache-line-padded row per worker
// (CounterRows) so concurrent workers never write the same line; summed when read from outside.
import Atomics
import Frames

typealias SwitchCounters = CounterRows<SwitchCounterEvent>

enum SwitchCounterEvent: Int, CounterRowEvent {
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

extension CounterRow where Event == SwitchCounterEvent {
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

extension CounterRows where Event == SwitchCounterEvent {
    func totals() -> [HandlerCounter] {
        Event.allCases.map { e in
            if let r = e.reason { return HandlerCounter(e.name, total(e), labels: ["reason": r.name]) }
            return HandlerCounter(e.name, total(e))
        }
    }
}
