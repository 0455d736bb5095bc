// EngineBinding: turns the configuration into the core's objects (one Engine, a Bridge with its
// handler pipeline per configured bridge, one core Port per port) and gives the control loop the
// few operations it needs: start/stop, detach/re-attach by port name, expiry sweeps, reloads,
// counters. Handlers are made and swept through their registered kinds (HandlerRegistry).
import Config
import Datapath
import Foundation
import Frames
import Handlers
import Logging
import Tap
import VMBackend

final class EngineBinding {
    let engine: Engine
    let logger: Logger
    private var bridges: [String: Bridge] = [:]
    /// Every running handler by bridge, in pipeline order (the source guard first, if any).
    private var handlers: [String: [any FrameHandler]] = [:]
    /// The configured stages by bridge, with their kinds' hooks.
    private var stages: [String: [RunningHandler]] = [:]
    private var sourceGuards: [String: SourceGuard] = [:]
    /// Every port the configuration (as last applied) declares, by name, with its bridge.
    private var ports: [String: (bridge: String, config: PortConfig)] = [:]
    private let events = EventQueue()
    /// Re-attaches VM ports whose VM (re)connects; created with the first VM port.
    private var supervisor: VMPortSupervisor?
    /// Host ports by name: each holds its tap, which the kernel deletes when it is released.
    private var hostPorts: [String: TapPort] = [:]
    /// Stream server VM ports by name, for their refused-connection count (stats, metrics).
    private(set) var vmServers: [String: VMStreamServerPort] = [:]
    /// VM ports attached before the engine started, for the supervisor to watch from `start`.
    private var unwatched: [(port: any Datapath.Port, id: PortID, bridge: Bridge)] = []
    /// vhost-user ports by name; each serves its socket from a thread of its own once the
    /// engine runs (`start`), and stops when detached or at `stop`.
    private var vhostUserPorts: [String: (port: VhostUserPort, id: PortID, bridge: Bridge)] = [:]
    /// Bridges running a spanning tree (SpanningTreeDriver.swift).
    let spanningTrees = SpanningTreeDriver()
    /// Bridges whose snooping sends general queries (MulticastQuerierDriver.swift).
    let multicastQueriers = MulticastQuerierDriver()
    /// Bridges whose configuration turns the spanning tree on: their port links get all-multicast.
    private var spanningTreeBridges: Set<String> = []

    private func vmSupervisor() -> VMPortSupervisor {
        if let supervisor { return supervisor }
        let log = logger
        let s = VMPortSupervisor(engine: engine, log: { log.warning("\($0)") })
        supervisor = s
        return s
    }

    init(config: DaemonConfig, logger: Logger) throws {
        self.logger = logger
        var ec = EngineConfiguration(workers: config.workers)
        ec.partialFrameTimeout = config.partialFrameTimeout
        let log = logger
        ec.log = { level, message in log.log(level: level.loggerLevel, "\(message)") }
        let queue = events
        ec.onEvent = { queue.push($0) }
        engine = Engine(configuration: ec)
        spanningTreeBridges = Set(config.bridges.filter { $0.spanningTree != nil }.map(\.name))
        for b in config.bridges {
            try makeBridge(b)
            for p in b.ports {
                ports[p.name] = (b.name, p)
                try attach(p, to: b.name)
            }
        }
    }

    /// Makes bridge `b`'s handlers through their kinds and adds the bridge to the engine.
    private func makeBridge(_ b: BridgeConfig) throws {
        let (sourceGuard, running) = try SourceGuards.pipeline(for: b)
        let hs: [any FrameHandler] = (sourceGuard.map { [$0] } ?? []) + running.map(\.handler)
        handlers[b.name] = hs
        stages[b.name] = running
        sourceGuards[b.name] = sourceGuard
        bridges[b.name] = engine.addBridge(name: b.name, pipeline: HandlerPipeline(hs))
    }

    private func attach(_ p: PortConfig, to bridgeName: String) throws {
        guard let bridge = bridges[bridgeName] else { throw DaemonError("no bridge '\(bridgeName)'") }
        if spanningTreeBridges.contains(bridgeName) {
            learningSwitch(ofBridge: bridgeName)?.spanningTree.setParticipation(p.name, p.spanningTree)
            learningSwitch(ofBridge: bridgeName)?.spanningTree.setPortOptions(p.name, p.spanningTreeOptions)
            if p.spanningTree { SpanningTreeDriver.receiveBPDUs(on: p, logger: logger) }
        }
        switch p.kind {
        case .vm:
            let log = logger, name = p.name
            let port: any Datapath.Port
            do {
                port = try PortOpener.vm(p, log: { log.notice("\($0)", metadata: ["port": "\(name)"]) })
            } catch {
                throw DaemonError("\(p.path): cannot open vm port '\(p.name)': \(error)")
            }
            let id = try bridge.attach(port)
            if let server = port as? VMStreamServerPort { vmServers[p.name] = server }
            // The supervisor may reconnect at once (a client port dials immediately), which
            // needs running workers: ports attached before start are watched from `start`.
            if engine.isRunning { vmSupervisor().watch(port, id: id, in: bridge) } else { unwatched.append((port, id, bridge)) }
        case .vhostUser:
            let log = logger, name = p.name
            let port: VhostUserPort
            do {
                port = try PortOpener.vhostUser(p, log: { log.notice("\($0)", metadata: ["port": "\(name)"]) })
            } catch {
                throw DaemonError("\(p.path): cannot open vhost-user port '\(p.name)': \(error)")
            }
            let id = try bridge.attach(port)
            vhostUserPorts[p.name] = (port, id, bridge)
            if engine.isRunning {
                do { try port.start(engine: engine, id: id, bridge: bridge) } catch {
                    bridge.detach(id)
                    vhostUserPorts[p.name] = nil
                    throw DaemonError("\(p.path): cannot serve vhost-user socket '\(port.path)': \(error)")
                }
            }
        case .macvtap:
            let port: MacvtapPort
            do {
                port = try PortOpener.macvtap(p)
            } catch {
                throw DaemonError("\(p.path): cannot open macvtap '\(p.name)': \(error)")
            }
            try bridge.attach(port)   // the engine logs the attachment
        case .tap(let t):
            let port: TapAttachmentPort
            do {
                let settings = PortSettings(vlan: p.vlan, isolated: p.isolated, hairpin: p.hairpin, assignedMAC: t.mac)
                port = try TapLinks.openVMTap(name: p.name, macvtap: t.macvtap, settings: settings)
                if !t.offloads { try port.setReceiveOffloads([]) }
            } catch {
                throw DaemonError("\(p.path): cannot open tap '\(p.name)': \(error)")
            }
            try bridge.attach(port)
        case .vxlan(let v):
            let port: VxlanPort
            do {
                let settings = PortSettings(vlan: p.vlan, isolated: p.isolated, hairpin: p.hairpin)
                port = try VxlanLinks.open(name: p.name, v, settings: settings)
            } catch {
                throw DaemonError("\(p.path): cannot open vxlan '\(p.name)': \(error)")
            }
            try bridge.attach(port)
        case .host(let h):
            // Made here, not by LinkLifecycle: the port object holds the tap (not persistent).
            // An old one of the same name must be gone first (the kernel deletes it once every
            // copy of its descriptor is closed, which can be a moment after ours): wait for it.
            releaseHostPort(p.name)
            let settings = PortSettings(vlan: p.vlan, isolated: p.isolated, hairpin: p.hairpin)
            let port: TapPort
            do {
                port = try TapLinks.createHostPort(name: p.name, addresses: h.addresses, mtu: h.mtu, mac: h.mac, settings: settings)
            } catch {
                throw DaemonError("\(p.path): cannot create host port '\(p.name)': \(error)")
            }
            do { try bridge.attach(port) } catch { port.release(); throw error }
            hostPorts[p.name] = port
            logger.info("host port created", metadata: ["port": "\(p.name)", "bridge": "\(bridgeName)",
                                                        "addresses": "\(h.addresses.joined(separator: ","))"])
        }
    }

    /// Deletes host port `name`'s interface (after its queues are detached or the engine stopped).
    /// The kernel deletes the tap once its last file is released; io_uring drops the files of a
    /// closed ring or detached slot a moment later, asynchronously, so wait for that (bounded).
    private func releaseHostPort(_ name: String) {
        guard let port = hostPorts.removeValue(forKey: name) else { return }
        port.release()
        if TapLinks.waitGone(name, timeout: 3) {
            logger.info("host port deleted", metadata: ["port": "\(name)"])
        } else {
            logger.warning("host port still there 3 s after release (a descriptor of it is still open somewhere)",
                           metadata: ["port": "\(name)"])
        }
    }

    func start() throws {
        try engine.start()
        for u in unwatched { vmSupervisor().watch(u.port, id: u.id, in: u.bridge) }
        unwatched = []
        for (name, v) in vhostUserPorts.sorted(by: { $0.key < $1.key }) {
            do { try v.port.start(engine: engine, id: v.id, bridge: v.bridge) } catch {
                throw DaemonError("vhost-user port '\(name)': cannot serve socket '\(v.port.path)': \(error)")
            }
        }
        for (name, b) in bridges.sorted(by: { $0.key < $1.key }) {
            logger.info("bridge up", metadata: ["bridge": "\(name)", "ports": "\(b.portTable.ports.count)",
                                                "handlers": "\(handlers[name]!.map(\.name).joined(separator: ","))",
                                                "offloads": "\(b.offloads.description)"])
        }
    }

    func stop() {
        supervisor?.stop()
        supervisor = nil
        for v in vhostUserPorts.values { v.port.stop() }
        engine.stop()
        for name in hostPorts.keys.sorted() { releaseHostPort(name) }
    }

    /// Handler names per bridge, in pipeline order ("" for a hub).
    var pipelines: [String: [String]] { handlers.mapValues { $0.map(\.name) } }

    /// The running handler of type `H` in bridge `name`'s pipeline: the control commands
    /// specific to one bundled kind (`fdb` for the learning switch, `filter` for the filter).
    func handler<H: FrameHandler>(_ type: H.Type, ofBridge name: String) -> H? {
        stages[name]?.lazy.compactMap { $0.handler as? H }.first
    }

    /// The running filter of bridge `name`, for live rule swaps.
    func filter(ofBridge name: String) -> FrameFilter? { handler(FrameFilter.self, ofBridge: name) }

    /// Applies a reloaded stage's settings to bridge `bridge`'s running handler of that kind
    /// (its kind's reload hook). Returns notes on what still needs a restart; throws if the kind
    /// cannot reload or refuses the settings (the running handler keeps its old settings).
    func reloadStage(_ stage: HandlerConfig, bridge: BridgeConfig) throws -> [String] {
        guard let i = stages[bridge.name]?.firstIndex(where: { $0.kind.name == stage.name }) else {
            throw DaemonError("bridge '\(bridge.name)' runs no handler '\(stage.name)'")
        }
        do { return try stages[bridge.name]![i].reload(stage, bridge: bridge) } catch let e as HandlerSetupError {
            throw DaemonError(e.description)
        }
    }

    /// Runs every handler's expiry sweep (learning-switch aging).
    func sweep() {
        let now = MonotonicClock.nanoseconds()
        for running in stages.values { for h in running { h.sweep(now: now) } }
    }

    /// Ports the engine removed by itself (descriptor failed), since the last call.
    func removedPorts() -> [String] {
        events.drain().compactMap { if case .portRemoved(_, _, let name, _) = $0 { return name } else { return nil } }
    }

    private func location(_ name: String) -> (Bridge, PortID)? {
        guard let b = ports[name].flatMap({ bridges[$0.bridge] }), let id = b.port(named: name) else { return nil }
        return (b, id)
    }

    func hasPort(_ name: String) -> Bool { location(name) != nil }
    func isConfigured(_ name: String) -> Bool { ports[name] != nil }

    func detach(_ name: String) {
        if let (b, id) = location(name) {
            supervisor?.unwatch(id)
            if let v = vhostUserPorts.removeValue(forKey: name) { v.port.stop() }
            b.detach(id)
        }
    }

    func reattach(_ name: String) throws {
        guard let (bridge, p) = ports[name] else { return }
        if hasPort(name) { return }
        try attach(p, to: bridge)
    }

    /// Mirrors a port link's operational state into the engine: frames for a port that is
    /// down are dropped and counted as port-down instead of written for the kernel to drop.
    func setPortUp(_ name: String, _ up: Bool) {
        if let (b, id) = location(name) { engine.setPortUp(id, in: b, up) }
        spanningTrees.setPortLink(name, up: up)
    }

    func remove(_ name: String) {
        detach(name)
        releaseHostPort(name)
        ports[name] = nil
        vmServers[name] = nil
    }

    /// Second connections refused so far by VM port `name` (nil: not a stream server port).
    func refusedConnections(_ name: String) -> Int? { vmServers[name]?.refusedConnections }

    func add(_ port: PortConfig, toBridge bridge: String) throws {
        try attach(port, to: bridge)
        ports[port.name] = (bridge, port)
    }

    // MARK: control-plane views (control thread)

    func snapshot() -> EngineSnapshot { engine.snapshot() }

    /// Bridge names in configuration order is the daemon's business; here: sorted.
    var bridgeNames: [String] { bridges.keys.sorted() }

    /// The learning switch of bridge `name`, if its pipeline has one.
    func learningSwitch(ofBridge name: String) -> LearningSwitch? { handler(LearningSwitch.self, ofBridge: name) }

    /// The id of port `port` in bridge `bridge`, if attached.
    func portID(_ port: String, inBridge bridge: String) -> PortID? { bridges[bridge]?.port(named: port) }

    /// The name of port `id` in bridge `bridge`.
    func portName(_ id: PortID, inBridge bridge: String) -> String? { bridges[bridge]?.portTable[id]?.name }

    /// Adds a bridge while running (a VM attachment added by a reload). The engine cannot drop
    /// bridges, so an attachment removed earlier and now back finds its old, empty bridge.
    func addBridge(_ b: BridgeConfig) throws {
        if bridges[b.name] != nil { return }
        try makeBridge(b)
    }

    /// Whether bridge `name` runs a source guard (a new bridge will get one if it needs it).
    func hasSourceGuard(_ name: String) -> Bool {
        guard handlers[name] != nil else { return true }
        return sourceGuards[name] != nil
    }

    /// Gives a bridge's source guard the VM ports' current anti-spoofing settings.
    func updateSourceGuard(_ b: BridgeConfig) {
        sourceGuards[b.name]?.setPolicies(SourceGuards.policies(b.sourceGuards))
    }

    /// Every handler's counters, by bridge (control thread: `counters()` is called here).
    func handlerCounters() -> [HandlerCounters] {
        handlers.sorted { $0.key < $1.key }.flatMap { b, hs in
            hs.map { HandlerCounters(bridge: b, handler: $0.name, counters: $0.counters()) }
        }
    }

    /// One metadata set per port and per handler, for the log.
    func counterLines() -> [Logger.Metadata] {
        let snap = engine.snapshot()
        var lines: [Logger.Metadata] = []
        for b in snap.bridges {
            for p in b.ports {
                var m: Logger.Metadata = [
                    "bridge": "\(b.name)", "port": "\(p.name)", "connected": "\(p.connected)",
                    "rx-frames": "\(p.rxFrames)", "rx-bytes": "\(p.rxBytes)",
                    "tx-frames": "\(p.txFrames)", "tx-bytes": "\(p.txBytes)", "tx-errors": "\(p.txErrors)",
                    "rx-large": "\(p.rxLargeFrames)", "tx-large": "\(p.txLargeFrames)", "rx-largest": "\(p.largestRxFrame)",
                    "drops": "\(p.totalDrops)",
                ]
                for (reason, n) in p.drops { m["drop-\(reason.name)"] = "\(n)" }
                lines.append(m)
            }
            for h in handlers[b.name] ?? [] {
                var m: Logger.Metadata = ["bridge": "\(b.name)", "handler": "\(h.name)"]
                for c in h.counters() {
                    let label = c.labels.sorted { $0.key < $1.key }.map { "\($0.key)-\($0.value)" }.joined(separator: "-")
                    m[label.isEmpty ? c.name : "\(c.name)-\(label)"] = "\(c.value)"
                }
                lines.append(m)
            }
        }
        return lines
    }

    /// One readable line per port, for the demo.
    func summaryLines() -> [String] {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        return engine.snapshot().bridges.flatMap { b in
            b.ports.map { p in
                "\(b.name) \(p.name.padding(toLength: 16, withPad: " ", startingAt: 0))"
                    + " rx \(pad("\(p.rxFrames)", 9)) frames \(pad("\(p.rxBytes)", 13)) B"
                    + "   tx \(pad("\(p.txFrames)", 9)) frames \(pad("\(p.txBytes)", 13)) B"
                    + "   large rx \(p.rxLargeFrames)   drops \(p.totalDrops)"
            }
        }
    }
}

extension EngineLogLevel {
    var loggerLevel: Logger.Level {
        switch self {
        case .debug: return .debug
        case .info: return .info
        case .notice: return .notice
        case .warning: return .warning
        case .error: return .error
        }
    }
}

/// Engine events, pushed by the engine's threads, drained by the control loop.
final class EventQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [EngineEvent] = []
    func push(_ e: EngineEvent) { lock.withLock { items.append(e) } }
    func drain() -> [EngineEvent] { lock.withLock { defer { items = [] }; return items } }
}
