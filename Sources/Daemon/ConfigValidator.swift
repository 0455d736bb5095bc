// ConfigValidator: checks a parsed configuration against the running host before anything is
// created: namespaces exist, parents exist, links to create do not exist yet, links to use do
// exist and are macvtaps, a passthru parent carries nothing else, VM socket paths and owners
// make sense here, the control socket's path is usable. Read-only. (What the file alone shows is
// checked by the Config module's parser; this is the part that asks the OS or needs the port
// kinds' devices.)
import Config
import Foundation
import Frames
import Handlers

/// What the validator needs to know about the host. `SystemHost` answers from the kernel; tests
/// may answer from a table.
public protocol HostInspector {
    func namespaceExists(_ name: String) -> Bool
    /// The link `name` in namespace `netns` (nil: the daemon's own), or nil if there is none.
    func link(named name: String, netns: String?) -> HostLink?
    /// Names of macvlan/macvtap links whose lower device is `parent` (daemon's namespace).
    func upperLinks(of parent: String) -> [String]
    /// Whether a group (name or number) exists, for `control.group`.
    func groupExists(_ nameOrNumber: String) -> Bool
    /// For a link already there under the name of a port the daemon would create: nil when it is
    /// exactly what the port asks for (it is then adopted at start), else the difference.
    func adoptionDifference(_ port: PortConfig, spec: LinkCreation) -> String?
}

extension HostInspector {
    public func groupExists(_ nameOrNumber: String) -> Bool { true }
    public func adoptionDifference(_ port: PortConfig, spec: LinkCreation) -> String? { "not compared on this host" }
}

/// The facts the validator uses about one link.
public struct HostLink: Sendable, Equatable {
    public var name: String
    public var ifindex: Int32
    /// rtnetlink kind ("macvtap", "veth", ...); "" when it is known not to be a macvtap but
    /// nothing more; nil when unknown.
    public var kind: String?
    public init(name: String, ifindex: Int32, kind: String?) { self.name = name; self.ifindex = ifindex; self.kind = kind }
}

public enum ConfigValidator {
    /// `@anti-spoofing` rules of `f` that would judge a port with no assigned MAC, as (key path,
    /// reason). The built-in compares a frame's source with the ingress port's assigned MAC —
    /// a vm port's `mac`. A macvtap has none to offer: what tapbridge reads from it comes from
    /// every host beyond its parent, never from the macvtap's own address, so checking against
    /// that would drop everything, and checking nothing (what it did) lets spoofed frames pass
    /// without a word. Such a rule is refused naming the ports; `filter.ports` restricted to
    /// the guarded vm ports, or `@block-mac` / a pcap rule for the others, say what is meant.
    /// Also used for rules replaced at run time (control socket, SIGHUP) and ports added then.
    static func antiSpoofingProblems(_ f: FilterConfig, ports: [PortConfig]) -> [(String, String)] {
        guard f.direction != "egress" else { return [] }
        let indices = f.rules.indices.filter { i in
            if let r = try? FilterRule(parsing: f.rules[i]), case .builtin(.antiSpoofing) = r.match { return true }
            return false
        }
        guard !indices.isEmpty else { return [] }
        let judged = f.ports.isEmpty ? ports : ports.filter { f.ports.contains($0.name) }
        let unassigned = judged.filter { $0.guest?.mac == nil }
        guard !unassigned.isEmpty else { return [] }
        let names = unassigned.map { "'\($0.name)' (\($0.guest == nil ? "a macvtap" : "a \($0.kind.name) port without mac"))" }.joined(separator: ", ")
        let reason = "@anti-spoofing checks a frame's source against the port's assigned MAC, and "
            + (unassigned.count == 1 ? "port \(names) has none " : "ports \(names) have none ")
            + "(a macvtap's frames come from every host beyond its parent): list the guarded vm ports in filter.ports, "
            + "or use '@block-mac MAC' or a pcap rule such as 'not ether src MAC' for the others"
        return indices.map { ("\(f.path).rules[\($0)]", reason) }
    }

    /// Throws `ConfigError` listing every problem with `config` on this host.
    public static func validate(_ config: DaemonConfig, host: HostInspector) throws {
        let issues = IssueList(file: config.file)
        for b in config.bridges {
            for h in b.pipeline {
                guard let f = h.settings as? FilterConfig else { continue }
                for (path, reason) in antiSpoofingProblems(f, ports: b.ports) { issues.add(path, reason) }
            }
        }
        if let path = config.controlSocket, !path.isEmpty,
           let why = VMPortChecks.socketPathProblem(path, created: true, directoryCreated: true) {
            issues.add("control.socket", why)
        }
        if let g = config.controlGroup, config.controlSocket?.isEmpty == false, !host.groupExists(g) {
            issues.add("control.group", "no group '\(g)' on this host")
        }
        var nsChecked: [String: Bool] = [:]
        for (_, p) in config.allPorts {
            if let vm = p.guest {
                for (key, path) in [("path", vm.path), ("remote-path", vm.remotePath ?? "")] where !path.isEmpty {
                    // The state directory (/run/tapbridge) and the control socket's are made at
                    // start, before any VM socket is bound: a socket there may wait for them.
                    let dir = (path as NSString).deletingLastPathComponent
                    let madeAtStart = dir == config.stateDirectory
                        || config.controlSocket.map { !$0.isEmpty && ($0 as NSString).deletingLastPathComponent == dir } == true
                    let created = key == "path" && vm.socket != .streamClient
                    if let why = VMPortChecks.socketPathProblem(path, created: created, directoryCreated: created && madeAtStart) {
                        issues.add("\(p.path).\(key)", why)
                    }
                }
                if let o = vm.owner, VMPortChecks.userID(o) == nil { issues.add(p.path + ".owner", "no user '\(o)' on this host") }
                if let g = vm.group, VMPortChecks.groupID(g) == nil { issues.add(p.path + ".group", "no group '\(g)' on this host") }
                continue
            }
            switch p.kind {
            case .tap(let t):
                // The daemon creates the tap and its macvtap: neither may exist.
                for (key, n) in [(p.nameKey, p.name), (p.nameKey == "tap" ? "tap-macvtap" : "macvtap", t.macvtap)] {
                    if let l = host.link(named: n, netns: nil) {
                        issues.add("\(p.path).\(key)", "interface '\(n)' already exists\(l.kind.map { $0.isEmpty ? "" : " (a \($0))" } ?? ""); the daemon creates it")
                    }
                }
                if let u = t.user, VMPortChecks.userID(u) == nil { issues.add(p.path + ".user", "no user '\(u)' on this host") }
                if let g = t.group, VMPortChecks.groupID(g) == nil { issues.add(p.path + ".group", "no group '\(g)' on this host") }
                continue
            case .host:
                if let l = host.link(named: p.name, netns: nil) {
                    issues.add(p.path + ".name", "interface '\(p.name)' already exists\(l.kind.map { $0.isEmpty ? "" : " (a \($0))" } ?? ""); the daemon creates the host port")
                }
                continue
            case .vxlan(let v):
                for (key, problem) in VxlanLinks.hostProblems(p, v, host: host) { issues.add("\(p.path).\(key)", problem) }
                continue
            case .macvtap, .vm, .vhostUser:
                break
            }
            if let ns = p.netns {
                let ok = nsChecked[ns] ?? host.namespaceExists(ns)
                if nsChecked[ns] == nil, !ok {
                    issues.add(p.path + ".netns", "network namespace '\(ns)' does not exist (no /run/netns/\(ns); create it with `ip netns add \(ns)`)")
                }
                nsChecked[ns] = ok
                if !ok { continue }
            }
            let where_ = p.netns.map { " in namespace '\($0)'" } ?? ""
            if let c = p.create {
                guard let parent = host.link(named: c.parent, netns: nil) else {
                    issues.add(p.path + ".parent", "interface '\(c.parent)' does not exist")
                    continue
                }
                if parent.kind == "macvtap" || parent.kind == "macvlan" {
                    issues.add(p.path + ".parent", "'\(c.parent)' is itself a \(parent.kind!); a macvtap needs a lower device such as an Ethernet or veth interface")
                }
                // A link already there is adopted if it is exactly what the port asks for.
                var adoptable = false
                if host.link(named: p.name, netns: p.netns) != nil {
                    if let difference = host.adoptionDifference(p, spec: c) {
                        issues.add(p.path + "." + p.nameKey, "interface '\(p.name)' already exists\(where_) and is not what the port asks for (\(difference)); delete it, or \(p.nameKey == "name" ? "remove 'parent' to use the existing link as it is" : "change the port")")
                    } else {
                        adoptable = true
                    }
                }
                let uppers = host.upperLinks(of: c.parent).filter { !(adoptable && p.netns == nil && $0 == p.name) }
                if c.mode == .passthru, !uppers.isEmpty {
                    issues.add(p.path + ".parent", "mode 'passthru' allows one sub-interface per lower device: '\(c.parent)' already carries \(uppers.map { "'\($0)'" }.joined(separator: ", "))")
                }
            } else {
                guard let l = host.link(named: p.name, netns: p.netns) else {
                    issues.add(p.path + ".name", "interface '\(p.name)' does not exist\(where_) (set 'parent' to have the daemon create it)")
                    continue
                }
                if let k = l.kind, k != "macvtap" {
                    issues.add(p.path + ".name", "interface '\(p.name)'\(where_) is not a macvtap\(k.isEmpty ? "" : " (it is a \(k))")")
                }
            }
        }
        if !issues.list.isEmpty { throw ConfigError(issues.list) }
    }
}
