// SwitchGuardControl: the control thread's side of the switch's guards and FDB events: the
// periodic sweep (lift blocks after the back-off, flush a newly blocked port's learned entries,
// recount MACs per port, report what changed for the log), `fdb flush`, per-port policies set
// at run time, and subscriptions to the FDB event ring for `fdb monitor` (several watchers:
// whoever polls drains the ring into every subscriber's bounded queue).
import Atomics
import Frames
import Synchronization

/// A guard's change of a port's state, for the daemon's log.
public struct PortGuardNotice: Sendable, Equatable {
    public var port: PortID
    public var blocked: Bool
    public var reason: PortGuardReason
    /// The MAC (and VLAN) whose frame gave the loop or limit away.
    public var mac: MACAddress
    public var vlan: UInt16
    /// Learned entries flushed from the port when it was blocked.
    public var flushed: Int
}

/// Control-thread state of the guards (settings and what the last sweep saw).
final class PortGuardControl: @unchecked Sendable {
    var policies: [String: LearningSwitch.PortPolicy]
    var loopGuard: LearningSwitch.LoopGuardSettings
    var backoffNanoseconds: UInt64
    var seenBlocked = PortSet()
    var lastSweep: UInt64 = 0
    let subscribers = Mutex<[FDBEventSubscription]>([])

    init(_ c: LearningSwitch.Configuration) {
        policies = c.portPolicies
        loopGuard = c.loopGuard
        backoffNanoseconds = UInt64(max(0, c.blockSeconds) * 1e9)
    }
}

/// One watcher of a switch's FDB events (`fdb monitor`). Poll it; cancel it when done.
public final class FDBEventSubscription: @unchecked Sendable {
    public static let queueLimit = 16384
    weak var owner: LearningSwitch?
    private var queue: [FDBEvent] = []
    /// Events this watcher lost because it did not poll fast enough.
    public private(set) var lost: UInt64 = 0
    init(owner: LearningSwitch) { self.owner = owner }

    func offer(_ e: FDBEvent) {
        if queue.count < Self.queueLimit { queue.append(e) } else { lost &+= 1 }
    }

    /// Events since the last poll, oldest first.
    public func poll() -> [FDBEvent] {
        guard let sw = owner else { return [] }
        return sw.guardControl.subscribers.withLock { subs in
            sw.guards.events.drain { e in for s in subs { s.offer(e) } }
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
    }

    /// Stops watching.
    public func cancel() {
        guard let sw = owner else { return }
        sw.guardControl.subscribers.withLock { subs in
            guard let i = subs.firstIndex(where: { $0 === self }) else { return }
            subs.remove(at: i)
            sw.guards.events.removeWatcher()
            // The last watcher gone: what is left in the ring is nobody's (a later watcher starts fresh).
            if subs.isEmpty { sw.guards.events.drain { _ in } }
        }
        owner = nil
    }
}

extension LearningSwitch {
    /// Starts watching FDB events (learn, move, age, flush, evict, block, unblock, limit).
    public func subscribeEvents() -> FDBEventSubscription {
        let s = FDBEventSubscription(owner: self)
        guardControl.subscribers.withLock { subs in
            subs.append(s)
            guards.events.addWatcher()
        }
        return s
    }

    /// Events the ring dropped because it was full (datapath side).
    public var droppedEvents: UInt64 { guards.events.dropped }

    /// Periodic guard work (once a second, control thread): flushes the learned entries of
    /// ports blocked since the last call, lifts blocks older than the back-off, recounts MACs.
    /// Returns what changed, for the log.
    @discardableResult
    public func sweepGuards(now: UInt64 = MonotonicClock.nanoseconds()) -> [PortGuardNotice] {
        var notices: [PortGuardNotice] = []
        let blocked = guards.blocked
        let members = ports.snapshot.members
        for p in blocked {
            let (reason, mac, vlan) = blockFacts(p)
            if !guardControl.seenBlocked.contains(p) {
                let n = flush(port: p, vlan: nil, dynamicOnly: true, now: now)
                notices.append(.init(port: p, blocked: true, reason: reason, mac: mac, vlan: vlan, flushed: n))
            }
            let at = guards.at(guards.blockedAt, p).load(ordering: .acquiring)
            if !members.contains(p) || (at != 0 && now &- at >= guardControl.backoffNanoseconds) {
                if guards.unblock(p, now: now) {
                    guards.counters.add(.unblocks, worker: 0)
                    notices.append(.init(port: p, blocked: false, reason: reason, mac: mac, vlan: vlan, flushed: 0))
                }
            }
        }
        guardControl.seenBlocked = guards.blocked
        // A scan of the whole table: only when a port has a MAC limit to hold.
        if ports.snapshot.guards.anyMACLimit { recountMACs(now: now) }
        return notices
    }

    /// `sweepGuards` if a second has passed since the last one (the daemon calls it from
    /// its control loop, several times a second); nil when it did not run.
    public func sweepGuardsIfDue(now: UInt64 = MonotonicClock.nanoseconds()) -> [PortGuardNotice]? {
        guard now &- guardControl.lastSweep >= 1_000_000_000 else { return nil }
        guardControl.lastSweep = now
        return sweepGuards(now: now)
    }

    private func blockFacts(_ p: PortID) -> (PortGuardReason, MACAddress, UInt16) {
        let r = PortGuardReason(rawValue: UInt16(truncatingIfNeeded: guards.at(guards.blockReason, p).load(ordering: .relaxed))) ?? .none
        let m = guards.at(guards.blockMAC, p).load(ordering: .relaxed)
        return (r, MACAddress(rawValue: m & 0xFFFF_FFFF_FFFF), UInt16(truncatingIfNeeded: m >> 48) & 0x0FFF)
    }

    /// The ports the switch knows now (names for events), from any thread.
    public var portTable: PortTable { ports.snapshot.table }

    /// Ports a guard blocks now.
    public var blockedPorts: PortSet { guards.blocked }

    /// Why `port` is blocked (nil: it is not).
    public func blockReason(_ port: PortID) -> PortGuardReason? {
        guards.isBlocked(port) ? blockFacts(port).0 : nil
    }

    /// Lifts a guard's block on `port` now. Control thread.
    @discardableResult
    public func unblock(_ port: PortID, now: UInt64 = MonotonicClock.nanoseconds()) -> Bool {
        let done = guards.unblock(port, now: now)
        if done { guards.counters.add(.unblocks, worker: 0) }
        guardControl.seenBlocked.remove(port)
        return done
    }

    /// `fdb flush`: removes the entries on `port` (nil: all ports) in `vlan` (nil: all VLANs);
    /// only learned ones with `dynamicOnly`, else static ones too (those added at run time are
    /// forgotten; the configuration's come back at the next port change or reload). Returns
    /// how many. Control thread.
    @discardableResult
    public func flush(port: PortID? = nil, vlan: UInt16? = nil, dynamicOnly: Bool = false,
                      now: UInt64 = MonotonicClock.nanoseconds()) -> Int {
        let ms = ForwardingDatabase.milliseconds(now)
        let events = guards.events
        let n = fdb.flush(port: port, vlan: vlan, dynamicOnly: dynamicOnly) { e in
            events.record(FDBEvent(kind: .flushed, mac: e.mac, vlan: e.vlan, port: e.port, milliseconds: ms))
        }
        if !dynamicOnly { forgetStatic(port: port, vlan: vlan) }
        recountMACs(now: now)
        return n
    }

    /// Sets (or with nil clears) port `name`'s guard policy, in force at once. Control thread.
    public func setPortPolicy(_ policy: PortPolicy?, forPort name: String) {
        guardControl.policies[name] = policy
        republishGuards()
    }

    /// Replaces the loop guard settings and the block back-off, in force at once. Control thread.
    public func setLoopGuard(_ settings: LoopGuardSettings, blockSeconds: Double) {
        guardControl.loopGuard = settings
        guardControl.backoffNanoseconds = UInt64(max(0, blockSeconds) * 1e9)
        republishGuards()
    }

    /// The policy in force for port `name`.
    public func portPolicy(forPort name: String) -> PortPolicy { guardControl.policies[name] ?? PortPolicy() }

    /// The current port facts rebuilt with the current guard settings.
    func republishGuards() {
        let table = ports.snapshot.table
        ports.publish(SwitchPorts(table, guards: guardStorage(for: table)))
    }

    func guardStorage(for table: PortTable) -> PortGuardStorage {
        PortGuardStorage(table, policies: guardControl.policies, loopGuard: guardControl.loopGuard)
    }

    /// Guard counters (stats and metrics) with the event ring's drops.
    func guardCounters() -> [HandlerCounter] {
        GuardCounterEvent.allCases.map { HandlerCounter($0.name, guards.counters.total($0)) }
            + [HandlerCounter("guard_blocked_ports", UInt64(guards.blocked.count)),
               HandlerCounter("fdb_events_dropped", guards.events.dropped)]
    }
}

extension LearningSwitch {
    /// Forgets static entries added at run time on `port` in `vlan` (nil: any), after a flush.
    func forgetStatic(port: PortID?, vlan: UInt16?) {
        extraStatic = extraStatic.filter { _, e in !((port == nil || e.port == port!) && (vlan == nil || e.vlan == vlan!)) }
    }
}
