// HandlerFactory: a bridge's configured pipeline as handler objects, and the periodic work
// some handlers need (expiry sweeps). The one place that knows the bundled handlers' types.
// INTERIM: the Handlers module has no LearningSwitch/FrameFilter yet; until it does, a bridge
// whose pipeline asks for them floods (logged).
import Frames
import Logging

public enum HandlerFactory {
    /// Whether this build has the bundled learning switch (tests that need it check this).
    public static let learningSwitchAvailable = false

    static func handlers(for bridge: BridgeConfig, logger: Logger) throws -> [any FrameHandler] {
        for h in bridge.pipeline {
            logger.warning("handler not available in this build; the bridge floods every frame",
                           metadata: ["bridge": "\(bridge.name)", "handler": "\(h.name)"])
        }
        return []
    }

    static func sweep(_ handler: any FrameHandler, now: UInt64) {}
}
