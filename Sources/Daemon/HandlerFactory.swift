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
    /// INTERIM: false until the Handlers module's FrameFilter lands on this branch.
    public static let filterAvailable = false

    static func handlers(for bridge: BridgeConfig, logger: Logger) throws -> [any FrameHandler] {
        try bridge.pipeline.map { h -> any FrameHandler in
            switch h {
            case .learningSwitch(let c):
                return LearningSwitch(configuration: .init(
                    agingTime: c.agingSeconds, capacity: c.capacity,
                    staticEntries: c.staticEntries.map { .init(mac: $0.mac, vlan: $0.vlan, port: $0.port) }))
            case .filter(let f):
                throw DaemonError("\(f.path): the filter handler is not available in this build")
            }
        }
    }

    /// Expiry sweep for handlers that age state out.
    static func sweep(_ handler: any FrameHandler, now: UInt64) {
        (handler as? LearningSwitch)?.expire(now: now)
    }
}
