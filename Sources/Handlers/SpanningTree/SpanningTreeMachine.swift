// SpanningTreeMachine: what the controller (SpanningTreeController.swift) needs of a spanning
// tree protocol, so that one bridge runs either 802.1D STP (SpanningTreeProtocol) or rapid
// spanning tree (RapidSpanningTreeProtocol) behind the same control side, and per-port options
// RSTP reads (edge, point-to-point). Control thread only: the switch's hot path never sees it.
import Frames

/// A port's RSTP options (`stp-edge`, `stp-auto-edge`, `stp-point-to-point` in its
/// `[[bridges.ports]]` table). 802.1D STP ignores them.
public struct SpanningTreePortOptions: Sendable, Equatable {
    /// An edge port (a host or VM behind it, no bridge): forwards at once, until it hears a BPDU.
    public var adminEdge = false
    /// A port that proposes and hears no BPDU for the edge delay becomes an edge port.
    public var autoEdge = true
    /// The link is point-to-point (a veth, a macvtap on a full-duplex NIC): the
    /// proposal/agreement handshake may make it forward at once.
    public var pointToPoint = true
    public init() {}
}

public protocol SpanningTreeMachine: Sendable {
    var bridgeID: BridgeID { get }
    var designatedRoot: BridgeID { get }
    var rootPathCost: UInt32 { get }
    var rootPort: PortID? { get }
    /// Timers in force, ms.
    var maxAge: UInt64 { get }
    var helloTime: UInt64 { get }
    var forwardDelay: UInt64 { get }
    var topologyChange: Bool { get }
    var topologyChanges: UInt64 { get }
    var isRootBridge: Bool { get }
    var portIDs: [PortID] { get }
    /// "stp" or "rstp".
    var mode: String { get }
    /// Whether the FDB should age in `forwardDelay` now (802.1D's topology change; RSTP flushes
    /// ports instead, through `.flushPort` outputs).
    var agesFast: Bool { get }
    func state(of p: PortID) -> SpanningTreePortState?
    func role(of p: PortID) -> SpanningTreePortRole?
    func designated(of p: PortID) -> (bridge: BridgeID, port: UInt16)?
    /// The BPDU format the port sends: "stp" or "rstp" (an RSTP port talking to an 802.1D peer: "stp").
    func portProtocol(of p: PortID) -> String?
    /// Whether the port is an edge port now (RSTP).
    func isEdge(_ p: PortID) -> Bool
    mutating func addPort(_ id: PortID, enabled: Bool, options: SpanningTreePortOptions, now: UInt64)
    mutating func removePort(_ id: PortID, now: UInt64)
    mutating func setPortEnabled(_ id: PortID, _ enabled: Bool, now: UInt64)
    mutating func receive(_ bpdu: BPDU, on id: PortID, now: UInt64)
    mutating func tick(now: UInt64)
    mutating func takeOutputs() -> [SpanningTreeProtocol.Output]
}

extension SpanningTreeProtocol: SpanningTreeMachine {
    public var mode: String { "stp" }
    public var agesFast: Bool { topologyChange }
    public func portProtocol(of p: PortID) -> String? { ports[p] == nil ? nil : "stp" }
    public func isEdge(_ p: PortID) -> Bool { false }
    public mutating func addPort(_ id: PortID, enabled: Bool, options: SpanningTreePortOptions, now: UInt64) {
        addPort(id, enabled: enabled, now: now)
    }
}
