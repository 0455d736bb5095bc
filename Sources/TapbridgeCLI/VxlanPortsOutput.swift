// VxlanPortsOutput: the tunnel lines `tapbridge ports` prints under its table for vxlan ports.
import Control

func printVxlanTunnels(_ ports: [PortStatus]) {
    let tunnels = ports.compactMap { p in p.vxlan.map { (p.name, $0) } }
    guard !tunnels.isEmpty else { return }
    print()
    var t = TextTable(["VXLAN", "VNI", "LOCAL", "DSTPORT", "UNDERLAY", "MTU", "MACVTAP", "LEARNING", "REMOTES", "FLOODING-TO"], right: [1, 3, 5])
    for (name, v) in tunnels {
        t.add([name, "\(v.vni)", v.local, "\(v.dstport)", v.underlay, v.mtu.map { "\($0)" } ?? "-", v.macvtap,
               v.learning ? "on" : "off", v.remotes, v.floodRemotes.map { $0.isEmpty ? "none" : $0.joined(separator: ",") } ?? "?"])
    }
    print(t.render())
}
