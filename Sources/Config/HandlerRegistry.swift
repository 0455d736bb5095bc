// HandlerRegistry: the handler kinds a pipeline may name. Each kind is a name (`pipeline = [...]`
// and its `[bridges.NAME]` table), a parser for that table's keys, checks that need the whole
// bridge, and a factory making the running handler; optionally a periodic sweep and a live
// reload. The bundled `learning-switch` and `filter` register here (BundledHandlers.swift); a
// program embedding the daemon registers its own kinds before `TapbridgeCommand.main()`
// (docs/handlers.md, "Your handler in the daemon"). The daemon knows handlers only through this.
import Frames
import Synchronization

/// The settings a handler kind's parser read from its table. Equatable ones compare for free;
/// a reload uses the comparison to tell which stages changed.
public protocol HandlerSettings: Sendable {
    func isEqual(to other: any HandlerSettings) -> Bool
}

extension HandlerSettings where Self: Equatable {
    public func isEqual(to other: any HandlerSettings) -> Bool { (other as? Self) == self }
}

/// What a factory, a check or a reload knows about where its handler runs.
public struct HandlerSetup: Sendable {
    /// The bridge (its name, ports and whole pipeline) the handler belongs to.
    public var bridge: BridgeConfig
    /// Key path of the handler's table (`bridges[0].filter`), to name in errors.
    public var path: String
    public init(bridge: BridgeConfig, path: String) { self.bridge = bridge; self.path = path }
}

/// An error a factory or reload throws; its text names the key path at fault.
public struct HandlerSetupError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One handler kind: how its table is read and how its handler is made.
public struct HandlerKind: Sendable {
    /// The name a pipeline lists (`"learning-switch"`); lowercase letters, digits and '-'.
    public let name: String
    let parse: @Sendable (inout KeyReader) -> any HandlerSettings
    let check: @Sendable (any HandlerSettings, HandlerSetup, IssueList) -> Void
    let make: @Sendable (any HandlerSettings, HandlerSetup) throws -> any FrameHandler
    let sweepHook: (@Sendable (any FrameHandler, UInt64) -> Void)?
    let reloadHook: (@Sendable (any FrameHandler, any HandlerSettings, any HandlerSettings, HandlerSetup) throws -> [String])?

    /// - Parameters:
    ///   - parse: reads the kind's keys from its table (an empty table when the file has none, so
    ///     defaults apply); reports mistakes with `keys.fail(key, reason)`. Keys it does not read
    ///     are refused as typos.
    ///   - check: problems only the whole bridge shows (a port name that is not a port of it),
    ///     reported with `issues.add(path, reason)`; runs with every other configuration check.
    ///   - make: the running handler for a started bridge (or a bridge added while running).
    ///   - sweep: periodic work off the datapath (once a second, with CLOCK_MONOTONIC ns).
    ///   - reload: applies changed settings to the running handler (SIGHUP); returns notes on
    ///     what could not change without a restart. Without it a change needs a restart.
    public init<Settings: HandlerSettings, Handler: FrameHandler>(
        name: String,
        parse: @escaping @Sendable (_ keys: inout KeyReader) -> Settings,
        check: @escaping @Sendable (_ settings: Settings, _ setup: HandlerSetup, _ issues: IssueList) -> Void = { _, _, _ in },
        make: @escaping @Sendable (_ settings: Settings, _ setup: HandlerSetup) throws -> Handler,
        sweep: (@Sendable (_ handler: Handler, _ now: UInt64) -> Void)? = nil,
        reload: (@Sendable (_ handler: Handler, _ new: Settings, _ old: Settings, _ setup: HandlerSetup) throws -> [String])? = nil
    ) {
        self.name = name
        self.parse = { parse(&$0) }
        // The registry hands a kind only the settings its own parser made and the handler its
        // own factory made: the casts below cannot fail.
        self.check = { s, setup, issues in if let s = s as? Settings { check(s, setup, issues) } }
        self.make = { s, setup in
            guard let s = s as? Settings else { throw HandlerSetupError("\(setup.path): settings of another handler kind") }
            return try make(s, setup)
        }
        sweepHook = sweep.map { f in { @Sendable h, now in if let h = h as? Handler { f(h, now) } } }
        reloadHook = reload.map { f in
            { @Sendable h, new, old, setup in
                guard let h = h as? Handler, let new = new as? Settings, let old = old as? Settings else {
                    throw HandlerSetupError("\(setup.path): settings of another handler kind")
                }
                return try f(h, new, old, setup)
            }
        }
    }

    /// The handler for `config` on `bridge` (HandlerSetupError naming the key path on failure).
    public func instantiate(_ config: HandlerConfig, bridge: BridgeConfig) throws -> RunningHandler {
        let setup = HandlerSetup(bridge: bridge, path: config.path)
        return RunningHandler(kind: self, handler: try make(config.settings, setup), settings: config.settings)
    }

    /// Whether `name` can name a kind: 1-32 of a-z, 0-9 and '-', starting with a letter.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first), name.utf8.count <= 32 else { return false }
        return name.utf8.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }
    }
}

/// A handler made by its kind, with the kind's hooks at hand (the daemon keeps one per stage).
public struct RunningHandler {
    public let kind: HandlerKind
    public let handler: any FrameHandler
    /// The settings it was made with or last reloaded to.
    public private(set) var settings: any HandlerSettings

    public var canReload: Bool { kind.reloadHook != nil }

    /// The kind's periodic work, if it has any.
    public func sweep(now: UInt64) { kind.sweepHook?(handler, now) }

    /// Applies `settings` to the running handler. Returns notes on what still needs a restart;
    /// throws (nothing changed) if the kind cannot reload or the settings are refused.
    public mutating func reload(_ config: HandlerConfig, bridge: BridgeConfig) throws -> [String] {
        guard let hook = kind.reloadHook else {
            throw HandlerSetupError("\(config.path): handler '\(kind.name)' cannot change while running (restart needed)")
        }
        let notes = try hook(handler, config.settings, settings, HandlerSetup(bridge: bridge, path: config.path))
        settings = config.settings
        return notes
    }
}

/// The registered handler kinds: the bundled ones, then any a program adds before starting the daemon.
public enum HandlerRegistry {
    private static let kinds = Mutex<[HandlerKind]>(BundledHandlers.kinds)

    public struct RegistrationError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Adds `kind`; its name must be new and valid (`HandlerKind.isValidName`). Call it before
    /// the configuration is read (before `TapbridgeCommand.main()`).
    public static func register(_ kind: HandlerKind) throws {
        try kinds.withLock { list in
            guard HandlerKind.isValidName(kind.name) else {
                throw RegistrationError(description: "handler kind name '\(kind.name)' is invalid (1-32 of a-z, 0-9, '-', starting with a letter)")
            }
            // A kind's table sits beside the bridge's own keys.
            guard !["name", "pipeline", "ports"].contains(kind.name) else {
                throw RegistrationError(description: "handler kind name '\(kind.name)' is a bridge key")
            }
            guard !list.contains(where: { $0.name == kind.name }) else {
                throw RegistrationError(description: "handler kind '\(kind.name)' is already registered")
            }
            list.append(kind)
        }
    }

    /// The kind registered as `name`.
    public static func kind(named name: String) -> HandlerKind? {
        kinds.withLock { $0.first { $0.name == name } }
    }

    /// Every registered name, in registration order (bundled first).
    public static var names: [String] { kinds.withLock { $0.map(\.name) } }
}
