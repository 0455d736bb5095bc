// LinkManager: create, read, change and delete macvtap/macvlan links over rtnetlink, in the
// caller's network namespace or in a named one. Every failure is a NetlinkError naming the link.
#if canImport(Glibc)
import Glibc
import SystemCalls
#endif
import CLibmnl
import CTapbridgeShim
import Frames
import Foundation

/// Source mode's allow-list operations (IFLA_MACVLAN_MACADDR_MODE).
public enum SourceMACOperation: Sendable, Equatable {
    case add([MACAddress])
    case delete([MACAddress])
    case set([MACAddress])
    case flush
}

public final class LinkManager {
    /// Where this manager's links live (nil: the namespace of the process).
    public let namespace: NetworkNamespace?
    let socket: NetlinkSocket

    public init(namespace: NetworkNamespace? = nil) throws {
        self.namespace = namespace
        do {
            socket = try NetlinkSocket.open(in: namespace)
        } catch let e as KernelError {
            throw NetlinkError(.open, interface: "", kind: "rtnetlink", errno: e.errno, detail: namespace.map { "namespace \($0)" })
        }
    }

    // MARK: reading

    /// Every link in the namespace, with parents' names and macvtap device numbers filled in.
    public func links() throws -> [LinkInfo] {
        var out: [LinkInfo] = []
        do {
            try socket.request(type: nlType(RTM_GETLINK), flags: Int32(NLM_F_DUMP), build: { nlh in
                Self.putInfoHeader(nlh, index: 0)
            }, onReply: { out.append(LinkInfo(message: $0)) })
        } catch let e as KernelError {
            throw NetlinkError(.read, interface: "", errno: e.errno, detail: e.message)
        }
        let names = Dictionary(out.map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a })
        for i in out.indices {
            if let p = out[i].parentIndex, !out[i].parentInOtherNamespace { out[i].parentName = names[p] }
        }
        try fillTapDevices(&out)
        return out
    }

    /// The link called `name`, or nil if there is none.
    public func link(named name: String) throws -> LinkInfo? {
        try LinkName.validate(name, operation: .read)
        var found: LinkInfo?
        do {
            try socket.request(type: nlType(RTM_GETLINK), flags: 0, build: { nlh in
                Self.putInfoHeader(nlh, index: 0)
                mnl_attr_put_strz(nlh, nlType(IFLA_IFNAME), name)
            }, onReply: { found = LinkInfo(message: $0) })
        } catch let e as KernelError where e.errno == ENODEV {
            return nil
        } catch let e as KernelError {
            throw NetlinkError(.read, interface: name, errno: e.errno, detail: e.message)
        }
        guard var link = found else { return nil }
        if let p = link.parentIndex, !link.parentInOtherNamespace { link.parentName = try self.name(ofIndex: p) }
        var one = [link]
        try fillTapDevices(&one)
        return one[0]
    }

    func name(ofIndex index: Int32) throws -> String? {
        var found: String?
        do {
            try socket.request(type: nlType(RTM_GETLINK), flags: 0, build: { nlh in
                Self.putInfoHeader(nlh, index: index)
            }, onReply: { found = LinkInfo(message: $0).name })
        } catch let e as KernelError where e.errno == ENODEV {
            return nil
        } catch let e as KernelError {
            throw NetlinkError(.read, interface: "#\(index)", errno: e.errno, detail: e.message)
        }
        return found
    }

    // MARK: creating and deleting

    /// Creates the link `spec` describes and returns it as the kernel reports it.
    @discardableResult
    public func create(_ spec: LinkSpec) throws -> LinkInfo {
        try spec.validate()
        let label = spec.name ?? ""
        func failure(_ errno: Int32, _ detail: String?) -> NetlinkError {
            NetlinkError(.create, interface: label, kind: spec.kind.rawValue, parent: spec.parent, errno: errno, detail: detail)
        }
        guard let parent = try link(named: spec.parent) else {
            throw failure(ENODEV, "parent '\(spec.parent)' not found")
        }
        var namespaceFile: OwnedDescriptor?   // closed when this returns
        if let ns = spec.namespace { namespaceFile = try ns.open() }
        let nsFD = namespaceFile?.rawValue ?? -1
        // Where the link will live; without a name, what is there before tells the new one apart.
        let home = try spec.namespace.map { try LinkManager(namespace: $0) } ?? self
        let before = spec.name == nil ? Set(try home.links().map(\.index)) : []

        var echoed: LinkInfo?
        do {
            try socket.request(
                type: nlType(RTM_NEWLINK),
                flags: Int32(NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK | NLM_F_ECHO),
                build: { nlh in
                    Self.putInfoHeader(nlh, index: 0, up: spec.up ? true : nil)
                    mnl_attr_put_u32(nlh, nlType(IFLA_LINK), UInt32(bitPattern: parent.index))
                    if let n = spec.name { mnl_attr_put_strz(nlh, nlType(IFLA_IFNAME), n) }
                    if let a = spec.address { Self.putMAC(nlh, nlType(IFLA_ADDRESS), a) }
                    if let m = spec.mtu { mnl_attr_put_u32(nlh, nlType(IFLA_MTU), m) }
                    if let q = spec.txQueues { mnl_attr_put_u32(nlh, nlType(IFLA_NUM_TX_QUEUES), q) }
                    if let q = spec.rxQueues { mnl_attr_put_u32(nlh, nlType(IFLA_NUM_RX_QUEUES), q) }
                    if nsFD >= 0 { mnl_attr_put_u32(nlh, nlType(IFLA_NET_NS_FD), UInt32(bitPattern: nsFD)) }
                    let info = mnl_attr_nest_start(nlh, nlType(IFLA_LINKINFO))
                    mnl_attr_put_strz(nlh, nlType(IFLA_INFO_KIND), spec.kind.rawValue)
                    let data = mnl_attr_nest_start(nlh, nlType(IFLA_INFO_DATA))
                    mnl_attr_put_u32(nlh, nlType(IFLA_MACVLAN_MODE), spec.mode.kernelValue)
                    let macvlanFlags = (spec.noPromisc ? UInt16(MACVLAN_FLAG_NOPROMISC) : 0) | (spec.noDst ? UInt16(MACVLAN_FLAG_NODST) : 0)
                    if macvlanFlags != 0 { mnl_attr_put_u16(nlh, nlType(IFLA_MACVLAN_FLAGS), macvlanFlags) }
                    if let b = spec.broadcastQueueLength { mnl_attr_put_u32(nlh, nlType(IFLA_MACVLAN_BC_QUEUE_LEN), b) }
                    mnl_attr_nest_end(nlh, data)
                    mnl_attr_nest_end(nlh, info)
                },
                onReply: { msg in
                    if msg.pointee.nlmsg_type == nlType(RTM_NEWLINK) { echoed = LinkInfo(message: msg) }
                })
        } catch let e as KernelError {
            throw failure(e.errno, try explain(createError: e, spec: spec, parent: parent))
        }
        // Read it back where it now lives, by the name we gave or the one the kernel echoed.
        var name = spec.name ?? echoed?.name
        if name == nil {
            name = try home.links().first { !before.contains($0.index) && $0.kind == spec.kind.rawValue }?.name
        }
        guard let name else { throw failure(EIO, "created, but the kernel did not report the new link's name") }
        guard let created = try home.link(named: name) else {
            throw failure(ENODEV, "created, but '\(name)' could not be read back")
        }
        return created
    }

    /// The kernel says EINVAL for several macvlan rules without a message; name the one broken.
    private func explain(createError e: KernelError, spec: LinkSpec, parent: LinkInfo) throws -> String? {
        if let m = e.message, !m.isEmpty { return m }
        guard e.errno == EINVAL || e.errno == EBUSY else { return nil }
        let siblings = try links().filter { $0.isMacvlanFamily && $0.parentIndex == parent.index && !$0.parentInOtherNamespace }
        if spec.mode == .passthru && !siblings.isEmpty || siblings.contains(where: { $0.mode == .passthru }) {
            let owner = siblings.first { $0.mode == .passthru }.map { " ('\($0.name)' already owns '\(parent.name)')" } ?? ""
            return "mode 'passthru' allows one sub-interface per lower device\(owner)"
        }
        if parent.kind == "macvtap" || parent.kind == "macvlan" {
            return "parent '\(parent.name)' is itself a \(parent.kind!): use its lower device"
        }
        return nil
    }

    /// Deletes the link `name`.
    public func delete(name: String) throws {
        try LinkName.validate(name, operation: .delete)
        do {
            try socket.request(type: nlType(RTM_DELLINK), flags: Int32(NLM_F_ACK), build: { nlh in
                Self.putInfoHeader(nlh, index: 0)
                mnl_attr_put_strz(nlh, nlType(IFLA_IFNAME), name)
            })
        } catch let e as KernelError {
            throw NetlinkError(.delete, interface: name, errno: e.errno, detail: e.message)
        }
    }

    // MARK: changing

    /// Changes state, MAC, MTU, or moves the link to another namespace (one request; the kernel
    /// makes the move first). `change(name:_:)` (LinkChange.swift) does the rest of `ip link set`.
    public func set(name: String, up: Bool? = nil, address: MACAddress? = nil, mtu: UInt32? = nil,
                    namespace target: NetworkNamespace? = nil) throws {
        try change(name: name, LinkChange(up: up, address: address, mtu: mtu, namespace: target))
    }

    /// Edits a source-mode link's list of allowed source MACs.
    public func sourceMACs(name: String, _ operation: SourceMACOperation) throws {
        guard let link = try link(named: name) else { throw NetlinkError(.change, interface: name, errno: ENODEV) }
        guard link.isMacvlanFamily, let kind = link.kind else {
            throw NetlinkError.invalid(.change, interface: name, "'\(name)' is not a macvtap/macvlan link")
        }
        guard link.mode == .source else {
            throw NetlinkError.invalid(.change, interface: name, kind: kind,
                                       "source MAC lists apply to mode 'source', '\(name)' is mode '\(link.mode?.rawValue ?? "?")'")
        }
        func send(_ mode: Int32, _ macs: [MACAddress], asList: Bool) throws {
            do {
                try socket.request(type: nlType(RTM_NEWLINK), flags: Int32(NLM_F_ACK), build: { nlh in
                    Self.putInfoHeader(nlh, index: link.index)
                    let info = mnl_attr_nest_start(nlh, nlType(IFLA_LINKINFO))
                    mnl_attr_put_strz(nlh, nlType(IFLA_INFO_KIND), kind)
                    let data = mnl_attr_nest_start(nlh, nlType(IFLA_INFO_DATA))
                    mnl_attr_put_u32(nlh, nlType(IFLA_MACVLAN_MACADDR_MODE), UInt32(mode))
                    if asList {
                        let list = mnl_attr_nest_start(nlh, nlType(IFLA_MACVLAN_MACADDR_DATA))
                        for m in macs { Self.putMAC(nlh, nlType(IFLA_MACVLAN_MACADDR), m) }
                        mnl_attr_nest_end(nlh, list)
                    } else if let m = macs.first {
                        Self.putMAC(nlh, nlType(IFLA_MACVLAN_MACADDR), m)
                    }
                    mnl_attr_nest_end(nlh, data)
                    mnl_attr_nest_end(nlh, info)
                })
            } catch let e as KernelError {
                let what = macs.count == 1 ? " \(macs[0])" : ""
                throw NetlinkError(.change, interface: name, kind: kind, errno: e.errno,
                                   detail: e.message ?? (e.errno == ENOENT ? "MAC\(what) not in the source list" : nil))
            }
        }
        switch operation {
        case .add(let macs): for m in macs { try send(Int32(MACVLAN_MACADDR_ADD.rawValue), [m], asList: false) }
        case .delete(let macs): for m in macs { try send(Int32(MACVLAN_MACADDR_DEL.rawValue), [m], asList: false) }
        case .set(let macs): try send(Int32(MACVLAN_MACADDR_SET.rawValue), macs, asList: true)
        case .flush: try send(Int32(MACVLAN_MACADDR_FLUSH.rawValue), [], asList: false)
        }
    }

    // MARK: message pieces

    static func putInfoHeader(_ nlh: UnsafeMutablePointer<nlmsghdr>, index: Int32, up: Bool? = nil) {
        let raw = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<ifinfomsg>.size)!
        let ifi = raw.assumingMemoryBound(to: ifinfomsg.self)
        ifi.pointee.ifi_family = UInt8(AF_UNSPEC)
        ifi.pointee.ifi_index = index
        if let up {
            ifi.pointee.ifi_change = UInt32(IFF_UP.rawValue)
            ifi.pointee.ifi_flags = up ? UInt32(IFF_UP.rawValue) : 0
        }
    }

    static func putMAC(_ nlh: UnsafeMutablePointer<nlmsghdr>, _ type: UInt16, _ mac: MACAddress) {
        var bytes = mac.octets
        bytes.withUnsafeMutableBytes { mnl_attr_put(nlh, type, 6, $0.baseAddress) }
    }

    // MARK: macvtap character devices

    /// Fills `tapDevice` for every macvtap in `links` from sysfs as seen from this namespace.
    func fillTapDevices(_ links: inout [LinkInfo]) throws {
        let taps = links.indices.filter { links[$0].kind == "macvtap" }
        guard !taps.isEmpty else { return }
        let wanted = taps.map { (links[$0].name, links[$0].index) }
        let numbers = try withSysfs { root in
            wanted.map { TapDeviceSysfs.read(root: root, name: $0.0, index: $0.1) }
        }
        for (i, n) in zip(taps, numbers) { links[i].tapDevice = n }
    }

    /// Runs `body` with the path of a sysfs that shows this manager's namespace. In our own
    /// namespace that is /sys; for another one, a private sysfs mount made from inside it
    /// (sysfs shows the namespace of whoever mounted it), removed afterwards.
    func withSysfs<T>(_ body: @escaping (String) -> T) throws -> T {
        guard let namespace else { return body("/sys") }
        return try namespace.run { try TapDeviceSysfs.withPrivateMount(body) }
    }
}

/// Reading /sys/class/net/NAME/macvtap/tapN/dev.
enum TapDeviceSysfs {
    static func read(root: String, name: String, index: Int32) -> TapDeviceNumber? {
        let dir = "\(root)/class/net/\(name)/macvtap"
        // The node is named after the ifindex; list the folder in case a rename raced us.
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? ["tap\(index)"]
        for e in entries where e.hasPrefix("tap") {
            if let text = try? String(contentsOfFile: "\(dir)/\(e)/dev", encoding: .utf8),
               let n = TapDeviceNumber(sysfs: text) { return n }
        }
        return nil
    }

    static func withPrivateMount<T>(_ body: (String) -> T) throws -> T {
        var template = Array("/tmp/tapbridge-sysfs-XXXXXX".utf8CString)
        guard let dirPtr = mkdtemp(&template) else {
            throw NetlinkError(.read, interface: "", kind: "sysfs", errno: errno, detail: "mkdtemp")
        }
        let dir = String(cString: dirPtr)
        defer { rmdir(dir) }
        guard mount("sysfs", dir, "sysfs", UInt(1 | 2 | 4 | 8)  /* MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC */, nil) == 0 else {
            throw NetlinkError(.read, interface: "", kind: "sysfs", errno: errno, detail: "mount sysfs on \(dir)")
        }
        defer { umount2(dir, Int32(MNT_DETACH)) }
        return body(dir)
    }
}
