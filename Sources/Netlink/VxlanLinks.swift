// VxlanLinks: the kernel's VXLAN device over rtnetlink — creating one (IFLA_VXLAN_* in
// IFLA_INFO_DATA: VNI, local address, UDP destination port, underlay device, learning, multicast
// group) and editing/reading its forwarding database: the all-zeros entries that make the kernel
// replicate broadcast and unknown unicast to every static remote (`bridge fdb append
// 00:00:00:00:00:00 dev VX dst REMOTE`: RTM_NEWNEIGH, AF_BRIDGE, NLM_F_APPEND, NDA_DST), and a
// dump of the entries on one device. FDB replies are decoded with every length checked
// (VxlanFDBEntry(message:), fuzzed by Fuzz/Targets/FuzzNetlinkReply).
#if canImport(Glibc)
import Glibc
#endif
import CLibmnl
import CTapbridgeShim
import Frames

/// The IANA VXLAN port (the kernel's own default is 8472, Linux's pre-standard one).
public let vxlanDefaultPort: UInt16 = 4789

/// What a VXLAN device is created with.
public struct VxlanSpec: Sendable, Equatable {
    public var name: String
    /// VXLAN network identifier, 1...16777215 (0 is refused: reserved in practice).
    public var vni: UInt32
    /// The tunnel source address (IPv4 or IPv6; the prefix length is ignored).
    public var local: InterfaceAddress
    /// The underlay device: tunnel packets leave through it; the MTU is derived from it.
    public var underlay: String
    public var port: UInt16 = vxlanDefaultPort
    /// The kernel learns remote MACs from received frames (inner source MAC -> outer source IP).
    public var learning = true
    /// A multicast group for broadcast and unknown unicast (flood-and-learn), instead of static remotes.
    public var group: InterfaceAddress?
    /// nil: the underlay's MTU minus the encapsulation (50 bytes over IPv4, 70 over IPv6).
    public var mtu: UInt32?
    public var ttl: UInt8?

    public init(name: String, vni: UInt32, local: InterfaceAddress, underlay: String) {
        self.name = name; self.vni = vni; self.local = local; self.underlay = underlay
    }

    /// The outer headers' size: Ethernet 14 + IP (20 or 40) + UDP 8 + VXLAN 8.
    public var overhead: UInt32 { local.family == AF_INET6 ? 70 : 50 }
}

/// One entry of a VXLAN device's forwarding database.
public struct VxlanFDBEntry: Sendable, Equatable {
    public var ifindex: Int32
    public var mac: MACAddress
    /// The remote tunnel endpoint (nil: an entry without one).
    public var destination: InterfaceAddress?
    /// NUD_* state (NUD_PERMANENT for entries someone added, NUD_REACHABLE for learned ones).
    public var state: UInt16
    public var vni: UInt32?

    /// Whether this is a head-end replication entry (all-zeros MAC).
    public var isFloodEntry: Bool { mac == .zero }
    public var isPermanent: Bool { state & UInt16(NUD_PERMANENT) != 0 }

    /// Decodes one RTM_NEWNEIGH of an AF_BRIDGE dump; nil if it is not one or is too short for
    /// its header or MAC. Reads nothing past `nlmsg_len` (the caller checked it against the datagram).
    init?(message: UnsafePointer<nlmsghdr>) {
        guard message.pointee.nlmsg_type == nlType(RTM_NEWNEIGH) else { return nil }
        let total = Int(message.pointee.nlmsg_len) - MemoryLayout<nlmsghdr>.size
        let headerSize = MemoryLayout<ndmsg>.size
        guard total >= headerSize else { return nil }
        let payload = UnsafeRawPointer(message) + MemoryLayout<nlmsghdr>.size
        var nd = ndmsg()
        withUnsafeMutableBytes(of: &nd) { $0.copyMemory(from: UnsafeRawBufferPointer(start: payload, count: headerSize)) }
        guard nd.ndm_family == UInt8(AF_BRIDGE) else { return nil }
        let attrStart = (headerSize + 3) & ~3
        let attrs = total > attrStart
            ? NetlinkAttribute.parse(UnsafeRawBufferPointer(start: payload + attrStart, count: total - attrStart)) : []
        guard let mac = attrs.first(NDA_LLADDR)?.mac else { return nil }
        ifindex = nd.ndm_ifindex
        self.mac = MACAddress(octetArray: mac.octets)
        state = nd.ndm_state
        vni = attrs.first(NDA_VNI)?.u32
        destination = attrs.first(NDA_DST).flatMap { a in
            switch a.payload.count {
            case 4: return InterfaceAddress(family: AF_INET, bytes: Array(a.payload))
            case 16: return InterfaceAddress(family: AF_INET6, bytes: Array(a.payload))
            default: return nil
            }
        }
    }
}

extension InterfaceAddress {
    /// A host address from raw bytes (4: IPv4, 16: IPv6).
    init(family: Int32, bytes: [UInt8]) {
        self.family = family
        self.bytes = bytes
        prefixLength = family == AF_INET ? 32 : 128
    }

    /// The address alone, without its prefix length.
    public var host: String {
        let d = description
        return String(d[..<(d.firstIndex(of: "/") ?? d.endIndex)])
    }

    public var isMulticast: Bool {
        family == AF_INET ? bytes.first.map { $0 & 0xF0 == 0xE0 } ?? false : bytes.first == 0xFF
    }
}

extension LinkManager {
    /// Creates VXLAN device `spec.name` (down; the caller brings it up) and returns it as the
    /// kernel reports it.
    @discardableResult
    public func createVxlan(_ spec: VxlanSpec) throws -> LinkInfo {
        try LinkName.validate(spec.name, operation: .create, kind: "vxlan")
        func failure(_ errno: Int32, _ detail: String?) -> NetlinkError {
            NetlinkError(.create, interface: spec.name, kind: "vxlan", parent: spec.underlay, errno: errno, detail: detail)
        }
        guard spec.vni >= 1, spec.vni <= 0xFF_FFFF else { throw failure(0, "VNI \(spec.vni) out of range 1...16777215") }
        if let g = spec.group, g.family != spec.local.family {
            throw failure(0, "group \(g.host) and local \(spec.local.host) are not the same IP version")
        }
        guard let underlay = try link(named: spec.underlay) else { throw failure(ENODEV, "underlay '\(spec.underlay)' not found") }
        let mtu = spec.mtu ?? (underlay.mtu > spec.overhead + 68 ? underlay.mtu - spec.overhead : 68)
        let v6 = spec.local.family == AF_INET6
        do {
            try socket.request(type: nlType(RTM_NEWLINK), flags: Int32(NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK), build: { nlh in
                Self.putInfoHeader(nlh, index: 0)
                mnl_attr_put_strz(nlh, nlType(IFLA_IFNAME), spec.name)
                mnl_attr_put_u32(nlh, nlType(IFLA_MTU), mtu)
                let info = mnl_attr_nest_start(nlh, nlType(IFLA_LINKINFO))
                mnl_attr_put_strz(nlh, nlType(IFLA_INFO_KIND), "vxlan")
                let data = mnl_attr_nest_start(nlh, nlType(IFLA_INFO_DATA))
                mnl_attr_put_u32(nlh, nlType(IFLA_VXLAN_ID), spec.vni)
                mnl_attr_put_u32(nlh, nlType(IFLA_VXLAN_LINK), UInt32(bitPattern: underlay.index))
                spec.local.bytes.withUnsafeBytes {
                    mnl_attr_put(nlh, nlType(v6 ? IFLA_VXLAN_LOCAL6 : IFLA_VXLAN_LOCAL), $0.count, $0.baseAddress)
                }
                if let g = spec.group {
                    g.bytes.withUnsafeBytes {
                        mnl_attr_put(nlh, nlType(v6 ? IFLA_VXLAN_GROUP6 : IFLA_VXLAN_GROUP), $0.count, $0.baseAddress)
                    }
                }
                mnl_attr_put_u16(nlh, nlType(IFLA_VXLAN_PORT), spec.port.bigEndian)   // network order
                mnl_attr_put_u8(nlh, nlType(IFLA_VXLAN_LEARNING), spec.learning ? 1 : 0)
                if let ttl = spec.ttl { mnl_attr_put_u8(nlh, nlType(IFLA_VXLAN_TTL), ttl) }
                // Over IPv6 the kernel's default is a zero UDP checksum refused on receive: ask for both.
                if v6 {
                    mnl_attr_put_u8(nlh, nlType(IFLA_VXLAN_UDP_ZERO_CSUM6_TX), 0)
                    mnl_attr_put_u8(nlh, nlType(IFLA_VXLAN_UDP_ZERO_CSUM6_RX), 0)
                }
                mnl_attr_nest_end(nlh, data)
                mnl_attr_nest_end(nlh, info)
            })
        } catch let e as KernelError {
            throw failure(e.errno, e.message)
        }
        guard let made = try link(named: spec.name) else { throw failure(ENODEV, "created, but '\(spec.name)' could not be read back") }
        return made
    }

    /// Adds a head-end replication entry to VXLAN device `name`: broadcast and unknown unicast
    /// are also sent to `remote` (`bridge fdb append 00:00:00:00:00:00 dev NAME dst REMOTE`).
    /// An entry already there is not an error.
    public func appendFloodRemote(_ remote: InterfaceAddress, to name: String) throws {
        try editFDB(name: name, remote: remote, delete: false)
    }

    /// Removes the head-end replication entry for `remote` from VXLAN device `name`; one that is
    /// not there is not an error.
    public func removeFloodRemote(_ remote: InterfaceAddress, from name: String) throws {
        try editFDB(name: name, remote: remote, delete: true)
    }

    private func editFDB(name: String, remote: InterfaceAddress, delete: Bool) throws {
        guard let link = try link(named: name) else { throw NetlinkError(.change, interface: name, kind: "vxlan", errno: ENODEV) }
        let flags = delete ? Int32(NLM_F_ACK) : Int32(NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK)
        do {
            try socket.request(type: nlType(delete ? RTM_DELNEIGH : RTM_NEWNEIGH), flags: flags, build: { nlh in
                let raw = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<ndmsg>.size)!
                let nd = raw.assumingMemoryBound(to: ndmsg.self)
                nd.pointee.ndm_family = UInt8(AF_BRIDGE)
                nd.pointee.ndm_ifindex = link.index
                nd.pointee.ndm_state = UInt16(NUD_PERMANENT | NUD_NOARP)
                nd.pointee.ndm_flags = UInt8(NTF_SELF)
                Self.putMAC(nlh, nlType(NDA_LLADDR), .zero)
                remote.bytes.withUnsafeBytes { mnl_attr_put(nlh, nlType(NDA_DST), $0.count, $0.baseAddress) }
            })
        } catch let e as KernelError where (!delete && e.errno == EEXIST) || (delete && e.errno == ENOENT) {
            return
        } catch let e as KernelError {
            throw NetlinkError(.change, interface: name, kind: "vxlan", errno: e.errno,
                               detail: "\(delete ? "remove" : "add") remote \(remote.host)" + (e.message.map { ": \($0)" } ?? ""))
        }
    }

    /// The forwarding database of VXLAN device `name` (learned, static and flood entries).
    public func vxlanFDB(name: String) throws -> [VxlanFDBEntry] {
        guard let link = try link(named: name) else { throw NetlinkError(.read, interface: name, kind: "vxlan", errno: ENODEV) }
        var out: [VxlanFDBEntry] = []
        do {
            try socket.request(type: nlType(RTM_GETNEIGH), flags: Int32(NLM_F_DUMP), build: { nlh in
                let raw = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<ndmsg>.size)!
                raw.assumingMemoryBound(to: ndmsg.self).pointee.ndm_family = UInt8(AF_BRIDGE)
            }, onReply: { msg in
                if let e = VxlanFDBEntry(message: msg), e.ifindex == link.index { out.append(e) }
            })
        } catch let e as KernelError {
            throw NetlinkError(.read, interface: name, kind: "vxlan", errno: e.errno, detail: "fdb dump" + (e.message.map { ": \($0)" } ?? ""))
        }
        return out
    }

    /// The remotes broadcast and unknown unicast go to (the all-zeros entries' destinations).
    public func floodRemotes(name: String) throws -> [InterfaceAddress] {
        try vxlanFDB(name: name).filter(\.isFloodEntry).compactMap(\.destination)
    }
}
