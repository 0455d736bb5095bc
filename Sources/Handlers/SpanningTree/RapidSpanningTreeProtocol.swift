// RapidSpanningTreeProtocol: rapid spanning tree (IEEE 802.1w, 802.1D-2004 clause 17) as a pure
// state machine, the same shape as SpanningTreeProtocol (802.1D): BPDUs received, port links
// and the time (`tick(now:)`, ms on any monotonic clock) in; BPDUs to send, port state changes
// and FDB flushes out (`takeOutputs()`). No clock read, no I/O, so unit tests run simulated
// bridges against each other (Tests/HandlersTests/RapidSpanningTreeTests.swift).
//
// The clause-17 state machines (port information, role selection, role transitions, state
// transitions, topology change, protocol migration, bridge detection, transmit) are evaluated
// together by `settle()`: each input updates variables, then every machine's transition
// conditions are re-evaluated until none fires (bounded), as the standard's machines run
// "until no transition is enabled". Timers are absolute expiries (nil: zero).
//
// Kept from the standard: priority vectors and rapid aging (received information lives
// 3 x its hello time), roles root/designated/alternate/backup/disabled, states
// discarding/learning/forwarding, proposal/agreement with sync (a point-to-point designated
// port forwards as soon as its peer agrees), edge ports (admin and automatic), the recent-root
// and recent-backup timers against temporary loops, topology change (a non-edge port going
// forwarding sets TC for 2 x hello and every other non-edge port flushes its FDB entries: the
// port a TC arrived on is not flushed), port protocol migration (an 802.1D BPDU makes the port
// speak 802.1D: configuration and TCN BPDUs, no handshake, 2 x forward delay to forward), the
// transmit hold count. Chosen here: a designated port with no agreement waits forward delay in
// discarding and in learning (the standard's first wait after a link comes up is max age); a
// BPDU relayed carries the root port's message age plus 1 s.
import Frames

public struct RapidSpanningTreeProtocol: Sendable {
    public typealias Output = SpanningTreeProtocol.Output

    /// (root, root path cost, designated bridge, designated port, receiving port): lower is better.
    struct PriorityVector: Equatable, Sendable {
        var rootID = BridgeID(rawValue: 0)
        var rootPathCost: UInt32 = 0
        var designatedBridge = BridgeID(rawValue: 0)
        var designatedPort: UInt16 = 0
        var bridgePort: UInt16 = 0

        /// Compares the first four components (the message priority vector).
        func isBetter(than o: PriorityVector) -> Bool {
            (rootID.rawValue, rootPathCost, designatedBridge.rawValue, designatedPort)
                < (o.rootID.rawValue, o.rootPathCost, o.designatedBridge.rawValue, o.designatedPort)
        }
        func isSame(as o: PriorityVector) -> Bool {
            rootID == o.rootID && rootPathCost == o.rootPathCost && designatedBridge == o.designatedBridge && designatedPort == o.designatedPort
        }
        /// All five components (root port selection).
        func isBetterRootPath(than o: PriorityVector) -> Bool {
            isBetter(than: o) || (isSame(as: o) && bridgePort < o.bridgePort)
        }
    }

    struct Times: Equatable, Sendable {
        var messageAge: UInt64 = 0, maxAge: UInt64 = 0, helloTime: UInt64 = 0, forwardDelay: UInt64 = 0
    }

    enum InfoIs: Sendable { case disabled, mine, aged, received }

    struct Port: Sendable {
        var id: PortID
        var identifier: UInt16
        var pathCost: UInt32
        var options: SpanningTreePortOptions
        var enabled = false
        var infoIs = InfoIs.disabled
        var portPriority = PriorityVector()
        var portTimes = Times()
        var designatedPriority = PriorityVector()
        var designatedTimes = Times()
        var role = SpanningTreePortRole.disabled
        var selectedRole = SpanningTreePortRole.disabled
        var updtInfo = false
        var learn = false, forward = false
        var proposing = false, proposed = false, agree = false, agreed = false
        var synced = true, sync = false, reRoot = false, disputed = false
        var operEdge = false
        var sendRSTP = true
        var newInfo = false
        var txCount = 0
        var tcAck = false, tcProp = false, rcvdTc = false, rcvdTcn = false, rcvdTcAck = false
        // Timers: absolute expiries in ms; nil is a timer at zero.
        var rcvdInfoWhile: UInt64?
        var fdWhile: UInt64?
        var rrWhile: UInt64?
        var rbWhile: UInt64?
        var tcWhile: UInt64?
        var mdelayWhile: UInt64?
        var edgeDelayWhile: UInt64?
        var helloWhen: UInt64?
        /// The state last reported in an output.
        var reported = SpanningTreePortState.disabled
    }

    public let bridgeID: BridgeID
    public let settings: SpanningTreeSettings
    public private(set) var designatedRoot: BridgeID
    public private(set) var rootPathCost: UInt32 = 0
    public private(set) var rootPort: PortID?
    public private(set) var maxAge: UInt64
    public private(set) var helloTime: UInt64
    public private(set) var forwardDelay: UInt64
    public private(set) var topologyChanges: UInt64 = 0
    var rootTimes = Times()
    var ports: [PortID: Port] = [:]
    var reselect = false
    var outputs: [Output] = []
    var now: UInt64 = 0
    var txCountDecay: UInt64 = 0
    var hadTopologyChange = false
    let migrateTime: UInt64
    let txHoldCount: Int

    public init(bridgeMAC: MACAddress, settings: SpanningTreeSettings = .init(), now: UInt64) {
        self.settings = settings
        bridgeID = BridgeID(priority: settings.priority, mac: bridgeMAC)
        designatedRoot = bridgeID
        maxAge = Self.ms(settings.maxAge); helloTime = Self.ms(settings.helloTime); forwardDelay = Self.ms(settings.forwardDelay)
        migrateTime = Self.ms(settings.migrateTime)
        txHoldCount = max(1, settings.txHoldCount)
        self.now = now
        txCountDecay = now + 1000
        rootTimes = Times(messageAge: 0, maxAge: maxAge, helloTime: helloTime, forwardDelay: forwardDelay)
    }

    static func ms(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1000) }

    // MARK: queries

    public var isRootBridge: Bool { designatedRoot == bridgeID }
    public var portIDs: [PortID] { ports.keys.sorted() }
    public var mode: String { "rstp" }
    public var agesFast: Bool { false }
    /// Some port announces a topology change (its tcWhile runs).
    public var topologyChange: Bool { ports.values.contains { running($0.tcWhile) } }

    public func state(of p: PortID) -> SpanningTreePortState? { ports[p].map(Self.state) }
    static func state(_ p: Port) -> SpanningTreePortState {
        !p.enabled ? .disabled : p.forward ? .forwarding : p.learn ? .learning : .discarding
    }
    public func role(of p: PortID) -> SpanningTreePortRole? { ports[p]?.role }
    public func designated(of p: PortID) -> (bridge: BridgeID, port: UInt16)? {
        ports[p].map { ($0.portPriority.designatedBridge, $0.portPriority.designatedPort) }
    }
    public func portProtocol(of p: PortID) -> String? { ports[p].map { $0.sendRSTP ? "rstp" : "stp" } }
    public func isEdge(_ p: PortID) -> Bool { ports[p]?.operEdge ?? false }

    public mutating func takeOutputs() -> [Output] {
        defer { outputs = [] }
        return outputs
    }

    func running(_ t: UInt64?) -> Bool { t.map { now < $0 } ?? false }

    // MARK: inputs

    public mutating func addPort(_ id: PortID, enabled: Bool, options: SpanningTreePortOptions = .init(), now: UInt64) {
        self.now = now
        if ports[id] == nil {
            ports[id] = Port(id: id, identifier: 0x8000 | (UInt16(id.rawValue) &+ 1) & 0x0FFF, pathCost: settings.portCost,
                             options: options)
        }
        if enabled { enablePort(id) }
        settle()
    }

    public mutating func removePort(_ id: PortID, now: UInt64) {
        self.now = now
        guard ports[id] != nil else { return }
        if ports[id]!.enabled { disablePort(id) }
        settle()
        ports[id] = nil
        reselect = true
        settle()
        outputs.removeAll { if case .transmit(id, _) = $0 { return true }; return false }
    }

    public mutating func setPortEnabled(_ id: PortID, _ enabled: Bool, now: UInt64) {
        self.now = now
        guard let p = ports[id], p.enabled != enabled else { return }
        if enabled { enablePort(id) } else { disablePort(id) }
        settle()
    }

    mutating func enablePort(_ id: PortID) {
        var p = ports[id]!
        p.enabled = true
        p.infoIs = .aged             // PIM: DISABLED -> AGED
        p.sendRSTP = true            // PPM: CHECKING_RSTP
        p.mdelayWhile = now + migrateTime
        p.operEdge = p.options.adminEdge
        p.edgeDelayWhile = now + edgeDelay(p)
        p.fdWhile = now + forwardDelay
        p.helloWhen = now
        p.txCount = 0
        ports[id] = p
        reselect = true
    }

    mutating func disablePort(_ id: PortID) {
        var p = ports[id]!
        p.enabled = false
        p.infoIs = .disabled         // PIM: DISABLED
        p.proposing = false; p.proposed = false; p.agree = false; p.agreed = false
        p.rcvdInfoWhile = nil
        p.learn = false; p.forward = false
        p.tcWhile = nil; p.tcProp = false; p.rcvdTc = false; p.rcvdTcn = false; p.rcvdTcAck = false; p.tcAck = false
        p.newInfo = false
        ports[id] = p
        reselect = true
    }

    func edgeDelay(_ p: Port) -> UInt64 { p.options.pointToPoint ? migrateTime : maxAge }

    /// A BPDU arrived on port `id` (decoded and validated by `BPDU.decode`).
    public mutating func receive(_ bpdu: BPDU, on id: PortID, now: UInt64) {
        self.now = now
        guard var p = ports[id], p.enabled else { return }
        if bpdu.kind != .topologyChangeNotification && bpdu.bridgeID == bridgeID && bpdu.portID == p.identifier { return }
        // Bridge detection: a BPDU means a bridge is there.
        p.operEdge = false
        p.edgeDelayWhile = now + migrateTime
        // Protocol migration (17.24): switch format only once the migrate delay ran out.
        let isRST = bpdu.kind == .rapid
        if !running(p.mdelayWhile) && p.sendRSTP != isRST {
            p.sendRSTP = isRST
            p.mdelayWhile = now + migrateTime
            p.newInfo = true
        }
        ports[id] = p
        if bpdu.kind == .topologyChangeNotification {
            ports[id]!.rcvdTcn = true
        } else {
            receiveInfo(bpdu, on: id)
        }
        settle()
    }

    /// Runs every timer that expired by `now`.
    public mutating func tick(now: UInt64) {
        self.now = now
        if now >= txCountDecay {
            for id in ports.keys { if ports[id]!.txCount > 0 { ports[id]!.txCount -= 1 } }
            txCountDecay = now + 1000
        }
        for id in ports.keys.sorted() {
            // Rapid aging: received information not refreshed within 3 x hello is gone.
            if ports[id]!.infoIs == .received, !running(ports[id]!.rcvdInfoWhile) {
                ports[id]!.infoIs = .aged
                reselect = true
            }
            if let h = ports[id]!.helloWhen, now >= h, ports[id]!.enabled {
                ports[id]!.helloWhen = now + Self.ms(settings.helloTime)
                let r = ports[id]!.role
                if r == .designated || (r == .root && running(ports[id]!.tcWhile)) { ports[id]!.newInfo = true }
            }
        }
        settle()
    }

    // MARK: port information (17.27)

    mutating func receiveInfo(_ b: BPDU, on id: PortID) {
        var p = ports[id]!
        let msg = PriorityVector(rootID: b.rootID, rootPathCost: b.rootPathCost, designatedBridge: b.bridgeID,
                                 designatedPort: b.portID, bridgePort: p.identifier)
        // Message age in whole seconds, as clause 17 counts it (one per hop): an 802.1D bridge's
        // age grows by a fraction each hello, which is no new information.
        let age = (SpanningTreeProtocol.ms(units: b.messageAge) + 500) / 1000 * 1000
        let times = Times(messageAge: age, maxAge: SpanningTreeProtocol.ms(units: b.maxAge),
                          helloTime: SpanningTreeProtocol.ms(units: b.helloTime), forwardDelay: SpanningTreeProtocol.ms(units: b.forwardDelay))
        // A configuration BPDU speaks for a designated port (17.21.8).
        let role: BPDU.RSTPRole = b.kind == .rapid ? b.portRole : .designated
        let isRST = b.kind == .rapid
        // Superior: better, or from the same designated bridge and port (whatever it says now).
        let sameSender = msg.designatedBridge.mac == p.portPriority.designatedBridge.mac
            && msg.designatedPort & 0x0FFF == p.portPriority.designatedPort & 0x0FFF
        if role == .designated {
            if msg.isBetter(than: p.portPriority) || (sameSender && !msg.isSame(as: p.portPriority)) {
                // SUPERIOR_DESIGNATED
                p.agreed = false; p.proposing = false
                p.proposed = isRST && b.proposal
                setTcFlags(&p, b)
                p.agree = p.agree && !p.portPriority.isBetter(than: msg)
                p.portPriority = msg
                p.portTimes = times
                updateRcvdInfoWhile(&p)
                p.infoIs = .received
                reselect = true
            } else if msg.isSame(as: p.portPriority) {
                // REPEATED_DESIGNATED (a changed time is also recorded)
                p.proposed = p.proposed || (isRST && b.proposal)
                setTcFlags(&p, b)
                if p.portTimes != times { p.portTimes = times; reselect = true }
                updateRcvdInfoWhile(&p)
            } else {
                // INFERIOR_DESIGNATED: a designated port worse than ours that learns or forwards
                // disputes our role (a one-way link): we stop forwarding (17.21.10).
                if isRST && (b.learning || b.forwarding) && p.role == .designated { p.disputed = true; p.agreed = false }
            }
        } else if role == .root || role == .alternateOrBackup {
            if !msg.isBetter(than: p.portPriority) {
                // INFERIOR_ROOT_ALTERNATE: the peer's answer to our proposal.
                if isRST && p.options.pointToPoint && b.agreement {
                    p.agreed = true; p.proposing = false
                } else {
                    p.agreed = false
                }
                setTcFlags(&p, b)
            }
        }
        ports[id] = p
    }

    func setTcFlags(_ p: inout Port, _ b: BPDU) {
        if b.topologyChange { p.rcvdTc = true }
        if b.kind == .configuration && b.topologyChangeAcknowledgment { p.rcvdTcAck = true }
    }

    func updateRcvdInfoWhile(_ p: inout Port) {
        // 3 x the sender's hello, unless the information is at the end of its life.
        if p.portTimes.messageAge + 1000 < p.portTimes.maxAge {
            p.rcvdInfoWhile = now + 3 * max(p.portTimes.helloTime, 1)
        } else {
            p.rcvdInfoWhile = nil
        }
    }

    // MARK: role selection (17.28, 17.21.25)

    mutating func updateRolesTree() {
        var best = PriorityVector(rootID: bridgeID, rootPathCost: 0, designatedBridge: bridgeID, designatedPort: 0, bridgePort: 0)
        var bestPort: PortID?
        for id in ports.keys.sorted() {
            let p = ports[id]!
            guard p.infoIs == .received, p.portPriority.designatedBridge.mac != bridgeID.mac else { continue }
            var v = p.portPriority
            v.rootPathCost = UInt32(clamping: UInt64(v.rootPathCost) + UInt64(p.pathCost))
            v.bridgePort = p.identifier
            if v.isBetterRootPath(than: best) { best = v; bestPort = id }
        }
        rootPort = bestPort
        designatedRoot = best.rootID
        rootPathCost = best.rootPathCost
        let own = Times(messageAge: 0, maxAge: Self.ms(settings.maxAge), helloTime: Self.ms(settings.helloTime),
                        forwardDelay: Self.ms(settings.forwardDelay))
        if let r = bestPort {
            rootTimes = ports[r]!.portTimes
            rootTimes.messageAge += 1000
        } else {
            rootTimes = own
        }
        maxAge = rootTimes.maxAge; helloTime = rootTimes.helloTime; forwardDelay = rootTimes.forwardDelay
        for id in ports.keys.sorted() {
            var p = ports[id]!
            p.designatedPriority = PriorityVector(rootID: best.rootID, rootPathCost: best.rootPathCost, designatedBridge: bridgeID,
                                                  designatedPort: p.identifier, bridgePort: p.identifier)
            p.designatedTimes = rootTimes
            p.designatedTimes.helloTime = own.helloTime
            switch p.infoIs {
            case .disabled:
                p.selectedRole = .disabled
            case .aged:
                p.updtInfo = true; p.selectedRole = .designated
            case .mine:
                p.selectedRole = .designated
                if !p.portPriority.isSame(as: p.designatedPriority) || p.portTimes != p.designatedTimes { p.updtInfo = true }
            case .received:
                if id == bestPort {
                    p.selectedRole = .root; p.updtInfo = false
                } else if p.designatedPriority.isBetter(than: p.portPriority) {
                    p.selectedRole = .designated; p.updtInfo = true
                } else if p.portPriority.designatedBridge.mac == bridgeID.mac {
                    p.selectedRole = .backup; p.updtInfo = false
                } else {
                    p.selectedRole = .alternate; p.updtInfo = false
                }
            }
            if p.updtInfo {
                // PIM UPDATE: this port's own information replaces what it recorded.
                p.proposing = false; p.proposed = false
                p.agreed = p.agreed && !p.portPriority.isBetter(than: p.designatedPriority)
                p.synced = p.synced && p.agreed
                p.portPriority = p.designatedPriority
                p.portTimes = p.designatedTimes
                p.updtInfo = false
                p.infoIs = .mine
                p.newInfo = true
            }
            ports[id] = p
        }
    }

    // MARK: the machines, run until quiet

    mutating func settle() {
        for _ in 0..<64 {
            var changed = false
            if reselect { reselect = false; updateRolesTree(); changed = true }
            for id in ports.keys.sorted() {
                if roleTransitions(id) { changed = true }
                if edgeDetection(id) { changed = true }
                if topologyChangeMachine(id) { changed = true }
            }
            if !changed { break }
        }
        for id in ports.keys.sorted() {
            reportState(id)
            transmit(id)
        }
        let tc = topologyChange
        if tc && !hadTopologyChange { topologyChanges += 1 }
        hadTopologyChange = tc
    }

    var allSynced: Bool {
        ports.values.allSatisfy { $0.role == $0.selectedRole && ($0.role == .root || $0.synced) }
    }

    /// No port other than `id` was recently root (its rrWhile is zero).
    func reRooted(_ id: PortID) -> Bool {
        ports.allSatisfy { $0.key == id || !running($0.value.rrWhile) }
    }

    mutating func setSyncTree() { for id in ports.keys { ports[id]!.sync = true } }
    mutating func setReRootTree() { for id in ports.keys { ports[id]!.reRoot = true } }

    /// Port role transitions (17.29) for one port; true when something changed.
    mutating func roleTransitions(_ id: PortID) -> Bool {
        var p = ports[id]!
        var changed = false
        defer { ports[id] = p }
        if p.role != p.selectedRole {
            changed = true
            p.role = p.selectedRole
            p.disputed = false   // a dispute is about this port being designated
            switch p.role {
            case .disabled:
                p.learn = false; p.forward = false
                p.synced = true; p.sync = false; p.reRoot = false; p.rrWhile = nil
                p.fdWhile = now + forwardDelay
            case .alternate, .backup:
                p.learn = false; p.forward = false
            case .root, .designated:
                break
            }
        }
        switch p.role {
        case .disabled:
            break
        case .alternate, .backup:
            // ALTERNATE_PORT: discarding, synced, the forward delay timer kept full.
            p.fdWhile = now + forwardDelay
            if !p.synced || p.sync || p.reRoot || running(p.rrWhile) {
                p.synced = true; p.rrWhile = nil; p.sync = false; p.reRoot = false; changed = true
            }
            if p.role == .backup { p.rbWhile = now + 2 * Self.ms(settings.helloTime) }
            if p.proposed && !p.agree {
                ports[id] = p; setSyncTree(); p = ports[id]!
                p.proposed = false; changed = true
            }
            ports[id] = p
            if (allSynced && !p.agree) || (p.proposed && p.agree) {
                p.proposed = false; p.agree = true; p.newInfo = true; changed = true
            }
        case .root:
            p.rrWhile = now + forwardDelay
            if p.proposed && !p.agree {
                ports[id] = p; setSyncTree(); p = ports[id]!
                p.proposed = false; changed = true
            }
            ports[id] = p
            if (allSynced && !p.agree) || (p.proposed && p.agree) {
                p.proposed = false; p.sync = false; p.agree = true; p.newInfo = true; changed = true
            }
            if !p.forward && !p.reRoot {
                ports[id] = p; setReRootTree(); p = ports[id]!
                changed = true
            }
            if (p.agreed && !p.synced) || (p.sync && p.synced) { p.synced = true; p.sync = false; changed = true }
            ports[id] = p
            let may = !running(p.fdWhile) || (reRooted(id) && !running(p.rbWhile))
            if may && !p.learn { p.learn = true; p.fdWhile = now + forwardDelay; changed = true }
            else if may && p.learn && !p.forward { p.forward = true; p.fdWhile = nil; changed = true; becameForwarding(&p) }
            if p.reRoot && p.forward { p.reRoot = false; changed = true }
        case .designated:
            if !p.forward && !p.agreed && !p.proposing && !p.operEdge {
                p.proposing = true; p.edgeDelayWhile = now + edgeDelay(p); p.newInfo = true; changed = true
            }
            if (!p.learn && !p.forward && !p.synced) || (p.agreed && !p.synced) || (p.operEdge && !p.synced) || (p.sync && p.synced) {
                p.rrWhile = nil; p.synced = true; p.sync = false; changed = true
            }
            if !running(p.rrWhile) && p.reRoot { p.reRoot = false; changed = true }
            if ((p.sync && !p.synced) || (p.reRoot && running(p.rrWhile)) || p.disputed) && !p.operEdge && (p.learn || p.forward) {
                p.learn = false; p.forward = false; p.disputed = false; p.fdWhile = now + forwardDelay; changed = true
            }
            let may = (!running(p.fdWhile) || p.agreed || p.operEdge) && (!running(p.rrWhile) || !p.reRoot) && !p.sync
            if may && !p.learn { p.learn = true; p.fdWhile = now + forwardDelay; changed = true }
            else if may && p.learn && !p.forward {
                p.forward = true; p.agreed = p.sendRSTP; p.fdWhile = nil; changed = true
                becameForwarding(&p)
            }
        }
        return changed
    }

    /// Topology change detection (17.25 DETECTED): a non-edge port that starts forwarding.
    mutating func becameForwarding(_ p: inout Port) {
        guard !p.operEdge else { return }
        newTcWhile(&p)
        let id = p.id
        for other in ports.keys where other != id { ports[other]!.tcProp = true }
    }

    mutating func newTcWhile(_ p: inout Port) {
        guard !running(p.tcWhile) else { return }
        if p.sendRSTP {
            p.tcWhile = now + 2 * Self.ms(settings.helloTime)
            p.newInfo = true
        } else {
            p.tcWhile = now + rootTimes.maxAge + rootTimes.forwardDelay
        }
    }

    /// Bridge detection (17.25): a designated port that proposed and heard no BPDU for the edge
    /// delay is an edge port (when auto-edge is on).
    mutating func edgeDetection(_ id: PortID) -> Bool {
        let p = ports[id]!
        guard p.enabled, !p.operEdge, p.options.autoEdge, p.sendRSTP, p.proposing, p.role == .designated,
              !running(p.edgeDelayWhile) else { return false }
        ports[id]!.operEdge = true
        return true
    }

    /// Topology change machine (17.31) for one port; true when something changed.
    mutating func topologyChangeMachine(_ id: PortID) -> Bool {
        var p = ports[id]!
        defer { ports[id] = p }
        let active = (p.role == .root || p.role == .designated) && p.forward && !p.operEdge
        if !active {
            // LEARNING / INACTIVE: notifications are forgotten.
            let had = p.rcvdTc || p.rcvdTcn || p.rcvdTcAck || p.tcProp
            p.rcvdTc = false; p.rcvdTcn = false; p.rcvdTcAck = false; p.tcProp = false
            if !p.learn && !p.forward { p.tcWhile = nil; p.tcAck = false }
            return had
        }
        var changed = false
        if p.rcvdTcn {
            // NOTIFIED_TCN (an 802.1D bridge told us).
            newTcWhile(&p)
        }
        if p.rcvdTc || p.rcvdTcn {
            // NOTIFIED_TC: every other port propagates; this one is not flushed.
            if p.rcvdTcn && p.role == .designated { p.tcAck = true; p.newInfo = true }
            p.rcvdTc = false; p.rcvdTcn = false
            for other in ports.keys where other != id { ports[other]!.tcProp = true }
            changed = true
        }
        if p.tcProp {
            // PROPAGATING: announce and flush what this port learned.
            newTcWhile(&p)
            p.tcProp = false
            outputs.append(.flushPort(id))
            changed = true
        }
        if p.rcvdTcAck {
            p.tcWhile = nil; p.rcvdTcAck = false; changed = true
        }
        return changed
    }

    // MARK: outputs

    mutating func reportState(_ id: PortID) {
        let s = Self.state(ports[id]!)
        let old = ports[id]!.reported
        guard s != old else { return }
        ports[id]!.reported = s
        outputs.append(.state(id, s))
        if old.learns && !s.learns { outputs.append(.flushPort(id)) }
    }

    /// Port transmit (17.26): at most `txHoldCount` BPDUs a second per port.
    mutating func transmit(_ id: PortID) {
        var p = ports[id]!
        guard p.enabled, p.newInfo, p.role != .disabled else { return }
        guard p.txCount < txHoldCount else { return }   // sent when the count decays
        var b: BPDU
        if p.sendRSTP {
            b = BPDU(kind: .rapid)
            b.version = 2
            b.portRole = switch p.role {
            case .root: .root
            case .designated: .designated
            case .alternate, .backup: .alternateOrBackup
            case .disabled: .unknown
            }
            b.proposal = p.proposing && p.role == .designated
            b.agreement = p.agree
            b.learning = p.learn
            b.forwarding = p.forward
            b.topologyChange = running(p.tcWhile)
        } else if p.role == .designated {
            b = BPDU(kind: .configuration)
            b.topologyChange = running(p.tcWhile)
            b.topologyChangeAcknowledgment = p.tcAck
        } else if p.role == .root && running(p.tcWhile) {
            p.newInfo = false; p.txCount += 1
            ports[id] = p
            outputs.append(.transmit(id, BPDU(kind: .topologyChangeNotification)))
            return
        } else {
            p.newInfo = false
            ports[id] = p
            return
        }
        if b.kind != .topologyChangeNotification {
            b.rootID = p.designatedPriority.rootID
            b.rootPathCost = p.designatedPriority.rootPathCost
            b.bridgeID = bridgeID
            b.portID = p.identifier
            b.messageAge = SpanningTreeProtocol.units(p.designatedTimes.messageAge)
            b.maxAge = SpanningTreeProtocol.units(p.designatedTimes.maxAge)
            b.helloTime = SpanningTreeProtocol.units(p.designatedTimes.helloTime)
            b.forwardDelay = SpanningTreeProtocol.units(p.designatedTimes.forwardDelay)
        }
        p.newInfo = false
        p.txCount += 1
        p.tcAck = false
        ports[id] = p
        guard b.messageAge < b.maxAge else { return }   // information too old to relay
        outputs.append(.transmit(id, b))
    }
}

extension RapidSpanningTreeProtocol: SpanningTreeMachine {}
