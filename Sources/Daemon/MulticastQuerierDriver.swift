// MulticastQuerierDriver: the daemon's side of the snooping switch's querier
// (`multicast-querier = true`). For each such bridge it builds the IGMPv3 and MLDv2 general
// queries once (MulticastQuerier: from the bridge's stable MAC, the one the spanning tree
// uses, and its fe80:: address), asks the bridge's MulticastQuerierSchedule on every control
// loop wake-up which are due (startup, interval, election against the queriers snooping heard)
// and injects each due query out of every port of the bridge with `Engine.inject`, counting
// sent and refused (`mcast_queries_sent`, `mcast_queries_refused`). Queries go out untagged,
// past the handlers (a port's VLAN settings are not applied); on a spanning-tree bridge only
// out of ports in the forwarding state, as frames the switch forwards.
import Config
import Datapath
import Frames
import Handlers
import Logging

final class MulticastQuerierDriver {
    struct Running {
        let name: String
        let bridge: Bridge
        let snooping: MulticastSnooping
        /// The bridge's spanning tree, if it runs one (queries skip its non-forwarding ports).
        let spanningTree: SpanningTreeController?
        var schedule: MulticastQuerierSchedule
        /// The IGMP and MLD general queries, built once.
        let queries: [[UInt8]]
    }
    private(set) var running: [Running] = []

    /// Starts the querier of each bridge that asks for one (after the engine started).
    func start(_ config: DaemonConfig, binding: EngineBinding, logger: Logger) {
        for b in config.bridges {
            guard let c = b.learningSwitch?.multicastSnooping, c.querier, let bridge = binding.engine.bridge(named: b.name),
                  let snooping = binding.learningSwitch(ofBridge: b.name)?.snooping else { continue }
            let mac = SpanningTreeDriver.bridgeMAC(b.name)
            let o = mac.octets
            let linkLocal = MulticastGroup(ipv6High: 0xFE80_0000_0000_0000,
                                           low: UInt64(o[0] ^ 0x02) << 56 | UInt64(o[1]) << 48 | UInt64(o[2]) << 40 | 0xFF_FE00_0000
                                               | UInt64(o[3]) << 16 | UInt64(o[4]) << 8 | UInt64(o[5]))
            let ipv4 = MulticastGroup(ipv4: c.querierAddress)
            var igmp = MulticastQuerier.igmpGeneralQuery(source: mac, maxResponseSeconds: c.queryResponseInterval,
                                                         robustness: c.robustness, queryIntervalSeconds: c.queryInterval)
            Self.setIPv4Source(&igmp, c.querierAddress)
            let mld = MulticastQuerier.mldGeneralQuery(source: mac, maxResponseSeconds: c.queryResponseInterval,
                                                       robustness: c.robustness, queryIntervalSeconds: c.queryInterval)
            running.append(Running(name: b.name, bridge: bridge, snooping: snooping,
                                   spanningTree: binding.spanningTrees.controller(ofBridge: b.name),
                                   schedule: MulticastQuerierSchedule(configuration: c, ipv4Source: ipv4, ipv6Source: linkLocal,
                                                                      now: MonotonicClock.nanoseconds()),
                                   queries: [igmp, mld]))
            logger.info("multicast querier on", metadata: [
                "bridge": "\(b.name)", "igmp-source": "\(ipv4)", "mld-source": "\(linkLocal)",
                "query-interval": "\(c.queryInterval)"])
        }
    }

    /// Control loop, every wake-up: sends the queries that are due.
    func poll(engine: Engine, logger: Logger) {
        guard !running.isEmpty else { return }
        let now = MonotonicClock.nanoseconds()
        for i in running.indices {
            let r = running[i]
            let others = [r.snooping.otherQuerier(ipv6: false, now: now), r.snooping.otherQuerier(ipv6: true, now: now)]
            let wasYielding = [r.schedule.isYielding(ipv6: false), r.schedule.isYielding(ipv6: true)]
            let due = running[i].schedule.due(now: now, otherQueriers: others)
            for f in 0..<2 where running[i].schedule.isYielding(ipv6: f == 1) != wasYielding[f] {
                let family = f == 1 ? "MLD" : "IGMP"
                if wasYielding[f] {
                    logger.info("multicast querier: no other querier heard; querying again", metadata: ["bridge": "\(r.name)", "family": "\(family)"])
                } else {
                    logger.info("multicast querier: a lower-addressed querier is present; not querying",
                                metadata: ["bridge": "\(r.name)", "family": "\(family)", "querier": "\(others[f].map { "\($0)" } ?? "-")"])
                }
            }
            guard due.contains(true) else { continue }
            var ports = r.bridge.portTable.ports.map(\.id)
            if let stp = r.spanningTree?.status() {
                let notForwarding = Set(stp.ports.filter { $0.state != .forwarding }.map(\.id))
                ports.removeAll { notForwarding.contains($0) }
            }
            var sent = 0, refused = 0
            for f in 0..<2 where due[f] {
                r.queries[f].withUnsafeBytes { bytes in
                    for p in ports {
                        if engine.inject(bytes, bridge: r.bridge, port: p) { sent += 1 } else { refused += 1 }
                    }
                }
            }
            if sent + refused > 0 { r.snooping.countQueries(sent: sent, refused: refused) }
        }
    }

    /// Rewrites the IPv4 source of an IGMP query frame (and its header checksum).
    static func setIPv4Source(_ frame: inout [UInt8], _ address: UInt32) {
        guard address != 0, frame.count >= 14 + 24 else { return }
        for i in 0..<4 { frame[26 + i] = UInt8(truncatingIfNeeded: address >> UInt32(24 - 8 * i)) }
        frame[24] = 0; frame[25] = 0
        var sum: UInt32 = 0
        for i in stride(from: 14, to: 14 + 24, by: 2) { sum &+= UInt32(frame[i]) << 8 | UInt32(frame[i + 1]) }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) &+ (sum >> 16) }
        let c = ~UInt16(truncatingIfNeeded: sum)
        frame[24] = UInt8(c >> 8); frame[25] = UInt8(c & 0xFF)
    }
}
