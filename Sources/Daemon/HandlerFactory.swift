// HandlerFactory: a bridge's configured pipeline as handler objects, and the periodic work
// some handlers need (expiry sweeps). The one place that knows the bundled handlers' types.
// INTERIM: the Handlers module has no LearningSwitch/FrameFilter yet; the learning switch is
// the Daemon's InterimLearningSwitch until it does, and a configured filter is refused.
import Frames
import Logging

public enum HandlerFactory {
    /// Whether this build has a learning switch (tests that need it check this).
    public static let learningSwitchAvailable = true
    /// Whether this build has the filter handler (a config using it is refused before start).
    public static let filterAvailable = false

    static func handlers(for bridge: BridgeConfig, logger: Logger) throws -> [any FrameHandler] {
        try bridge.pipeline.map { h -> any FrameHandler in
            switch h {
            case .learningSwitch(let c):
                return InterimLearningSwitch(c)
            case .filter(let f):
                throw DaemonError("\(f.path): the filter handler is not available in this build")
            }
        }
    }

    static func sweep(_ handler: any FrameHandler, now: UInt64) {
        (handler as? InterimLearningSwitch)?.sweep(now: now)
    }
}
