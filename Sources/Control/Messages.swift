// Messages: the typed results (and structured arguments) of the daemon's commands, shared by
// the daemon (which fills them) and the CLI (which prints them). Field names are the JSON keys
// documented in docs/control-api.md. Portable: plain Codable values.

/// `ports`: every configured port.
public struct PortsResult: Codable, Equatable, Sendable {
    public var ports: [PortStatus]
    public init(ports: [PortStatus]) { self.ports = ports }
}

public struct PortStatus: Codable, Equatable, Sendable {
    public var bridge: String
    public var name: String
    /// "macvtap" (or a VM port kind).
    public var kind: String
    /// Network namespace of the link (nil: the daemon's own).
    public var netns: String?
    /// The lower device (parent) of the macvtap, as the kernel reports it.
    public var link: String?
    public var mac: String?
    public var mode: String?
    /// "up": attached and forwarding; "down": attached, link down or queues closed;
    /// "lost": the link vanished, waiting for it to come back.
    public var state: String
    public var operstate: String?
    public var queues: Int
    public var offloads: Bool
    /// Whether the daemon created this link (and will delete it at stop / `port del`).
    public var created: Bool
    public var vlan: String
    /// A vxlan port's tunnel (VNI, remotes); nil for other kinds.
    public var vxlan: VxlanStatus?
    /// The spanning tree's view of the port (absent when the bridge runs none): its state
    /// ("blocking", "listening", "learning", "forwarding", "disabled") and role ("root",
    /// "designated", "alternate", "disabled").
    public var stpState: String?
    public var stpRole: String?
    /// On an RSTP bridge: the BPDUs the port speaks, "rstp", or "stp" towards an 802.1D peer;
    /// and whether it is an edge port now.
    public var stpProtocol: String?
    public var stpEdge: Bool?
    /// Why a learning switch's guard blocks the port now ("loop guard: MAC moving between
    /// ports", "loop guard: flooded frame came back", "MAC limit"); absent when none does.
    /// Frames from and to it are dropped as `port-blocked` until the back-off lifts the block.
    public var guardBlock: String?
    public init(bridge: String, name: String, kind: String, netns: String?, link: String?, mac: String?, mode: String?,
                state: String, operstate: String?, queues: Int, offloads: Bool, created: Bool, vlan: String) {
        self.bridge = bridge; self.name = name; self.kind = kind; self.netns = netns; self.link = link; self.mac = mac
        self.mode = mode; self.state = state; self.operstate = operstate; self.queues = queues; self.offloads = offloads
        self.created = created; self.vlan = vlan
    }
}

/// `stats`: counters per port, summed over workers, and when they were read.
public struct StatsResult: Codable, Equatable, Sendable {
    /// CLOCK_MONOTONIC nanoseconds at the snapshot (for rates: `top` divides deltas by this).
    public var monotonicNs: UInt64
    public var ports: [PortStats]
    /// Every handler's own counters (`FrameHandler.counters()`), when no port was asked for;
    /// absent from daemons that predate it.
    public var handlers: [HandlerStats]?
    public init(monotonicNs: UInt64, ports: [PortStats], handlers: [HandlerStats]? = nil) {
        self.monotonicNs = monotonicNs; self.ports = ports; self.handlers = handlers
    }
}

/// One counter of one handler in one bridge's pipeline (the bundled ones and a custom daemon's).
public struct HandlerStats: Codable, Equatable, Sendable {
    public var bridge: String
    /// The handler's `name`.
    public var handler: String
    public var counter: String
    public var labels: [String: String]
    public var value: UInt64
    public init(bridge: String, handler: String, counter: String, labels: [String: String], value: UInt64) {
        self.bridge = bridge; self.handler = handler; self.counter = counter; self.labels = labels; self.value = value
    }
}

public struct PortStats: Codable, Equatable, Sendable {
    public var bridge: String
    public var name: String
    public var connected: Bool
    public var rxFrames: UInt64
    public var rxBytes: UInt64
    public var txFrames: UInt64
    public var txBytes: UInt64
    public var txErrors: UInt64
    public var rxLargeFrames: UInt64
    public var txLargeFrames: UInt64
    /// Drops by reason (`filtered`, `queue-full`, ...): only reasons with a count.
    public var drops: [String: UInt64]
    public var dropsTotal: UInt64
    /// VM stream server ports: second connections refused while a VM was attached.
    public var refusedConnections: UInt64?
    /// vxlan ports: "vni 42 remotes 198.19.0.2,198.19.0.3" (VxlanMessages.swift).
    public var tunnel: String?
    public init(bridge: String, name: String, connected: Bool, rxFrames: UInt64, rxBytes: UInt64, txFrames: UInt64,
                txBytes: UInt64, txErrors: UInt64, rxLargeFrames: UInt64, txLargeFrames: UInt64, drops: [String: UInt64],
                refusedConnections: UInt64? = nil) {
        self.bridge = bridge; self.name = name; self.connected = connected; self.rxFrames = rxFrames; self.rxBytes = rxBytes
        self.txFrames = txFrames; self.txBytes = txBytes; self.txErrors = txErrors; self.rxLargeFrames = rxLargeFrames
        self.txLargeFrames = txLargeFrames; self.drops = drops; dropsTotal = drops.values.reduce(0, +)
        self.refusedConnections = refusedConnections
    }
}

/// `fdb`: learning-switch tables.
public struct FDBResult: Codable, Equatable, Sendable {
    public var entries: [FDBEntryInfo]
    public init(entries: [FDBEntryInfo]) { self.entries = entries }
}

public struct FDBEntryInfo: Codable, Equatable, Sendable {
    public var bridge: String
    public var mac: String
    /// 0 on VLAN-unaware bridges.
    public var vlan: Int
    public var port: String
    /// Seconds since last refreshed (0 for static entries).
    public var age: Double
    public var `static`: Bool
    public init(bridge: String, mac: String, vlan: Int, port: String, age: Double, static isStatic: Bool) {
        self.bridge = bridge; self.mac = mac; self.vlan = vlan; self.port = port; self.age = age; self.static = isStatic
    }
}

/// `mdb`: the multicast groups snooping bridges learned from IGMP/MLD reports, and their
/// router ports (like `bridge mdb show`).
public struct MDBResult: Codable, Equatable, Sendable {
    public var entries: [MDBEntryInfo]
    public var routers: [MDBRouterInfo]
    public init(entries: [MDBEntryInfo], routers: [MDBRouterInfo]) { self.entries = entries; self.routers = routers }
}

public struct MDBEntryInfo: Codable, Equatable, Sendable {
    public var bridge: String
    /// The group address: "239.1.2.3", "ff05::1:3".
    public var group: String
    /// 0 on VLAN-unaware bridges.
    public var vlan: Int
    /// A port with at least one listener.
    public var port: String
    /// Seconds until the membership expires unless a report refreshes it.
    public var expires: Double
    public init(bridge: String, group: String, vlan: Int, port: String, expires: Double) {
        self.bridge = bridge; self.group = group; self.vlan = vlan; self.port = port; self.expires = expires
    }
}

public struct MDBRouterInfo: Codable, Equatable, Sendable {
    public var bridge: String
    /// A port behind which a querier, PIM or router advertisement was heard.
    public var port: String
    /// "ipv4" (IGMP) or "ipv6" (MLD).
    public var family: String
    public var expires: Double
    public init(bridge: String, port: String, family: String, expires: Double) {
        self.bridge = bridge; self.port = port; self.family = family; self.expires = expires
    }
}

/// `filter list`: each filtering bridge's rules as written, with their hits.
public struct FilterListResult: Codable, Equatable, Sendable {
    public var filters: [FilterInfo]
    /// `filter.replace`: that the new rules are runtime only (a reload may drop them).
    public var note: String?
    public init(filters: [FilterInfo], note: String? = nil) { self.filters = filters; self.note = note }
}

public struct FilterInfo: Codable, Equatable, Sendable {
    public var bridge: String
    /// "accept" or "drop": what happens to a frame no rule decided.
    public var `default`: String
    /// Bumped by every accepted replacement.
    public var generation: UInt64
    public var rules: [FilterRuleInfo]
    public init(bridge: String, default d: String, generation: UInt64, rules: [FilterRuleInfo]) {
        self.bridge = bridge; self.default = d; self.generation = generation; self.rules = rules
    }
}

public struct FilterRuleInfo: Codable, Equatable, Sendable {
    public var index: Int
    public var rule: String
    public var packets: UInt64
    public var bytes: UInt64
    public init(index: Int, rule: String, packets: UInt64, bytes: UInt64) {
        self.index = index; self.rule = rule; self.packets = packets; self.bytes = bytes
    }
}

/// What a state-changing command did, in words, plus its subject.
public struct DoneResult: Codable, Equatable, Sendable {
    public var done: String
    public init(_ done: String) { self.done = done }
}
