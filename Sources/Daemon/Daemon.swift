// Daemon: the life of one `tapbridge run` (or `demo`): validate, create links, start the
// engine, follow link events and timers on the control thread, stop on a signal, and leave the
// host as it found it. Frames never pass through here.
import Config
import Control
import CTapbridgeShim
import Foundation
import Logging
import MetricsEndpoint

public final class Daemon {
    public struct Options {
        /// Stop by itself after this many seconds (nil: run until a signal or `requestStop`).
        public var duration: Double?
        /// Called on the control thread once everything is up.
        public var onReady: ((Daemon) -> Void)?
        /// Called on the control thread every `tickInterval` seconds while running.
        public var onTick: ((Daemon) -> Void)?
        public var tickInterval: Double = 1
        public init() {}
    }

    public internal(set) var config: DaemonConfig
    public let logger: Logger
    let stopSignal: StopSignal
    let links: LinkLifecycle
    var engine: EngineBinding?
    var monitor: LinkWatcher?
    /// Ports whose link vanished under them, by name, waiting for it to come back.
    var lostPorts: Set<String> = []
    public private(set) var portsLost = 0
    public private(set) var portsReattached = 0
    /// The control socket (nil when the configuration has none), and the work it hands the loop.
    var control: ControlServer?
    var controlGroupID: gid_t?
    /// Changes made over the control socket that the file does not have (reported at reload).
    var runtimeChanges = RuntimeChanges()
    /// Refused VM connections already added to the metric, by port (VMPortCounters.swift).
    var vmRefusedPublished: [String: Int] = [:]
    lazy var controlQueue = ControlQueue(wake: { [stopSignal] in stopSignal.wake() })
    /// systemd notifications and the metrics endpoint (DaemonService.swift).
    let service: ServiceState

    public init(config: DaemonConfig, logger: Logger, stopSignal: StopSignal) {
        self.config = config
        self.logger = logger
        self.stopSignal = stopSignal
        self.links = LinkLifecycle(logger: logger, stateDirectory: config.stateDirectory)
        self.service = ServiceState(logger: logger)
    }

    /// Asks a running daemon to stop (any thread).
    public func requestStop() { stopSignal.request() }

    /// Runs until a stop; throws (after cleaning up) if start-up fails.
    public func run(_ options: Options = Options()) throws {
        // glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB), after
        // which the daemon's big short-lived blocks (a stream port's 128 KiB reassembly buffer,
        // reconnect after reconnect) come from the heap and stay in RSS, fragmented. tools/soak
        // measured RSS climbing ~18 MiB over the first minutes that way; with the threshold fixed
        // it stays within 5 MiB of its start.
        tb_malloc_fix_mmap_threshold(128 * 1024)
        // Links a dead predecessor left (its ledger) do not count as existing: they are reclaimed or deleted below.
        try LinkLedger.checkBeforeStart(stateDirectory: config.stateDirectory)
        try ConfigValidator.validate(config, host: RecoveringHost(stateDirectory: config.stateDirectory))
        logger.info("starting", metadata: ["config": "\(config.file)", "bridges": "\(config.bridges.count)",
                                           "ports": "\(config.allPorts.count)",
                                           "workers": "\(config.workers.map(String.init) ?? "auto")"])
        defer { shutdown() }
        try openControl()
        try links.open()
        try links.recover(config)
        try links.createAll(config)
        let engine = try EngineBinding(config: config, logger: logger)
        self.engine = engine
        try engine.start()
        engine.spanningTrees.start(config, binding: engine, logger: logger)
        engine.multicastQueriers.start(config, binding: engine, logger: logger)
        try startMetrics()
        monitor = try LinkWatcher(ports: config.allPorts.filter { $0.port.hasLink }.map { ($0.port.name, $0.port.netns) },
                                  logger: logger)
        startControl()
        logger.info("running", metadata: ["ports": "\(config.allPorts.map(\.port.name).joined(separator: ","))"])
        notifyReady()
        options.onReady?(self)

        let started = Date()
        var nextTick = Date()
        var nextStats = config.statsInterval > 0 ? Date().addingTimeInterval(config.statsInterval) : .distantFuture
        var nextSweep = Date().addingTimeInterval(sweepInterval)
        while true {
            let now = Date()
            if let d = options.duration, now.timeIntervalSince(started) >= d {
                logger.info("stopping", metadata: ["reason": "duration \(d) s elapsed"])
                notifyStopping("duration elapsed")
                return
            }
            switch stopSignal.wait(seconds: min(0.2, max(0, nextTick.timeIntervalSinceNow))) {
            case .stop:
                logger.info("stopping", metadata: ["reason": "\(stopSignal.reason)"])
                notifyStopping(stopSignal.reason)
                return
            case .reload:
                serviceReload()
            case .timeout:
                break
            }
            controlQueue.drain()
            for name in engine.removedPorts() {
                let netns = config.allPorts.first { $0.port.name == name }?.port.netns
                handle(.removed(name, netns: netns))
            }
            for event in monitor?.drain() ?? [] { handle(event) }
            engine.spanningTrees.poll(engine: engine.engine, logger: logger)
            engine.multicastQueriers.poll(engine: engine.engine, logger: logger)
            publishVMPortCounters()
            sweepSwitchGuards()
            serviceTick()
            if Date() >= nextSweep {
                engine.sweep()
                nextSweep = Date().addingTimeInterval(sweepInterval)
            }
            if Date() >= nextStats {
                logCounters(final: false)
                nextStats = Date().addingTimeInterval(config.statsInterval)
            }
            if Date() >= nextTick {
                options.onTick?(self)
                nextTick = Date().addingTimeInterval(options.tickInterval)
            }
        }
    }

    /// Expiry sweeps run a few times per aging period, at most once a second; every second
    /// when a bridge snoops multicast (its sweep registers the groups workers saw reported).
    var sweepInterval: Double {
        if config.bridges.contains(where: { $0.learningSwitch?.multicastSnooping != nil }) { return 1 }
        let aging = config.bridges.compactMap { $0.learningSwitch?.agingSeconds }.min() ?? 300
        return max(1, min(30, aging / 4))
    }

    func handle(_ event: LinkWatcher.Event) {
        switch event {
        case .removed(let name, let netns):
            // The engine (read error) and the link watcher may both report it: count it once.
            guard let engine, engine.isConfigured(name), !lostPorts.contains(name) else { return }
            engine.detach(name)
            links.forget(name, netns: netns)
            lostPorts.insert(name)
            portsLost += 1
            DaemonMetrics.count("tapbridge_ports_lost_total")
            logger.warning("port lost: link deleted", metadata: ["port": "\(name)", "netns": "\(netns ?? "-")",
                                                                 "ports-lost": "\(portsLost)"])
        case .operational(let name, let netns, let up):
            guard let engine, engine.isConfigured(name) else { return }
            engine.setPortUp(name, up)
            let meta: Logger.Metadata = ["port": "\(name)", "netns": "\(netns ?? "-")"]
            if up {
                logger.info("port link up again: forwarding", metadata: meta)
            } else {
                logger.warning("port link cannot carry frames (it or its parent is down): frames to it are dropped as port-down until it is up",
                               metadata: meta)
            }
        case .added(let name, let netns):
            guard lostPorts.contains(name), let engine else { return }
            do {
                try engine.reattach(name)
                lostPorts.remove(name)
                portsReattached += 1
                DaemonMetrics.count("tapbridge_ports_reattached_total")
                logger.info("port re-attached", metadata: ["port": "\(name)", "netns": "\(netns ?? "-")",
                                                           "ports-reattached": "\(portsReattached)"])
            } catch {
                logger.warning("cannot re-attach port (will retry when the link changes)",
                               metadata: ["port": "\(name)", "error": "\(error)"])
            }
        }
    }

    /// The handlers each bridge actually runs, in order (empty: it floods every frame).
    public var pipelines: [String: [String]] { engine?.pipelines ?? [:] }

    /// One human line per port (frames/bytes in and out, drops), for the demo's live view.
    public func counterSummary() -> [String] {
        engine?.summaryLines() ?? []
    }

    func logCounters(final: Bool) {
        guard let engine else { return }
        for line in engine.counterLines() {
            logger.info(final ? "final counters" : "counters", metadata: line)
        }
    }

    /// Stops the engine and deletes the links this daemon created. Idempotent.
    func shutdown() {
        stopControl()
        stopMetrics()
        monitor?.stop()
        monitor = nil
        if let engine {
            engine.stop()
            logCounters(final: true)
        }
        engine = nil
        links.deleteAll()
        links.close()
        logger.info("stopped", metadata: ["ports-lost": "\(portsLost)", "ports-reattached": "\(portsReattached)"])
    }
}
