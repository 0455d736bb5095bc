// PortSecurity: the per-port MAC limit (`max-macs`). A port at its limit neither learns a new
// MAC nor takes one over from another port; the frame is dropped and counted
// (`guard_mac_limit_drops`), or with `max-macs-action = "block"` the port is blocked for the
// back-off (`guard_mac_limit_blocks`, logged).
//
// Counting. Each port's count is an atomic the workers increment when they learn on it. Entries
// leave the table in ways the workers do not see one by one (aging, eviction, a move away, a
// flush), so the control thread recounts every sweep (once a second): it notes the count,
// scans the table, and adds (scanned - noted). Learns made during the scan may be counted
// twice, never missed: the count is an upper bound of the port's entries, exact again at the
// next sweep, so a port never holds more than `max-macs` learned MACs.
import Atomics
import Frames

extension LearningSwitch {
    /// Whether `port` may learn a MAC it does not have (hot path, guards active).
    @inline(__always)
    func mayLearn(_ g: PortGuardFacts, _ port: PortID) -> Bool {
        let limit = g.maxMACs[Int(port.rawValue & 0xFF)]
        guard limit != 0 else { return true }
        return guards.at(guards.macCount, port).load(ordering: .relaxed) < UInt64(limit)
    }

    /// A MAC was learned on (or moved onto) `port`: count it and tell watchers.
    @inline(__always)
    func noteLearned(_ mac: MACAddress, vlan: UInt16, port: PortID, now: UInt64, kind: FDBEvent.Kind = .learned, from: PortID? = nil) {
        guards.at(guards.macCount, port).wrappingIncrement(ordering: .relaxed)
        guards.events.record(FDBEvent(kind: kind, mac: mac, vlan: vlan, port: port, detail: from?.rawValue ?? 0,
                                      milliseconds: ForwardingDatabase.milliseconds(now)))
    }

    /// A new source MAC past its port's limit: drop (and count), or block the port.
    @inline(never)
    func macLimitReached(_ mac: MACAddress, vlan: UInt16, port: PortID, _ g: PortGuardFacts, _ context: HandlerContext) -> Verdict {
        guards.counters.add(.macLimitDrops, worker: context.worker)
        if g.blockOnLimit.contains(port),
           guards.block(port, reason: .macLimit, mac: mac, vlan: vlan, now: context.now) {
            guards.counters.add(.macLimitBlocks, worker: context.worker)
        } else {
            guards.events.record(FDBEvent(kind: .limited, mac: mac, vlan: vlan, port: port,
                                          milliseconds: ForwardingDatabase.milliseconds(context.now)))
        }
        return .drop(.macLimit)
    }

    /// Control thread: brings every port's MAC count back to the table's (see the header).
    func recountMACs(now: UInt64) {
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: PortSet.capacity)
        defer { counts.deallocate() }
        var noted = [UInt64](repeating: 0, count: PortSet.capacity)
        for p in 0..<PortSet.capacity { noted[p] = guards.at(guards.macCount, PortID(p)).load(ordering: .relaxed) }
        fdb.learnedPerPort(into: counts, now: now)
        for p in 0..<PortSet.capacity {
            let delta = UInt64(bitPattern: Int64(counts[p])) &- noted[p]
            guards.at(guards.macCount, PortID(p)).wrappingIncrement(by: delta, ordering: .relaxed)
        }
    }

    /// MACs counted against `port`'s limit (an upper bound; exact after a sweep).
    public func learnedMACs(onPort port: PortID) -> Int {
        Int(truncatingIfNeeded: guards.at(guards.macCount, port).load(ordering: .relaxed))
    }
}
