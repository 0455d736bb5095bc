// PortOpener: a configured port as the core's MacvtapPort. The link and its character device
// number are read over rtnetlink/sysfs in the namespace the port lives in (the Netlink module);
// the device itself is then opened by number, from the daemon's own namespace.
import Datapath
import Netlink
import Tap

enum PortOpener {
    static func macvtap(_ p: PortConfig) throws -> MacvtapPort {
        let settings = PortSettings(vlan: p.vlan, isolated: p.isolated, hairpin: p.hairpin)
        let manager = try LinkManager(namespace: p.netns.map { NetworkNamespace.named($0) })
        guard let link = try manager.link(named: p.name) else {
            throw DaemonError("no link '\(p.name)'\(p.netns.map { " in namespace '\($0)'" } ?? "")")
        }
        guard link.kind == "macvtap", let dev = link.tapDevice else {
            throw DaemonError("'\(p.name)' is not a macvtap (kind \(link.kind ?? "none"))")
        }
        let device = MacvtapDevice(name: p.name, ifindex: link.index, major: dev.major, minor: dev.minor)
        return MacvtapPort(device: device, settings: settings, vnetHeader: p.offloads, offloads: p.offloads ? .all : [])
    }
}
