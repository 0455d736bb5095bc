// SpanningTreeProtocol: the 802.1D spanning tree algorithm (IEEE 802.1D-1998 clause 8, the
// protocol the Linux bridge's kernel STP speaks) as a pure state machine, apart from any I/O
// (as rust-vmm keeps a protocol apart from its device). Inputs: BPDUs received on a port, port
// enable/disable, and the time (`tick(now:)`, milliseconds on any monotonic clock). Outputs,
// collected until `takeOutputs()`: BPDUs to transmit per port, port state changes, and FDB
// flush requests. No clock is read and nothing is sent here, so a unit test runs several
// simulated bridges against each other (Tests/HandlersTests/SpanningTreeTests.swift).
//
// What the standard leaves to the implementation, chosen here: a port's identifier is
// priority 0x8 in its top 4 bits and (PortID + 1) below (802.1D-2004's 4+12 layout); the
// message age a relayed BPDU carries is the root port's information age plus 1/20 s (as the
// Linux bridge does); topology changes age the FDB quickly (entries not refreshed within the
// forward delay go, while the topology-change flag is set) and a port leaving the learning or
// forwarding state has its entries flushed.
import Frames

/// Settings of one bridge's spanning tree (802.1D table 8-3 defaults).
public struct SpanningTreeSettings: Sendable, Equatable {
    /// Bridge priority (0...61440 in steps of 4096); lower wins the root election.
    public var priority: UInt16 = 32768
    /// Seconds between configuration BPDUs from the root (1...10).
    public var helloTime: Double = 2
    /// Seconds in each of listening and learning (4...30).
    public var forwardDelay: Double = 15
    /// Seconds received information lives without refresh (6...40).
    public var maxAge: Double = 20
    /// Path cost of every port (the Linux bridge's value for a port of unknown speed).
    public var portCost: UInt32 = 100
    /// Which protocol: 802.1D STP, or rapid spanning tree (802.1w, RapidSpanningTreeProtocol.swift).
    public var rapid = false
    /// RSTP: BPDUs a port may send per second (802.1D-2004 17.13.12, 1...10).
    public var txHoldCount = 6
    /// RSTP: seconds a port keeps the BPDU format it chose before it may switch again (17.13.9).
    public var migrateTime: Double = 3
    public init() {}
}

/// A port's state (802.1D 8.4). Only forwarding ports forward; learning and forwarding learn.
public enum SpanningTreePortState: UInt8, Sendable, CustomStringConvertible {
    case disabled, blocking, listening, learning, forwarding
    /// RSTP's state for a port that neither learns nor forwards (blocking and listening in one).
    case discarding
    public var description: String {
        switch self {
        case .discarding: "discarding"
        case .disabled: "disabled"
        case .blocking: "blocking"
        case .listening: "listening"
        case .learning: "learning"
        case .forwarding: "forwarding"
        }
    }
    public var learns: Bool { self == .learning || self == .forwarding }
}

/// A port's role in the tree (RSTP's names: an 802.1D blocked port is an alternate).
public enum SpanningTreePortRole: String, Sendable {
    case root, designated, alternate, disabled
    /// RSTP: a port backing up another port of this bridge on the same segment.
    case backup
}

public struct SpanningTreeProtocol: Sendable {
    public enum Output: Equatable, Sendable {
        /// Send this BPDU out of the port.
        case transmit(PortID, BPDU)
        /// The port's state changed.
        case state(PortID, SpanningTreePortState)
        /// Forget the learned FDB entries of this port (it left the learning/forwarding states).
        case flushPort(PortID)
    }

    struct Port: Sendable {
        var id: PortID
        var identifier: UInt16
        var pathCost: UInt32
        var state = SpanningTreePortState.disabled
        var designatedRoot = BridgeID(rawValue: 0)
        var designatedCost: UInt32 = 0
        var designatedBridge = BridgeID(rawValue: 0)
        var designatedPort: UInt16 = 0
        var topologyChangeAck = false
        var configPending = false
        /// When the recorded information was new at the root (now - its message age), and
        /// when it expires.
        var messageAgeStart: UInt64 = 0
        var messageAgeExpiry: UInt64?
        var forwardDelayExpiry: UInt64?
        var holdExpiry: UInt64?
    }

    public let bridgeID: BridgeID
    public let settings: SpanningTreeSettings
    public private(set) var designatedRoot: BridgeID
    public private(set) var rootPathCost: UInt32 = 0
    public private(set) var rootPort: PortID?
    /// Timers in force (the root's, learned from its BPDUs; the bridge's own when it is root), ms.
    public private(set) var maxAge: UInt64
    public private(set) var helloTime: UInt64
    public private(set) var forwardDelay: UInt64
    public private(set) var topologyChangeDetected = false
    /// Set while the root announces a topology change: the FDB ages in `forwardDelay`.
    public private(set) var topologyChange = false
    /// Topology changes this bridge detected or was told of (a counter for stats).
    public private(set) var topologyChanges: UInt64 = 0
    var ports: [PortID: Port] = [:]
    var helloExpiry: UInt64?
    var tcnExpiry: UInt64?
    var topologyChangeExpiry: UInt64?
    var outputs: [Output] = []
    var now: UInt64 = 0

    static let holdTime: UInt64 = 1000
    /// Added to a relayed BPDU's message age (1/20 s, in 1/256 s units, rounded up).
    static let messageAgeIncrement: UInt16 = 13

    public init(bridgeMAC: MACAddress, settings: SpanningTreeSettings = .init(), now: UInt64) {
        self.settings = settings
        bridgeID = BridgeID(priority: settings.priority, mac: bridgeMAC)
        designatedRoot = bridgeID
        maxAge = Self.ms(settings.maxAge); helloTime = Self.ms(settings.helloTime); forwardDelay = Self.ms(settings.forwardDelay)
        self.now = now
        helloExpiry = now   // the first hello goes out at the first tick
    }

    static func ms(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1000) }
    // 1/256 s on the wire, ms here: rounded so that a value read and sent again is unchanged
    // (truncating both ways turned a hello time of 1/256 s into 0, which peers refuse).
    static func units(_ ms: UInt64) -> UInt16 { UInt16(clamping: (min(ms, 1 << 40) * 256 + 500) / 1000) }
    static func ms(units: UInt16) -> UInt64 { (UInt64(units) * 1000 + 255) / 256 }

    // MARK: queries

    public var isRootBridge: Bool { designatedRoot == bridgeID }
    public var portIDs: [PortID] { ports.keys.sorted() }
    public func state(of p: PortID) -> SpanningTreePortState? { ports[p]?.state }
    public func role(of p: PortID) -> SpanningTreePortRole? {
        guard let port = ports[p] else { return nil }
        if port.state == .disabled { return .disabled }
        if rootPort == p { return .root }
        return isDesignated(port) ? .designated : .alternate
    }
    /// The designated bridge and port recorded for a port (who is designated on its segment).
    public func designated(of p: PortID) -> (bridge: BridgeID, port: UInt16)? {
        ports[p].map { ($0.designatedBridge, $0.designatedPort) }
    }

    public mutating func takeOutputs() -> [Output] {
        defer { outputs = [] }
        return outputs
    }

    // MARK: inputs

    /// A port joins (enabled: its link is up). Re-adding a port enables it.
    public mutating func addPort(_ id: PortID, enabled: Bool, now: UInt64) {
        self.now = now
        if ports[id] == nil {
            ports[id] = Port(id: id, identifier: 0x8000 | (UInt16(id.rawValue) &+ 1) & 0x0FFF, pathCost: settings.portCost)
        }
        if enabled { enablePort(id) }
    }

    /// A port leaves the bridge.
    public mutating func removePort(_ id: PortID, now: UInt64) {
        self.now = now
        guard ports[id] != nil else { return }
        disablePort(id)
        ports[id] = nil
        outputs.removeAll { if case .transmit(id, _) = $0 { return true }; return false }
    }

    /// The port's link went up or down (802.1D 8.8.2, 8.8.3).
    public mutating func setPortEnabled(_ id: PortID, _ enabled: Bool, now: UInt64) {
        self.now = now
        guard let p = ports[id] else { return }
        if enabled && p.state == .disabled { enablePort(id) }
        if !enabled && p.state != .disabled { disablePort(id) }
    }

    /// A BPDU arrived on port `id` (decoded and validated by `BPDU.decode`).
    public mutating func receive(_ bpdu: BPDU, on id: PortID, now: UInt64) {
        self.now = now
        guard let p = ports[id], p.state != .disabled else { return }
        switch bpdu.kind {
        case .configuration, .rapid:
            // Our own BPDU come back on the port that sent it (a hairpin): not information.
            if bpdu.bridgeID == bridgeID && bpdu.portID == p.identifier { return }
            receiveConfig(bpdu, on: id)
        case .topologyChangeNotification:
            if isDesignated(p) {
                topologyChangeDetection()
                ports[id]!.topologyChangeAck = true
                transmitConfig(id)
            }
        }
    }

    /// Runs every timer that expired by `now`.
    public mutating func tick(now: UInt64) {
        self.now = now
        if let t = helloExpiry, now >= t {
            if isRootBridge { configBPDUGeneration() }
            helloExpiry = now + helloTime
        }
        if let t = tcnExpiry, now >= t {
            transmitTCN()
            tcnExpiry = now + Self.ms(settings.helloTime)
        }
        if let t = topologyChangeExpiry, now >= t {
            topologyChangeDetected = false
            topologyChange = false
            topologyChangeExpiry = nil
        }
        for id in ports.keys.sorted() {
            if let t = ports[id]?.messageAgeExpiry, now >= t { messageAgeExpired(id) }
            if let t = ports[id]?.forwardDelayExpiry, now >= t { forwardDelayExpired(id) }
            if let t = ports[id]?.holdExpiry, now >= t {
                ports[id]!.holdExpiry = nil
                if ports[id]!.configPending { transmitConfig(id) }
            }
        }
    }

    // MARK: 802.1D 8.6 procedures

    func isDesignated(_ p: Port) -> Bool { p.designatedBridge == bridgeID && p.designatedPort == p.identifier }

    mutating func receiveConfig(_ b: BPDU, on id: PortID) {
        if supersedesPortInfo(ports[id]!, b) {
            recordConfigInformation(id, b)
            let wasRoot = isRootBridge
            configurationUpdate()
            portStateSelection()
            if wasRoot && !isRootBridge {
                helloExpiry = nil
                if topologyChangeDetected {
                    topologyChangeExpiry = nil
                    transmitTCN()
                    tcnExpiry = now + Self.ms(settings.helloTime)
                }
            }
            if rootPort == id {
                recordConfigTimeoutValues(b)
                configBPDUGeneration()
                if b.topologyChangeAcknowledgment {
                    topologyChangeDetected = false
                    tcnExpiry = nil
                }
            }
        } else if isDesignated(ports[id]!) {
            transmitConfig(id)   // reply with our better information
        }
    }

    func supersedesPortInfo(_ p: Port, _ b: BPDU) -> Bool {
        if b.rootID != p.designatedRoot { return b.rootID < p.designatedRoot }
        if b.rootPathCost != p.designatedCost { return b.rootPathCost < p.designatedCost }
        if b.bridgeID != p.designatedBridge { return b.bridgeID < p.designatedBridge }
        return b.bridgeID != bridgeID || b.portID <= p.designatedPort
    }

    mutating func recordConfigInformation(_ id: PortID, _ b: BPDU) {
        ports[id]!.designatedRoot = b.rootID
        ports[id]!.designatedCost = b.rootPathCost
        ports[id]!.designatedBridge = b.bridgeID
        ports[id]!.designatedPort = b.portID
        let age = Self.ms(units: b.messageAge)
        ports[id]!.messageAgeStart = now &- age
        ports[id]!.messageAgeExpiry = now + (Self.ms(units: b.maxAge) &- min(age, Self.ms(units: b.maxAge)))
    }

    mutating func recordConfigTimeoutValues(_ b: BPDU) {
        maxAge = Self.ms(units: b.maxAge)
        helloTime = Self.ms(units: b.helloTime)
        forwardDelay = Self.ms(units: b.forwardDelay)
        if b.topologyChange && !topologyChange { topologyChanges += 1 }
        topologyChange = b.topologyChange
    }

    mutating func configBPDUGeneration() {
        for id in ports.keys.sorted() where ports[id]!.state != .disabled && isDesignated(ports[id]!) {
            transmitConfig(id)
        }
    }

    mutating func transmitConfig(_ id: PortID) {
        guard let p = ports[id] else { return }
        if p.holdExpiry != nil {
            ports[id]!.configPending = true
            return
        }
        var b = BPDU(kind: .configuration)
        b.rootID = designatedRoot
        b.rootPathCost = rootPathCost
        b.bridgeID = bridgeID
        b.portID = p.identifier
        if let r = rootPort, let rp = ports[r] {
            let age = Self.units(now &- rp.messageAgeStart)
            b.messageAge = age &+ Self.messageAgeIncrement
        }
        b.maxAge = Self.units(maxAge)
        b.helloTime = Self.units(helloTime)
        b.forwardDelay = Self.units(forwardDelay)
        b.topologyChange = topologyChange
        b.topologyChangeAcknowledgment = p.topologyChangeAck
        guard b.messageAge < b.maxAge else { return }   // information too old to relay
        ports[id]!.topologyChangeAck = false
        ports[id]!.configPending = false
        ports[id]!.holdExpiry = now + Self.holdTime
        outputs.append(.transmit(id, b))
    }

    mutating func transmitTCN() {
        guard let r = rootPort else { return }
        outputs.append(.transmit(r, BPDU(kind: .topologyChangeNotification)))
    }

    mutating func configurationUpdate() {
        rootSelection()
        designatedPortSelection()
    }

    mutating func rootSelection() {
        var best: Port?
        for id in ports.keys.sorted() {
            let p = ports[id]!
            guard p.state != .disabled, !isDesignated(p), p.designatedRoot < bridgeID else { continue }
            if let b = best {
                let pc = UInt64(p.designatedCost) + UInt64(p.pathCost), bc = UInt64(b.designatedCost) + UInt64(b.pathCost)
                let better: Bool
                if p.designatedRoot != b.designatedRoot { better = p.designatedRoot < b.designatedRoot }
                else if pc != bc { better = pc < bc }
                else if p.designatedBridge != b.designatedBridge { better = p.designatedBridge < b.designatedBridge }
                else if p.designatedPort != b.designatedPort { better = p.designatedPort < b.designatedPort }
                else { better = p.identifier < b.identifier }
                if better { best = p }
            } else { best = p }
        }
        if let b = best {
            rootPort = b.id
            designatedRoot = b.designatedRoot
            rootPathCost = UInt32(clamping: UInt64(b.designatedCost) + UInt64(b.pathCost))
        } else {
            rootPort = nil
            designatedRoot = bridgeID
            rootPathCost = 0
        }
    }

    mutating func designatedPortSelection() {
        for id in ports.keys.sorted() where shouldBecomeDesignated(ports[id]!) { becomeDesignatedPort(id) }
    }

    func shouldBecomeDesignated(_ p: Port) -> Bool {
        if isDesignated(p) { return true }
        if p.designatedRoot != designatedRoot { return true }
        if rootPathCost != p.designatedCost { return rootPathCost < p.designatedCost }
        if bridgeID != p.designatedBridge { return bridgeID < p.designatedBridge }
        return p.identifier < p.designatedPort
    }

    mutating func becomeDesignatedPort(_ id: PortID) {
        ports[id]!.designatedRoot = designatedRoot
        ports[id]!.designatedCost = rootPathCost
        ports[id]!.designatedBridge = bridgeID
        ports[id]!.designatedPort = ports[id]!.identifier
        ports[id]!.messageAgeExpiry = nil
    }

    mutating func portStateSelection() {
        for id in ports.keys.sorted() where ports[id]!.state != .disabled {
            if rootPort == id {
                ports[id]!.configPending = false
                ports[id]!.topologyChangeAck = false
                makeForwarding(id)
            } else if isDesignated(ports[id]!) {
                ports[id]!.messageAgeExpiry = nil
                makeForwarding(id)
            } else {
                ports[id]!.configPending = false
                ports[id]!.topologyChangeAck = false
                makeBlocking(id)
            }
        }
    }

    mutating func setState(_ id: PortID, _ s: SpanningTreePortState) {
        let old = ports[id]!.state
        guard old != s else { return }
        ports[id]!.state = s
        outputs.append(.state(id, s))
        if old.learns && !s.learns { outputs.append(.flushPort(id)) }
    }

    mutating func makeForwarding(_ id: PortID) {
        guard ports[id]!.state == .blocking else { return }
        setState(id, .listening)
        ports[id]!.forwardDelayExpiry = now + forwardDelay
    }

    mutating func makeBlocking(_ id: PortID) {
        let s = ports[id]!.state
        guard s != .disabled && s != .blocking else { return }
        if s == .forwarding || s == .learning { topologyChangeDetection() }
        setState(id, .blocking)
        ports[id]!.forwardDelayExpiry = nil
    }

    mutating func topologyChangeDetection() {
        if isRootBridge {
            if !topologyChange { topologyChanges += 1 }
            topologyChange = true
            topologyChangeExpiry = now + maxAge + forwardDelay
        } else if !topologyChangeDetected {
            topologyChanges += 1
            transmitTCN()
            tcnExpiry = now + Self.ms(settings.helloTime)
        }
        topologyChangeDetected = true
    }

    mutating func becomeRootIfNeeded(wasRoot: Bool) {
        guard isRootBridge && !wasRoot else { return }
        maxAge = Self.ms(settings.maxAge); helloTime = Self.ms(settings.helloTime); forwardDelay = Self.ms(settings.forwardDelay)
        topologyChangeDetection()
        tcnExpiry = nil
        configBPDUGeneration()
        helloExpiry = now + helloTime
    }

    mutating func messageAgeExpired(_ id: PortID) {
        let wasRoot = isRootBridge
        becomeDesignatedPort(id)
        configurationUpdate()
        portStateSelection()
        becomeRootIfNeeded(wasRoot: wasRoot)
    }

    mutating func forwardDelayExpired(_ id: PortID) {
        switch ports[id]!.state {
        case .listening:
            setState(id, .learning)
            ports[id]!.forwardDelayExpiry = now + forwardDelay
        case .learning:
            setState(id, .forwarding)
            ports[id]!.forwardDelayExpiry = nil
            if ports.values.contains(where: { $0.state != .disabled && $0.designatedBridge == bridgeID }) { topologyChangeDetection() }
        default:
            ports[id]!.forwardDelayExpiry = nil
        }
    }

    mutating func initializePort(_ id: PortID) {
        becomeDesignatedPort(id)
        ports[id]!.topologyChangeAck = false
        ports[id]!.configPending = false
        ports[id]!.forwardDelayExpiry = nil
        ports[id]!.holdExpiry = nil
    }

    mutating func enablePort(_ id: PortID) {
        initializePort(id)
        setState(id, .blocking)
        portStateSelection()
    }

    mutating func disablePort(_ id: PortID) {
        let wasRoot = isRootBridge
        let wasLearning = ports[id]!.state.learns
        initializePort(id)
        setState(id, .disabled)
        configurationUpdate()
        portStateSelection()
        if wasLearning && !(isRootBridge && !wasRoot) { topologyChangeDetection() }
        becomeRootIfNeeded(wasRoot: wasRoot)
    }
}
