// SystemHost: HostInspector answered by the running kernel over rtnetlink (the Netlink module,
// in the link's namespace). Read-only.
import Control
import Foundation
import Netlink

public struct SystemHost: HostInspector {
    public init() {}

    public func namespaceExists(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: "/run/netns/\(name)")
    }

    /// nil also when the namespace cannot be entered (the validator reports the namespace).
    public func link(named name: String, netns: String?) -> HostLink? {
        guard let manager = try? LinkManager(namespace: netns.map { NetworkNamespace.named($0) }),
              let found = try? manager.link(named: name) else { return nil }
        return HostLink(name: found.name, ifindex: found.index, kind: found.kind ?? "")
    }

    public func upperLinks(of parent: String) -> [String] {
        let links = (try? LinkManager().links()) ?? []
        return links.filter { $0.isMacvlanFamily && $0.parentName == parent }.map(\.name).sorted()
    }

    public func groupExists(_ nameOrNumber: String) -> Bool { resolveGroup(nameOrNumber) != nil }

    public func adoptionDifference(_ port: PortConfig, spec: LinkCreation) -> String? {
        guard let info = try? LinkOps.link(name: port.name, netns: port.netns) else { return "it cannot be read" }
        return LinkLifecycle.adoptionDifference(info, port: port, spec: spec)
    }
}
