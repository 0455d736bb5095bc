// Reload: SIGHUP re-reads the configuration file and applies what can change while running:
// ports (macvtap or vm) added to or removed from existing bridges (links created/deleted as
// configured), and whole VM attachments (`[[vms]]`) added or removed. Anything else (new
// switch bridges, changed handlers or port settings) is logged as needing a restart. A reload
// whose file or new ports do not validate changes nothing.
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
        var newAttachments: [BridgeConfig] = []
        var filterUpdates: [(FilterConfig, String)] = []
        for nb in next.bridges {
            guard let ob = config.bridges.first(where: { $0.name == nb.name }) else {
                if nb.isVMAttachment {
                    newAttachments.append(nb)
                    added += nb.ports.map { (nb, $0) }
                } else {
                    logger.warning("reload: new bridge ignored (restart to add bridges)", metadata: ["bridge": "\(nb.name)"])
                }
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
                filterUpdates.append((nf, nb.name))
            }
        }
        for ob in config.bridges where !next.bridges.contains(where: { $0.name == ob.name }) {
            if ob.isVMAttachment {
                // The VM and its macvtap go; the emptied bridge stays in the engine, idle.
                removed += ob.ports.map { (ob, $0) }
            } else {
                logger.warning("reload: bridge removal not applied (restart needed)", metadata: ["bridge": "\(ob.name)"])
            }
        }

        // Validate only what is new: the existing links of course exist already.
        do { try validateNewPorts(added, in: next) } catch {
            logger.error("reload refused: new ports invalid, nothing changed", metadata: ["error": "\(error)"])
            return
        }

        // Nothing an operator did over the control socket disappears without a word.
        for change in runtimeChanges.dropped(by: next, running: config) {
            logger.warning("reload drops a runtime change", metadata: ["change": "\(change)"])
        }
        for (f, bridge) in filterUpdates { applyFilter(f, bridge: bridge) }

        for b in newAttachments {
            do { try engine?.addBridge(b) } catch {
                logger.error("reload: cannot add VM attachment", metadata: ["bridge": "\(b.name)", "error": "\(error)"])
                added.removeAll { $0.bridge.name == b.name }
            }
        }
        for (b, p) in removed { removePort(p, bridge: b.name, reason: "reload") }
        config.bridges.removeAll { $0.isVMAttachment && $0.ports.isEmpty }
        for b in newAttachments where added.contains(where: { $0.bridge.name == b.name }) {
            var empty = b
            empty.ports = []
            config.bridges.append(empty)
        }
        // New VM ports are guarded from their first frame: policies go in before the ports do.
        for nb in next.bridges where added.contains(where: { $0.bridge.name == nb.name }) { engine?.updateSourceGuard(nb) }
        for (b, p) in added {
            // A VM port that wants anti-spoofing never runs unguarded: a bridge built without a
            // source guard cannot get one while running.
            if p.vm?.guards == true, engine?.hasSourceGuard(b.name) == false {
                logger.error("reload: cannot add VM port with anti-spoofing to a bridge started without VM guards (restart needed)",
                             metadata: ["port": "\(p.name)", "bridge": "\(b.name)"])
                continue
            }
            do { try addPort(p, toBridge: b.name, file: next.file, reason: "reload") } catch {
                logger.error("reload: cannot add port", metadata: ["port": "\(p.name)", "error": "\(error)"])
            }
        }
        for i in config.bridges.indices {
            if let nb = next.bridges.first(where: { $0.name == config.bridges[i].name }),
               nb.pipeline.map(\.name) == config.bridges[i].pipeline.map(\.name) {
                // The filter entry is what replaceFilter recorded: a refused rule set is not in force.
                let current = config.bridges[i].filter
                config.bridges[i].pipeline = nb.pipeline.map { h in
                    if case .filter = h, let current { return .filter(current) }
                    return h
                }
            }
        }
        // VM ports came or went: their bridges' source guards keep the policies of what runs.
        for b in config.bridges where added.contains(where: { $0.bridge.name == b.name }) || removed.contains(where: { $0.bridge.name == b.name }) {
            engine?.updateSourceGuard(b)
        }
        logger.info("reloaded", metadata: ["ports": "\(config.allPorts.map(\.port.name).joined(separator: ","))"])
    }

    /// Swaps a reloaded bridge's filter rules; a rule set that does not compile leaves the old
    /// one in force and says why.
    func applyFilter(_ f: FilterConfig, bridge: String) {
        do { try replaceFilter(f, bridge: bridge) } catch {
            logger.error("reload: filter rules refused, old rules stay", metadata: ["bridge": "\(bridge)", "error": "\(error)"])
        }
    }

    /// Compiles `f`'s rules off the datapath and swaps them into bridge `bridge`'s running filter,
    /// then records them in `config`. Throws (old rules stay) with the failing rule's key path
    /// and libpcap's message: `bridges[0].filter.rules[2]: "tcp prot 22": syntax error`.
    func replaceFilter(_ f: FilterConfig, bridge: String) throws {
        guard let filter = engine?.filter(ofBridge: bridge) else { throw DaemonError("bridge '\(bridge)' has no filter") }
        let ports = config.bridges.first { $0.name == bridge }?.ports ?? []
        let rules = try HandlerFactory.filterRules(f)
        if let (path, reason) = ConfigValidator.antiSpoofingProblems(f, ports: ports).first {
            throw DaemonError("\(path): \(reason)")
        }
        for (i, r) in rules.enumerated() {
            if case .mirror(let port) = r.action, !ports.contains(where: { $0.name == port }) {
                throw DaemonError("\(f.path).rules[\(i)]: mirror port '\(port)' is not a port of bridge '\(bridge)'")
            }
        }
        do {
            try filter.replaceRules(rules, policy: f.defaultAction == "drop" ? .deny : .allow)
        } catch let FilterError.compile(expression, message, position) {
            throw DaemonError("\(f.path).rules[\(position ?? 0)]: \"\(expression)\": \(message)")
        }
        if let b = config.bridges.firstIndex(where: { $0.name == bridge }),
           let h = config.bridges[b].pipeline.firstIndex(where: { $0.name == "filter" }) {
            var kept = f
            kept.path = config.bridges[b].filter?.path ?? f.path
            config.bridges[b].pipeline[h] = .filter(kept)
        }
        logger.info("filter rules replaced", metadata: ["bridge": "\(bridge)", "rules": "\(f.rules.count)",
                                                      "generation": "\(filter.currentGeneration)"])
    }
}
