// PortKinds: what kinds of port a bridge can have, each with its own keys. A port is its common
// part (name, VLAN membership, isolation) plus one `PortKind` case carrying the kind's settings.
// Adding a kind (vhost-user, tap, host) is: one case here with its settings struct, its key
// parser in ConfigParser.swift (`parsePortKind`), and its opener in Daemon/PortOpener.swift.
import Frames
import Handlers

/// One port of a bridge.
public struct PortConfig: Sendable, Equatable {
    /// The interface name (macvtap: created with this name, or looked up); for a port without a
    /// link (a `vm` port), a name for logs and counters.
    public var name: String
    /// The key that set `name` (`name`, or `macvtap` in a `[[vms]]` entry), for messages.
    public var nameKey = "name"
    /// What the port is, with the keys only that kind has.
    public var kind: PortKind
    public var vlan: VLANMode = .unaware
    public var isolated = false
    public var hairpin = false
    /// Whether the port takes part in its bridge's spanning tree (key `stp`, default true; only
    /// read when the bridge runs one). A port left out forwards at once and sends no BPDUs.
    public var spanningTree = true
    /// RSTP options (`stp-edge`, `stp-auto-edge`, `stp-point-to-point`).
    public var spanningTreeOptions = SpanningTreePortOptions()
    /// The learning switch's guards for this port (`max-macs`, `flood`, `storm-broadcast`, ...).
    public var switchGuards = LearningSwitch.PortPolicy()
    /// Key path of this port in the file (`bridges[0].ports[1]`).
    public var path: String

    public init(name: String, kind: PortKind = .macvtap(MacvtapPortConfig()), path: String) {
        self.name = name; self.kind = kind; self.path = path
    }

    /// The macvtap settings, for a macvtap port.
    public var macvtap: MacvtapPortConfig? { if case .macvtap(let m) = kind { return m } else { return nil } }
    /// The VM socket settings, for a vm port.
    public var vm: VMPortConfig? { if case .vm(let v) = kind { return v } else { return nil } }
    /// The tap settings, for a tap port (a VMM's tap).
    public var tap: TapPortConfig? { if case .tap(let t) = kind { return t } else { return nil } }
    /// The host interface settings, for a host port.
    public var host: HostPortConfig? { if case .host(let h) = kind { return h } else { return nil } }
    /// The vhost-user settings, for a vhost-user port.
    public var vhostUser: VhostUserPortConfig? { if case .vhostUser(let v) = kind { return v } else { return nil } }
    /// What a vm and a vhost-user port share (socket file, owner/group/mode, the VM's MAC,
    /// anti-spoofing, addresses); nil for other kinds.
    public var guest: VMPortConfig? { vm ?? vhostUser?.guest }

    /// Whether the port is a network interface (link events, namespaces, the ledger apply).
    public var hasLink: Bool { kind.hasLink }
    /// Network namespace the port's link lives in; nil: the daemon's own, or no link.
    public var netns: String? { macvtap?.netns }
    /// How the daemon creates the port's link; nil: it must exist already, or there is no link.
    public var create: LinkCreation? { macvtap?.create }
    /// Queues opened (one descriptor each; a vhost-user port's queue pairs); 1 for kinds without queues.
    public var queues: Int { macvtap?.queues ?? vhostUser?.queues ?? 1 }
    /// Whether frames carry a vnet header with negotiated offloads (macvtap's and vhost-user's `offloads`).
    public var offloads: Bool { macvtap?.offloads ?? vhostUser?.offloads ?? vxlan?.offloads ?? true }
}

/// The kinds of port, as `kind = "..."` names them in a `[[bridges.ports]]` table.
public enum PortKind: Sendable, Equatable {
    /// `kind = "macvtap"` (the default): a macvtap interface, created by the daemon or already there.
    case macvtap(MacvtapPortConfig)
    /// `kind = "vm"`: a QEMU `-netdev stream|dgram` socket (no link).
    case vm(VMPortConfig)
    /// `kind = "tap"`: a persistent tap a VMM attaches to by name, read through a passthru macvtap on it.
    case tap(TapPortConfig)
    /// `kind = "host"`: the host's own stack on the bridge, through a tap tapbridge reads.
    case host(HostPortConfig)
    /// `kind = "vhost-user"`: a vhost-user-net back-end socket (QEMU `-netdev vhost-user`,
    /// cloud-hypervisor, crosvm, DPDK virtio-user); no link.
    case vhostUser(VhostUserPortConfig)
    /// `kind = "vxlan"`: a kernel VXLAN device to other hosts, read through a passthru macvtap
    /// on it (VxlanPortConfig.swift, docs/multi-host.md).
    case vxlan(VxlanPortConfig)

    /// The `kind` key's value.
    public var name: String {
        switch self {
        case .macvtap: return "macvtap"
        case .vm: return "vm"
        case .tap: return "tap"
        case .host: return "host"
        case .vhostUser: return "vhost-user"
        case .vxlan: return "vxlan"
        }
    }

    /// Every kind name the parser accepts (for messages).
    public static let names = ["macvtap", "vm", "tap", "host", "vhost-user", "vxlan"]

    /// Whether a port of this kind is a network interface.
    public var hasLink: Bool {
        switch self {
        case .macvtap, .tap, .host, .vxlan: return true
        case .vm, .vhostUser: return false
        }
    }
}

/// A macvtap port's own keys.
public struct MacvtapPortConfig: Sendable, Equatable {
    /// nil: the link must already exist and is never deleted by the daemon.
    public var create: LinkCreation?
    /// Network namespace (name under /run/netns) the macvtap lives in; nil: the daemon's own.
    public var netns: String?
    /// Queues to open (one fd each). A created link gets this many TX and RX queues.
    public var queues: Int = 1
    /// Open with a vnet header and negotiate checksum/TSO offloads (GSO frames cross whole).
    public var offloads = true
    public init(create: LinkCreation? = nil, netns: String? = nil) { self.create = create; self.netns = netns }
}

/// A tap port's own keys (docs/config.md "Tap ports").
public struct TapPortConfig: Sendable, Equatable {
    /// Who may attach the VMM's queues (TUNSETOWNER / TUNSETGROUP): a name or a numeric id.
    public var user: String?
    public var group: String?
    /// Queues the VMM opens; more than 1 makes a multi-queue tap (the VMM must ask for the same).
    public var queues: Int = 1
    /// The passthru macvtap on the tap that tapbridge reads.
    public var macvtap: String
    /// MTU of the tap and its macvtap; nil: 1500.
    public var mtu: Int?
    /// Virtio-net header and offloads on the macvtap (the VMM's TSO frames cross whole).
    public var offloads = true
    /// The VM's MAC, anti-spoofing and addresses (a source guard, as for vm ports).
    public var mac: MACAddress?
    public var antiSpoofing = true
    public var addresses: [String]?
    public init(macvtap: String) { self.macvtap = macvtap }

    /// Whether this port gets a source guard.
    public var guards: Bool { (mac != nil && antiSpoofing) || addresses != nil }
    /// The source guard's settings, in the form vm ports give them.
    public var guardSettings: VMPortConfig {
        var v = VMPortConfig()
        v.mac = mac; v.antiSpoofing = antiSpoofing; v.addresses = addresses
        return v
    }
}

/// A host port's own keys (docs/config.md "Host ports").
public struct HostPortConfig: Sendable, Equatable {
    /// "ADDRESS/PREFIX" strings (checked by the parser).
    public var addresses: [String] = []
    public var mtu: Int?
    public var mac: MACAddress?
    public init() {}
}

/// macvlan modes, as `ip link ... type macvtap mode X` spells them.
public enum MacvtapMode: String, Sendable, CaseIterable {
    case `private`, vepa, bridge, passthru, source
}

/// A macvtap the daemon creates at start and deletes at stop.
public struct LinkCreation: Sendable, Equatable {
    /// Lower device, in the daemon's own network namespace.
    public var parent: String
    public var mode: MacvtapMode = .bridge
    public var mac: MACAddress?
    public var mtu: Int?
    /// passthru only: do not put the lower device in promiscuous mode.
    public var nopromisc = false
    /// source mode only: the source MACs let through.
    public var sourceMACs: [MACAddress] = []
    public init(parent: String) { self.parent = parent }
}

/// How a `vm` port talks to QEMU (docs/vms.md has the matching `-netdev` lines).
public enum VMSocketMode: String, Sendable, CaseIterable {
    /// tapbridge listens on `path`; QEMU `-netdev stream,server=off,addr.path=PATH`.
    case streamServer = "stream-server"
    /// tapbridge connects to `path` (retrying); QEMU `-netdev stream,server=on,addr.path=PATH`.
    case streamClient = "stream-client"
    /// tapbridge binds `path` and sends to `remote-path`; QEMU `-netdev dgram,local.path=REMOTE,remote.path=PATH`.
    case dgram
}

/// A `vm` port: a QEMU netdev socket instead of a macvtap.
public struct VMPortConfig: Sendable, Equatable {
    public var socket: VMSocketMode = .streamServer
    /// The socket file tapbridge listens on / binds (stream-server, dgram) or connects to (stream-client).
    public var path: String = ""
    /// dgram only: QEMU's own socket (`local.path` on its side).
    public var remotePath: String?
    /// Owner and group of the socket file tapbridge creates: a user/group name or a numeric id.
    public var owner: String?
    public var group: String?
    /// Permission bits of the socket file tapbridge creates.
    public var socketMode: UInt32 = 0o660
    /// Longest frame accepted from the VM (Ethernet header included, no FCS).
    public var maxFrame: Int = 1518
    /// The largest `max-frame` (the stream framing's 16-bit length bound).
    public static let maxFrameLimit = 65535
    /// The MAC the VM is assigned (its NIC's `mac=`); used for anti-spoofing.
    public var mac: MACAddress?
    /// Drop frames whose source MAC is not `mac` (default on when `mac` is set).
    public var antiSpoofing = true
    /// If set: ARP sender / IPv4 / IPv6 sources must be among these (docs/vms.md).
    public var addresses: [String]?
    public init() {}

    /// Whether this port gets a source guard.
    public var guards: Bool { (mac != nil && antiSpoofing) || addresses != nil }
}

/// Who opens a vhost-user connection.
public enum VhostUserMode: String, Sendable, CaseIterable {
    /// tapbridge listens on `path` (QEMU `-chardev socket,path=PATH` without server=on).
    case server
    /// tapbridge connects to `path`, retrying (QEMU `-chardev socket,path=PATH,server=on,wait=off`).
    case client
}

/// A `vhost-user` port (docs/vms.md has the matching VMM lines).
public struct VhostUserPortConfig: Sendable, Equatable {
    public var mode: VhostUserMode = .server
    /// Queue pairs offered (GET_QUEUE_NUM; above 1 also VIRTIO_NET_F_MQ): 1...16.
    public var queues = 1
    /// Offer checksum and TSO offloads to the guest (both ways); off: plain frames only.
    public var offloads = true
    /// The keys it shares with a vm port: path, owner, group, socket-mode, mac, anti-spoofing,
    /// addresses (`socket` mirrors `mode`: stream-server or stream-client).
    public var guest = VMPortConfig()
    public init() {}
}
