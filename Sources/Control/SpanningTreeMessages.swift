// SpanningTreeMessages: the result of the `stp` command (`tapbridge stp`): each spanning-tree
// bridge's identifier, the root it follows and its ports' states and roles. Field names are the
// JSON keys in docs/control-api.md.

public struct SpanningTreeResult: Codable, Equatable, Sendable {
    public var bridges: [SpanningTreeBridgeInfo]
    public init(bridges: [SpanningTreeBridgeInfo]) { self.bridges = bridges }
}

public struct SpanningTreeBridgeInfo: Codable, Equatable, Sendable {
    public var bridge: String
    /// "stp" (802.1D) or "rstp" (802.1w).
    public var mode: String
    /// `priority.mac` as the Linux bridge prints identifiers (`8000.02000000000a`).
    public var bridgeId: String
    public var rootId: String
    public var isRoot: Bool
    public var rootPathCost: UInt32
    public var rootPort: String?
    /// Whether the root announces a topology change now, and how many this bridge saw.
    public var topologyChange: Bool
    public var topologyChanges: UInt64
    /// Timers in force (the root's), seconds.
    public var helloTime: Double
    public var forwardDelay: Double
    public var maxAge: Double
    public var ports: [SpanningTreePortInfo]
    public init(bridge: String, mode: String, bridgeId: String, rootId: String, isRoot: Bool, rootPathCost: UInt32,
                rootPort: String?, topologyChange: Bool, topologyChanges: UInt64, helloTime: Double,
                forwardDelay: Double, maxAge: Double, ports: [SpanningTreePortInfo]) {
        self.bridge = bridge; self.mode = mode; self.bridgeId = bridgeId; self.rootId = rootId; self.isRoot = isRoot
        self.rootPathCost = rootPathCost; self.rootPort = rootPort; self.topologyChange = topologyChange
        self.topologyChanges = topologyChanges; self.helloTime = helloTime; self.forwardDelay = forwardDelay
        self.maxAge = maxAge; self.ports = ports
    }
}

public struct SpanningTreePortInfo: Codable, Equatable, Sendable {
    public var name: String
    /// "blocking", "listening", "learning", "forwarding", "disabled"; RSTP: "discarding",
    /// "learning", "forwarding", "disabled".
    public var state: String
    /// "root", "designated", "alternate", "backup" (RSTP), "disabled".
    public var role: String
    /// The bridge and port designated on the port's segment (this bridge when it is designated).
    public var designatedBridge: String
    public var designatedPort: String
    /// The BPDUs the port speaks: "stp" or "rstp" (an RSTP port facing an 802.1D bridge: "stp").
    public var `protocol`: String?
    /// RSTP: an edge port now (configured, or no BPDU heard).
    public var edge: Bool?
    public init(name: String, state: String, role: String, designatedBridge: String, designatedPort: String,
                protocol: String? = nil, edge: Bool? = nil) {
        self.name = name; self.state = state; self.role = role
        self.designatedBridge = designatedBridge; self.designatedPort = designatedPort
        self.protocol = `protocol`; self.edge = edge
    }
}
