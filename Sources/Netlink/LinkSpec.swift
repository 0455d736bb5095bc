// LinkSpec and its vocabulary: what a macvtap/macvlan link is asked to be, validated before
// the kernel sees it.
import Frames

/// macvlan/macvtap sub-interface kinds.
public enum LinkKind: String, Sendable, CaseIterable {
    case macvtap, macvlan
}

/// How siblings on one lower device reach each other (IFLA_MACVLAN_MODE).
public enum MacvlanMode: String, Sendable, CaseIterable {
    /// Siblings never talk, not even through a hairpinning switch.
    case `private`
    /// Sibling traffic goes out to the external switch (802.1Qbg reflective relay). Kernel default.
    case vepa
    /// Siblings talk directly.
    case bridge
    /// One sub-interface owns the lower device (made promiscuous unless `nopromisc`).
    case passthru
    /// Frames are accepted by source MAC from an allow list.
    case source

    public var kernelValue: UInt32 {
        switch self {
        case .private: return 1
        case .vepa: return 2
        case .bridge: return 4
        case .passthru: return 8
        case .source: return 16
        }
    }

    public init?(kernelValue: UInt32) {
        guard let m = MacvlanMode.allCases.first(where: { $0.kernelValue == kernelValue }) else { return nil }
        self = m
    }
}

/// What `LinkManager.create` makes.
public struct LinkSpec: Sendable, Equatable {
    public var kind: LinkKind
    /// The lower device, in the namespace the manager works in.
    public var parent: String
    /// The new link's name; nil lets the kernel choose (macvtapN / macvlanN).
    public var name: String?
    public var mode: MacvlanMode
    /// passthru only: leave the lower device's promiscuity alone.
    public var noPromisc: Bool
    /// source only: a frame taken by this link by its source MAC is not also delivered to the
    /// link its destination MAC names (MACVLAN_FLAG_NODST, `ip link ... mode source nodst`).
    public var noDst = false
    public var address: MACAddress?
    public var mtu: UInt32?
    public var txQueues: UInt32?
    public var rxQueues: UInt32?
    /// Broadcast/multicast queue length (IFLA_MACVLAN_BC_QUEUE_LEN).
    public var broadcastQueueLength: UInt32?
    public var up: Bool
    /// Create the link directly in this namespace (the parent stays where it is).
    public var namespace: NetworkNamespace?

    public init(kind: LinkKind = .macvtap, parent: String, name: String? = nil, mode: MacvlanMode = .vepa,
                noPromisc: Bool = false, address: MACAddress? = nil, mtu: UInt32? = nil,
                txQueues: UInt32? = nil, rxQueues: UInt32? = nil, broadcastQueueLength: UInt32? = nil,
                up: Bool = false, namespace: NetworkNamespace? = nil) {
        self.kind = kind; self.parent = parent; self.name = name; self.mode = mode; self.noPromisc = noPromisc
        self.address = address; self.mtu = mtu; self.txQueues = txQueues; self.rxQueues = rxQueues
        self.broadcastQueueLength = broadcastQueueLength; self.up = up; self.namespace = namespace
    }

    /// Checks what can be checked without the kernel.
    public func validate() throws {
        let label = name ?? ""
        func bad(_ s: String) -> NetlinkError { .invalid(.create, interface: label, kind: kind.rawValue, parent: parent, s) }
        if let name { try LinkName.validate(name, operation: .create, kind: kind.rawValue) }
        if parent.isEmpty { throw bad("no parent (lower) device given") }
        if noPromisc && mode != .passthru { throw bad("'nopromisc' applies to mode 'passthru' only, not '\(mode.rawValue)'") }
        if noDst && mode != .source { throw bad("'nodst' applies to mode 'source' only, not '\(mode.rawValue)'") }
        if let mtu, mtu < 68 || mtu > 65535 { throw bad("MTU \(mtu) out of range 68...65535") }
        for (n, q) in [("numtxqueues", txQueues), ("numrxqueues", rxQueues)] {
            if let q, q < 1 || q > 4096 { throw bad("\(n) \(q) out of range 1...4096") }
        }
        if let a = address, a.isMulticast || a == .zero {
            throw bad("invalid MAC '\(a)': must be a unicast, non-zero address")
        }
    }
}

/// Interface name rules (IFNAMSIZ and the characters the kernel refuses).
public enum LinkName {
    public static func validate(_ name: String, operation: NetlinkError.Operation, kind: String = "link") throws {
        if name.isEmpty || name.utf8.count > 15 {
            throw NetlinkError.invalid(operation, interface: name, kind: kind,
                                       "interface names are 1 to 15 bytes, '\(name)' has \(name.utf8.count)")
        }
        if name == "." || name == ".." || name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) {
            throw NetlinkError.invalid(operation, interface: name, kind: kind,
                                       "invalid interface name '\(name)' (no '/', ':', spaces, '.' or '..')")
        }
    }
}

/// Parses a MAC with an error naming the bad text (`invalid MAC '52:54:zz:..'`).
public func parseMAC(_ text: String, for interface: String = "", operation: NetlinkError.Operation = .create) throws -> MACAddress {
    guard let m = MACAddress(text) else {
        throw NetlinkError.invalid(operation, interface: interface, "invalid MAC '\(text)' (expected six hex octets like 52:54:00:12:34:56)")
    }
    return m
}
