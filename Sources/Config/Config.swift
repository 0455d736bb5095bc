// Config: what a `tapbridge run` configuration file declares, as plain values. Parsing lives in
// ConfigParser.swift, the port kinds in PortKinds.swift, the handler kinds in HandlerRegistry.swift;
// checks against the running host stay in the Daemon module (ConfigValidator.swift). Nothing in
// this module touches the system.
import Frames
import Handlers
import Logging

/// A whole daemon configuration (one TOML file).
public struct DaemonConfig: Sendable {
    /// The file it came from, as given (used in every error message).
    public var file: String
    public var logLevel: Logger.Level = .info
    /// Datapath worker threads; nil: one per core.
    public var workers: Int?
    /// Seconds between counter lines in the log; 0 disables them.
    public var statsInterval: Double = 0
    /// Seconds a stream VM peer may hold a partial frame before its connection is closed
    /// (`partial-frame-timeout`; EngineConfiguration.partialFrameTimeout). Read at start.
    public var partialFrameTimeout: Double = 5
    /// Log line format on stderr.
    public var logFormat: LogFormat = .text
    /// Prometheus endpoint address ("127.0.0.1:9417", "[::1]:9417"); nil: no endpoint.
    public var metrics: String?
    /// Allow the metrics endpoint on a non-loopback address (it has no authentication).
    public var metricsAllowRemote = false
    /// Where the crash-recovery ledger lives; nil: no ledger (library use, the demo).
    /// `tapbridge run` defaults to /run/tapbridge.
    public var stateDirectory: String?
    public var bridges: [BridgeConfig] = []
    /// Control socket path (`[control] socket`); nil or empty: no control socket. A file read by
    /// ConfigParser defaults to /run/tapbridge/control.sock.
    public var controlSocket: String?
    /// Group (name or number) whose members may use the control socket besides root.
    public var controlGroup: String?

    public static let defaultStateDirectory = "/run/tapbridge"

    public init(file: String) { self.file = file }

    /// Every port of every bridge, with the bridge it belongs to.
    public var allPorts: [(bridge: BridgeConfig, port: PortConfig)] {
        bridges.flatMap { b in b.ports.map { (b, $0) } }
    }
}

public enum LogFormat: String, Sendable, CaseIterable {
    /// `TIMESTAMP LEVEL message key=value...`
    case text
    /// One JSON object per line (journald, ELK).
    case json
}

/// One bridge: an ordered handler pipeline and its ports.
public struct BridgeConfig: Sendable {
    public var name: String
    /// Handlers in the order frames meet them; an empty pipeline floods everything (a hub).
    public var pipeline: [HandlerConfig]
    public var ports: [PortConfig]
    /// Key path of this bridge in the file (`bridges[0]`, or `vms[0]` for a VM attachment).
    public var path: String
    /// Made from a `[[vms]]` entry: a 2-port bridge (the VM's port and its macvtap), no switch.
    public var isVMAttachment = false
    /// The bridge's spanning tree (`stp = "stp"` and the `stp-*` keys); nil: off.
    public var spanningTree: SpanningTreeSettings?

    public init(name: String, pipeline: [HandlerConfig], ports: [PortConfig], path: String) {
        self.name = name; self.pipeline = pipeline; self.ports = ports; self.path = path
    }

    /// Anti-spoofing policies of this bridge's VM ports, by port name (empty: no source guard).
    public var sourceGuards: [String: VMPortConfig] {
        var out: [String: VMPortConfig] = [:]
        for p in ports {
            if let vm = p.guest, vm.guards { out[p.name] = vm }   // vm and vhost-user ports
            if case .tap(let tap) = p.kind, tap.guards { out[p.name] = tap.guardSettings }
        }
        return out
    }

    /// The settings of the first pipeline stage of type `S` (the daemon's handler-specific
    /// control commands: `fdb` needs the learning switch's, `filter` the filter's).
    public func settings<S: HandlerSettings>(_ type: S.Type) -> S? {
        pipeline.lazy.compactMap { $0.settings as? S }.first
    }
    public var filter: FilterConfig? { settings(FilterConfig.self) }
    public var learningSwitch: LearningSwitchConfig? { settings(LearningSwitchConfig.self) }
}

/// One stage of a bridge's pipeline: a registered handler kind (HandlerRegistry) and the
/// settings its parser read from the bridge's `[bridges.NAME]` table.
public struct HandlerConfig: Sendable, Equatable {
    /// The kind's registered name, as written in `pipeline = [...]`.
    public var name: String
    public var settings: any HandlerSettings
    /// Key path of the handler's table (`bridges[0].filter`), for messages.
    public var path: String

    public init(name: String, settings: any HandlerSettings, path: String) {
        self.name = name; self.settings = settings; self.path = path
    }

    public static func == (a: HandlerConfig, b: HandlerConfig) -> Bool {
        a.name == b.name && a.settings.isEqual(to: b.settings)
    }
}

public struct LearningSwitchConfig: HandlerSettings, Equatable {
    /// Seconds an unrefreshed learned entry lives.
    public var agingSeconds: Double = 300
    /// FDB bound on learned entries; the oldest entry is evicted past it.
    public var capacity: Int = 8192
    /// Bound on static entries (the file's and those added over the control socket); nil: capacity / 8.
    public var maxStatic: Int?
    public var staticLimit: Int { maxStatic ?? capacity / 8 }
    public var staticEntries: [StaticFDBEntry] = []
    /// The loop guard (`loop-guard`, `loop-guard-moves`, `loop-guard-echo`) and how long a
    /// guard keeps a port blocked (`block-seconds`); SwitchGuardKeys.swift.
    public var loopGuard = LearningSwitch.LoopGuardSettings()
    public var blockSeconds: Double = 30
    /// IGMP/MLD snooping (`multicast-*` keys); nil: `multicast-snooping = false`.
    public var multicastSnooping: MulticastSnooping.Configuration? = .init()
    public init() {}
}

/// A MAC pinned to a port (never learned elsewhere, never aged).
public struct StaticFDBEntry: Sendable, Equatable {
    public var mac: MACAddress
    /// Port name within the same bridge.
    public var port: String
    /// 0: VLAN-unaware bridge / any.
    public var vlan: UInt16
    public init(mac: MACAddress, port: String, vlan: UInt16 = 0) { self.mac = mac; self.port = port; self.vlan = vlan }
}

public struct FilterConfig: HandlerSettings, Equatable {
    /// What happens to a frame no rule matched: "accept" (continue to the next handler) or "drop".
    public var defaultAction: String = "accept"
    /// Rules as written, one per string, in order (syntax: docs/filter.md).
    public var rules: [String] = []
    /// Ports whose frames the filter judges (empty: every port of the bridge).
    public var ports: [String] = []
    /// Where it judges them: "ingress" (entering by those ports), "egress" (leaving by them,
    /// once per destination port) or "both".
    public var direction: String = "ingress"
    /// Key path of the `filter` table (for rule errors: `bridges[0].filter.rules[2]`).
    public var path: String = ""
    public init() {}
}

/// A problem found in a configuration: where (file and key path) and what.
public struct ConfigIssue: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// Dotted key path (`bridges[0].ports[1].parent`), empty for the whole file.
    public var path: String
    public var reason: String
    public init(file: String, path: String, reason: String) { self.file = file; self.path = path; self.reason = reason }
    public var description: String { path.isEmpty ? "\(file): \(reason)" : "\(file): \(path): \(reason)" }
}

/// Every problem found (a config is checked whole, so a user fixes all typos in one go).
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var issues: [ConfigIssue]
    public init(_ issues: [ConfigIssue]) { self.issues = issues }
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
