// ConfigParser: TOML text -> DaemonConfig, or every problem found. Every key is read through a
// KeyReader that knows its dotted path, so any problem is reported as
// `file: bridges[0].ports[1].mode: reason`; keys nobody read are typos and refused. Checks that
// need only the file (duplicates, references between sections, filter rules that do not
// compile) are made here too; checks that need the host (does the parent exist?) are the Daemon
// module's ConfigValidator. No file or system access here: the caller reads the file.
import Foundation
import Frames
import Handlers
import Logging
import TOMLKit

/// Checks of single values whose syntax another module owns (the metrics endpoint's address);
/// the daemon passes its own, a unit test may pass none.
public struct ValueChecks: Sendable {
    /// Why `address` is no metrics endpoint address (`allowRemote`: non-loopback allowed), or nil.
    public var metricsAddress: @Sendable (_ address: String, _ allowRemote: Bool) -> String?
    public init(metricsAddress: @escaping @Sendable (String, Bool) -> String? = { _, _ in nil }) {
        self.metricsAddress = metricsAddress
    }
}

public enum ConfigParser {
    /// Parses configuration text; `file` names it in messages. Throws `ConfigError` listing
    /// every problem found.
    public static func parse(_ text: String, file: String, checks: ValueChecks = .init()) throws -> DaemonConfig {
        let (config, issues) = parseCollectingIssues(text, file: file, checks: checks)
        guard let config, issues.isEmpty else { throw ConfigError(issues) }
        return config
    }

    /// `parse`, returning the configuration as far as it could be read together with every
    /// problem found, so a check can add the host's problems in the same pass. The
    /// configuration is nil only when the text is not TOML.
    public static func parseCollectingIssues(_ text: String, file: String, checks: ValueChecks = .init()) -> (DaemonConfig?, [ConfigIssue]) {
        let issues = IssueList(file: file)
        if let p = TOMLPreflight.problem(in: text) {
            return (nil, [ConfigIssue(file: file, path: "", reason: "line \(p.line), column \(p.column): \(p.reason)")])
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            return (nil, [ConfigIssue(
                file: file, path: "",
                reason: "line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")])
        } catch {
            return (nil, [ConfigIssue(file: file, path: "", reason: "\(error)")])
        }
        // TOMLKit 0.6's TOMLTable has no deinit: the parsed toml++ tree would stay allocated
        // forever (3-12 KiB per reload of a small file, measured by tools/soak). Every value is
        // copied into Swift types below, so the tree is emptied once parsing is done; only the
        // empty root object (tens of bytes) is still lost per parse.
        defer { root.clear() }
        var config = DaemonConfig(file: file)
        var top = KeyReader(root, path: "", issues: issues)
        if let s = top.string("log-level") {
            if let l = Logger.Level(rawValue: s) { config.logLevel = l } else {
                top.fail("log-level", "unknown level '\(s)' (one of: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
        }
        config.workers = top.int("workers", in: 1...64)
        if let s = top.number("stats-interval", in: 0...86_400) { config.statsInterval = s }
        if let s = top.number("partial-frame-timeout", in: 0.1...3600) { config.partialFrameTimeout = s }
        config.controlSocket = defaultControlSocket
        if let control = top.table("control") {
            var r = KeyReader(control, path: "control", issues: issues)
            if let s = r.string("socket") {
                if !s.isEmpty && !s.hasPrefix("/") { r.fail("socket", "must be an absolute path (or \"\" for no control socket)") }
                config.controlSocket = s
            }
            if let v = r.value("group") {
                if let s = v.string, !s.isEmpty { config.controlGroup = r.refusingControls(s, "group") } else if let n = v.int, n >= 0 { config.controlGroup = String(n) } else {
                    r.fail("group", "expected a group name or number, found \(KeyReader.describe(v))")
                }
            }
            r.finish()
        }
        if let s = top.string("log-format") {
            if let f = LogFormat(rawValue: s) { config.logFormat = f } else {
                top.fail("log-format", "unknown format '\(s)' (one of: text, json)")
            }
        }
        config.metricsAllowRemote = top.bool("metrics-allow-remote") ?? false
        if let s = top.string("metrics") {
            if let why = checks.metricsAddress(s, config.metricsAllowRemote) { top.fail("metrics", why) } else { config.metrics = s }
        }
        config.stateDirectory = DaemonConfig.defaultStateDirectory
        if let s = top.string("state-dir") {
            if s.hasPrefix("/") { config.stateDirectory = s } else { top.fail("state-dir", "must be an absolute path") }
        }
        if let bridges = top.tableArray("bridges") {
            for (i, t) in bridges.enumerated() {
                config.bridges.append(parseBridge(t, index: i, issues: issues))
            }
        }
        if let vms = top.tableArray("vms") {
            for (i, t) in vms.enumerated() {
                config.bridges.append(parseVMAttachment(t, index: i, issues: issues))
            }
        }
        top.finish()
        if config.bridges.isEmpty && !issues.has(path: "bridges") && !issues.has(path: "vms") {
            issues.add("bridges", "no bridge declared (add a [[bridges]] table with [[bridges.ports]], or a [[vms]] table)")
        }
        checkCrossReferences(config, issues)
        return (config, issues.list)
    }

    /// The control socket of a daemon whose file says nothing else (ControlProtocol.defaultSocketPath).
    public static let defaultControlSocket = "/run/tapbridge/control.sock"

    static func parseBridge(_ t: TOMLTable, index: Int, issues: IssueList) -> BridgeConfig {
        let path = "bridges[\(index)]"
        var r = KeyReader(t, path: path, issues: issues)
        let name = r.string("name") ?? "br\(index)"
        if name.isEmpty { r.fail("name", "must not be empty") }

        let pipeline = parsePipeline(&r, path: path, issues: issues)
        let spanningTree = parseSpanningTree(&r)
        if spanningTree != nil && !pipeline.contains(where: { $0.name == "learning-switch" }) {
            r.fail("stp", "the spanning tree gates the learning switch: add 'learning-switch' to \(path).pipeline")
        }
        var ports: [PortConfig] = []
        if let arr = r.tableArray("ports") {
            for (i, pt) in arr.enumerated() { ports.append(parsePort(pt, path: "\(path).ports[\(i)]", issues: issues)) }
            if ports.count > PortSet.capacity { r.fail("ports", "at most \(PortSet.capacity) ports per bridge") }
        }
        r.finish()
        var bridge = BridgeConfig(name: name, pipeline: pipeline, ports: ports, path: path)
        bridge.spanningTree = spanningTree
        return bridge
    }

    /// `pipeline = [...]` and the tables of the handler kinds it names (HandlerRegistry). Without
    /// `pipeline`: a filter if `[bridges.filter]` is there, then the learning switch.
    static func parsePipeline(_ r: inout KeyReader, path: String, issues: IssueList) -> [HandlerConfig] {
        let known = HandlerRegistry.names
        var tables: [String: TOMLTable] = [:]
        for name in known { if let t = r.table(name) { tables[name] = t } }
        var order: [String]
        if let p = r.stringArray("pipeline") {
            order = []
            for (i, h) in p.enumerated() {
                if !known.contains(h) {
                    r.fail("pipeline[\(i)]", "unknown handler '\(h)' (one of: \(known.joined(separator: ", ")))\(suggestion(h, known))")
                } else if order.contains(h) {
                    r.fail("pipeline[\(i)]", "handler '\(h)' listed twice")
                } else { order.append(h) }
            }
            for name in known where tables[name] != nil && !order.contains(name) {
                r.fail(name, "configured but not in \(path).pipeline")
            }
        } else {
            order = (tables["filter"] != nil ? ["filter"] : []) + ["learning-switch"]
            for name in known where tables[name] != nil && !order.contains(name) {
                r.fail(name, "configured but not in \(path).pipeline (a bridge without 'pipeline' runs: \(order.joined(separator: ", ")))")
            }
        }
        return order.compactMap { parseHandler($0, table: tables[$0], path: "\(path).\($0)", issues: issues) }
    }

    /// One handler kind's table read by the kind's own parser (an absent table: defaults).
    static func parseHandler(_ name: String, table: TOMLTable?, path: String, issues: IssueList) -> HandlerConfig? {
        guard let kind = HandlerRegistry.kind(named: name) else { return nil }
        var keys = KeyReader(table ?? TOMLTable(), path: path, issues: issues)
        let settings = kind.parse(&keys)
        keys.finish()
        return HandlerConfig(name: name, settings: settings, path: path)
    }

    /// One `[[bridges.ports]]` table (also a control socket's `port add` arguments): the keys
    /// every port has, and its kind's own (`parsePortKind`).
    public static func parsePort(_ t: TOMLTable, path: String, issues: IssueList) -> PortConfig {
        var r = KeyReader(t, path: path, issues: issues)
        let name = r.string("name", required: true) ?? ""
        var p = PortConfig(name: name, path: path)
        p.kind = parsePortKind(r.string("kind") ?? "macvtap", name: name, &r)
        if let i = r.bool("isolated") { p.isolated = i }
        if let h = r.bool("hairpin") { p.hairpin = h }
        if let s = r.bool("stp") { p.spanningTree = s }
        p.spanningTreeOptions = parseSpanningTreePortOptions(&r)
        p.switchGuards = parseSwitchGuardKeys(&r)
        parseVLANKeys(&r, into: &p, issues: issues)
        r.finish()
        return p
    }

    /// The keys of port kind `kind` (`kind = "..."`), one case per PortKind: a new kind adds its
    /// case here and its keys' parser below.
    static func parsePortKind(_ kind: String, name: String, _ r: inout KeyReader) -> PortKind {
        switch kind {
        case "vm":
            if !name.isEmpty, let why = invalidVMName(name) { r.fail("name", why) }
            let vm = parseVMKeys(&r, requireMAC: false)
            for key in macvtapOnlyKeys where r.value(key) != nil {
                r.fail(key, "not used by a vm port (kind = 'vm'); it is a macvtap setting")
            }
            return .vm(vm)
        case "tap":
            if !name.isEmpty, let why = invalidInterfaceName(name) { r.fail("name", why) }
            return .tap(parseTapKeys(&r, name: name))
        case "host":
            if !name.isEmpty, let why = invalidInterfaceName(name) { r.fail("name", why) }
            return .host(parseHostKeys(&r))
        case "vhost-user":
            if !name.isEmpty, let why = invalidVMName(name) { r.fail("name", why) }
            let v = parseVhostUserKeys(&r, requireMAC: false)
            for key in macvtapOnlyKeys where key != "queues" && key != "offloads" && key != "mode" && r.value(key) != nil {
                r.fail(key, "not used by a vhost-user port (kind = 'vhost-user'); it is a macvtap setting")
            }
            return .vhostUser(v)
        case "vxlan":
            if !name.isEmpty, let why = invalidInterfaceName(name) { r.fail("name", why) }
            return .vxlan(parseVxlanKeys(&r, name: name))
        default:
            if kind != "macvtap" {
                r.fail("kind", "unknown port kind '\(kind)' (one of: \(PortKind.names.joined(separator: ", ")))\(suggestion(kind, PortKind.names))")
            }
            if !name.isEmpty, let why = invalidInterfaceName(name) { r.fail("name", why) }
            return .macvtap(parseMacvtapKeys(&r, name: name))
        }
    }

    static let macvtapOnlyKeys = ["netns", "queues", "offloads", "parent", "mode", "mtu", "nopromisc", "source-macs"]

    /// The keys of a macvtap port: namespace, queues, offloads, and how the daemon creates it.
    static func parseMacvtapKeys(_ r: inout KeyReader, name: String) -> MacvtapPortConfig {
        var p = MacvtapPortConfig()
        if let ns = r.string("netns") {
            if ns.isEmpty || ns.contains("/") || ns == "." || ns == ".." { r.fail("netns", "invalid namespace name '\(ns)'") }
            p.netns = ns
        }
        if let q = r.int("queues", in: 1...16) { p.queues = q }
        if let o = r.bool("offloads") { p.offloads = o }

        // Creation keys only make sense when the daemon creates the link.
        let parent = r.string("parent")
        let modeText = r.string("mode")
        let mac = r.mac("mac")
        let mtu = r.int("mtu", in: 68...65535)
        let nopromisc = r.bool("nopromisc")
        let sourceMACs = r.macArray("source-macs")
        if let parent {
            if parent.isEmpty { r.fail("parent", "must not be empty") }
            else if let why = invalidInterfaceName(parent) { r.fail("parent", why) }
            var c = LinkCreation(parent: parent)
            if let modeText {
                if let m = MacvtapMode(rawValue: modeText) { c.mode = m } else {
                    r.fail("mode", "unknown mode '\(modeText)' (one of: \(MacvtapMode.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
            }
            c.mac = mac
            c.mtu = mtu
            if let nopromisc {
                if nopromisc && c.mode != .passthru {
                    r.fail("nopromisc", "only with mode 'passthru' (mode is '\(c.mode.rawValue)')")
                }
                c.nopromisc = nopromisc
            }
            if let sourceMACs {
                if c.mode != .source { r.fail("source-macs", "only with mode 'source' (mode is '\(c.mode.rawValue)')") }
                c.sourceMACs = sourceMACs
            }
            p.create = c
        } else {
            for (key, present) in [("mode", modeText != nil), ("mac", mac != nil), ("mtu", mtu != nil),
                                   ("nopromisc", nopromisc != nil), ("source-macs", sourceMACs != nil)] where present {
                r.fail(key, "only for a macvtap the daemon creates: set 'parent' too (without it '\(name)' must already exist)")
            }
        }
        return p
    }

    /// The keys of a tap port (also the VM of a `[[vms]]` entry with `tap`): who may attach,
    /// the VMM's queue count, the macvtap tapbridge reads, and the VM's MAC and addresses.
    static func parseTapKeys(_ r: inout KeyReader, name: String, macvtapKey: String = "macvtap") -> TapPortConfig {
        let defaultMacvtap = "mt" + name
        var t = TapPortConfig(macvtap: r.string(macvtapKey) ?? defaultMacvtap)
        if !name.isEmpty, let why = invalidInterfaceName(t.macvtap) {
            r.fail(macvtapKey, r.table[macvtapKey] == nil ? "default name: \(why); set '\(macvtapKey)'" : why)
        }
        if t.macvtap == name { r.fail(macvtapKey, "must differ from the tap's name '\(name)'") }
        t.user = r.nameOrID("user")
        t.group = r.nameOrID("group")
        if let q = r.int("queues", in: 1...16) { t.queues = q }
        t.mtu = r.int("mtu", in: 68...65535)
        if let o = r.bool("offloads") { t.offloads = o }
        t.mac = r.mac("mac")
        if let a = r.bool("anti-spoofing") {
            t.antiSpoofing = a
            if a && t.mac == nil { r.fail("anti-spoofing", "needs 'mac' (the MAC the VM is assigned)") }
        }
        if let list = r.stringArray("addresses") {
            if list.isEmpty { r.fail("addresses", "empty: leave the key out to skip the ARP/IP source checks") }
            var parsed = SourceAddresses()
            for (i, a) in list.enumerated() { if let why = parsed.add(a) { r.fail("addresses[\(i)]", why) } }
            t.addresses = list
        }
        return t
    }

    /// The keys of a host port: its addresses (with prefix length), MTU and MAC.
    static func parseHostKeys(_ r: inout KeyReader) -> HostPortConfig {
        var h = HostPortConfig()
        if let list = r.stringArray("addresses") {
            for (i, a) in list.enumerated() {
                if let why = invalidInterfaceAddress(a) { r.fail("addresses[\(i)]", why) }
            }
            h.addresses = list
        }
        h.mtu = r.int("mtu", in: 68...65535)
        h.mac = r.mac("mac")
        if let mac = h.mac, mac.isMulticast || mac == .zero { r.fail("mac", "must be a unicast, non-zero MAC") }
        return h
    }

    /// Why `text` is no "ADDRESS/PREFIX" interface address, or nil.
    static func invalidInterfaceAddress(_ text: String) -> String? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return "'\(text)' is not ADDRESS/PREFIX (e.g. 198.18.0.254/24)" }
        var v4 = in_addr(), v6 = in6_addr()
        let host = String(parts[0])
        let maxPrefix: Int
        if inet_pton(AF_INET, host, &v4) == 1 { maxPrefix = 32 } else if inet_pton(AF_INET6, host, &v6) == 1 { maxPrefix = 128 } else {
            return "'\(host)' is not an IPv4 or IPv6 address"
        }
        guard let p = Int(parts[1]), p >= 0, p <= maxPrefix, parts[1].allSatisfy(\.isNumber) else {
            return "prefix length '\(parts[1])' is not 0–\(maxPrefix)"
        }
        return nil
    }

    /// VLAN membership keys (any port kind).
    static func parseVLANKeys(_ r: inout KeyReader, into p: inout PortConfig, issues: IssueList) {
        let path = r.path
        // VLAN membership; `vlan` may be left out when pvid/allowed make it obvious.
        let vlanText = r.string("vlan")
        let pvid = r.int("pvid", in: 1...4094)
        let allowed = r.vlanList("allowed")
        let native = r.int("native", in: 1...4094)
        let mode = vlanText ?? (pvid != nil ? "access" : (allowed != nil || native != nil) ? "trunk" : "unaware")
        switch mode {
        case "unaware":
            for (k, present) in [("pvid", pvid != nil), ("allowed", allowed != nil), ("native", native != nil)] where present {
                r.fail(k, "not used with vlan = 'unaware'")
            }
        case "access":
            if allowed != nil { r.fail("allowed", "not used with vlan = 'access' (that is a trunk key)") }
            if native != nil { r.fail("native", "not used with vlan = 'access' (use pvid)") }
            if let pvid { p.vlan = .access(pvid: UInt16(pvid)) } else if !issues.has(path: path + ".pvid") {
                r.fail("pvid", "required with vlan = 'access'")
            }
        case "trunk":
            if pvid != nil { r.fail("pvid", "not used with vlan = 'trunk' (use native for untagged frames)") }
            let set = allowed ?? VLANSet()
            if allowed == nil && native == nil && !issues.has(path: path + ".allowed") {
                r.fail("allowed", "required with vlan = 'trunk'")
            }
            p.vlan = .trunk(allowed: set, native: native.map { UInt16($0) })
        default:
            r.fail("vlan", "must be 'unaware', 'access' or 'trunk', not '\(mode)'")
        }
    }

    /// The keys of a VM socket (a `kind = "vm"` port or a `[[vms]]` entry).
    static func parseVMKeys(_ r: inout KeyReader, requireMAC: Bool) -> VMPortConfig {
        var vm = VMPortConfig()
        if let s = r.string("socket") {
            if let m = VMSocketMode(rawValue: s) { vm.socket = m } else {
                let all = VMSocketMode.allCases.map(\.rawValue)
                r.fail("socket", "unknown socket mode '\(s)' (one of: \(all.joined(separator: ", ")))\(suggestion(s, all))")
            }
        }
        vm.path = r.string("path", required: true) ?? ""
        vm.remotePath = r.string("remote-path")
        if vm.socket == .dgram && vm.remotePath == nil {
            r.fail("remote-path", "required with socket = 'dgram' (QEMU's local.path)")
        } else if vm.socket != .dgram && vm.remotePath != nil {
            r.fail("remote-path", "only with socket = 'dgram'")
        }
        vm.owner = r.nameOrID("owner")
        vm.group = r.nameOrID("group")
        if let m = r.fileMode("socket-mode") { vm.socketMode = m }
        if vm.socket == .streamClient {
            for key in ["owner", "group", "socket-mode"] where r.table[key] != nil {
                r.fail(key, "not used with socket = 'stream-client' (QEMU creates that socket file)")
            }
        }
        if let n = r.int("max-frame", in: 60...VMPortConfig.maxFrameLimit) { vm.maxFrame = n }
        vm.mac = r.mac("mac", required: requireMAC)
        if let a = r.bool("anti-spoofing") {
            vm.antiSpoofing = a
            if a && vm.mac == nil && !requireMAC { r.fail("anti-spoofing", "needs 'mac' (the MAC the VM is assigned)") }
        }
        if let list = r.stringArray("addresses") {
            if list.isEmpty { r.fail("addresses", "empty: leave the key out to skip the ARP/IP source checks") }
            var parsed = SourceAddresses()
            for (i, a) in list.enumerated() { if let why = parsed.add(a) { r.fail("addresses[\(i)]", why) } }
            vm.addresses = list
        }
        return vm
    }

    /// The keys of a vhost-user port: the socket (path, mode, owner/group/socket-mode), queue
    /// pairs, offloads, and the guest's identity (mac, anti-spoofing, addresses) as a vm port has.
    static func parseVhostUserKeys(_ r: inout KeyReader, requireMAC: Bool) -> VhostUserPortConfig {
        var v = VhostUserPortConfig()
        if let m = r.string("mode") {
            if let mode = VhostUserMode(rawValue: m) { v.mode = mode } else {
                let all = VhostUserMode.allCases.map(\.rawValue)
                r.fail("mode", "unknown vhost-user mode '\(m)' (one of: \(all.joined(separator: ", ")))\(suggestion(m, all))")
            }
        }
        if let q = r.int("queues", in: 1...16) { v.queues = q }
        if let o = r.bool("offloads") { v.offloads = o }
        var g = VMPortConfig()
        g.socket = v.mode == .client ? .streamClient : .streamServer
        g.path = r.string("path", required: true) ?? ""
        g.owner = r.nameOrID("owner")
        g.group = r.nameOrID("group")
        if let m = r.fileMode("socket-mode") { g.socketMode = m }
        if v.mode == .client {
            for key in ["owner", "group", "socket-mode"] where r.table[key] != nil {
                r.fail(key, "not used with mode = 'client' (the VMM creates that socket file)")
            }
        }
        g.maxFrame = VMPortConfig.maxFrameLimit
        g.mac = r.mac("mac", required: requireMAC)
        if let a = r.bool("anti-spoofing") {
            g.antiSpoofing = a
            if a && g.mac == nil && !requireMAC { r.fail("anti-spoofing", "needs 'mac' (the MAC the VM is assigned)") }
        }
        if let list = r.stringArray("addresses") {
            if list.isEmpty { r.fail("addresses", "empty: leave the key out to skip the ARP/IP source checks") }
            var parsed = SourceAddresses()
            for (i, a) in list.enumerated() { if let why = parsed.add(a) { r.fail("addresses[\(i)]", why) } }
            g.addresses = list
        }
        v.guest = g
        return v
    }

    /// A `[[vms]]` entry: the VM's socket port and a bridge-mode macvtap with the VM's MAC on
    /// `parent`, alone in a bridge named `vm-NAME` (no switch: two ports), anti-spoofing on.
    static func parseVMAttachment(_ t: TOMLTable, index: Int, issues: IssueList) -> BridgeConfig {
        let path = "vms[\(index)]"
        var r = KeyReader(t, path: path, issues: issues)
        let name = r.string("name", required: true) ?? ""
        if !name.isEmpty, let why = invalidVMName(name) { r.fail("name", why) }
        let tapName = r.string("tap")
        var vmPort: PortConfig
        var vmMAC: MACAddress?
        if let tapName {
            // The VM attaches to a tap by name: a tap port instead of a socket.
            if let why = invalidInterfaceName(tapName) { r.fail("tap", why) }
            for key in ["socket", "path", "remote-path", "owner", "socket-mode", "max-frame"] where r.table[key] != nil {
                r.fail(key, "not used with 'tap' (the VM attaches to the tap, not to a socket)")
            }
            let t = parseTapKeys(&r, name: tapName, macvtapKey: "tap-macvtap")
            if t.mac == nil { r.fail("mac", "required") }
            vmMAC = t.mac
            vmPort = PortConfig(name: tapName, kind: .tap(t), path: path)
            vmPort.nameKey = "tap"
        } else if r.table["socket"]?.string == "vhost-user" {
            // socket = "vhost-user": the VM's port is a vhost-user back-end (mode server|client).
            _ = r.string("socket")
            let v = parseVhostUserKeys(&r, requireMAC: true)
            vmMAC = v.guest.mac
            vmPort = PortConfig(name: name, kind: .vhostUser(v), path: path)
        } else {
            let vm = parseVMKeys(&r, requireMAC: true)
            vmMAC = vm.mac
            vmPort = PortConfig(name: name, kind: .vm(vm), path: path)
        }
        if let i = r.bool("isolated") { vmPort.isolated = i }

        let macvtapName = r.string("macvtap") ?? "mv" + name
        var macvtap = MacvtapPortConfig()
        var tap = PortConfig(name: macvtapName, path: path)
        tap.nameKey = "macvtap"
        if let why = invalidInterfaceName(macvtapName) {
            r.fail("macvtap", r.table["macvtap"] == nil ? "default name: \(why); set 'macvtap'" : why)
        }
        // Frames from a socket VM carry no vnet header: the macvtap gets none either (the kernel
        // segments GSO traffic from the LAN before it reaches the queue). A tap VM has one; a
        // vhost-user guest takes the virtio-net header: GSO frames cross whole (its `offloads`).
        macvtap.offloads = vmPort.tap?.offloads ?? vmPort.vhostUser?.offloads ?? r.bool("offloads") ?? false
        if let parent = r.string("parent", required: true) {
            if let why = parent.isEmpty ? "must not be empty" : invalidInterfaceName(parent) { r.fail("parent", why) }
            var c = LinkCreation(parent: parent)
            c.mode = .bridge
            c.mac = vmMAC
            c.mtu = vmPort.tap?.mtu ?? r.int("mtu", in: 68...65535)
            macvtap.create = c
        }
        tap.kind = .macvtap(macvtap)
        var pipeline: [HandlerConfig] = []
        if let ft = r.table("filter"), let f = parseHandler("filter", table: ft, path: path + ".filter", issues: issues) { pipeline.append(f) }
        r.finish()
        var b = BridgeConfig(name: "vm-" + name, pipeline: pipeline, ports: [vmPort, tap], path: path)
        b.isVMAttachment = true
        return b
    }

    /// Checks that need the whole file: duplicates and references between sections.
    public static func checkCrossReferences(_ config: DaemonConfig, _ issues: IssueList) {
        var bridgeNames: [String: String] = [:]
        var portNames: [String: String] = [:]    // "netns/name" -> path
        var macs: [MACAddress: String] = [:]
        var sockets: [String: String] = [:]   // socket file -> path of the port using it
        var parentsUsed: [String: (String, MacvtapMode)] = [:]
        for b in config.bridges {
            if let first = bridgeNames[b.name] {
                issues.add(b.path + ".name", "bridge '\(b.name)' already declared at \(first)")
            } else { bridgeNames[b.name] = b.path }
            let hostPorts = b.ports.filter { $0.host != nil }
            if hostPorts.count > 1 {
                issues.add(hostPorts[1].path + ".kind", "at most one host port per bridge ('\(hostPorts[0].name)' is one already)")
            }
            for p in b.ports where !p.name.isEmpty {
                if let t = p.tap {
                    let key = "/" + t.macvtap
                    let k = p.nameKey == "tap" ? "tap-macvtap" : "macvtap"
                    if let first = portNames[key] { issues.add(p.path + "." + k, "interface '\(t.macvtap)' already declared at \(first)") }
                    else { portNames[key] = p.path + "." + k }
                }
                let key = (p.netns ?? "") + "/" + p.name
                if let first = portNames[key] {
                    issues.add(p.path + "." + p.nameKey, "port '\(p.name)' already declared at \(first)")
                } else { portNames[key] = p.path }
                if let vm = p.guest {
                    for (k, file) in [("path", vm.path), ("remote-path", vm.remotePath ?? "")] where !file.isEmpty {
                        if let first = sockets[file] { issues.add("\(p.path).\(k)", "socket '\(file)' already used at \(first)") }
                        else { sockets[file] = "\(p.path).\(k)" }
                    }
                }
                guard let c = p.create else { continue }
                if let mac = c.mac {
                    if let first = macs[mac] { issues.add(p.path + ".mac", "MAC \(mac) already used at \(first)") } else { macs[mac] = p.path }
                }
                if let (first, firstMode) = parentsUsed[c.parent] {
                    if c.mode == .passthru || firstMode == .passthru {
                        issues.add(p.path + ".parent", "mode 'passthru' allows one sub-interface per lower device: '\(c.parent)' is already used at \(first)")
                    }
                } else { parentsUsed[c.parent] = (p.path, c.mode) }
            }
            // What each handler kind checks against its bridge (ports named in its settings).
            for h in b.pipeline {
                HandlerRegistry.kind(named: h.name)?.check(h.settings, HandlerSetup(bridge: b, path: h.path), issues)
            }
        }
    }

    /// Why `name` cannot be a Linux interface name, or nil.
    static func invalidInterfaceName(_ name: String) -> String? {
        if name.utf8.count > 15 { return "interface name '\(name)' is longer than 15 characters" }
        if name == "." || name == ".." || name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) {
            return "invalid interface name '\(name)'"
        }
        return nil
    }

    /// Why `name` cannot name a VM / vm port (it is no interface: longer names are fine), or nil.
    static func invalidVMName(_ name: String) -> String? {
        if name.utf8.count > 64 { return "name '\(name)' is longer than 64 characters" }
        if name.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "=" }) { return "invalid name '\(name)' (no spaces, '/' or '=')" }
        return nil
    }

    /// " (did you mean 'x'?)" when a close candidate exists.
    static func suggestion(_ word: String, _ candidates: [String]) -> String {
        let best = candidates.map { ($0, editDistance(word, $0)) }.min { $0.1 < $1.1 }
        guard let (c, d) = best, d <= max(2, word.count / 3) else { return "" }
        return " (did you mean '\(c)'?)"
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var prev = Array(0...b.count)
        for i in 1...a.count {
            var cur = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return prev[b.count]
    }
}

/// Issues collected while reading one file (a handler kind's `check` adds to it).
public final class IssueList {
    public let file: String
    public private(set) var list: [ConfigIssue] = []
    public init(file: String) { self.file = file }
    /// Records a problem at key path `path` (`bridges[0].filter.ports`). Control characters in a
    /// key (or a value quoted in the reason) are shown escaped: a message must not carry them to
    /// a terminal or a log.
    public func add(_ path: String, _ reason: String) {
        list.append(ConfigIssue(file: file, path: TextSafety.escaped(path, escapingBackslash: false),
                                reason: TextSafety.escaped(reason, escapingBackslash: false)))
    }
    public func has(path: String) -> Bool { list.contains { $0.path == path } }
    /// Throws `ConfigError` if anything was recorded.
    public func throwIfAny() throws { if !list.isEmpty { throw ConfigError(list) } }
}

/// Reads the keys of one TOML table, remembering which were read so the rest can be refused.
/// A handler kind's parser gets one for its table: every getter records the key as known and
/// reports a wrong type or range at the key's path.
public struct KeyReader {
    let table: TOMLTable
    /// The table's key path (`bridges[0].filter`).
    public let path: String
    let issues: IssueList
    private(set) var known: [String] = []

    init(_ table: TOMLTable, path: String, issues: IssueList) { self.table = table; self.path = path; self.issues = issues }

    /// The full path of `key` in this table.
    public func at(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    /// Reports a problem with `key`'s value.
    public func fail(_ key: String, _ reason: String) { issues.add(at(key), reason) }
    /// Whether the table has `key` (does not mark it read).
    public func contains(_ key: String) -> Bool { table[key] != nil }

    /// The raw value, recording `key` as known; reports a missing required key.
    mutating func value(_ key: String, required: Bool = false) -> TOMLValueConvertible? {
        known.append(key)
        let v = table[key]
        if v == nil && required { fail(key, "required key is missing") }
        return v
    }

    private func typeError(_ key: String, expected: String, got v: TOMLValueConvertible) {
        fail(key, "expected \(expected), found \(Self.describe(v))")
    }

    static func describe(_ v: TOMLValueConvertible) -> String {
        switch v.type {
        case .string: return "string \"\(v.string ?? "")\""
        case .int: return "integer \(v.int ?? 0)"
        case .bool: return "boolean \(v.bool ?? false)"
        case .double: return "number \(v.double ?? 0)"
        case .table: return "a table"
        case .array: return "an array"
        default: return v.type.description
        }
    }

    public mutating func string(_ key: String, required: Bool = false) -> String? {
        guard let v = value(key, required: required) else { return nil }
        guard let s = v.string else { typeError(key, expected: "a string", got: v); return nil }
        return refusingControls(s, key)
    }

    /// `s`, or nil (and an issue naming `key`) if it holds a control character: no name, path,
    /// rule or other string of the configuration has a use for one.
    func refusingControls(_ s: String, _ key: String) -> String? {
        if let why = TextSafety.controlProblem(s, what: "the value") { fail(key, why); return nil }
        return s
    }

    public mutating func bool(_ key: String) -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.bool else { typeError(key, expected: "true or false", got: v); return nil }
        return b
    }

    public mutating func int(_ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let v = value(key) else { return nil }
        guard let n = v.int else { typeError(key, expected: "an integer", got: v); return nil }
        guard range.contains(n) else { fail(key, "\(n) is out of range \(range.lowerBound)...\(range.upperBound)"); return nil }
        return n
    }

    /// An integer or floating-point number.
    public mutating func number(_ key: String, in range: ClosedRange<Double>) -> Double? {
        guard let v = value(key) else { return nil }
        guard let n = v.double ?? v.int.map(Double.init) else { typeError(key, expected: "a number", got: v); return nil }
        guard range.contains(n) else { fail(key, "\(n) is out of range \(range.lowerBound)...\(range.upperBound)"); return nil }
        return n
    }

    mutating func table(_ key: String) -> TOMLTable? {
        guard let v = value(key) else { return nil }
        guard let t = v.table else { typeError(key, expected: "a table", got: v); return nil }
        return t
    }

    /// An array of tables (`[[key]]`).
    mutating func tableArray(_ key: String) -> [TOMLTable]? {
        guard let v = value(key) else { return nil }
        guard let a = v.array else { typeError(key, expected: "an array of tables ([[\(at(key))]])", got: v); return nil }
        var out: [TOMLTable] = []
        for i in 0..<a.count {
            guard let t = a[i].table else { fail("\(key)[\(i)]", "expected a table, found \(Self.describe(a[i]))"); continue }
            out.append(t)
        }
        return out
    }

    public mutating func stringArray(_ key: String) -> [String]? {
        guard let v = value(key) else { return nil }
        guard let a = v.array else { typeError(key, expected: "an array of strings", got: v); return nil }
        var out: [String] = []
        for i in 0..<a.count {
            guard let s = a[i].string else { fail("\(key)[\(i)]", "expected a string, found \(Self.describe(a[i]))"); continue }
            guard let ok = refusingControls(s, "\(key)[\(i)]") else { continue }
            out.append(ok)
        }
        return out
    }

    public mutating func mac(_ key: String, required: Bool = false) -> MACAddress? {
        guard let v = value(key, required: required) else { return nil }
        guard let s = v.string else { typeError(key, expected: "a MAC address string", got: v); return nil }
        return Self.parseMAC(s, fail: { fail(key, $0) })
    }

    public mutating func macArray(_ key: String) -> [MACAddress]? {
        guard let strings = stringArray(key) else { return nil }
        return strings.enumerated().compactMap { i, s in Self.parseMAC(s, fail: { fail("\(key)[\(i)]", $0) }) }
    }

    static func parseMAC(_ s: String, fail: (String) -> Void) -> MACAddress? {
        guard let m = MACAddress(s) else { fail("invalid MAC '\(s)' (expected six hex octets like 52:54:00:12:34:56)"); return nil }
        if m == .zero { fail("invalid MAC '\(s)': all zero"); return nil }
        if m.isMulticast { fail("invalid MAC '\(s)': multicast bit set (first octet must be even)"); return nil }
        return m
    }

    /// A user or group: a name or a numeric id.
    public mutating func nameOrID(_ key: String) -> String? {
        guard let v = value(key) else { return nil }
        if let s = v.string, !s.isEmpty { return refusingControls(s, key) }
        if let n = v.int, n >= 0, n <= Int(UInt32.max - 1) { return String(n) }
        typeError(key, expected: "a name or a numeric id", got: v); return nil
    }

    /// Permission bits: an integer (`0o660`) or an octal string (`"0660"`), at most 0o777.
    public mutating func fileMode(_ key: String) -> UInt32? {
        guard let v = value(key) else { return nil }
        let n: Int?
        if let i = v.int { n = i } else if let s = v.string { n = Int(s, radix: 8) } else { n = nil }
        guard let n, (0...0o777).contains(n) else {
            fail(key, "expected permission bits like 0o660 or \"0660\", found \(Self.describe(v))"); return nil
        }
        return UInt32(n)
    }

    /// VLAN IDs as integers or "from-to" ranges: `[10, 20, "100-199"]`.
    public mutating func vlanList(_ key: String) -> VLANSet? {
        guard let v = value(key) else { return nil }
        guard let a = v.array else { typeError(key, expected: "an array of VLAN IDs", got: v); return nil }
        var set = VLANSet()
        for i in 0..<a.count {
            let e = a[i]
            if let n = e.int {
                guard (1...4094).contains(n) else { fail("\(key)[\(i)]", "VLAN \(n) is out of range 1...4094"); continue }
                set.insert(UInt16(n))
            } else if let s = e.string {
                let parts = s.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard parts.count == 2, let lo = parts[0], let hi = parts[1], 1 <= lo, lo <= hi, hi <= 4094 else {
                    fail("\(key)[\(i)]", "invalid VLAN range '\(s)' (expected \"FROM-TO\" within 1-4094)"); continue
                }
                for n in lo...hi { set.insert(UInt16(n)) }
            } else {
                fail("\(key)[\(i)]", "expected a VLAN ID or \"FROM-TO\" range, found \(Self.describe(e))")
            }
        }
        return set
    }

    /// An array of tables (`[[path.key]]`), each with its own reader (call `finish()` on each).
    public mutating func tables(_ key: String) -> [KeyReader]? {
        tableArray(key)?.enumerated().map { i, t in KeyReader(t, path: at("\(key)[\(i)]"), issues: issues) }
    }

    /// Refuses every key that was never read: a typo must not be silently ignored.
    public func finish() {
        for key in table.keys where !known.contains(key) {
            fail(key, "unknown key\(ConfigParser.suggestion(key, known))")
        }
    }
}
