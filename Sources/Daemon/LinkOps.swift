// LinkOps: the link operations the daemon needs (create a macvtap, delete a link), over the
// Netlink module, in one place so the rest of the daemon does not care how they reach the kernel.
import Config
import Glibc
import Netlink

enum LinkOps {
    /// Creates the macvtap and returns it as read back in the namespace it lives in.
    @discardableResult
    static func createMacvtap(name: String, spec: LinkCreation, queues: Int, netns: String?) throws -> LinkInfo {
        guard let mode = MacvlanMode(rawValue: spec.mode.rawValue) else {
            throw DaemonError("cannot create macvtap '\(name)': unknown mode '\(spec.mode.rawValue)'")
        }
        let target = netns.map { NetworkNamespace.named($0) }
        let link = LinkSpec(kind: .macvtap, parent: spec.parent, name: name, mode: mode, noPromisc: spec.nopromisc,
                            address: spec.mac, mtu: spec.mtu.map { UInt32($0) },
                            txQueues: queues > 1 ? UInt32(queues) : nil, rxQueues: queues > 1 ? UInt32(queues) : nil,
                            up: true, namespace: target)
        do {
            let info = try LinkManager().create(link)
            // Every multicast group reaches the switch (and its IGMP/MLD snooping), not only
            // the groups in the macvtap's own filter (LinkMulticast.swift).
            try LinkManager(namespace: target).setAllMulticast(name: name, true)
            if !spec.sourceMACs.isEmpty {
                try LinkManager(namespace: target).sourceMACs(name: name, .set(spec.sourceMACs))
            }
            return info
        } catch let e as NetlinkError {
            // Half-made (e.g. the source list failed): do not leave it behind.
            if e.operation != .create { _ = try? LinkManager(namespace: target).delete(name: name) }
            throw DaemonError("\(e)")
        }
    }

    /// `name` in `netns` as the kernel reports it, nil if there is none.
    static func link(name: String, netns: String?) throws -> LinkInfo? {
        try LinkManager(namespace: netns.map { NetworkNamespace.named($0) }).link(named: name)
    }

    /// The name of link `index` in the daemon's namespace.
    static func rootLinkName(index: Int32) -> String? {
        (try? LinkManager().links())?.first { $0.index == index }?.name
    }

    /// Deletes `name`; false if it did not exist.
    @discardableResult
    static func deleteLink(name: String, netns: String?) throws -> Bool {
        let manager = try LinkManager(namespace: netns.map { NetworkNamespace.named($0) })
        guard try manager.link(named: name) != nil else { return false }
        do {
            try manager.delete(name: name)
        } catch let e as NetlinkError where e.errno == ENODEV {
            return false
        }
        return true
    }
}
