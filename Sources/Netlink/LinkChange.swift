// LinkChange: what `ip link set NAME ...` changes on an existing link (state, promiscuity, MAC,
// MTU, txqueuelen, alias, name, namespace, and a macvtap/macvlan's mode and nodst flag), checked
// against the link as it is before one RTM_NEWLINK asks the kernel for all of it.
#if canImport(Glibc)
import Glibc
import SystemCalls
#endif
import CLibmnl
import CTapbridgeShim
import Frames

/// The changes to make; nil (or false for `isEmpty`) leaves a property as it is.
public struct LinkChange: Sendable, Equatable {
    public var up: Bool?
    /// IFF_PROMISC (`promisc on|off`).
    public var promisc: Bool?
    public var address: MACAddress?
    public var mtu: UInt32?
    /// IFLA_TXQLEN (`txqueuelen N`).
    public var txQueueLength: UInt32?
    /// IFLA_IFALIAS (`alias TEXT`); "" removes the alias.
    public var alias: String?
    /// IFLA_IFNAME on the link's index: rename it (`name NEWNAME`).
    public var newName: String?
    /// The macvlan mode (IFLA_MACVLAN_MODE in IFLA_INFO_DATA). Leaving mode `source` empties
    /// the source MAC list (the kernel does); `passthru` can be neither set nor cleared.
    public var mode: MacvlanMode?
    /// MACVLAN_FLAG_NODST on (source mode only) or off; other flags are kept.
    public var noDst: Bool?
    /// The kind the user wrote (`type macvtap`): checked against the link's, never changed.
    public var kind: LinkKind?
    /// Move the link into this namespace (applied by the kernel before the other changes).
    public var namespace: NetworkNamespace?

    public init(up: Bool? = nil, promisc: Bool? = nil, address: MACAddress? = nil, mtu: UInt32? = nil,
                txQueueLength: UInt32? = nil, alias: String? = nil, newName: String? = nil,
                mode: MacvlanMode? = nil, noDst: Bool? = nil, kind: LinkKind? = nil,
                namespace: NetworkNamespace? = nil) {
        self.up = up; self.promisc = promisc; self.address = address; self.mtu = mtu
        self.txQueueLength = txQueueLength; self.alias = alias; self.newName = newName
        self.mode = mode; self.noDst = noDst; self.kind = kind; self.namespace = namespace
    }

    /// True when nothing would be changed (`kind` alone changes nothing).
    public var isEmpty: Bool {
        up == nil && promisc == nil && address == nil && mtu == nil && txQueueLength == nil && alias == nil
            && newName == nil && mode == nil && noDst == nil && namespace == nil
    }

    /// True when the request needs IFLA_LINKINFO/IFLA_INFO_DATA (macvlan attributes).
    var changesMacvlanData: Bool { mode != nil || noDst != nil }

    /// Checks what can be checked without the kernel; `name` is the link's current name.
    public func validate(name: String) throws {
        try LinkName.validate(name, operation: .change)
        func bad(_ s: String) -> NetlinkError { .invalid(.change, interface: name, s) }
        if let mtu, mtu < 68 || mtu > 65535 { throw bad("MTU \(mtu) out of range 68...65535") }
        if let a = address, a.isMulticast || a == .zero {
            throw bad("invalid MAC '\(a)': must be a unicast, non-zero address")
        }
        if let newName { try LinkName.validate(newName, operation: .change) }
        if let alias {
            if alias.utf8.count > LinkInfo.aliasLimit {
                throw bad("alias of \(alias.utf8.count) bytes: the kernel keeps at most \(LinkInfo.aliasLimit)")
            }
            if alias.utf8.contains(0) { throw bad("alias contains a NUL byte") }
        }
    }

    /// Checks the change against the link as the kernel has it now.
    func validate(against link: LinkInfo) throws {
        let kindName = link.kind ?? "link"
        func bad(_ s: String) -> NetlinkError { .invalid(.change, interface: link.name, kind: kindName, s) }
        if let kind, link.kind != kind.rawValue {
            throw bad("'\(link.name)' is \(link.kind.map { "a \($0)" } ?? "a link without a kind"), not a \(kind.rawValue)")
        }
        guard changesMacvlanData else { return }
        guard link.isMacvlanFamily else {
            throw bad("'mode' and 'nodst' apply to macvtap/macvlan links; '\(link.name)' is \(link.kind.map { "a \($0)" } ?? "a link without a kind")")
        }
        let current = link.mode
        let resulting = mode ?? current
        if let mode, (mode == .passthru) != (current == .passthru) {
            throw bad("mode 'passthru' can be neither set nor cleared on an existing link ('\(link.name)' is mode "
                      + "'\(current?.rawValue ?? "?")', asked for '\(mode.rawValue)'): delete it and add it again with the mode wanted")
        }
        if noDst == true && resulting != .source {
            throw bad("'nodst' applies to mode 'source' only, not '\(resulting?.rawValue ?? "?")'")
        }
    }
}

extension LinkManager {
    /// Applies `change` to link `name` in one RTM_NEWLINK (as `ip link set` does).
    public func change(name: String, _ change: LinkChange) throws {
        try change.validate(name: name)
        guard let link = try link(named: name) else { throw NetlinkError(.change, interface: name, errno: ENODEV) }
        try change.validate(against: link)
        var namespaceFile: OwnedDescriptor?   // closed when this returns
        if let t = change.namespace { namespaceFile = try t.open() }
        let nsFD = namespaceFile?.rawValue ?? -1
        do {
            try socket.request(type: nlType(RTM_NEWLINK), flags: Int32(NLM_F_ACK), build: { nlh in
                Self.putChangeHeader(nlh, index: link.index, up: change.up, promisc: change.promisc)
                if let n = change.newName { mnl_attr_put_strz(nlh, nlType(IFLA_IFNAME), n) }
                if let a = change.address { Self.putMAC(nlh, nlType(IFLA_ADDRESS), a) }
                if let m = change.mtu { mnl_attr_put_u32(nlh, nlType(IFLA_MTU), m) }
                if let q = change.txQueueLength { mnl_attr_put_u32(nlh, nlType(IFLA_TXQLEN), q) }
                if let alias = change.alias {
                    // Without a NUL, as iproute2 sends it: a zero-length alias removes it.
                    var bytes = Array(alias.utf8)
                    bytes.withUnsafeMutableBytes { mnl_attr_put(nlh, nlType(IFLA_IFALIAS), $0.count, $0.baseAddress) }
                }
                if change.changesMacvlanData, let kind = link.kind {
                    let info = mnl_attr_nest_start(nlh, nlType(IFLA_LINKINFO))
                    mnl_attr_put_strz(nlh, nlType(IFLA_INFO_KIND), kind)
                    let data = mnl_attr_nest_start(nlh, nlType(IFLA_INFO_DATA))
                    if let m = change.mode { mnl_attr_put_u32(nlh, nlType(IFLA_MACVLAN_MODE), m.kernelValue) }
                    if let noDst = change.noDst {
                        // The kernel replaces all flags: restate nopromisc as it is.
                        let flags = (link.noPromisc ? UInt16(MACVLAN_FLAG_NOPROMISC) : 0) | (noDst ? UInt16(MACVLAN_FLAG_NODST) : 0)
                        mnl_attr_put_u16(nlh, nlType(IFLA_MACVLAN_FLAGS), flags)
                    }
                    mnl_attr_nest_end(nlh, data)
                    mnl_attr_nest_end(nlh, info)
                }
                if nsFD >= 0 { mnl_attr_put_u32(nlh, nlType(IFLA_NET_NS_FD), UInt32(bitPattern: nsFD)) }
            })
        } catch let e as KernelError {
            var detail = e.message
            if detail == nil || detail!.isEmpty, e.errno == EEXIST || e.errno == EBUSY || e.errno == ENOTUNIQ, let n = change.newName {
                detail = "rename to '\(n)'" + (e.errno == EEXIST ? ": a link of that name already exists" : "")
            }
            throw NetlinkError(.change, interface: name, kind: link.kind ?? "link", errno: e.errno, detail: detail)
        }
    }

    /// ifinfomsg for a change of link `index`: only the IFF_* bits named in ifi_change move.
    static func putChangeHeader(_ nlh: UnsafeMutablePointer<nlmsghdr>, index: Int32, up: Bool?, promisc: Bool?) {
        let raw = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<ifinfomsg>.size)!
        let ifi = raw.assumingMemoryBound(to: ifinfomsg.self)
        ifi.pointee.ifi_family = UInt8(AF_UNSPEC)
        ifi.pointee.ifi_index = index
        for (wanted, bit) in [(up, UInt32(IFF_UP.rawValue)), (promisc, UInt32(IFF_PROMISC.rawValue))] {
            guard let wanted else { continue }
            ifi.pointee.ifi_change |= bit
            if wanted { ifi.pointee.ifi_flags |= bit }
        }
    }
}
