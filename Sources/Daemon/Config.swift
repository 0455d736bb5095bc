// Config: what a `tapbridge run` configuration file declares, as plain values. Parsing lives in
// ConfigParser.swift, checks against the running host in ConfigValidator.swift; nothing here
// touches the system.
import Frames
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
    /// Key path of this bridge in the file (`bridges[0]`).
    public var path: String

    public init(name: String, pipeline: [HandlerConfig], ports: [PortConfig], path: String) {
        self.name = name; self.pipeline = pipeline; self.ports = ports; self.path = path
    }

    public var filter: FilterConfig? {
        for h in pipeline { if case .filter(let c) = h { return c } }
        return nil
    }
    public var learningSwitch: LearningSwitchConfig? {
        for h in pipeline { if case .learningSwitch(let c) = h { return c } }
        return nil
    }
}

/// One stage of a bridge's pipeline.
public enum HandlerConfig: Sendable {
    case learningSwitch(LearningSwitchConfig)
    /// A filter; its rules are kept as written and compiled by the registered filter factory
    /// (see `HandlerFactories`), so rule syntax has one owner: the Handlers module.
    case filter(FilterConfig)

    public var name: String {
        switch self {
        case .learningSwitch: return "learning-switch"
        case .filter: return "filter"
        }
    }
}

public struct LearningSwitchConfig: Sendable, Equatable {
    /// Seconds an unrefreshed learned entry lives.
    public var agingSeconds: Double = 300
    /// FDB bound; the oldest entry is evicted past it.
    public var capacity: Int = 8192
    public var staticEntries: [StaticFDBEntry] = []
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

public struct FilterConfig: Sendable, Equatable {
    /// What happens to a frame no rule matched: "accept" (continue to the next handler) or "drop".
    public var defaultAction: String = "accept"
    /// Rules as written, one per string, in order (syntax: docs/filter.md).
    public var rules: [String] = []
    /// Ports whose ingress frames the filter judges (empty: every port of the bridge).
    public var ports: [String] = []
    /// Key path of the `filter` table (for rule errors: `bridges[0].filter.rules[2]`).
    public var path: String = ""
    public init() {}
}

/// macvlan modes, as `ip link ... type macvtap mode X` spells them.
public enum MacvtapMode: String, Sendable, CaseIterable {
    case `private`, vepa, bridge, passthru, source
}

/// A macvtap the daemon creates at start and deletes at stop.
public struct LinkCreation: Sendable, Equatable {
    /// Lower device, in the daemon's own network namespace.
    public var parent: String
    public var mode: MacvtapMode = .bridge
    public var mac: MACAddress?
    public var mtu: Int?
    /// passthru only: do not put the lower device in promiscuous mode.
    public var nopromisc = false
    /// source mode only: the source MACs let through.
    public var sourceMACs: [MACAddress] = []
    public init(parent: String) { self.parent = parent }
}

/// One port of a bridge: a macvtap, created by the daemon or already there.
public struct PortConfig: Sendable {
    /// The macvtap interface name (created with this name, or looked up).
    public var name: String
    /// nil: the link must already exist and is never deleted by the daemon.
    public var create: LinkCreation?
    /// Network namespace (name under /run/netns) the macvtap lives in; nil: the daemon's own.
    public var netns: String?
    /// Queues to open (one fd each). A created link gets this many TX and RX queues.
    public var queues: Int = 1
    /// Open with a vnet header and negotiate checksum/TSO offloads (GSO frames cross whole).
    public var offloads = true
    public var vlan: VLANMode = .unaware
    public var isolated = false
    public var hairpin = false
    /// Key path of this port in the file (`bridges[0].ports[1]`).
    public var path: String

    public init(name: String, path: String) { self.name = name; self.path = path }
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
