// Reload: SIGHUP re-reads the configuration file and applies what can change while running:
// ports (macvtap or vm) added to or removed from existing bridges (links created/deleted as
// configured), whole VM attachments (`[[vms]]`) added or removed, and changed handler settings
// of kinds that can reload (the filter's rules). Anything else (new switch bridges, a changed
// pipeline, settings of kinds without a reload hook, port settings) is logged as needing a
// restart. A reload whose file or new ports do not validate changes nothing.
import Config
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
        if next.partialFrameTimeout != config.partialFrameTimeout {
            logger.warning("reload: partial-frame-timeout change not applied (restart needed)",
                           metadata: ["in-force": "\(config.partialFrameTimeout)", "file": "\(next.partialFrameTimeout)"])
            next.partialFrameTimeout = config.partialFrameTimeout
        }
        next.logLevel = config.logLevel

        func key(_ p: PortConfig) -> String { "\(p.netns ?? "")/\(p.name)" }
        var added: [(bridge: BridgeConfig, port: PortConfig)] = []
        var removed: [(bridge: BridgeConfig, port: PortConfig)] = []
        var newAttachments: [BridgeConfig] = []
        // Handler settings are applied only once the reload is known to go ahead (new ports valid).
        var stageUpdates: [(stage: HandlerConfig, bridge: String)] = []
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
            if nb.spanningTree != ob.spanningTree {
                logger.warning("reload: spanning tree changes not applied (restart needed)", metadata: ["bridge": "\(nb.name)"])
            }
            if nb.pipeline.map(\.name) != ob.pipeline.map(\.name) {
                logger.warning("reload: handler changes not applied (restart needed)", metadata: ["bridge": "\(nb.name)"])
            } else {
                for (new, old) in zip(nb.pipeline, ob.pipeline) where new != old {
                    // The filter keeps the messages docs/filter.md promises; other kinds the generic ones.
                    stageUpdates.append((new, nb.name))
                }
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
        for (stage, bridge) in stageUpdates {
            // The filter keeps the messages docs/filter.md promises; other kinds the generic ones.
            if let f = stage.settings as? FilterConfig { applyFilter(f, bridge: bridge) } else { reloadStage(stage, bridge: bridge) }
        }
        reloadSwitchGuards(next)   // ports' max-macs, flood, storm keys: SwitchGuardCommands.swift

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
            if (p.guest?.guards ?? false) || (p.tap?.guards ?? false), engine?.hasSourceGuard(b.name) == false {
                logger.error("reload: cannot add VM port with anti-spoofing to a bridge started without VM guards (restart needed)",
                             metadata: ["port": "\(p.name)", "bridge": "\(b.name)"])
                continue
            }
            do { try addPort(p, toBridge: b.name, file: next.file, reason: "reload") } catch {
                logger.error("reload: cannot add port", metadata: ["port": "\(p.name)", "error": "\(error)"])
            }
        }
        applyVxlanChanges(next)   // remotes added or removed: the FDB edited in place (VxlanLinks.swift)
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

    /// Gives a reloaded stage's new settings to the running handler of its kind (the kind's
    /// reload hook) and records them in `config`; a kind without the hook, or settings it refuses,
    /// leave the old settings in force and say why.
    func reloadStage(_ stage: HandlerConfig, bridge: String) {
        do {
            let notes = try applyStage(stage, bridge: bridge)
            for note in notes { logger.warning("reload: \(note)", metadata: ["bridge": "\(bridge)", "handler": "\(stage.name)"]) }
            logger.info("handler settings reloaded", metadata: ["bridge": "\(bridge)", "handler": "\(stage.name)"])
        } catch {
            logger.error("reload: \(stage.name) settings refused, old settings stay", metadata: ["bridge": "\(bridge)", "error": "\(error)"])
        }
    }

    /// Applies `stage` to bridge `bridge`'s running handler of its kind, then records it in
    /// `config` (keeping the key path the file gave it). Throws, changing nothing, on refusal.
    @discardableResult
    func applyStage(_ stage: HandlerConfig, bridge: String) throws -> [String] {
        guard let engine, let b = config.bridges.firstIndex(where: { $0.name == bridge }),
              let h = config.bridges[b].pipeline.firstIndex(where: { $0.name == stage.name }) else {
            throw DaemonError("bridge '\(bridge)' has no \(stage.name)")
        }
        let notes = try engine.reloadStage(stage, bridge: config.bridges[b])
        var kept = stage
        kept.path = config.bridges[b].pipeline[h].path
        config.bridges[b].pipeline[h] = kept
        return notes
    }

    /// Compiles `f`'s rules off the datapath and swaps them into bridge `bridge`'s running filter,
    /// then records them in `config`. Throws (old rules stay) with the failing rule's key path
    /// and libpcap's message: `bridges[0].filter.rules[2]: "tcp prot 22": syntax error`.
    func replaceFilter(_ f: FilterConfig, bridge: String) throws {
        guard let filter = engine?.filter(ofBridge: bridge),
              let b = config.bridges.firstIndex(where: { $0.name == bridge }),
              let h = config.bridges[b].pipeline.firstIndex(where: { $0.name == "filter" }) else {
            throw DaemonError("bridge '\(bridge)' has no filter")
        }
        if let (path, reason) = ConfigValidator.antiSpoofingProblems(f, ports: config.bridges[b].ports).first {
            throw DaemonError("\(path): \(reason)")
        }
        let recordedPath = config.bridges[b].pipeline[h].path
        let notes = try applyStage(HandlerConfig(name: "filter", settings: f, path: f.path), bridge: bridge)
        for note in notes { logger.warning("reload: \(note)", metadata: ["bridge": "\(bridge)"]) }
        // The recorded settings keep the file's key path (`f.path` may be the control socket's).
        var kept = f
        kept.path = recordedPath
        config.bridges[b].pipeline[h].settings = kept
        logger.info("filter rules replaced", metadata: ["bridge": "\(bridge)", "rules": "\(f.rules.count)",
                                                      "generation": "\(filter.currentGeneration)"])
    }
}
