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
        try bridge.pipeline.map { h -> any FrameHandler in
            switch h {
            case .learningSwitch(let c):
                return LearningSwitch(configuration: .init(
                    agingTime: c.agingSeconds, capacity: c.capacity,
                    staticEntries: c.staticEntries.map { .init(mac: $0.mac, vlan: $0.vlan, port: $0.port) }))
            case .filter(let f):
                return try filter(f, bridge: bridge.name)
            }
        }
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
