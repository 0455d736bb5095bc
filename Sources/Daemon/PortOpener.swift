// PortOpener: a configured port as the core's MacvtapPort, looked up in the namespace it lives
// in (its character device number comes from that namespace's sysfs; the device itself is then
// opened by number from anywhere).
import Datapath
import Tap

enum PortOpener {
    static func macvtap(_ p: PortConfig) throws -> MacvtapPort {
        let settings = PortSettings(vlan: p.vlan, isolated: p.isolated, hairpin: p.hairpin)
        let make = { try MacvtapPort(name: p.name, settings: settings, vnetHeader: p.offloads,
                                     offloads: p.offloads ? .all : []) }
        guard let ns = p.netns else { return try make() }
        return try inNamespace(ns, sysfs: true, make)
    }
}
