// BundledHandlers: the handler kinds tapbridge ships, registered like any other kind: the
// learning switch (`[bridges.learning-switch]`) and the filter (`[bridges.filter]`). Their keys
// are read here; rule syntax and compilation stay with the Handlers module (FilterRule,
// FrameFilter), so a rule refused here is refused for the reason the filter itself gives.
import Frames
import Handlers

enum BundledHandlers {
    static let kinds: [HandlerKind] = [learningSwitch, filter, ImpairHandlerKind.kind]

    static let learningSwitch = HandlerKind(
        name: "learning-switch",
        parse: { keys -> LearningSwitchConfig in
            var c = LearningSwitchConfig()
            if let a = keys.number("aging", in: 1...1_000_000) { c.agingSeconds = a }
            if let n = keys.int("capacity", in: 1...(1 << 24)) { c.capacity = n }
            if let n = keys.int("max-static", in: 0...(1 << 23)) {
                if n > c.capacity / 2 { keys.fail("max-static", "\(n) is more than half of capacity (\(c.capacity)): static entries would crowd out learned ones") } else { c.maxStatic = n }
            }
            parseLoopGuardKeys(&keys, into: &c)
            c.multicastSnooping = parseMulticastSnooping(&keys)
            if let entries = keys.tables("static") {
                for var e in entries {
                    let mac = e.mac("mac", required: true)
                    let port = e.string("port", required: true)
                    let vlan = e.int("vlan", in: 0...4094) ?? 0
                    e.finish()
                    if let mac, let port { c.staticEntries.append(StaticFDBEntry(mac: mac, port: port, vlan: UInt16(vlan))) }
                }
            }
            return c
        },
        check: { c, setup, issues in
            if c.staticEntries.count > c.staticLimit {
                issues.add("\(setup.path).static", "\(c.staticEntries.count) static entries, more than max-static (\(c.staticLimit))")
            }
            var seen: [String: Int] = [:]
            for (j, e) in c.staticEntries.enumerated() {
                let at = "\(setup.path).static[\(j)]"
                if !setup.bridge.ports.contains(where: { $0.name == e.port }) {
                    issues.add(at + ".port", "no port named '\(e.port)' in bridge '\(setup.bridge.name)'")
                }
                if e.mac.isMulticast { issues.add(at + ".mac", "\(e.mac) is a multicast address; static entries are for unicast MACs") }
                let k = "\(e.mac)@\(e.vlan)"
                if let first = seen[k] {
                    issues.add(at + ".mac", "\(e.mac) (vlan \(e.vlan)) already pinned at \(setup.path).static[\(first)]")
                } else { seen[k] = j }
            }
        },
        make: { c, setup in
            LearningSwitch(configuration: .init(
                agingTime: c.agingSeconds, capacity: c.capacity, maxStatic: c.maxStatic,
                staticEntries: c.staticEntries.map { .init(mac: $0.mac, vlan: $0.vlan, port: $0.port) },
                multicastSnooping: c.multicastSnooping).withGuards(c, setup.bridge))
        },
        sweep: { sw, now in _ = sw.expire(now: now) },
        reload: { sw, new, old, _ in reloadLearningSwitch(sw, new, old) })

    /// The learning switch's `multicast-*` keys (docs/config.md); nil when snooping is off.
    static func parseMulticastSnooping(_ keys: inout KeyReader) -> MulticastSnooping.Configuration? {
        var m = MulticastSnooping.Configuration()
        let on = keys.bool("multicast-snooping") ?? true
        if let n = keys.int("multicast-groups", in: 1...65_536) { m.capacity = n }
        if let b = keys.bool("multicast-fast-leave") { m.fastLeave = b }
        if let b = keys.bool("multicast-flood-unregistered") { m.floodUnregistered = b }
        if let n = keys.int("multicast-robustness", in: 1...7) { m.robustness = n }
        if let s = keys.number("multicast-query-interval", in: 1...3600) { m.queryInterval = s }
        if let s = keys.number("multicast-query-response-interval", in: 0.1...3175) {
            if s >= m.queryInterval {
                keys.fail("multicast-query-response-interval", "\(s) s is not less than multicast-query-interval (\(m.queryInterval) s)")
            } else { m.queryResponseInterval = s }
        }
        if let s = keys.number("multicast-last-member-interval", in: 0.1...25.5) { m.lastMemberInterval = s }
        if let b = keys.bool("multicast-querier") { m.querier = b }
        if let text = keys.string("multicast-querier-address") {
            let parts = text.split(separator: ".", omittingEmptySubsequences: false).map { UInt8($0) }
            if parts.count == 4, parts.allSatisfy({ $0 != nil }) {
                let a = parts.reduce(UInt32(0)) { $0 << 8 | UInt32($1!) }
                if a >> 28 >= 0xE { keys.fail("multicast-querier-address", "\(text) is not a unicast IPv4 address") } else { m.querierAddress = a }
            } else { keys.fail("multicast-querier-address", "'\(text)' is not an IPv4 address (like 198.18.0.1)") }
        }
        return on ? m : nil
    }

    static let filter = HandlerKind(
        name: "filter",
        parse: { keys -> FilterConfig in
            var c = FilterConfig()
            c.path = keys.path
            if let d = keys.string("default") {
                if ["accept", "drop"].contains(d) { c.defaultAction = d } else {
                    keys.fail("default", "must be 'accept' or 'drop', not '\(d)'")
                }
            }
            if let rules = keys.stringArray("rules") { c.rules = rules }
            if let ports = keys.stringArray("ports") { c.ports = ports }
            if let d = keys.string("direction") {
                if ["ingress", "egress", "both"].contains(d) { c.direction = d } else {
                    keys.fail("direction", "must be 'ingress', 'egress' or 'both', not '\(d)'")
                }
            }
            return c
        },
        check: { f, setup, issues in
            let b = setup.bridge
            // Every rule parses and compiles now, so a bad rule never gets as far as start.
            for (i, text) in f.rules.enumerated() {
                do {
                    let rule = try FilterRule(parsing: text)
                    if case .expression = rule.match { _ = try FrameFilter(rules: [rule]) }
                    if case .mirror(let port) = rule.action, !b.ports.contains(where: { $0.name == port }) {
                        issues.add("\(f.path).rules[\(i)]", "mirror port '\(port)' is not a port of bridge '\(b.name)'")
                    }
                } catch let FilterError.invalid(_, reason) {
                    issues.add("\(f.path).rules[\(i)]", reason)
                } catch let FilterError.compile(expression, message, _) {
                    issues.add("\(f.path).rules[\(i)]", "\"\(expression)\": \(message)")
                } catch {
                    issues.add("\(f.path).rules[\(i)]", "\(error)")
                }
            }
            for p in f.ports where !b.ports.contains(where: { $0.name == p }) {
                issues.add("\(f.path).ports", "'\(p)' is not a port of bridge '\(b.name)'")
            }
        },
        make: { f, setup in
            let rules = try f.parsedRules()
            do {
                return try FrameFilter(name: "\(setup.bridge.name)-filter", rules: rules,
                                       policy: f.defaultAction == "drop" ? .deny : .allow,
                                       ports: f.ports.isEmpty ? nil : f.ports,
                                       direction: FilterDirection(rawValue: f.direction) ?? .ingress)
            } catch let FilterError.compile(expression, message, position) {
                throw HandlerSetupError("\(f.path).rules[\(position ?? 0)]: \"\(expression)\": \(message)")
            }
        },
        reload: { filter, new, old, setup in
            try filter.replaceRules(new, bridge: setup.bridge.name, ports: setup.bridge.ports.map(\.name))
            return new.ports != old.ports || new.direction != old.direction
                ? ["filter ports/direction changes not applied (restart needed)"] : []
        })
}

extension FilterConfig {
    /// The rules parsed, each error naming its key path (`bridges[0].filter.rules[2]`).
    public func parsedRules() throws -> [FilterRule] {
        try rules.enumerated().map { i, text in
            do { return try FilterRule(parsing: text) } catch let FilterError.invalid(_, reason) {
                throw HandlerSetupError("\(path).rules[\(i)]: \(reason)")
            }
        }
    }
}

extension FrameFilter {
    /// Compiles `f`'s rules off the datapath and swaps them in (the old rules stay on error,
    /// which names the failing rule's key path). `ports`: bridge `bridge`'s ports, for mirror rules.
    public func replaceRules(_ f: FilterConfig, bridge: String, ports: [String]) throws {
        let rules = try f.parsedRules()
        for (i, r) in rules.enumerated() {
            if case .mirror(let port) = r.action, !ports.contains(port) {
                throw HandlerSetupError("\(f.path).rules[\(i)]: mirror port '\(port)' is not a port of bridge '\(bridge)'")
            }
        }
        do {
            try replaceRules(rules, policy: f.defaultAction == "drop" ? .deny : .allow)
        } catch let FilterError.compile(expression, message, position) {
            throw HandlerSetupError("\(f.path).rules[\(position ?? 0)]: \"\(expression)\": \(message)")
        }
    }
}
