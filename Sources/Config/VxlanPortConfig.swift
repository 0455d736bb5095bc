// VxlanPortConfig: the keys of a `kind = "vxlan"` port (docs/config.md "VXLAN ports",
// docs/multi-host.md) and their parser. The kernel's VXLAN device is the tunnel; tapbridge
// creates it on the underlay device, puts a passthru macvtap on it (the port it reads, with
// vnet headers so GSO frames cross whole), and keeps the remotes' head-end replication entries
// in the device's forwarding database.
#if canImport(Glibc)
import Glibc
#endif

/// Where broadcast and unknown unicast go.
public enum VxlanRemotes: Sendable, Equatable {
    /// Head-end replication to each of these addresses (all-zeros FDB entries tapbridge keeps).
    case list([String])
    /// A multicast group on the underlay (`group = "239.1.1.1"`): flood and learn.
    case group(String)
    /// Someone else (an EVPN control plane such as FRR) fills the device's FDB: tapbridge adds nothing.
    case external

    /// The static list, if that is what this is.
    public var addresses: [String] { if case .list(let a) = self { return a } else { return [] } }
    /// How `ports` shows it.
    public var summary: String {
        switch self {
        case .list(let a): return a.isEmpty ? "none" : a.joined(separator: ",")
        case .group(let g): return "group \(g)"
        case .external: return "external"
        }
    }
}

/// A vxlan port's own keys.
public struct VxlanPortConfig: Sendable, Equatable {
    /// VXLAN network identifier (1...16777215).
    public var vni: UInt32
    /// The tunnel's source address (must be on this host; IPv4 or IPv6).
    public var local: String
    /// The underlay interface the tunnel packets leave by (its MTU gives the default MTU).
    public var underlay: String
    /// UDP destination port (IANA 4789 by default).
    public var dstport: UInt16 = 4789
    public var remotes: VxlanRemotes
    /// The kernel learns remote MACs' endpoints from received frames (default: on, off with external).
    public var learning: Bool
    /// nil: the underlay's MTU minus 50 (IPv4) or 70 (IPv6).
    public var mtu: Int?
    /// The passthru macvtap on the VXLAN device that tapbridge reads (default "mv" + name).
    public var macvtap: String
    /// Vnet header and offloads on the macvtap (TSO frames cross whole and the kernel segments
    /// after encapsulation).
    public var offloads = true

    public init(vni: UInt32, local: String, underlay: String, remotes: VxlanRemotes, macvtap: String) {
        self.vni = vni; self.local = local; self.underlay = underlay; self.remotes = remotes; self.macvtap = macvtap
        if case .external = remotes { learning = false } else { learning = true }
    }
}

extension PortConfig {
    /// The VXLAN settings, for a vxlan port.
    public var vxlan: VxlanPortConfig? { if case .vxlan(let v) = kind { return v } else { return nil } }
}

extension ConfigParser {
    /// The keys of a vxlan port.
    static func parseVxlanKeys(_ r: inout KeyReader, name: String) -> VxlanPortConfig {
        let vni = r.int("vni", in: 1...0xFF_FFFF)
        if vni == nil, !r.contains("vni") { r.fail("vni", "required key is missing (the VXLAN network identifier, 1...16777215)") }
        let local = r.string("local", required: true) ?? ""
        let localFamily = local.isEmpty ? nil : addressFamily(local)
        if !local.isEmpty, localFamily == nil { r.fail("local", "'\(local)' is not an IPv4 or IPv6 address") }
        let underlay = r.string("underlay", required: true) ?? ""
        if !underlay.isEmpty, let why = invalidInterfaceName(underlay) { r.fail("underlay", why) }

        var remotes = VxlanRemotes.list([])
        let group = r.string("group")
        let remotesValue = r.contains("remotes") ? r.value("remotes") : nil
        if let v = remotesValue, let s = v.string {
            if s == "external" { remotes = .external } else {
                r.fail("remotes", "expected an array of addresses or \"external\", found string \"\(s)\"")
            }
        } else if remotesValue != nil, let list = r.stringArray("remotes") {
            var seen = Set<String>()
            for (i, a) in list.enumerated() {
                guard let f = addressFamily(a) else { r.fail("remotes[\(i)]", "'\(a)' is not an IPv4 or IPv6 address"); continue }
                if let lf = localFamily, f != lf { r.fail("remotes[\(i)]", "'\(a)' is not the IP version of local '\(local)'") }
                if isMulticast(a) { r.fail("remotes[\(i)]", "'\(a)' is a multicast address: use 'group' for a multicast underlay") }
                if a == local { r.fail("remotes[\(i)]", "'\(a)' is this host's own 'local' address") }
                if !seen.insert(a).inserted { r.fail("remotes[\(i)]", "'\(a)' is listed twice") }
            }
            remotes = .list(list)
        }
        if let group {
            if remotesValue != nil { r.fail("group", "set either 'remotes' or 'group', not both") }
            if let f = addressFamily(group) {
                if !isMulticast(group) { r.fail("group", "'\(group)' is not a multicast address") }
                if let lf = localFamily, f != lf { r.fail("group", "'\(group)' is not the IP version of local '\(local)'") }
            } else { r.fail("group", "'\(group)' is not an IPv4 or IPv6 address") }
            remotes = .group(group)
        } else if remotesValue == nil {
            r.fail("remotes", "required: a list of the other hosts' addresses, \"external\" (an EVPN control plane fills the FDB), or set 'group'")
        }

        let macvtap = r.string("macvtap") ?? "mv" + name
        if !name.isEmpty, let why = invalidInterfaceName(macvtap) {
            r.fail("macvtap", r.contains("macvtap") ? why : "default name: \(why); set 'macvtap'")
        }
        if macvtap == name { r.fail("macvtap", "must differ from the VXLAN device's name '\(name)'") }
        var v = VxlanPortConfig(vni: UInt32(vni ?? 1), local: local, underlay: underlay, remotes: remotes, macvtap: macvtap)
        if let p = r.int("dstport", in: 1...65535) { v.dstport = UInt16(p) }
        if let l = r.bool("learning") { v.learning = l }
        v.mtu = r.int("mtu", in: 68...65535)
        if let o = r.bool("offloads") { v.offloads = o }
        return v
    }

    /// AF_INET or AF_INET6 for an address without prefix, or nil.
    static func addressFamily(_ text: String) -> Int32? {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return AF_INET }
        if inet_pton(AF_INET6, text, &v6) == 1 { return AF_INET6 }
        return nil
    }

    static func isMulticast(_ text: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 28 == 0xE }
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { $0[0] == 0xFF } }
        return false
    }
}
