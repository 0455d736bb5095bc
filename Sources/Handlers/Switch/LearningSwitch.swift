// LearningSwitch: the bundled L2 switch handler. Learns source MACs per VLAN, forwards known
// unicast to one port, floods the rest within the frame's VLAN; honours port isolation,
// hairpin (reflective relay) and 802.1Q access/trunk membership. Lock-free on the hot path:
// the FDB is a table of atomics (ForwardingDatabase) and port facts an atomically published
// snapshot (SwitchPorts).
#if canImport(Glibc)
import Glibc
#endif
import Atomics
import Frames

public final class LearningSwitch: FrameHandler, @unchecked Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Seconds an unrefreshed learned entry lives (Linux bridge default: 300).
        public var agingTime: Double = 300
        /// Most learned entries the FDB holds; past it the oldest learned entry near the new one is evicted.
        public var capacity: Int = 8192
        /// Most static entries (the configuration's and those added at run time together),
        /// counted apart from learned ones so they never take learning's room. nil: an eighth
        /// of `capacity`. The configuration allows at most half of `capacity`.
        public var maxStatic: Int?
        /// Static entries by port name, installed whenever that port is attached.
        public var staticEntries: [StaticEntry] = []
        /// Guards per port name (MAC limit, flood switches, storm control: PortGuards.swift),
        /// the loop guard, and how long a guard keeps a port blocked.
        public var portPolicies: [String: PortPolicy] = [:]
        public var loopGuard = LoopGuardSettings()
        public var blockSeconds: Double = 30
        /// IGMP/MLD snooping (MulticastSnooping.swift); nil: multicast floods like broadcast.
        public var multicastSnooping: MulticastSnooping.Configuration? = .init()
        public init(agingTime: Double = 300, capacity: Int = 8192, maxStatic: Int? = nil, staticEntries: [StaticEntry] = [],
                    multicastSnooping: MulticastSnooping.Configuration? = .init()) {
            self.agingTime = agingTime; self.capacity = capacity; self.maxStatic = maxStatic; self.staticEntries = staticEntries
            self.multicastSnooping = multicastSnooping
        }
        /// The static entry bound in force.
        public var staticLimit: Int { max(0, maxStatic ?? capacity / 8) }
    }

    /// Why `addStatic` refused an entry.
    public enum StaticEntryRefusal: Error, Equatable, CustomStringConvertible {
        /// `maxStatic` static entries are already pinned.
        case limitReached(limit: Int)
        /// Every slot near this MAC's place in the table holds a static entry.
        case noRoomNearMAC
        public var description: String {
            switch self {
            case .limitReached(let limit): "the static entry limit (\(limit), key max-static) is reached"
            case .noRoomNearMAC: "no room for it: the FDB slots near this MAC all hold static entries"
            }
        }
    }

    /// A MAC pinned to a port: never aged, never moved by learning.
    public struct StaticEntry: Sendable, Equatable {
        public var mac: MACAddress
        public var vlan: UInt16
        public var port: String
        public init(mac: MACAddress, vlan: UInt16 = 0, port: String) { self.mac = mac; self.vlan = vlan; self.port = port }
    }

    public let name = "learning-switch"
    public let configuration: Configuration
    let fdb: ForwardingDatabase
    let ports: SnapshotPublisher<SwitchPorts>
    let counters_ = SwitchCounters()
    let stpGate = SpanningTreeGate()
    /// The bridge's spanning tree (SpanningTree/): off until `spanningTree.enable`.
    public let spanningTree: SpanningTreeController
    let guards = PortGuardState()
    let guardControl: PortGuardControl
    /// The multicast database, if snooping is on; `multicast` is its datapath half.
    public let snooping: MulticastSnooping?
    let multicast: MulticastForwarder?

    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
        fdb = ForwardingDatabase(capacity: configuration.capacity, staticCapacity: configuration.staticLimit,
                                 agingSeconds: configuration.agingTime)
        ports = SnapshotPublisher(SwitchPorts(.empty))
        spanningTree = SpanningTreeController(gate: stpGate, fdb: fdb)
        guardControl = PortGuardControl(configuration)
        snooping = configuration.multicastSnooping.map { MulticastSnooping(configuration: $0) }
        multicast = snooping?.forwarder
    }

    // MARK: hot path

    public func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        let c = counters_.slot(context.worker)
        return ports.withCurrent { sp in
            let ingress = frame.ingress
            guard sp.members.contains(ingress) else { return c.drop(.noDestination) }
            // 0. Spanning tree (SpanningTreeGate.swift): BPDUs go to the protocol; a port it holds
            // out of learning/forwarding neither learns nor forwards, nor is forwarded to.
            var stpForwarding = sp.members
            if stpGate.isActive {
                if SpanningTreeGate.isBPDU(frame) { stpGate.post(frame); return .drop(SpanningTreeGate.bpduReason) }
                let (learning, forwarding) = stpGate.current()
                guard learning.contains(ingress) else { return .drop(SpanningTreeGate.blockedReason) }
                stpForwarding = forwarding
            }
            // 1. Classify into a VLAN (0: the VLAN-unaware segment).
            let i = Int(ingress.rawValue)
            var vlan: UInt16 = 0
            switch sp.kind[i] {
            case 0:
                break
            case 1:  // access: untagged or priority-tagged only
                if let t = frame.taggedVLAN, t != 0 { return c.drop(.vlan) }
                vlan = sp.untaggedVLAN[i]
            default:  // trunk
                if let t = frame.taggedVLAN, t != 0 {
                    guard sp.vlanMembers[Int(t)].contains(ingress) else { return c.drop(.vlan) }
                    vlan = t
                } else {
                    vlan = sp.untaggedVLAN[i]
                    guard vlan != 0 else { return c.drop(.vlan) }
                }
            }
            frame.vlan = vlan
            let g = sp.guards
            if g.active, let v = guardIngress(&frame, g, context) { return v }

            // 2. Learn the source.
            let src = frame.source
            if src.isUnicast && src != .zero {
                switch fdb.learn(src, vlan: vlan, port: ingress, now: context.now, allowNew: !g.active || mayLearn(g, ingress)) {
                case .refreshed, .stuckOnStatic: break
                case .learned: c.add(.learned); noteLearned(src, vlan: vlan, port: ingress, now: context.now)
                case .moved(let from):
                    c.add(.moved)
                    if let v = noteMoved(src, vlan: vlan, from: from, to: ingress, g, context) { return v }
                case .evicted: c.add(.learned); c.add(.evicted); noteLearned(src, vlan: vlan, port: ingress, now: context.now)
                case .full: c.add(.learnFailed)
                case .refused: return macLimitReached(src, vlan: vlan, port: ingress, g, context)
                }
            }

            guard stpForwarding.contains(ingress) else { return .drop(SpanningTreeGate.blockedReason) }

            // 3. Forward.
            let ingressIsolated = sp.isolated.contains(ingress)
            let dst = frame.destination
            if dst.isUnicast, let out = fdb.lookup(dst, vlan: vlan, now: context.now),
               sp.vlanMembers[Int(vlan)].contains(out) {
                guard stpForwarding.contains(out) else { return .drop(SpanningTreeGate.blockedReason) }
                if g.active && guards.isBlocked(out) { return blockedEgress(context) }
                if out == ingress {
                    guard sp.hairpin.contains(ingress) else { return c.drop(.loop) }
                    c.add(.hairpinned)
                    return .forward(out)
                }
                if ingressIsolated && sp.isolated.contains(out) { return c.drop(.isolated) }
                c.add(.unicast)
                return .forward(out)
            }
            var set = sp.vlanMembers[Int(vlan)].intersection(stpForwarding)
            if dst.isMulticast, let m = multicast {
                switch m.decide(frame, vlan: vlan, context: context) {
                case .unchanged: break
                case .restrict(let s): set = set.intersection(s)
                case .drop: return c.drop(.malformed)
                }
            }
            if !sp.hairpin.contains(ingress) { set.remove(ingress) }
            if ingressIsolated { set = set.subtracting(sp.isolated.subtracting(PortSet([ingress]))) }
            if g.active, let v = guardFlood(&set, frame, g, context) { return v }
            guard !set.isEmpty else { return c.drop(.noDestination) }
            c.add(.flooded)
            return .forwardSet(set)
        }
    }

    // MARK: control thread

    public func portsChanged(_ table: PortTable) {
        let snapshot = SwitchPorts(table, guards: guardStorage(for: table))
        ports.publish(snapshot)
        spanningTree.portsChanged(table, nowMs: MonotonicClock.nanoseconds() / 1_000_000)
        for p in guards.blocked where !snapshot.members.contains(p) { unblock(p) }
        snooping?.portsChanged(snapshot.members)
        _ = fdb.flush(notIn: snapshot.members)
        // (Re)install static entries for ports that are present.
        _ = fdb.removeAllStatic()
        for e in configuration.staticEntries {
            if let p = table.port(named: e.port) { fdb.setStatic(e.mac, vlan: e.vlan, port: p.id) }
        }
        for e in extraStatic.values {
            if snapshot.members.contains(e.port) { fdb.setStatic(e.mac, vlan: e.vlan, port: e.port) }
        }
    }

    var extraStatic: [UInt64: (mac: MACAddress, vlan: UInt16, port: PortID)] = [:]

    /// Pins `mac` (in `vlan`) to `port` until removed; survives port changes. Refused past
    /// `maxStatic` distinct static entries (the configuration's count too), so the table's
    /// bound holds whatever the control socket asks. Control thread only.
    public func addStatic(mac: MACAddress, vlan: UInt16 = 0, port: PortID) throws(StaticEntryRefusal) {
        let key = ForwardingDatabase.key(mac, vlan: vlan)
        let configured = Set(configuration.staticEntries.map { ForwardingDatabase.key($0.mac, vlan: $0.vlan) })
        if extraStatic[key] == nil && !configured.contains(key) {
            let pinned = configured.count + extraStatic.keys.filter { !configured.contains($0) }.count
            guard pinned < configuration.staticLimit else { throw .limitReached(limit: configuration.staticLimit) }
        }
        switch fdb.setStatic(mac, vlan: vlan, port: port) {
        case .installed: extraStatic[key] = (mac, vlan, port)
        case .limitReached:
            extraStatic[key] = nil
            throw .limitReached(limit: configuration.staticLimit)
        case .windowFull:
            extraStatic[key] = nil
            throw .noRoomNearMAC
        }
    }

    /// Removes an entry (static or learned). Returns whether one was there.
    @discardableResult
    public func removeEntry(mac: MACAddress, vlan: UInt16 = 0) -> Bool {
        extraStatic[ForwardingDatabase.key(mac, vlan: vlan)] = nil
        return fdb.remove(mac, vlan: vlan)
    }

    /// Drops learned entries past the aging time; returns how many. Call periodically (the
    /// hot path already ignores stale entries; this returns their slots).
    @discardableResult
    public func expire(now: UInt64 = MonotonicClock.nanoseconds()) -> Int {
        let events = guards.events, ms = ForwardingDatabase.milliseconds(now)
        let n = fdb.expire(now: now, removed: events.isWatched ? { e in
            events.record(FDBEvent(kind: .aged, mac: e.mac, vlan: e.vlan, port: e.port, milliseconds: ms))
        } : nil)
        counters_.slot(0).add(.aged, UInt64(n))
        snooping?.maintain(now: now)
        return n
    }

    /// The FDB's current entries, sorted by VLAN then MAC.
    public func entries(now: UInt64 = MonotonicClock.nanoseconds()) -> [FDBEntry] { fdb.entries(now: now) }

    public func counters() -> [HandlerCounter] {
        [HandlerCounter("fdb_entries", UInt64(fdb.count)), HandlerCounter("fdb_capacity", UInt64(fdb.capacity))]
            + counters_.totals() + spanningTree.counters() + guardCounters() + (snooping?.counters() ?? [])
    }
}
