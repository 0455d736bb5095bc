// EngineBinding: turns the configuration into the core's objects (one Engine, a Bridge with its
// handler pipeline per configured bridge, a MacvtapPort per port) and gives the control loop the
// few operations it needs: start/stop, detach/re-attach by port name, expiry sweeps, counters.
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
    private var handlers: [String: [any FrameHandler]] = [:]
    /// Every port the configuration (as last applied) declares, by name, with its bridge.
    private var ports: [String: (bridge: String, config: PortConfig)] = [:]
    private let events = EventQueue()
    /// Re-attaches VM ports whose VM (re)connects; created with the first VM port.
    private var supervisor: VMPortSupervisor?
    /// VM ports attached before the engine started, for the supervisor to watch from `start`.
    private var unwatched: [(port: any Datapath.Port, id: PortID, bridge: Bridge)] = []

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
        let log = logger
        ec.log = { level, message in log.log(level: level.loggerLevel, "\(message)") }
        let queue = events
        ec.onEvent = { queue.push($0) }
        engine = Engine(configuration: ec)
        for b in config.bridges {
            let hs = try HandlerFactory.handlers(for: b, logger: logger)
            handlers[b.name] = hs
            bridges[b.name] = engine.addBridge(name: b.name, pipeline: HandlerPipeline(hs))
            for p in b.ports {
                ports[p.name] = (b.name, p)
                try attach(p, to: b.name)
            }
        }
    }

    private func attach(_ p: PortConfig, to bridgeName: String) throws {
        guard let bridge = bridges[bridgeName] else { throw DaemonError("no bridge '\(bridgeName)'") }
        if p.vm != nil {
            let log = logger, name = p.name
            let port: any Datapath.Port
            do {
                port = try PortOpener.vm(p, log: { log.notice("\($0)", metadata: ["port": "\(name)"]) })
            } catch {
                throw DaemonError("\(p.path): cannot open vm port '\(p.name)': \(error)")
            }
            let id = try bridge.attach(port)
            // The supervisor may reconnect at once (a client port dials immediately), which
            // needs running workers: ports attached before start are watched from `start`.
            if engine.isRunning { vmSupervisor().watch(port, id: id, in: bridge) } else { unwatched.append((port, id, bridge)) }
            return
        }
        let port: MacvtapPort
        do {
            port = try PortOpener.macvtap(p)
        } catch {
            throw DaemonError("\(p.path): cannot open macvtap '\(p.name)': \(error)")
        }
        try bridge.attach(port)   // the engine logs the attachment
    }

    func start() throws {
        try engine.start()
        for u in unwatched { vmSupervisor().watch(u.port, id: u.id, in: u.bridge) }
        unwatched = []
        for (name, b) in bridges.sorted(by: { $0.key < $1.key }) {
            logger.info("bridge up", metadata: ["bridge": "\(name)", "ports": "\(b.portTable.ports.count)",
                                                "handlers": "\(handlers[name]!.map(\.name).joined(separator: ","))",
                                                "offloads": "\(b.offloads.description)"])
        }
    }

    func stop() {
        supervisor?.stop()
        supervisor = nil
        engine.stop()
    }

    /// Handler names per bridge, in pipeline order ("" for a hub).
    var pipelines: [String: [String]] { handlers.mapValues { $0.map(\.name) } }

    /// The running filter of bridge `name`, for live rule swaps.
    func filter(ofBridge name: String) -> FrameFilter? {
        handlers[name]?.lazy.compactMap { $0 as? FrameFilter }.first
    }

    /// Runs every handler's expiry sweep (learning-switch aging).
    func sweep() {
        let now = MonotonicClock.nanoseconds()
        for hs in handlers.values { for h in hs { HandlerFactory.sweep(h, now: now) } }
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
            b.detach(id)
        }
    }

    func reattach(_ name: String) throws {
        guard let (bridge, p) = ports[name] else { return }
        if hasPort(name) { return }
        try attach(p, to: bridge)
    }

    func remove(_ name: String) {
        detach(name)
        ports[name] = nil
    }

    func add(_ port: PortConfig, toBridge bridge: String) throws {
        try attach(port, to: bridge)
        ports[port.name] = (bridge, port)
    }

    // MARK: control-plane views (control thread)

    func snapshot() -> EngineSnapshot { engine.snapshot() }

    /// Bridge names in configuration order is the daemon's business; here: sorted.
    var bridgeNames: [String] { bridges.keys.sorted() }

    /// The learning switch of bridge `name`, if its pipeline has one.
    func learningSwitch(ofBridge name: String) -> LearningSwitch? {
        handlers[name]?.lazy.compactMap { $0 as? LearningSwitch }.first
    }

    /// The id of port `port` in bridge `bridge`, if attached.
    func portID(_ port: String, inBridge bridge: String) -> PortID? { bridges[bridge]?.port(named: port) }

    /// The name of port `id` in bridge `bridge`.
    func portName(_ id: PortID, inBridge bridge: String) -> String? { bridges[bridge]?.portTable[id]?.name }

    /// Adds a bridge while running (a VM attachment added by a reload). The engine cannot drop
    /// bridges, so an attachment removed earlier and now back finds its old, empty bridge.
    func addBridge(_ b: BridgeConfig) throws {
        if bridges[b.name] != nil { return }
        let hs = try HandlerFactory.handlers(for: b, logger: logger)
        handlers[b.name] = hs
        bridges[b.name] = engine.addBridge(name: b.name, pipeline: HandlerPipeline(hs))
    }

    /// Whether bridge `name` runs a source guard (a new bridge will get one if it needs it).
    func hasSourceGuard(_ name: String) -> Bool {
        guard let hs = handlers[name] else { return true }
        return HandlerFactory.sourceGuard(in: hs) != nil
    }

    /// Gives a bridge's source guard the VM ports' current anti-spoofing settings.
    func updateSourceGuard(_ b: BridgeConfig) {
        handlers[b.name].flatMap(HandlerFactory.sourceGuard(in:))?.setPolicies(HandlerFactory.sourcePolicies(b.sourceGuards))
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
