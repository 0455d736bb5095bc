// HandlerFactory: a bridge's configured pipeline as handler objects from the Handlers module,
// and the periodic work some handlers need (expiry sweeps). The one place in the daemon that
// knows the bundled handlers' types.
import Frames
import Handlers
import Logging

public enum HandlerFactory {
    /// Whether this build has a learning switch (tests that need it check this).
    public static let learningSwitchAvailable = true
    /// Whether this build has the filter handler (a config using it is refused before start).
    public static let filterAvailable = true

    static func handlers(for bridge: BridgeConfig, logger: Logger) throws -> [any FrameHandler] {
        // VM ports with anti-spoofing get a source guard before everything else: a spoofed
        // frame must not teach the switch a MAC or reach a filter's counters.
        let guards = bridge.sourceGuards
        let guardStage: [any FrameHandler] = guards.isEmpty ? [] : [SourceGuard(policies: sourcePolicies(guards))]
        return guardStage + (try bridge.pipeline.map { h -> any FrameHandler in
            switch h {
            case .learningSwitch(let c):
                return LearningSwitch(configuration: .init(
                    agingTime: c.agingSeconds, capacity: c.capacity, maxStatic: c.maxStatic,
                    staticEntries: c.staticEntries.map { .init(mac: $0.mac, vlan: $0.vlan, port: $0.port) }))
            case .filter(let f):
                return try filter(f, bridge: bridge.name)
            }
        })
    }

    /// The source guard's view of the VM ports' anti-spoofing settings (already validated).
    static func sourcePolicies(_ vms: [String: VMPortConfig]) -> [String: SourceGuard.Policy] {
        vms.mapValues { vm in
            var addresses: SourceAddresses?
            if let list = vm.addresses {
                var a = SourceAddresses()
                for text in list { _ = a.add(text) }
                addresses = a
            }
            return SourceGuard.Policy(checkMAC: vm.mac != nil && vm.antiSpoofing, mac: vm.mac, addresses: addresses)
        }
    }

    /// The running source guard of a pipeline, if any (reload updates its policies).
    static func sourceGuard(in handlers: [any FrameHandler]) -> SourceGuard? {
        handlers.lazy.compactMap { $0 as? SourceGuard }.first
    }

    /// Parses and compiles a filter's rules; errors name the rule's key path.
    static func filter(_ f: FilterConfig, bridge: String) throws -> FrameFilter {
        let rules = try filterRules(f)
        do {
            return try FrameFilter(name: "\(bridge)-filter", rules: rules,
                                   policy: f.defaultAction == "drop" ? .deny : .allow,
                                   ports: f.ports.isEmpty ? nil : f.ports,
                                   direction: FilterDirection(rawValue: f.direction) ?? .ingress)
        } catch let FilterError.compile(expression, message, position) {
            throw DaemonError("\(f.path).rules[\(position ?? 0)]: \"\(expression)\": \(message)")
        }
    }

    /// The rules of `f` parsed, each error naming its key path (`bridges[0].filter.rules[2]`).
    static func filterRules(_ f: FilterConfig) throws -> [FilterRule] {
        try f.rules.enumerated().map { i, text in
            do { return try FilterRule(parsing: text) } catch let FilterError.invalid(_, reason) {
                throw DaemonError("\(f.path).rules[\(i)]: \(reason)")
            }
        }
    }

    /// Expiry sweep for handlers that age state out.
    static func sweep(_ handler: any FrameHandler, now: UInt64) {
        (handler as? LearningSwitch)?.expire(now: now)
    }
}
