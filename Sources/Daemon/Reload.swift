// Reload: SIGHUP re-reads the configuration file and applies what can change while running:
// ports added to or removed from existing bridges (links created/deleted as configured).
// Anything else (new bridges, changed handlers or port settings) is logged as needing a
// restart. A reload whose file or new ports do not validate changes nothing.
import Handlers
import Logging

extension Daemon {
    func reload() {
        logger.info("reloading", metadata: ["config": "\(config.file)"])
        var next: DaemonConfig
        do {
            next = try ConfigParser.load(path: config.file)
        } catch {
            logger.error("reload refused: configuration invalid, nothing changed", metadata: ["error": "\(error)"])
            return
        }
        next.workers = config.workers
        next.logLevel = config.logLevel

        func key(_ p: PortConfig) -> String { "\(p.netns ?? "")/\(p.name)" }
        var added: [(bridge: BridgeConfig, port: PortConfig)] = []
        var removed: [(bridge: BridgeConfig, port: PortConfig)] = []
        for nb in next.bridges {
            guard let ob = config.bridges.first(where: { $0.name == nb.name }) else {
                logger.warning("reload: new bridge ignored (restart to add bridges)", metadata: ["bridge": "\(nb.name)"])
                continue
            }
            let oldKeys = Set(ob.ports.map(key)), newKeys = Set(nb.ports.map(key))
            added += nb.ports.filter { !oldKeys.contains(key($0)) }.map { (nb, $0) }
            removed += ob.ports.filter { !newKeys.contains(key($0)) }.map { (ob, $0) }
            if nb.pipeline.map(\.name) != ob.pipeline.map(\.name) || nb.learningSwitch != ob.learningSwitch {
                logger.warning("reload: handler changes not applied (restart needed)", metadata: ["bridge": "\(nb.name)"])
            } else if let nf = nb.filter, nf != ob.filter {
                if let of = ob.filter, nf.ports != of.ports || nf.direction != of.direction {
                    logger.warning("reload: filter ports/direction changes not applied (restart needed)",
                                   metadata: ["bridge": "\(nb.name)"])
                }
                applyFilter(nf, bridge: nb.name)
            }
        }
        for ob in config.bridges where !next.bridges.contains(where: { $0.name == ob.name }) {
            logger.warning("reload: bridge removal not applied (restart needed)", metadata: ["bridge": "\(ob.name)"])
        }

        // Validate only what is new: the existing links of course exist already.
        var probe = next
        probe.bridges = next.bridges.compactMap { b in
            let ports = added.filter { $0.bridge.name == b.name }.map(\.port)
            return ports.isEmpty ? nil : BridgeConfig(name: b.name, pipeline: b.pipeline, ports: ports, path: b.path)
        }
        if !probe.bridges.isEmpty {
            do { try ConfigValidator.validate(probe, host: SystemHost()) } catch {
                logger.error("reload refused: new ports invalid, nothing changed", metadata: ["error": "\(error)"])
                return
            }
        }

        for (b, p) in removed {
            engine?.remove(p.name)
            monitor?.forget(p.name)
            lostPorts.remove(p.name)
            if links.wasCreated(p.name, netns: p.netns) { links.delete(p.name, netns: p.netns) }
            logger.info("port removed by reload", metadata: ["port": "\(p.name)", "bridge": "\(b.name)"])
        }
        var applied = config
        for i in applied.bridges.indices {
            applied.bridges[i].ports.removeAll { p in removed.contains { $0.port.name == p.name && $0.port.netns == p.netns } }
        }
        for (b, p) in added {
            do {
                if let spec = p.create {
                    try links.create(p, spec: spec, bridge: b.name, file: next.file)
                }
                try engine?.add(p, toBridge: b.name)
                monitor?.watch(p.name, netns: p.netns)
                if let i = applied.bridges.firstIndex(where: { $0.name == b.name }) { applied.bridges[i].ports.append(p) }
                logger.info("port added by reload", metadata: ["port": "\(p.name)", "bridge": "\(b.name)"])
            } catch {
                if links.wasCreated(p.name, netns: p.netns) { links.delete(p.name, netns: p.netns) }
                logger.error("reload: cannot add port", metadata: ["port": "\(p.name)", "error": "\(error)"])
            }
        }
        for i in applied.bridges.indices {
            if let nb = next.bridges.first(where: { $0.name == applied.bridges[i].name }),
               nb.pipeline.map(\.name) == applied.bridges[i].pipeline.map(\.name) {
                applied.bridges[i].pipeline = nb.pipeline
            }
        }
        config = applied
        logger.info("reloaded", metadata: ["ports": "\(config.allPorts.map(\.port.name).joined(separator: ","))"])
    }

    /// Compiles the new rules off the datapath and swaps them in; a rule set that does not
    /// compile leaves the old one in force and says why.
    func applyFilter(_ f: FilterConfig, bridge: String) {
        guard let filter = engine?.filter(ofBridge: bridge) else { return }
        do {
            try filter.replaceRules(try HandlerFactory.filterRules(f), policy: f.defaultAction == "drop" ? .deny : .allow)
            logger.info("filter rules replaced", metadata: ["bridge": "\(bridge)", "rules": "\(f.rules.count)",
                                                          "generation": "\(filter.currentGeneration)"])
        } catch let FilterError.compile(expression, message, position) {
            logger.error("reload: filter rules refused, old rules stay",
                         metadata: ["bridge": "\(bridge)", "error": "\(f.path).rules[\(position ?? 0)]: \"\(expression)\": \(message)"])
        } catch {
            logger.error("reload: filter rules refused, old rules stay", metadata: ["bridge": "\(bridge)", "error": "\(error)"])
        }
    }
}
