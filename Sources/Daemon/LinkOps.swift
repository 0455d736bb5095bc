// LinkOps: the link operations the daemon needs (create a macvtap, delete a link, find one),
// in one place so the rest of the daemon does not care how they reach the kernel.
// INTERIM: iproute2 until the Netlink module lands on this branch; then these call Netlink.
import Foundation

enum LinkOps {
    static func createMacvtap(name: String, spec: LinkCreation, queues: Int, netns: String?) throws {
        var argv = ["ip", "link", "add", "link", spec.parent, "name", name]
        if let ns = netns { argv += ["netns", ns] }
        if let mac = spec.mac { argv += ["address", mac.description] }
        if let mtu = spec.mtu { argv += ["mtu", String(mtu)] }
        if queues > 1 { argv += ["numtxqueues", String(queues), "numrxqueues", String(queues)] }
        argv += ["type", "macvtap", "mode", spec.mode.rawValue]
        if spec.nopromisc { argv.append("nopromisc") }
        do { try command(argv) } catch {
            throw DaemonError("cannot create macvtap '\(name)' on '\(spec.parent)': \(error)")
        }
        let nsArgs = netns.map { ["-n", $0] } ?? []
        for mac in spec.sourceMACs {
            try command(["ip"] + nsArgs + ["link", "set", "link", "dev", name, "type", "macvtap", "macaddr", "add", mac.description])
        }
        try command(["ip"] + nsArgs + ["link", "set", name, "up"])
    }

    /// Deletes `name`; false if it did not exist.
    @discardableResult
    static func deleteLink(name: String, netns: String?) throws -> Bool {
        guard SystemHost().link(named: name, netns: netns) != nil else { return false }
        let nsArgs = netns.map { ["-n", $0] } ?? []
        try command(["ip"] + nsArgs + ["link", "del", name])
        return true
    }
}
