// MulticastQuerierSchedule: when the snooping switch's querier (`multicast-querier = true`)
// sends its general queries, per family (IGMP, MLD). Owns only the timing and the election;
// the frames are MulticastQuerier's, the sending is the daemon's (MulticastQuerierDriver).
// - Startup (RFC 3376 8.6/8.7, RFC 3810 9.6/9.7): `robustness` queries a quarter of the query
//   interval apart, then one every query interval.
// - Election (RFC 3376 6.6.2, RFC 3810 7.6.2): while a querier with a lower address than ours
//   was heard within the other querier present interval (MulticastSnooping.otherQuerier), we
//   send nothing; when it falls silent we query again at once. Our IGMP source 0.0.0.0 (a switch
//   without an address) loses to any querier with an address, as the Linux bridge's does; a
//   query from 0.0.0.0 never silences ours.
// Pure state on the control thread; time is CLOCK_MONOTONIC nanoseconds, passed in.
public struct MulticastQuerierSchedule: Sendable {
    struct Family: Sendable {
        var source: MulticastGroup
        var nextAt: UInt64 = 0
        var startupLeft: Int
        var yielding = false
    }
    let queryInterval: UInt64
    let startupInterval: UInt64
    var families: [Family]

    /// Our IGMP source `ipv4Source` and MLD source `ipv6Source` (its link-local address).
    public init(configuration c: MulticastSnooping.Configuration, ipv4Source: MulticastGroup, ipv6Source: MulticastGroup,
                now: UInt64) {
        queryInterval = UInt64(max(0.1, c.queryInterval) * 1e9)
        startupInterval = queryInterval / 4
        families = [Family(source: ipv4Source, nextAt: now, startupLeft: max(1, c.robustness)),
                    Family(source: ipv6Source, nextAt: now, startupLeft: max(1, c.robustness))]
    }

    /// Whether a querier at `other` wins the election against us at `own`.
    public static func otherWins(_ other: MulticastGroup, over own: MulticastGroup) -> Bool {
        guard other.high != 0 || other.low != 0 else { return false }
        return (own.high == 0 && own.low == 0) || other < own
    }

    /// Which families send a general query now (IPv4 [0], IPv6 [1]), given the queriers the
    /// snooping heard (`otherQuerier(ipv6:)`); advances their timers.
    public mutating func due(now: UInt64, otherQueriers: [MulticastGroup?]) -> [Bool] {
        (0..<families.count).map { f in
            if let other = f < otherQueriers.count ? otherQueriers[f] : nil, Self.otherWins(other, over: families[f].source) {
                families[f].yielding = true
                families[f].startupLeft = 0
                return false
            }
            if families[f].yielding {   // the other querier fell silent: take over at once
                families[f].yielding = false
                families[f].nextAt = now
            }
            guard now >= families[f].nextAt else { return false }
            if families[f].startupLeft > 0 { families[f].startupLeft -= 1 }
            families[f].nextAt = now &+ (families[f].startupLeft > 0 ? startupInterval : queryInterval)
            return true
        }
    }

    /// Whether family `ipv6` currently defers to another querier.
    public func isYielding(ipv6: Bool) -> Bool { families[ipv6 ? 1 : 0].yielding }
}
