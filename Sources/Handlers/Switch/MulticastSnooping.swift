// MulticastSnooping: IGMP/MLD snooping for the learning switch, as the Linux bridge does it by
// default (IGMPv2/MLDv1 semantics; IGMPv3/MLDv2 reports read without source tracking). Owns the
// multicast database: which ports have listeners for which (VLAN, group), and which ports lead
// to multicast routers.
//
// Split between the datapath and the control thread, Snabb-style: a worker that sees an
// IGMP/MLD message parses it (IGMPParser, MLDParser) and pushes its events into a bounded
// one-way ring (MulticastEventRing; full: dropped and counted); the control thread drains the
// ring in `maintain(now:)` (the daemon's sweep, every second while snooping is on), keeps each
// membership's timer, and publishes member sets into a preallocated, bounded table the
// workers read without locks (MulticastGroupTable). A new group is therefore registered up to
// a second after its first report; until then its traffic is unregistered, which floods by
// default, so a join never loses traffic.
//
// Forwarding (per frame, in LearningSwitch after the unicast lookup failed):
// - link-local groups (224.0.0.x, ff02::1, ff00::/15) and queries: flood;
// - reports, leaves and dones: to the router ports, flooded while none is known;
// - data for a registered group: its member ports and the router ports of its family;
// - data for an unregistered group: flood (`floodUnregistered`, the default), or to the
//   router ports only (what the Linux bridge does once it has seen a querier);
// - IGMP/MLD messages failing their checks: dropped.
// Timers (RFC 2236, 3376, 2710, 3810): a membership lives `membershipInterval` =
// robustness x query interval + query response interval after its last report (260 s); a
// leave shortens it to the last member query time (robustness x last member interval, 2 s)
// unless `fastLeave` removes the port at once; a group-specific query shortens every member's
// timer to robustness x its max response time; a router port lives the other querier present
// interval (robustness x query interval + response interval / 2, 255 s) after its last query,
// PIM hello or router advertisement.
import Atomics
import Frames
import Synchronization

public final class MulticastSnooping: @unchecked Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Most (VLAN, group) entries; a join for a new group past it is refused and counted
        /// (`mdb_full`): the group's traffic stays unregistered. Linux: hash_max 4096.
        public var capacity: Int = 4096
        /// Seconds between a querier's general queries (RFC 3376 8.2: 125).
        public var queryInterval: Double = 125
        /// Seconds a general query gives listeners to answer (RFC 3376 8.3: 10).
        public var queryResponseInterval: Double = 10
        /// The robustness variable (RFC 3376 8.1: 2).
        public var robustness: Int = 2
        /// Seconds between group-specific queries after a leave (RFC 3376 8.8: 1).
        public var lastMemberInterval: Double = 1
        /// Remove a port from a group as soon as it leaves (for ports with one listener each,
        /// such as a VM's), instead of after the last member query time.
        public var fastLeave: Bool = false
        /// Unregistered multicast (no listener ever reported the group) floods; false: it goes
        /// to the router ports only.
        public var floodUnregistered: Bool = true
        /// Most events waiting between two `maintain` calls; more are dropped and counted.
        public var eventQueue: Int = 4096
        /// Send general queries while no lower-addressed querier is heard (MulticastQuerier,
        /// MulticastQuerierSchedule; the daemon sends them). Linux: mcast_querier, default off.
        public var querier: Bool = false
        /// IPv4 source of our IGMP queries (0.0.0.0: a switch without an address, RFC 4541 2.1.1).
        public var querierAddress: UInt32 = 0

        public init(capacity: Int = 4096, queryInterval: Double = 125, queryResponseInterval: Double = 10, robustness: Int = 2,
                    lastMemberInterval: Double = 1, fastLeave: Bool = false, floodUnregistered: Bool = true) {
            self.capacity = capacity; self.queryInterval = queryInterval; self.queryResponseInterval = queryResponseInterval
            self.robustness = robustness; self.lastMemberInterval = lastMemberInterval; self.fastLeave = fastLeave
            self.floodUnregistered = floodUnregistered
        }

        /// Group membership interval: how long a membership lives after its last report.
        public var membershipInterval: Double { Double(robustness) * queryInterval + queryResponseInterval }
        /// Last member query time: how long a membership lives after a leave.
        public var lastMemberQueryTime: Double { Double(robustness) * lastMemberInterval }
        /// Other querier present interval: how long a router port lives after its last query.
        public var routerInterval: Double { Double(robustness) * queryInterval + queryResponseInterval / 2 }
    }

    /// One membership, as `tapbridge mdb` shows it.
    public struct Membership: Equatable, Sendable {
        public var group: MulticastGroup
        public var vlan: UInt16
        public var port: PortID
        /// Seconds until it expires unless refreshed.
        public var expiresIn: Double
    }

    /// A router port, as `tapbridge mdb` shows it.
    public struct RouterPort: Equatable, Sendable {
        public var port: PortID
        public var ipv6: Bool
        public var expiresIn: Double
    }

    public let configuration: Configuration
    let forwarder: MulticastForwarder
    let counterRows = MulticastCounters()

    struct GroupKey: Hashable { var group: MulticastGroup; var vlan: UInt16 }
    struct ControlState {
        /// Port -> expiry (CLOCK_MONOTONIC ns) per group.
        var groups: [GroupKey: [UInt16: UInt64]] = [:]
        /// Port -> expiry, IPv4 [0] and IPv6 [1].
        var routers: [[UInt16: UInt64]] = [[:], [:]]
        var ports = PortSet()
        /// The lowest-addressed querier heard per family (IPv4 [0], IPv6 [1]) and when.
        var queriers: [(address: MulticastGroup, at: UInt64)?] = [nil, nil]
    }
    private let state = Mutex(ControlState())

    public init(configuration: Configuration = .init()) {
        precondition(configuration.capacity > 0 && configuration.robustness > 0, "multicast snooping bounds must be positive")
        self.configuration = configuration
        forwarder = MulticastForwarder(table: MulticastGroupTable(capacity: configuration.capacity),
                                       ring: MulticastEventRing(capacity: configuration.eventQueue),
                                       counters: counterRows.storage, floodUnregistered: configuration.floodUnregistered)
    }

    deinit {
        forwarder.table.deallocate()
        forwarder.ring.deallocate()
    }

    // MARK: control thread

    private func nanoseconds(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1e9) }

    /// Applies the queued events and expires memberships and router ports past their time.
    public func maintain(now: UInt64 = MonotonicClock.nanoseconds()) {
        let c = configuration
        let membership = nanoseconds(c.membershipInterval), lastMember = nanoseconds(c.lastMemberQueryTime)
        let router = nanoseconds(c.routerInterval)
        state.withLock { s in
            var touched = Set<GroupKey>()
            var routersTouched = false
            while let e = forwarder.ring.pop() {
                let key = GroupKey(group: e.event.group, vlan: e.vlan)
                let port = e.port.rawValue
                guard s.ports.contains(e.port) else { continue }
                switch e.event.kind {
                case .join:
                    if s.groups[key] == nil {
                        guard s.groups.count < c.capacity, forwarder.table.hasRoom(key.group, vlan: key.vlan) else {
                            counterRows.add(.joinRefused); continue
                        }
                        counterRows.add(.groupsAdded)
                    }
                    s.groups[key, default: [:]][port] = e.at &+ membership
                    touched.insert(key)
                case .leave:
                    guard let expiry = s.groups[key]?[port] else { continue }
                    s.groups[key]![port] = c.fastLeave ? 0 : min(expiry, e.at &+ lastMember)
                    touched.insert(key)
                case .groupQuery:
                    guard let ports = s.groups[key] else { continue }
                    let limit = e.at &+ UInt64(c.robustness) * UInt64(e.event.maxResponseMs) * 1_000_000
                    s.groups[key] = ports.mapValues { min($0, limit) }
                    touched.insert(key)
                case .router:
                    let f = e.event.group.isIPv6 ? 1 : 0
                    s.routers[f][port] = e.at &+ router
                    routersTouched = true
                    // A query carries its source: keep the lowest one still present (RFC 3376 6.6.2).
                    let a = e.event.group
                    if a.high != 0 || a.low != 0 {
                        if let q = s.queriers[f], q.address < a, q.at &+ router > e.at { break }
                        s.queriers[f] = (a, e.at)
                    }
                }
            }
            // Expiry: every group with a port past its time (and those touched above).
            for (key, ports) in s.groups where touched.contains(key) || ports.values.contains(where: { $0 <= now }) {
                let alive = ports.filter { $0.value > now }
                counterRows.add(.membershipsExpired, UInt64(ports.count - alive.count))
                s.groups[key] = alive.isEmpty ? nil : alive
                touched.insert(key)
            }
            for f in 0..<2 where s.routers[f].values.contains(where: { $0 <= now }) {
                s.routers[f] = s.routers[f].filter { $0.value > now }
                routersTouched = true
            }
            publish(&s, touched: touched, routers: routersTouched)
        }
    }

    /// Writes the changed groups (and router sets) into the datapath's table.
    private func publish(_ s: inout ControlState, touched: Set<GroupKey>, routers: Bool) {
        for key in touched {
            guard let ports = s.groups[key], !ports.isEmpty else {
                forwarder.table.remove(key.group, vlan: key.vlan)
                continue
            }
            if !forwarder.table.set(key.group, vlan: key.vlan, members: PortSet(ports.keys.map { PortID($0) })) {
                s.groups[key] = nil
                counterRows.add(.joinRefused)
            }
        }
        if routers {
            for f in 0..<2 { forwarder.table.setRouters(PortSet(s.routers[f].keys.map { PortID($0) }), ipv6: f == 1) }
        }
    }

    /// The bridge's ports changed: forget memberships and router ports of ports that left.
    public func portsChanged(_ members: PortSet) {
        state.withLock { s in
            s.ports = members
            var touched = Set<GroupKey>()
            for (key, ports) in s.groups where ports.keys.contains(where: { !members.contains(PortID($0)) }) {
                let kept = ports.filter { members.contains(PortID($0.key)) }
                s.groups[key] = kept.isEmpty ? nil : kept
                touched.insert(key)
            }
            for f in 0..<2 { s.routers[f] = s.routers[f].filter { members.contains(PortID($0.key)) } }
            publish(&s, touched: touched, routers: true)
        }
    }

    /// The memberships, sorted by VLAN, group, port.
    public func memberships(now: UInt64 = MonotonicClock.nanoseconds()) -> [Membership] {
        state.withLock { s in
            s.groups.flatMap { key, ports in
                ports.map { Membership(group: key.group, vlan: key.vlan, port: PortID($0.key),
                                       expiresIn: $0.value > now ? Double($0.value - now) / 1e9 : 0) }
            }
        }.sorted { ($0.vlan, $0.group, $0.port) < ($1.vlan, $1.group, $1.port) }
    }

    /// The router ports, sorted by family then port.
    public func routerPorts(now: UInt64 = MonotonicClock.nanoseconds()) -> [RouterPort] {
        state.withLock { s in
            (0..<2).flatMap { f in
                s.routers[f].map { RouterPort(port: PortID($0.key), ipv6: f == 1,
                                              expiresIn: $0.value > now ? Double($0.value - now) / 1e9 : 0) }
            }
        }.sorted { ($0.ipv6 ? 1 : 0, $0.port) < ($1.ipv6 ? 1 : 0, $1.port) }
    }

    /// The lowest-addressed querier heard within the other querier present interval
    /// (`routerInterval`), per family; nil when none (queries from 0.0.0.0 do not count).
    public func otherQuerier(ipv6: Bool, now: UInt64 = MonotonicClock.nanoseconds()) -> MulticastGroup? {
        let interval = nanoseconds(configuration.routerInterval)
        return state.withLock { s in
            guard let q = s.queriers[ipv6 ? 1 : 0], q.at &+ interval > now else { return nil }
            return q.address
        }
    }

    /// Counts general queries the daemon's querier sent, and those the engine refused.
    public func countQueries(sent: Int, refused: Int) {
        counterRows.add(.queriesSent, UInt64(sent))
        counterRows.add(.queriesRefused, UInt64(refused))
    }

    /// Groups registered (VLAN, group pairs with at least one listener).
    public var groupCount: Int { state.withLock { $0.groups.count } }

    /// The snooping counters and the database's size and bound, for stats and metrics.
    public func counters() -> [HandlerCounter] {
        [HandlerCounter("mdb_entries", UInt64(groupCount)), HandlerCounter("mdb_capacity", UInt64(configuration.capacity))]
            + counterRows.totals()
    }
}

/// The datapath half: raw pointers only (table, ring, counter rows), so a frame costs no
/// reference counting. Owned by a MulticastSnooping, which frees the memory.
struct MulticastForwarder {
    let table: MulticastGroupTable
    let ring: MulticastEventRing
    let counters: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    let floodUnregistered: Bool

    enum Decision { case unchanged, restrict(PortSet), drop }

    /// The event sink of one frame: stamps events with port, VLAN and time, and queues them.
    struct RingSink: MulticastEventSink {
        let ring: MulticastEventRing
        let port: PortID
        let vlan: UInt16
        let now: UInt64
        var dropped = 0
        var queued = 0
        @inline(__always) mutating func take(_ event: MulticastEvent) -> Bool {
            if ring.push(SnoopedEvent(event: event, port: port, vlan: vlan, at: now)) { queued += 1; return true }
            dropped += 1
            return false
        }
    }

    /// Where a multicast frame (destination MAC with the group bit) may go. Not inlined: the
    /// switch's `handle` keeps the code it had for unicast, and this costs one call.
    @inline(never)
    func decide(_ frame: Frame, vlan: UInt16, context: HandlerContext) -> Decision {
        let prefix = frame.destination.rawValue >> 24
        // 01:00:5e:00-7f (IPv4) or 33:33 (IPv6) MACs only: other multicast is not IP.
        guard prefix == 0x01005E || prefix >> 8 == 0x3333 else { return .unchanged }
        let row = MulticastCounters.row(counters, worker: context.worker)
        var sink = RingSink(ring: ring, port: frame.ingress, vlan: vlan, now: context.now)
        let kind = MulticastParser.classify(UnsafeRawBufferPointer(frame.bytes), sink: &sink)
        if sink.dropped > 0 { row.add(.eventsDropped, UInt64(sink.dropped)) }
        switch kind {
        case .notSnooped, .linkLocal:
            return .unchanged
        case .query:
            row.add(.queries)
            return .unchanged
        case .report:
            row.add(.reports)
            let routers = table.routers(ipv6: frame.etherTypeIsIPv6)
            return routers.isEmpty ? .unchanged : .restrict(routers)
        case .malformed:
            row.add(.malformed)
            return .drop
        case .data(let group):
            let routers = table.routers(ipv6: group.isIPv6)
            if let members = table.members(group, vlan: vlan) {
                row.add(.registered)
                return .restrict(members.union(routers))
            }
            row.add(.unregistered)
            return floodUnregistered ? .unchanged : .restrict(routers)
        }
    }
}

extension Frame {
    /// Whether the frame's payload (after VLAN tags) is IPv6.
    @inline(__always) var etherTypeIsIPv6: Bool { payload?.etherType == EtherType.ipv6 }
}

/// Snooping's counters, one cache-line-padded row per worker (CounterRows; the control thread
/// uses row 0).
typealias MulticastCounters = CounterRows<MulticastCounterEvent>

enum MulticastCounterEvent: Int, CounterRowEvent {
    case reports, queries, malformed, eventsDropped, registered, unregistered
    case groupsAdded, joinRefused, membershipsExpired, queriesSent, queriesRefused

    var name: String {
        switch self {
        case .reports: return "mcast_reports"
        case .queries: return "mcast_queries"
        case .malformed: return "mcast_malformed"
        case .eventsDropped: return "mcast_events_dropped"
        case .registered: return "mcast_frames_registered"
        case .unregistered: return "mcast_frames_unregistered"
        case .groupsAdded: return "mdb_added"
        case .joinRefused: return "mdb_full"
        case .membershipsExpired: return "mdb_expired"
        case .queriesSent: return "mcast_queries_sent"
        case .queriesRefused: return "mcast_queries_refused"
        }
    }
}

extension CounterRows where Event == MulticastCounterEvent {
    func totals() -> [HandlerCounter] { Event.allCases.map { HandlerCounter($0.name, total($0)) } }
}
