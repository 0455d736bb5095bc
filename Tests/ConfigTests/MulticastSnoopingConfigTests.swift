// The learning switch's multicast-* keys: defaults (snooping on, Linux bridge timers), values,
// `multicast-snooping = false`, and the errors naming file and key.
import Testing
@testable import Config
import Handlers

@Suite struct MulticastSnoopingConfig {
    static let base = """
        [[bridges]]
        name = "a"
        [bridges.learning-switch]
        KEYS
        [[bridges.ports]]
        name = "x"
        parent = "eth0"
        """
    func parse(_ keys: String) throws -> MulticastSnooping.Configuration? {
        try ConfigParser.parse(Self.base.replacingOccurrences(of: "KEYS", with: keys), file: "t.toml").bridges[0].learningSwitch?.multicastSnooping
    }

    @Test func defaultsAreTheLinuxBridges() throws {
        let m = try #require(try parse(""))
        #expect(m.capacity == 4096 && m.floodUnregistered && !m.fastLeave)
        #expect(m.membershipInterval == 260 && m.lastMemberQueryTime == 2 && m.routerInterval == 255)
    }

    @Test func keysAreRead() throws {
        let m = try #require(try parse("""
            multicast-groups = 64
            multicast-fast-leave = true
            multicast-flood-unregistered = false
            multicast-robustness = 3
            multicast-query-interval = 20
            multicast-query-response-interval = 5
            multicast-last-member-interval = 0.5
            """))
        #expect(m.capacity == 64 && m.fastLeave && !m.floodUnregistered && m.robustness == 3)
        #expect(m.membershipInterval == 65 && m.lastMemberQueryTime == 1.5 && m.routerInterval == 62.5)
        #expect(try parse("multicast-snooping = false") == nil)
    }

    @Test func badValuesNameTheKey() {
        let text = Self.base.replacingOccurrences(of: "KEYS", with: """
            multicast-groups = 0
            multicast-query-interval = 10
            multicast-query-response-interval = 10
            multicast-robustness = 9
            multicast-snooping = "yes"
            """)
        let out = issues(text)
        #expect(out.contains("t.toml: bridges[0].learning-switch.multicast-groups: 0 is out of range 1...65536"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].learning-switch.multicast-query-response-interval: 10.0 s is not less than multicast-query-interval (10.0 s)"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].learning-switch.multicast-robustness: 9 is out of range 1...7"), "\(out)")
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].learning-switch.multicast-snooping:") }, "\(out)")
    }

    @Test func querierKeys() throws {
        let off = try #require(try parse(""))
        #expect(!off.querier && off.querierAddress == 0)
        let m = try #require(try parse("multicast-querier = true\nmulticast-querier-address = \"198.18.0.100\""))
        #expect(m.querier && m.querierAddress == 0xC612_0064)
        for (bad, reason) in [("224.0.0.1", "224.0.0.1 is not a unicast IPv4 address"),
                              ("198.18.0", "'198.18.0' is not an IPv4 address (like 198.18.0.1)"),
                              ("198.18.0.256", "'198.18.0.256' is not an IPv4 address (like 198.18.0.1)")] {
            let out = issues(Self.base.replacingOccurrences(of: "KEYS", with: "multicast-querier-address = \"\(bad)\""))
            #expect(out.contains("t.toml: bridges[0].learning-switch.multicast-querier-address: \(reason)"), "\(out)")
        }
    }
}
