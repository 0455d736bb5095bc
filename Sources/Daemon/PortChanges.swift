// PortChanges: adding and removing one port while the daemon runs, shared by SIGHUP reloads and
// the control socket's `port add|del`: validate only what is new against the host, create the
// link when the port says so, attach it, follow its link events, and keep `config` in step.
// A removed port's link is deleted only if this daemon created it. Control thread only.
import Config
import Logging

extension Daemon {
    /// Checks new ports against the host (parents, namespaces, names free); the links the
    /// daemon already runs are not re-checked. Throws ConfigError.
    func validateNewPorts(_ added: [(bridge: BridgeConfig, port: PortConfig)], in next: DaemonConfig) throws {
        var probe = next
        probe.controlSocket = nil
        // The filters are checked against the new ports only for what concerns them (an
        // @anti-spoofing rule that would judge them): the probe bridge holds just the new ports,
        // so its filter's `ports`/mirror names would look unknown.
        var issues: [ConfigIssue] = []
        probe.bridges = next.bridges.compactMap { b in
            let ports = added.filter { $0.bridge.name == b.name }.map(\.port)
            guard !ports.isEmpty else { return nil }
            if let f = b.filter {
                issues += ConfigValidator.antiSpoofingProblems(f, ports: ports).map { ConfigIssue(file: next.file, path: $0.0, reason: $0.1) }
            }
            return BridgeConfig(name: b.name, pipeline: b.pipeline.filter { $0.name != "filter" }, ports: ports, path: b.path)
        }
        do {
            if !probe.bridges.isEmpty { try ConfigValidator.validate(probe, host: SystemHost()) }
        } catch let e as ConfigError {
            issues += e.issues
        }
        if !issues.isEmpty { throw ConfigError(issues) }
    }

    /// Creates (if configured) and attaches `p` to bridge `bridge`, then records it in `config`.
    /// On failure nothing stays behind (a link it created is deleted) and the error is thrown.
    func addPort(_ p: PortConfig, toBridge bridge: String, file: String, reason: String) throws {
        do {
            if let spec = p.create {
                try links.create(p, spec: spec, bridge: bridge, file: file)
            } else if p.tap != nil {
                try links.createTap(p, bridge: bridge, file: file)
            } else if p.vxlan != nil {
                try links.createVxlan(p, bridge: bridge, file: file)
            }
            applySwitchGuards(p, bridge: bridge)
            try engine?.add(p, toBridge: bridge)
        } catch {
            if links.wasCreated(p.name, netns: p.netns) { links.delete(p.name, netns: p.netns) }
            throw error
        }
        if p.hasLink { monitor?.watch(p.name, netns: p.netns) }   // a VM port has no link
        if let i = config.bridges.firstIndex(where: { $0.name == bridge }) { config.bridges[i].ports.append(p) }
        logger.info("port added by \(reason)", metadata: ["port": "\(p.name)", "bridge": "\(bridge)"])
    }

    /// Detaches `p`, stops following it, deletes its link if this daemon created it, and drops it from `config`.
    func removePort(_ p: PortConfig, bridge: String, reason: String) {
        engine?.remove(p.name)
        if p.hasLink { monitor?.forget(p.name) }
        lostPorts.remove(p.name)
        if links.wasCreated(p.name, netns: p.netns) { links.delete(p.name, netns: p.netns) }
        for i in config.bridges.indices {
            config.bridges[i].ports.removeAll { $0.name == p.name && $0.netns == p.netns }
        }
        logger.info("port removed by \(reason)", metadata: ["port": "\(p.name)", "bridge": "\(bridge)"])
    }
}
