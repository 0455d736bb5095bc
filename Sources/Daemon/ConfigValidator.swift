// ConfigValidator: checks a parsed configuration against the running host before anything is
// created: namespaces exist, parents exist, links to create do not exist yet, links to use do
// exist and are macvtaps, a passthru parent carries nothing else, VM socket paths and owners
// make sense here. Read-only. (What the file alone shows is checked by the Config module's
// parser; this is the part that asks the OS.)
import Config
import Frames

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
}

extension HostInspector {
    public func groupExists(_ nameOrNumber: String) -> Bool { true }
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
    /// Throws `ConfigError` listing every problem with `config` on this host.
    public static func validate(_ config: DaemonConfig, host: HostInspector) throws {
        let issues = IssueList(file: config.file)
        if let g = config.controlGroup, config.controlSocket?.isEmpty == false, !host.groupExists(g) {
            issues.add("control.group", "no group '\(g)' on this host")
        }
        var nsChecked: [String: Bool] = [:]
        for (_, p) in config.allPorts {
            if let vm = p.guest {
                for (key, path) in [("path", vm.path), ("remote-path", vm.remotePath ?? "")] where !path.isEmpty {
                    if let why = VMPortChecks.socketPathProblem(path, created: key == "path" && vm.socket != .streamClient) {
                        issues.add("\(p.path).\(key)", why)
                    }
                }
                if let o = vm.owner, VMPortChecks.userID(o) == nil { issues.add(p.path + ".owner", "no user '\(o)' on this host") }
                if let g = vm.group, VMPortChecks.groupID(g) == nil { issues.add(p.path + ".group", "no group '\(g)' on this host") }
                continue
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
                if host.link(named: p.name, netns: p.netns) != nil {
                    issues.add(p.path + "." + p.nameKey, "interface '\(p.name)' already exists\(where_); the daemon would create it\(p.nameKey == "name" ? " (remove 'parent' to use the existing link)" : "")")
                }
                let uppers = host.upperLinks(of: c.parent)
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
