// PortOpener: a configured port as a core Port, one opener per PortKind case (a new kind adds
// its opener here and its case in EngineBinding.attach). A macvtap: the link and its character device
// number are read over rtnetlink/sysfs in the namespace the port lives in (the Netlink module);
// the device itself is then opened by number, from the daemon's own namespace. A vm port: the
// VMBackend port for its socket mode (a stream-server port creates its socket file now). A
// vhost-user port: VMBackend's VhostUserPort (its socket is made when it starts serving).
import Config
import Datapath
import Netlink
import Tap
import UnixSocketFiles
import VMBackend

enum PortOpener {
    static func macvtap(_ p: PortConfig) throws -> MacvtapPort {
        guard case .macvtap(let m) = p.kind else { throw DaemonError("'\(p.name)' is not a macvtap port") }
        let settings = PortSettings(vlan: p.vlan, isolated: p.isolated, hairpin: p.hairpin)
        let manager = try LinkManager(namespace: m.netns.map { NetworkNamespace.named($0) })
        guard let link = try manager.link(named: p.name) else {
            throw DaemonError("no link '\(p.name)'\(m.netns.map { " in namespace '\($0)'" } ?? "")")
        }
        guard link.kind == "macvtap", let dev = link.tapDevice else {
            throw DaemonError("'\(p.name)' is not a macvtap (kind \(link.kind ?? "none"))")
        }
        let device = MacvtapDevice(name: p.name, ifindex: link.index, major: dev.major, minor: dev.minor)
        return MacvtapPort(device: device, settings: settings, vnetHeader: m.offloads, offloads: m.offloads ? .all : [])
    }

    /// The VM socket port for `p` (a `.vm` port). `log`: the port's own messages (refused
    /// connections).
    static func vm(_ p: PortConfig, log: @escaping (String) -> Void) throws -> any Datapath.Port {
        guard case .vm(let vm) = p.kind else { throw DaemonError("'\(p.name)' is not a vm port") }
        let settings = PortSettings(vlan: p.vlan, isolated: p.isolated, hairpin: p.hairpin, assignedMAC: vm.mac)
        let limits = FrameLimits(maxFrame: vm.maxFrame)
        switch vm.socket {
        case .streamServer:
            return try VMStreamServerPort(name: p.name, path: vm.path, access: VMPortChecks.access(vm),
                                          settings: settings, limits: limits, log: log)
        case .streamClient:
            return VMStreamClientPort(name: p.name, path: vm.path, settings: settings, limits: limits, log: log)
        case .dgram:
            return VMDatagramPort(name: p.name, localPath: vm.path, remotePath: vm.remotePath ?? "",
                                  access: try VMPortChecks.access(vm), settings: settings, limits: limits, log: log)
        }
    }

    /// The vhost-user port for `p` (a `.vhostUser` port); it serves once `start`ed.
    static func vhostUser(_ p: PortConfig, log: @escaping @Sendable (String) -> Void) throws -> VhostUserPort {
        guard case .vhostUser(let v) = p.kind else { throw DaemonError("'\(p.name)' is not a vhost-user port") }
        let settings = PortSettings(vlan: p.vlan, isolated: p.isolated, hairpin: p.hairpin, assignedMAC: v.guest.mac)
        let access = v.mode == .server ? try VMPortChecks.access(v.guest) : SocketFileAccess()
        return VhostUserPort(name: p.name, path: v.guest.path, mode: v.mode == .server ? .server : .client, access: access,
                             settings: settings, offloads: v.offloads ? .all : [], queuePairs: v.queues, log: log)
    }
}
