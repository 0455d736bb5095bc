// DaemonService: the daemon's life as a service, beside its job: tells systemd where it is
// (READY/RELOADING/STOPPING/STATUS, watchdog pings from the control loop) and runs the
// opt-in metrics endpoint (module MetricsEndpoint). Kept out of Daemon.swift so the control loop stays readable: the
// loop only calls these hooks.
import Foundation
import Logging
import MetricsEndpoint

/// The endpoint's type for a handler's counters, read by EngineBinding on the control thread.
typealias HandlerCounters = MetricsEndpoint.HandlerCounters

/// What a running daemon keeps for its service side.
final class ServiceState {
    let notifier: SystemdNotifier?
    var metrics: MetricsServer?
    let exchange = HandlerCounterExchange()
    var nextWatchdog = Date.distantFuture
    /// The last STATUS= sent (a new one goes out when it changes: a port lost or back).
    var lastStatus = ""

    init(logger: Logger) {
        do {
            notifier = try SystemdNotifier(environment: ProcessInfo.processInfo.environment)
        } catch {
            logger.warning("sd_notify disabled", metadata: ["error": "\(error)"])
            notifier = nil
        }
    }
}

extension Daemon {
    /// After the engine is up, before READY=1: the metrics endpoint (a bind failure fails the start).
    func startMetrics() throws {
        guard let text = config.metrics else { return }
        let address = try MetricsAddress(parsing: text, allowRemote: config.metricsAllowRemote)
        let daemonRegistry = DaemonMetrics.bootstrap()
        let exchange = service.exchange
        let server = try MetricsServer(host: address.host, port: address.port) { [weak self] endpoint in
            guard let engine = self?.engine?.engine else { return "" }
            // Engine counters are read here, on the scrape thread; handler counters come from
            // the control thread through the exchange.
            let handlers = exchange.fetch()
            DaemonMetrics.count("tapbridge_scrapes_total")
            return MetricsExporter.render(snapshot: engine.snapshot(), handlers: handlers,
                                          workerCPU: MetricsExporter.workerCPUSeconds(), endpoint: endpoint,
                                          daemon: daemonRegistry)
        }
        server.start()
        service.metrics = server
        logger.info("metrics listening", metadata: ["address": "\(server.address)", "path": "/metrics"])
    }

    /// READY=1 with a status line, and the first watchdog deadline.
    func notifyReady() {
        guard let n = service.notifier else { return }
        service.lastStatus = statusLine()
        n.ready(status: service.lastStatus)
        if let interval = n.watchdogInterval {
            service.nextWatchdog = Date().addingTimeInterval(interval)
            logger.info("systemd watchdog", metadata: ["interval": "\(interval)"])
        }
        logger.debug("sd_notify READY=1", metadata: ["socket": "\(n.socketName)"])
    }

    /// Called by the control loop on every wake-up: watchdog pings, handler counters for a scrape.
    func serviceTick() {
        if let n = service.notifier, let interval = n.watchdogInterval, Date() >= service.nextWatchdog {
            n.watchdog()
            service.nextWatchdog = Date().addingTimeInterval(interval)
        }
        if let n = service.notifier {
            let status = statusLine()
            if status != service.lastStatus { n.status(status); service.lastStatus = status }
        }
        if service.metrics != nil, let engine {
            service.exchange.serve { engine.handlerCounters() }
        }
    }

    /// RELOADING=1, the reload, READY=1 again (systemd waits for it after ExecReload).
    func serviceReload() {
        service.notifier?.reloading()
        reload()
        DaemonMetrics.count("tapbridge_reloads_total")
        service.notifier?.ready(status: statusLine())
    }

    func notifyStopping(_ reason: String) {
        service.notifier?.stopping(status: "stopping: \(reason)")
    }

    /// Stops the endpoint first: a scrape must not race the engine going away.
    func stopMetrics() {
        service.metrics?.stop()
        service.metrics = nil
    }

    /// "3 port(s) on 1 bridge(s)", then ", 1 waiting for its link" while a port's link is gone.
    func statusLine() -> String {
        "\(config.allPorts.count) port(s) on \(config.bridges.count) bridge(s)"
            + (lostPorts.isEmpty ? "" : ", \(lostPorts.count) waiting for its link") + (links.reclaimed.isEmpty ? "" : ", \(links.reclaimed.count) link(s) reclaimed")
    }
}
