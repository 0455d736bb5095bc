// EngineBinding: turns the configuration into the core's objects (ports, bridges, handler
// pipelines, workers) and gives the control loop the few operations it needs.
// INTERIM: a placeholder until the Datapath/Handlers modules land on this branch.
import Logging

final class EngineBinding {
    let config: DaemonConfig
    let logger: Logger
    var attached: Set<String>

    init(config: DaemonConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        attached = Set(config.allPorts.map(\.port.name))
    }

    func start() throws { logger.warning("forwarding engine not available in this build: links only") }
    func stop() {}
    func sweep() {}
    func hasPort(_ name: String) -> Bool { attached.contains(name) }
    func detach(_ name: String) { attached.remove(name) }
    func reattach(_ name: String) throws { attached.insert(name) }
    func counterLines() -> [Logger.Metadata] { [] }
    func summaryLines() -> [String] { [] }
    func remove(_ name: String) { attached.remove(name) }
    func add(_ port: PortConfig, toBridge bridge: String) throws { attached.insert(port.name) }
}
