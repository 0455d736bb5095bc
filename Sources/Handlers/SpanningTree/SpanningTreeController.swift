// SpanningTreeController: the control side of one bridge's spanning tree. Joins the pure
// protocol (SpanningTreeProtocol for 802.1D, RapidSpanningTreeProtocol for RSTP, both a
// SpanningTreeMachine) to the switch: BPDUs the datapath posted to the gate's
// mailbox are decoded (BPDU.decode, every bound checked) and fed to the protocol; the
// protocol's outputs become BPDU frames handed to a transmit function (the daemon injects them
// with `Engine.inject`), new learning/forwarding port sets published to the gate, and FDB
// flushes. Runs on the daemon's control thread (`poll` on every wake-up of its loop, at most
// 0.2 s apart); never on the datapath. Every LearningSwitch has one, off until `enable`.
import Frames
import Synchronization

public final class SpanningTreeController: @unchecked Sendable {
    /// One port's view for `tapbridge ports` / `stp` and the metrics.
    public struct PortStatus: Sendable, Equatable {
        public var id: PortID
        public var name: String
        public var state: SpanningTreePortState
        public var role: SpanningTreePortRole
        public var designatedBridge: BridgeID
        public var designatedPort: UInt16
        /// The BPDU format the port speaks: "stp" (802.1D) or "rstp".
        public var protocolVersion: String = "stp"
        /// An RSTP edge port now.
        public var edge = false
    }

    public struct Status: Sendable, Equatable {
        public var mode: String
        public var bridgeID: BridgeID
        public var rootID: BridgeID
        public var rootPathCost: UInt32
        public var rootPort: String?
        public var topologyChange: Bool
        public var topologyChanges: UInt64
        public var maxAge: Double, helloTime: Double, forwardDelay: Double
        public var ports: [PortStatus]
    }

    struct State {
        var proto: (any SpanningTreeMachine)?
        /// RSTP options of ports by name (`stp-edge`, `stp-auto-edge`, `stp-point-to-point`).
        var options: [String: SpanningTreePortOptions] = [:]
        var names: [PortID: String] = [:]
        var down: Set<String> = []
        /// Ports left out of the tree (port key `stp = false`): always forwarding, no BPDUs.
        var excluded: Set<String> = []
        var bpdusIn: UInt64 = 0
        var bpdusOut: UInt64 = 0
        var bpdusMalformed: UInt64 = 0
        var bpdusUnsent: UInt64 = 0
        var lastFastAging: UInt64 = 0
    }

    let gate: SpanningTreeGate
    unowned let fdb: ForwardingDatabase
    private let state = Mutex(State())

    init(gate: SpanningTreeGate, fdb: ForwardingDatabase) {
        self.gate = gate; self.fdb = fdb
    }

    /// Whether the spanning tree runs on this bridge.
    public var isEnabled: Bool { state.withLock { $0.proto != nil } }

    /// Starts the spanning tree: 802.1D (every port starts blocking and moves through listening
    /// and learning to forwarding, 2 x forward delay, unless the protocol blocks it), or rapid
    /// spanning tree when `settings.rapid`.
    /// `bridgeMAC` with `settings.priority` makes the bridge identifier.
    public func enable(settings: SpanningTreeSettings, bridgeMAC: MACAddress, nowMs: UInt64) {
        state.withLock { s in
            var p: any SpanningTreeMachine = settings.rapid
                ? RapidSpanningTreeProtocol(bridgeMAC: bridgeMAC, settings: settings, now: nowMs)
                : SpanningTreeProtocol(bridgeMAC: bridgeMAC, settings: settings, now: nowMs)
            for (id, name) in s.names.sorted(by: { $0.key < $1.key }) where !s.excluded.contains(name) {
                p.addPort(id, enabled: !s.down.contains(name), options: s.options[name] ?? .init(), now: nowMs)
            }
            s.proto = p
        }
        publishSets()
        gate.setActive(true)
        _ = fdb.flush(notIn: PortSet())
    }

    /// Whether port `name` takes part in the tree (true unless the port says `stp = false`).
    /// Set before the port is attached; a port left out forwards at once and sends no BPDUs
    /// (those it receives are dropped as `bpdu`).
    public func setParticipation(_ name: String, _ participates: Bool) {
        state.withLock { s in if participates { s.excluded.remove(name) } else { s.excluded.insert(name) } }
    }

    /// Port `name`'s RSTP options; set before the port is attached.
    public func setPortOptions(_ name: String, _ options: SpanningTreePortOptions) {
        state.withLock { $0.options[name] = options }
    }

    /// The switch's ports changed (LearningSwitch.portsChanged): ports join or leave the tree.
    func portsChanged(_ table: PortTable, nowMs: UInt64) {
        let excludedChanged = state.withLock { s -> Bool in
            let now = Dictionary(uniqueKeysWithValues: table.ports.map { ($0.id, $0.name) })
            for (id, _) in s.names where now[id] == nil { s.proto?.removePort(id, now: nowMs) }
            var changed = false
            for (id, name) in now.sorted(by: { $0.key < $1.key }) where s.names[id] != name {
                if s.names[id] != nil { s.proto?.removePort(id, now: nowMs) }
                if s.excluded.contains(name) { changed = true } else {
                    s.proto?.addPort(id, enabled: !s.down.contains(name), options: s.options[name] ?? .init(), now: nowMs)
                }
            }
            if s.names.contains(where: { now[$0.key] == nil && s.excluded.contains($0.value) }) { changed = true }
            s.names = now
            return changed && s.proto != nil
        }
        if excludedChanged { publishSets() }
    }

    /// The link of port `name` went up or down: a port whose link is down is disabled (802.1D 8.8.2/3).
    public func setPortLink(_ name: String, up: Bool, nowMs: UInt64) {
        state.withLock { s in
            if up { s.down.remove(name) } else { s.down.insert(name) }
            if let id = s.names.first(where: { $0.value == name })?.key { s.proto?.setPortEnabled(id, up, now: nowMs) }
        }
    }

    /// Control thread, on every wake-up: BPDUs in, timers, BPDUs out through `transmit` (which
    /// returns false when it could not queue the frame), port sets and flushes applied.
    /// Returns the port state changes it applied, in order.
    @discardableResult
    public func poll(nowMs: UInt64, transmit: (PortID, [UInt8]) -> Bool) -> [(port: PortID, state: SpanningTreePortState)] {
        var received: [(PortID, BPDU)] = []
        var malformed: UInt64 = 0
        gate.drain { port, bytes in
            do { received.append((port, try BPDU.decode(frame: bytes))) } catch { malformed += 1 }
        }
        let (outputs, mac, fastAge) = state.withLock { s -> ([SpanningTreeProtocol.Output], MACAddress, UInt64?) in
            s.bpdusMalformed += malformed
            s.bpdusIn += UInt64(received.count)
            guard s.proto != nil else { return ([], .zero, nil) }
            for (port, b) in received { s.proto!.receive(b, on: port, now: nowMs) }
            s.proto!.tick(now: nowMs)
            var fast: UInt64?
            // While the root announces a topology change, entries not refreshed within the
            // forward delay are stale (802.1D 8.3.5): swept once a second.
            if s.proto!.agesFast && nowMs &- s.lastFastAging >= 1000 {
                s.lastFastAging = nowMs
                fast = s.proto!.forwardDelay
            }
            return (s.proto!.takeOutputs(), s.proto!.bridgeID.mac, fast)
        }
        var changes: [(port: PortID, state: SpanningTreePortState)] = []
        var sent: UInt64 = 0, unsent: UInt64 = 0
        for o in outputs {
            switch o {
            case .transmit(let port, let b):
                if transmit(port, b.encode(source: mac)) { sent += 1 } else { unsent += 1 }
            case .state(let port, let st):
                changes.append((port, st))
            case .flushPort(let port):
                _ = fdb.flushLearned(port: port, olderThanMs: nil, now: 0)
            }
        }
        if let ms = fastAge { _ = fdb.flushLearned(port: nil, olderThanMs: UInt32(clamping: ms), now: MonotonicClock.nanoseconds()) }
        if sent + unsent > 0 { state.withLock { $0.bpdusOut += sent; $0.bpdusUnsent += unsent } }
        if !changes.isEmpty { publishSets() }
        return changes
    }

    func publishSets() {
        let (learning, forwarding) = state.withLock { s -> (PortSet, PortSet) in
            var l = PortSet(), f = PortSet()
            guard let p = s.proto else { return (l, f) }
            for (id, name) in s.names where s.excluded.contains(name) { l.insert(id); f.insert(id) }
            for id in p.portIDs {
                let st = p.state(of: id)
                if st?.learns == true { l.insert(id) }
                if st == .forwarding { f.insert(id) }
            }
            return (l, f)
        }
        gate.publish(learning: learning, forwarding: forwarding)
    }

    /// The tree as this bridge sees it; nil while the spanning tree is off.
    public func status() -> Status? {
        state.withLock { s in
            guard let p = s.proto else { return nil }
            let ports = p.portIDs.map { id -> PortStatus in
                let d = p.designated(of: id)
                return PortStatus(id: id, name: s.names[id] ?? "\(id)", state: p.state(of: id) ?? .disabled,
                                  role: p.role(of: id) ?? .disabled, designatedBridge: d?.bridge ?? BridgeID(rawValue: 0),
                                  designatedPort: d?.port ?? 0, protocolVersion: p.portProtocol(of: id) ?? p.mode,
                                  edge: p.isEdge(id))
            }
            return Status(mode: p.mode, bridgeID: p.bridgeID, rootID: p.designatedRoot, rootPathCost: p.rootPathCost,
                          rootPort: p.rootPort.flatMap { s.names[$0] }, topologyChange: p.topologyChange,
                          topologyChanges: p.topologyChanges, maxAge: Double(p.maxAge) / 1000,
                          helloTime: Double(p.helloTime) / 1000, forwardDelay: Double(p.forwardDelay) / 1000, ports: ports)
        }
    }

    /// Counters for `stats` and the metrics endpoint (empty while off).
    public func counters() -> [HandlerCounter] {
        let mailbox = gate.mailboxCounts
        return state.withLock { s in
            guard let p = s.proto else { return [] }
            return [HandlerCounter("stp_bpdus_received", s.bpdusIn), HandlerCounter("stp_bpdus_sent", s.bpdusOut),
                    HandlerCounter("stp_bpdus_malformed", s.bpdusMalformed),
                    HandlerCounter("stp_bpdus_unsent", s.bpdusUnsent),
                    HandlerCounter("stp_mailbox_dropped", mailbox.dropped),
                    HandlerCounter("stp_topology_changes", p.topologyChanges),
                    HandlerCounter("stp_is_root", p.isRootBridge ? 1 : 0)]
                // One gauge per port: its state (0 disabled, 1 blocking, 2 listening, 3 learning,
                // 4 forwarding, 5 discarding), labelled with its name and role (and, on an RSTP bridge,
                // the port's protocol and edge status).
                + p.portIDs.map { id in
                    HandlerCounter("stp_port_state", UInt64((p.state(of: id) ?? .disabled).rawValue),
                                   labels: ["port": s.names[id] ?? "\(id)", "role": (p.role(of: id) ?? .disabled).rawValue]
                                       // RSTP: which BPDUs the port speaks ("stp" towards an 802.1D peer) and edge.
                                       .merging(p.mode == "rstp" ? ["protocol": p.portProtocol(of: id) ?? "rstp",
                                                                    "edge": p.isEdge(id) ? "true" : "false"] : [:]) { $1 })
                }
        }
    }
}
