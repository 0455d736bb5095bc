// ControlCommands: the daemon's control-socket commands (docs/control-api.md). Every command
// runs on the control loop through ControlQueue, so it sees and changes daemon state (config,
// links, engine bindings) on the one thread that owns it; reads of counters and the FDB are
// lock-free for the datapath. Streaming commands register here too (ControlReply.takeOver).
import Config
import Control
import Datapath
import Foundation
import Frames
import Handlers
import Logging
import Netlink
import TOMLKit

extension Daemon {
    /// Opens the control socket if the configuration names one, and registers the commands.
    /// Binds the control socket (before any link is made, so a socket path `run` cannot use
    /// fails the start with nothing to undo); commands are served once `startControl` runs.
    func openControl() throws {
        guard let path = config.controlSocket, !path.isEmpty else { return }
        var gid: gid_t?
        if let g = config.controlGroup {
            guard let id = resolveGroup(g) else { throw DaemonError("\(config.file): control.group: no group '\(g)' on this host") }
            gid = id
        }
        let server: ControlServer
        do { server = try ControlServer(configuration: .init(path: path, group: gid)) } catch {
            throw DaemonError("\(error)")
        }
        let log = logger
        server.log = { log.notice("\($0)") }
        control = server
        controlGroupID = gid
    }

    /// Starts serving the socket `openControl` bound (connections made meanwhile wait in its backlog).
    func startControl() {
        guard let server = control, let path = config.controlSocket else { return }
        let gid = controlGroupID
        registerControlCommands(server)
        server.start()
        logger.info("control socket", metadata: ["path": "\(path)", "mode": "\(gid == nil ? "0600" : "0660")",
                                                 "group": "\(config.controlGroup ?? "-")"])
    }

    /// Fails queued commands, closes every connection and removes the socket file.
    func stopControl() {
        controlQueue.close()
        control?.stop()
        control = nil
    }

    /// Runs `body` on the control loop; its value is the command's result.
    func onLoop<T: Encodable>(_ body: @escaping () throws -> T) throws -> ControlReply {
        try controlQueue.run { .result(try JSONValue(encoding: try body())) }
    }

    func registerControlCommands(_ server: ControlServer) {
        server.register("hello") { [unowned self, unowned server] _, _ in
            .result(.object(["protocol": .number(Double(ControlProtocol.version)), "pid": .number(Double(getpid())),
                             "config": .string(config.file), "commands": .array(server.commands.map { .string($0) })]))
        }
        server.register("ports") { [unowned self] _, _ in try onLoop { PortsResult(ports: self.portStatuses()) } }
        server.register("stats") { [unowned self] req, _ in
            let port = try req.string("port")
            return try onLoop { try self.statistics(port: port) }
        }
        server.register("stp") { [unowned self] req, _ in
            let bridge = try req.string("bridge")
            return try onLoop { try self.spanningTreeStatus(bridge: bridge) }
        }
        server.register("fdb") { [unowned self] req, _ in
            let bridge = try req.string("bridge")
            return try onLoop { try self.fdbEntries(bridge: bridge) }
        }
        server.register("fdb.add") { [unowned self] req, _ in
            let (bridge, mac, vlan) = (try req.string("bridge"), try Self.mac(req), try Self.vlan(req))
            let port = try req.requiredString("port")
            return try onLoop { try self.addStaticEntry(bridge: bridge, mac: mac, vlan: vlan, port: port) }
        }
        server.register("fdb.del") { [unowned self] req, _ in
            let (bridge, mac, vlan) = (try req.string("bridge"), try Self.mac(req), try Self.vlan(req))
            return try onLoop { try self.removeEntry(bridge: bridge, mac: mac, vlan: vlan) }
        }
        server.register("port.add") { [unowned self] req, _ in
            let bridge = try req.string("bridge")
            guard let table = req.args?["port"]?.object else {
                throw ControlError(.badRequest, "argument 'port' is required: an object with the keys of a [[bridges.ports]] table")
            }
            return try onLoop { try self.addPortByControl(bridge: bridge, table: table) }
        }
        server.register("port.del") { [unowned self] req, _ in
            let (name, netns) = (try req.requiredString("name"), try req.string("netns"))
            return try onLoop { try self.removePortByControl(name: name, netns: netns) }
        }
        server.register("filter.list") { [unowned self] req, _ in
            let bridge = try req.string("bridge")
            return try onLoop { try self.filterList(bridge: bridge) }
        }
        server.register("filter.replace") { [unowned self] req, _ in
            let bridge = try req.string("bridge")
            let policy = try req.string("default")
            // Without 'rules' only the default policy changes (the rules stay as they are).
            let rules = req.args?["rules"]
            guard rules != nil || policy != nil else {
                throw ControlError(.badRequest, "argument 'rules' (an array of rule strings) or 'default' is required")
            }
            let texts = try rules.map { value -> [String] in
                guard let array = value.array else { throw ControlError(.badRequest, "'rules' must be an array of rule strings") }
                return try array.enumerated().map { i, r -> String in
                    guard let s = r.string else { throw ControlError(.badRequest, "'rules' must hold strings") }
                    if let why = TextSafety.controlProblem(s, what: "rules[\(i)]") { throw ControlError(.invalidArgument, why) }
                    return s
                }
            }
            if let policy, policy != "accept" && policy != "drop" {
                throw ControlError(.invalidArgument, "'default' must be 'accept' or 'drop', not '\(policy)'")
            }
            return try onLoop { try self.replaceFilterByControl(bridge: bridge, rules: texts, policy: policy) }
        }
        registerCaptureCommand(server)   // streaming: CaptureCommand.swift
        registerImpairCommands(server)   // ImpairCommand.swift
        registerSwitchGuardCommands(server)   // fdb.flush, fdb.monitor: SwitchGuardCommands.swift
        registerMDBCommand(server)       // MDBCommands.swift
    }

    // MARK: reads

    func portStatuses() -> [PortStatus] {
        let snap = engine?.snapshot()
        return config.allPorts.map { b, p in
            let stat = snap?.bridge(b.name)?.port(named: p.name)
            // A VM port has no link: its "link" is its socket file, its MAC the one assigned to the VM.
            var socketPath: String?, assignedMAC: MACAddress?
            var link: LinkInfo?
            switch p.kind {
            case .macvtap(let m): link = try? LinkManager(namespace: m.netns.map { NetworkNamespace.named($0) }).link(named: p.name)
            case .vm(let vm): socketPath = vm.path; assignedMAC = vm.mac
            case .vhostUser(let v): socketPath = v.guest.path; assignedMAC = v.guest.mac
            case .tap(let t):
                // The tap the VMM attaches to; its "link" is the macvtap tapbridge reads.
                link = try? LinkManager().link(named: p.name)
                socketPath = t.macvtap; assignedMAC = t.mac
            case .host: link = try? LinkManager().link(named: p.name)
            case .vxlan(let v): link = try? LinkManager().link(named: p.name); socketPath = v.underlay
            }
            // Attached and connected, but a link that cannot carry frames (its parent is down) is down.
            let carries = link.map { LinkWatcher.carriesFrames($0) } ?? true
            let state = lostPorts.contains(p.name) ? "lost" : stat == nil ? "detached" : stat!.connected && carries ? "up" : "down"
            var status = PortStatus(bridge: b.name, name: p.name, kind: stat?.kind ?? "macvtap", netns: p.netns,
                              link: socketPath ?? p.create?.parent ?? link.flatMap { $0.parentName ?? $0.parentIndex.map { "#\($0)" } },
                              mac: assignedMAC?.description ?? link?.address?.description, mode: link?.mode?.rawValue ?? p.create?.mode.rawValue,
                              state: state, operstate: link?.operState, queues: p.queues,
                              offloads: p.vm == nil && p.offloads,   // a VM socket carries plain frames: no offloads (a vhost-user port: its `offloads`)
                              created: p.host != nil || links.wasCreated(p.name, netns: p.netns), vlan: Self.describe(p.vlan))
                .with(vxlan: p.vxlan.map { VxlanLinks.status(name: p.name, $0, link: link) })
            if let tree = engine?.spanningTrees.controller(ofBridge: b.name)?.status(), let st = tree.ports.first(where: { $0.name == p.name }) {
                status.stpState = st.state.description; status.stpRole = st.role.rawValue
                if tree.mode == "rstp" { status.stpProtocol = st.protocolVersion; status.stpEdge = st.edge }
            }
            status.guardBlock = switchGuardBlock(port: p.name, bridge: b.name)   // SwitchGuardCommands.swift
            return status
        }
    }

    func statistics(port: String?) throws -> StatsResult {
        guard let snap = engine?.snapshot() else { throw ControlError(.failed, "the engine is not running") }
        var out: [PortStats] = []
        for b in snap.bridges {
            for p in b.ports where port == nil || p.name == port {
                var drops: [String: UInt64] = [:]
                for (reason, n) in p.drops where n > 0 { drops[reason.name] = n }
                out.append(PortStats(bridge: b.name, name: p.name, connected: p.connected, rxFrames: p.rxFrames, rxBytes: p.rxBytes,
                                     txFrames: p.txFrames, txBytes: p.txBytes, txErrors: p.txErrors,
                                     rxLargeFrames: p.rxLargeFrames, txLargeFrames: p.txLargeFrames, drops: drops,
                                     refusedConnections: engine?.refusedConnections(p.name).map { UInt64($0) })
                    .with(tunnel: config.allPorts.first { $0.port.name == p.name }?.port.vxlan.map { VxlanLinks.summary($0) }))
            }
        }
        if let port, out.isEmpty { throw noSuchPort(port) }
        // Handler counters belong to bridges, not ports: only in the whole-daemon view.
        let handlers = port != nil ? nil : engine?.handlerCounters().flatMap { h in
            h.counters.map { HandlerStats(bridge: h.bridge, handler: h.handler, counter: $0.name, labels: $0.labels, value: $0.value) }
        }
        return StatsResult(monotonicNs: MonotonicClock.nanoseconds(), ports: out, handlers: handlers)
    }

    func fdbEntries(bridge: String?) throws -> FDBResult {
        guard let engine else { throw ControlError(.failed, "the engine is not running") }
        let names = try bridges(bridge)
        var out: [FDBEntryInfo] = []
        for name in names {
            guard let sw = engine.learningSwitch(ofBridge: name) else {
                if bridge != nil { throw ControlError(.notSupported, "bridge '\(name)' has no learning switch (no FDB)") }
                continue
            }
            for e in sw.entries() {
                out.append(FDBEntryInfo(bridge: name, mac: e.mac.description, vlan: Int(e.vlan),
                                        port: engine.portName(e.port, inBridge: name) ?? "\(e.port)",
                                        age: (e.age * 10).rounded() / 10, static: e.isStatic))
            }
        }
        return FDBResult(entries: out)
    }

    func filterList(bridge: String?) throws -> FilterListResult {
        guard let engine else { throw ControlError(.failed, "the engine is not running") }
        var out: [FilterInfo] = []
        for name in try bridges(bridge) {
            guard let filter = engine.filter(ofBridge: name), let fc = config.bridges.first(where: { $0.name == name })?.filter else {
                if bridge != nil { throw ControlError(.notSupported, "bridge '\(name)' has no filter in its pipeline") }
                continue
            }
            let rules = fc.rules.enumerated().map { i, text in
                let h = filter.hits(rule: i)
                return FilterRuleInfo(index: i, rule: text, packets: h.packets, bytes: h.bytes)
            }
            out.append(FilterInfo(bridge: name, default: fc.defaultAction, generation: filter.currentGeneration, rules: rules))
        }
        return FilterListResult(filters: out)
    }

    // MARK: changes

    func addStaticEntry(bridge: String?, mac: MACAddress, vlan: UInt16, port: String) throws -> DoneResult {
        guard let engine else { throw ControlError(.failed, "the engine is not running") }
        let b = try bridge ?? bridgeOf(port: port)
        guard let sw = engine.learningSwitch(ofBridge: b) else { throw ControlError(.notSupported, "bridge '\(b)' has no learning switch (no FDB)") }
        guard let id = engine.portID(port, inBridge: b) else { throw noSuchPort(port, bridge: b) }
        if mac.isMulticast || mac == .zero { throw ControlError(.invalidArgument, "\(mac) is not a unicast MAC; static entries are for unicast MACs") }
        do {
            try sw.addStatic(mac: mac, vlan: vlan, port: id)
        } catch {
            throw ControlError(.limitReached, "bridge '\(b)': \(mac) vlan \(vlan) not pinned: \(error)")
        }
        runtimeChanges.staticEntryAdded(bridge: b, mac: mac.description, vlan: vlan, port: port)
        logger.info("static FDB entry added", metadata: ["bridge": "\(b)", "mac": "\(mac)", "vlan": "\(vlan)", "port": "\(port)"])
        return DoneResult("\(mac) vlan \(vlan) pinned to \(port) on bridge \(b) (\(RuntimeChanges.note))")
    }

    func removeEntry(bridge: String?, mac: MACAddress, vlan: UInt16) throws -> DoneResult {
        guard let engine else { throw ControlError(.failed, "the engine is not running") }
        var removedFrom: [String] = []
        for name in try bridges(bridge) {
            guard let sw = engine.learningSwitch(ofBridge: name) else {
                if bridge != nil { throw ControlError(.notSupported, "bridge '\(name)' has no learning switch (no FDB)") }
                continue
            }
            if sw.removeEntry(mac: mac, vlan: vlan) {
                removedFrom.append(name)
                runtimeChanges.staticEntryRemoved(bridge: name, mac: mac.description, vlan: vlan)
            }
        }
        guard !removedFrom.isEmpty else {
            throw ControlError(.noSuchEntry, "no FDB entry for \(mac) vlan \(vlan)\(bridge.map { " on bridge '\($0)'" } ?? "")")
        }
        logger.info("FDB entry removed", metadata: ["bridges": "\(removedFrom.joined(separator: ","))", "mac": "\(mac)", "vlan": "\(vlan)"])
        return DoneResult("\(mac) vlan \(vlan) removed from bridge \(removedFrom.joined(separator: ", "))")
    }

    /// `port add`: the port table is read exactly like a `[[bridges.ports]]` table of the file,
    /// checked against the other ports (names, MACs, passthru parents) and the host, then added.
    func addPortByControl(bridge: String?, table: [String: JSONValue]) throws -> DoneResult {
        let b: String
        if let bridge { b = bridge } else if config.bridges.count == 1 { b = config.bridges[0].name } else {
            throw ControlError(.badRequest, "argument 'bridge' is required (this daemon has \(config.bridges.count) bridges: \(config.bridges.map(\.name).joined(separator: ", ")))")
        }
        guard let bi = config.bridges.firstIndex(where: { $0.name == b }) else { throw noSuchBridge(b) }
        let toml = try TOMLTable(table.mapValues { try Self.toml($0) })
        defer { toml.clear() } // TOMLKit never frees a table's tree (see ConfigParser)
        let issues = IssueList(file: "port add")
        let port = ConfigParser.parsePort(toml, path: "port", issues: issues)
        if !issues.list.isEmpty { throw ControlError(.invalidArgument, issues.list.map(\.description).joined(separator: "\n")) }
        if config.allPorts.contains(where: { $0.port.name == port.name && $0.port.netns == port.netns }) {
            throw ControlError(.portExists, "port '\(port.name)'\(port.netns.map { " (namespace \($0))" } ?? "") is already a port of this daemon")
        }
        var probe = config
        probe.file = "port add"
        probe.bridges[bi].ports.append(port)
        ConfigParser.checkCrossReferences(probe, issues)
        if port.create == nil, PortSet.capacity <= probe.bridges[bi].ports.count {
            issues.add("port", "at most \(PortSet.capacity) ports per bridge")
        }
        if !issues.list.isEmpty { throw ControlError(.invalidArgument, issues.list.map(\.description).joined(separator: "\n")) }
        do { try validateNewPorts([(probe.bridges[bi], port)], in: probe) } catch {
            throw ControlError(.invalidArgument, "\(error)")
        }
        // A port that wants anti-spoofing never runs unguarded: its policy goes in first, and a
        // bridge started without a source guard cannot get one while running.
        if (port.guest?.guards ?? false) || (port.tap?.guards ?? false) {   // vm, vhost-user, tap
            guard engine?.hasSourceGuard(b) != false else {
                throw ControlError(.invalidArgument, "bridge '\(b)' runs without a source guard: a port with anti-spoofing ('mac' or 'addresses') needs a restart with it in the file")
            }
            engine?.updateSourceGuard(probe.bridges[bi])
        }
        do { try addPort(port, toBridge: b, file: "port add", reason: "control socket") } catch {
            throw ControlError(.failed, "\(error)")
        }
        runtimeChanges.portAdded(port.name, netns: port.netns, bridge: b)
        return DoneResult("port \(port.name) added to bridge \(b)\(port.create != nil || port.tap != nil || port.host != nil || port.vxlan != nil ? " (link created)" : "") (\(RuntimeChanges.note))")
    }

    func removePortByControl(name: String, netns: String?) throws -> DoneResult {
        let matches = config.allPorts.filter { $0.port.name == name && (netns == nil || $0.port.netns == netns) }
        guard let (b, p) = matches.first else { throw noSuchPort(name) }
        if matches.count > 1 { throw ControlError(.badRequest, "port '\(name)' exists in several namespaces: give 'netns'") }
        let created = p.host != nil || links.wasCreated(p.name, netns: p.netns)
        removePort(p, bridge: b.name, reason: "control socket")
        runtimeChanges.portRemoved(p.name, netns: p.netns, bridge: b.name)
        return DoneResult("port \(name) removed from bridge \(b.name)\(created ? " (link deleted)" : "") (\(RuntimeChanges.note))")
    }

    func replaceFilterByControl(bridge: String?, rules: [String]?, policy: String?) throws -> FilterListResult {
        let withFilter = config.bridges.filter { $0.filter != nil }
        let b: String
        if let bridge { b = bridge } else if withFilter.count == 1 { b = withFilter[0].name } else {
            throw ControlError(.badRequest, "argument 'bridge' is required (bridges with a filter: \(withFilter.map(\.name).joined(separator: ", ")))")
        }
        guard let bc = config.bridges.first(where: { $0.name == b }) else { throw noSuchBridge(b) }
        guard var f = bc.filter, engine?.filter(ofBridge: b) != nil else {
            throw ControlError(.notSupported, "bridge '\(b)' has no filter in its pipeline (add \"filter\" to its pipeline in the file and restart)")
        }
        if let rules { f.rules = rules }
        if let policy { f.defaultAction = policy }
        f.path = "filter"
        do { try replaceFilter(f, bridge: b) } catch {
            logger.error("filter rules refused, old rules stay", metadata: ["bridge": "\(b)", "error": "\(error)"])
            throw ControlError(.filterRejected, "\(error) (the old rules stay in force)")
        }
        runtimeChanges.filterReplaced(bridge: b)
        var result = try filterList(bridge: b)
        result.note = RuntimeChanges.note
        return result
    }

    // MARK: helpers

    /// `name` checked, or every bridge.
    private func bridges(_ name: String?) throws -> [String] {
        if let name {
            guard config.bridges.contains(where: { $0.name == name }) else { throw noSuchBridge(name) }
            return [name]
        }
        return config.bridges.map(\.name)
    }

    private func bridgeOf(port: String) throws -> String {
        let owners = config.allPorts.filter { $0.port.name == port }.map(\.bridge.name)
        guard let first = owners.first else { throw noSuchPort(port) }
        if Set(owners).count > 1 { throw ControlError(.badRequest, "port '\(port)' is in several bridges: give 'bridge'") }
        return first
    }

    private func noSuchPort(_ name: String, bridge: String? = nil) -> ControlError {
        ControlError(.noSuchPort, "no port '\(name)'\(bridge.map { " in bridge '\($0)'" } ?? "") (ports: \(config.allPorts.map(\.port.name).joined(separator: ", ")))")
    }

    private func noSuchBridge(_ name: String) -> ControlError {
        ControlError(.noSuchBridge, "no bridge '\(name)' (bridges: \(config.bridges.map(\.name).joined(separator: ", ")))")
    }

    static func mac(_ req: ControlRequest) throws -> MACAddress {
        let s = try req.requiredString("mac")
        guard let m = MACAddress(s) else { throw ControlError(.invalidArgument, "invalid MAC '\(s)' (expected six hex octets like 52:54:00:12:34:56)") }
        return m
    }

    static func vlan(_ req: ControlRequest) throws -> UInt16 {
        let v = try req.int("vlan") ?? 0
        guard (0...4094).contains(v) else { throw ControlError(.invalidArgument, "vlan \(v) is out of range 0...4094") }
        return UInt16(v)
    }

    static func toml(_ v: JSONValue) throws -> TOMLValueConvertible {
        switch v {
        case .string(let s): return s
        case .bool(let b): return b
        case .number(let n): return n.rounded() == n && abs(n) < 9e15 ? Int(n) as TOMLValueConvertible : n
        case .array(let a): return TOMLArray(try a.map(toml))
        case .object(let o): return try TOMLTable(o.mapValues(toml))
        case .null: throw ControlError(.invalidArgument, "null is not a configuration value")
        }
    }

    static func describe(_ v: VLANMode) -> String {
        switch v {
        case .unaware: return "unaware"
        case .access(let pvid): return "access \(pvid)"
        case .trunk(_, let native): return "trunk" + (native.map { " native \($0)" } ?? "")
        }
    }
}
