// Logging and events: the engine reports through two closures so it needs no logging library;
// the daemon plugs swift-log in. Nothing is logged per frame.
import Frames

public enum EngineLogLevel: Int, Sendable, Comparable {
    case debug, info, notice, warning, error
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

public typealias EngineLogHandler = @Sendable (EngineLogLevel, String) -> Void

/// Things that happen to ports while the engine runs (the daemon logs them, tests wait for them).
public enum EngineEvent: Sendable {
    case portAttached(bridge: String, port: PortID, name: String)
    case portDetached(bridge: String, port: PortID, name: String)
    /// The port's descriptor failed (errno 0: end of file) and the port was removed.
    case portRemoved(bridge: String, port: PortID, name: String, errno: Int32)
    /// The port lost its descriptor but stays attached, waiting for `Engine.reconnect`.
    case portDisconnected(bridge: String, port: PortID, name: String, errno: Int32)
    case portReconnected(bridge: String, port: PortID, name: String)
}

public typealias EngineEventHandler = @Sendable (EngineEvent) -> Void
