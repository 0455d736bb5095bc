// FilterRuleSyntax: the one-line text form of a rule, as configuration files write it:
//   ACTION [ARGUMENT] MATCH
// ACTION is allow | deny | count | mirror PORT | limit RATE (RATE: 100pps, 64kbit, 10mbit,
// 1gbit, or bits/s as a plain number followed by "bps"); MATCH is a pcap-filter expression
// or a built-in written @name (@anti-spoofing, @only-arp-and-ip, @dhcp-server-guard, @ra-guard,
// @block-mac 52:54:00:00:00:01).

extension FilterRule {
    /// Parses one rule; the error says what is wrong in words a config author can act on.
    public init(parsing text: String) throws {
        var words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        func fail(_ why: String) -> FilterError { .invalid(position: -1, reason: why) }
        guard !words.isEmpty else { throw fail("empty rule (expected 'ACTION MATCH', e.g. 'deny tcp dst port 22')") }
        let verb = words.removeFirst()
        let action: FilterAction
        switch verb {
        case "allow", "accept": action = .allow
        case "deny", "drop": action = .deny
        case "count": action = .count
        case "mirror":
            guard !words.isEmpty else { throw fail("'mirror' needs a port name: 'mirror PORT MATCH'") }
            action = .mirror(words.removeFirst())
        case "limit":
            guard !words.isEmpty else { throw fail("'limit' needs a rate: 'limit 100pps MATCH' or 'limit 10mbit MATCH'") }
            let r = words.removeFirst()
            guard let rate = FilterRule.parseRate(r) else {
                throw fail("rate '\(r)' not understood (use e.g. 100pps, 64kbit, 10mbit, 1gbit, 500bps)")
            }
            action = .limit(rate)
        default:
            throw fail("unknown action '\(verb)' (allow, deny, count, mirror PORT, limit RATE)")
        }
        let rest = words.joined(separator: " ")
        guard !rest.isEmpty else { throw fail("'\(verb)' needs a match: a pcap-filter expression or @builtin") }
        if rest.hasPrefix("@") {
            guard let b = BuiltinRule(name: String(rest.dropFirst())) else {
                throw fail("unknown built-in '\(rest)' (@anti-spoofing, @only-arp-and-ip, @dhcp-server-guard, @ra-guard, @block-mac MAC)")
            }
            self.init(.builtin(b), action)
        } else {
            self.init(.expression(rest), action)
        }
    }

    static func parseRate(_ s: String) -> FilterRate? {
        let lower = s.lowercased()
        let units: [(String, Double, Bool)] = [("pps", 1, true), ("gbit", 1e9, false), ("mbit", 1e6, false),
                                              ("kbit", 1e3, false), ("bps", 1, false)]
        for (suffix, scale, packets) in units where lower.hasSuffix(suffix) {
            guard let v = Double(lower.dropLast(suffix.count)), v > 0, v.isFinite else { return nil }
            return packets ? .packetsPerSecond(v * scale) : .bitsPerSecond(v * scale)
        }
        return nil
    }
}
