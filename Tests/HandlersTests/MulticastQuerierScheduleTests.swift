// The querier's schedule: startup queries a quarter interval apart, then one per interval;
// the election (RFC 3376 6.6.2 / RFC 3810 7.6.2) — a query from a lower address, seen by the
// snooping switch, stops ours until the other querier present interval passes; a higher
// address or 0.0.0.0 does not; our 0.0.0.0 loses to any addressed querier.
import Testing
@testable import Frames
@testable import Handlers
import TapbridgeTesting

@Suite struct MulticastQuerierScheduleTests {
    typealias P = MulticastPackets
    let b = FrameBuilder(capacity: 4096)
    /// Query interval 4 s, response 1 s, robustness 2: other querier present interval 8.5 s.
    var config: MulticastSnooping.Configuration {
        MulticastSnooping.Configuration(queryInterval: 4, queryResponseInterval: 1, robustness: 2)
    }
    let own4 = MulticastGroup(ipv4: MulticastPackets.ip4("198.18.0.5"))
    let own6 = MulticastGroup(ipv6High: 0xFE80_0000_0000_0000, low: 5)

    func query(_ sw: LearningSwitch, from source: String, port: Int, at now: UInt64) {
        let ip = source.contains(":") ? P.mld(130, group: "::", from: source, to: "ff02::1", maxResponse: 1000)
                                      : P.ipv4(from: source, to: "224.0.0.1", proto: 2, P.igmp(0x11, group: "0.0.0.0", code: 10))
        let six = source.contains(":")
        var f = b.frame(from: MACAddress(0x52, 0x54, 0, 0, 9, UInt8(port)),
                        to: six ? MACAddress("33:33:00:00:00:01")! : MACAddress("01:00:5e:00:00:01")!, port: port, tag: nil,
                        etherType: six ? EtherType.ipv6 : EtherType.ipv4, payload: ip)
        _ = sw.handle(&f, context: HandlerContext(now: now, worker: 0))
        sw.snooping!.maintain(now: now)
    }

    /// Times (ms of the monotonic clock) at which family `f` sends, stepping 100 ms from `start` to `until` s.
    func sendTimes(_ s: inout MulticastQuerierSchedule, from start: Double = 0, until: Double,
                   others: (UInt64) -> [MulticastGroup?] = { _ in [nil, nil] }, family f: Int = 0) -> [Int] {
        var out: [Int] = []
        var t = Int(start * 10)
        while t <= Int(until * 10) {
            let now = UInt64(t) * 100_000_000
            if s.due(now: now, otherQueriers: others(now))[f] { out.append(t * 100) }
            t += 1
        }
        return out
    }

    @Test func startupThenInterval() {
        var s = MulticastQuerierSchedule(configuration: config, ipv4Source: own4, ipv6Source: own6, now: second)
        // Robustness 2: two startup queries 1 s (4 s / 4) apart, then every 4 s.
        #expect(sendTimes(&s, until: 14.9) == [1000, 2000, 6000, 10000, 14000])
    }

    @Test func lowerAddressQuerierStopsOursUntilItFallsSilent() {
        let sw = LearningSwitch(configuration: .init(multicastSnooping: config))
        sw.portsChanged(ports(3))
        var s = MulticastQuerierSchedule(configuration: config, ipv4Source: own4, ipv6Source: own6, now: second)
        #expect(s.due(now: second, otherQueriers: [nil, nil]) == [true, true])   // startup: 1 s and 2 s
        // A higher address (198.18.0.9) and 0.0.0.0 do not win: ours go on.
        query(sw, from: "198.18.0.9", port: 1, at: 2 * second)
        query(sw, from: "0.0.0.0", port: 2, at: 2 * second)
        #expect(sw.snooping!.otherQuerier(ipv6: false, now: 2 * second) == MulticastGroup(ipv4: P.ip4("198.18.0.9")))
        #expect(s.due(now: 2 * second, otherQueriers: [sw.snooping!.otherQuerier(ipv6: false, now: 2 * second), nil]) == [true, true])
        // A lower one (198.18.0.2) and, for MLD, fe80::2 < fe80::5: both families stop.
        query(sw, from: "198.18.0.2", port: 1, at: 3 * second)
        query(sw, from: "fe80::2", port: 2, at: 3 * second)
        let heard = { (now: UInt64) in [sw.snooping!.otherQuerier(ipv6: false, now: now), sw.snooping!.otherQuerier(ipv6: true, now: now)] }
        #expect(heard(3 * second) == [MulticastGroup(ipv4: P.ip4("198.18.0.2")), MulticastGroup(ipv6High: 0xFE80_0000_0000_0000, low: 2)])
        // The higher querier heard later does not replace the lower one.
        query(sw, from: "198.18.0.9", port: 1, at: 4 * second)
        #expect(heard(4 * second)[0] == MulticastGroup(ipv4: P.ip4("198.18.0.2")))
        var sent = sendTimes(&s, from: 2, until: 11, others: heard)
        #expect(sent.isEmpty && s.isYielding(ipv6: false) && s.isYielding(ipv6: true), "\(sent)")
        // 8.5 s after its last query (at 3 s) the lower querier is gone: ours resume at once.
        sent = sendTimes(&s, from: 11.1, until: 16, others: heard)
        #expect(sent == [11500, 15500], "\(sent)")
        #expect(!s.isYielding(ipv6: false))
    }

    @Test func unaddressedOwnQuerierLosesToAnyAddress() {
        let zero = MulticastGroup(ipv4: 0)
        #expect(MulticastQuerierSchedule.otherWins(MulticastGroup(ipv4: P.ip4("198.18.0.200")), over: zero))
        #expect(!MulticastQuerierSchedule.otherWins(zero, over: zero))
        #expect(!MulticastQuerierSchedule.otherWins(zero, over: own4))
        #expect(!MulticastQuerierSchedule.otherWins(MulticastGroup(ipv4: P.ip4("198.18.0.5")), over: own4))
    }
}
