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

    public init(name: String, pipeline: [HandlerConfig], ports: [PortConfig], path: String) {
        self.name = name; self.pipeline = pipeline; self.ports = ports; self.path = path
    }

    /// Anti-spoofing policies of this bridge's VM ports, by port name (empty: no source guard).
    public var sourceGuards: [String: VMPortConfig] {
        var out: [String: VMPortConfig] = [:]
        for p in ports { if let vm = p.vm, vm.guards { out[p.name] = vm } }
        return out
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
    /// FDB bound on learned entries; the oldest entry is evicted past it.
    public var capacity: Int = 8192
    /// Bound on static entries (the file's and those added over the control socket); nil: capacity / 8.
    public var maxStatic: Int?
    public var staticLimit: Int { maxStatic ?? capacity / 8 }
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
    /// Ports whose frames the filter judges (empty: every port of the bridge).
    public var ports: [String] = []
    /// Where it judges them: "ingress" (entering by those ports), "egress" (leaving by them,
    /// once per destination port) or "both".
    public var direction: String = "ingress"
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

/// How a `vm` port talks to QEMU (docs/vms.md has the matching `-netdev` lines).
public enum VMSocketMode: String, Sendable, CaseIterable {
    /// tapbridge listens on `path`; QEMU `-netdev stream,server=off,addr.path=PATH`.
    case streamServer = "stream-server"
    /// tapbridge connects to `path` (retrying); QEMU `-netdev stream,server=on,addr.path=PATH`.
    case streamClient = "stream-client"
    /// tapbridge binds `path` and sends to `remote-path`; QEMU `-netdev dgram,local.path=REMOTE,remote.path=PATH`.
    case dgram
}

/// A `vm` port: a QEMU netdev socket instead of a macvtap.
public struct VMPortConfig: Sendable, Equatable {
    public var socket: VMSocketMode = .streamServer
    /// The socket file tapbridge listens on / binds (stream-server, dgram) or connects to (stream-client).
    public var path: String = ""
    /// dgram only: QEMU's own socket (`local.path` on its side).
    public var remotePath: String?
    /// Owner and group of the socket file tapbridge creates: a user/group name or a numeric id.
    public var owner: String?
    public var group: String?
    /// Permission bits of the socket file tapbridge creates.
    public var socketMode: UInt32 = 0o660
    /// Longest frame accepted from the VM (Ethernet header included, no FCS).
    public var maxFrame: Int = 1518
    /// The MAC the VM is assigned (its NIC's `mac=`); used for anti-spoofing.
    public var mac: MACAddress?
    /// Drop frames whose source MAC is not `mac` (default on when `mac` is set).
    public var antiSpoofing = true
    /// If set: ARP sender / IPv4 / IPv6 sources must be among these (docs/vms.md).
    public var addresses: [String]?
    public init() {}

    /// Whether this port gets a source guard.
    public var guards: Bool { (mac != nil && antiSpoofing) || addresses != nil }
}

/// One port of a bridge: a macvtap (created by the daemon or already there) or a VM socket.
public struct PortConfig: Sendable {
    /// The macvtap interface name (created with this name, or looked up); for a `vm` port, a
    /// name for logs and counters.
    public var name: String
    /// The key that set `name` (`name`, or `macvtap` in a `[[vms]]` entry), for messages.
    public var nameKey = "name"
    /// Set for a `vm` port (then there is no link: create, netns, queues, offloads do not apply).
    public var vm: VMPortConfig?
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
