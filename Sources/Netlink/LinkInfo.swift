// LinkInfo: a link as the kernel reports it (RTM_NEWLINK), decoded into typed fields, plus the
// macvtap character device number read from sysfs.
#if canImport(Glibc)
import Glibc
#endif
import CLibmnl
import Frames

public struct LinkInfo: Sendable, Equatable {
    public var index: Int32
    public var name: String
    /// IFLA_INFO_KIND ("macvtap", "macvlan", "veth", ...); nil for kind-less devices.
    public var kind: String?
    public var address: MACAddress?
    public var mtu: UInt32
    /// IFF_* flags.
    public var flags: UInt32
    /// RFC 2863 operational state: "UP", "DOWN", "UNKNOWN", "LOWERLAYERDOWN", ...
    public var operState: String
    /// The lower device's ifindex (IFLA_LINK), if any.
    public var parentIndex: Int32?
    /// The lower device's name, when it is in the same namespace.
    public var parentName: String?
    /// True when IFLA_LINK_NETNSID says the parent lives in another namespace.
    public var parentInOtherNamespace: Bool
    public var txQueues: UInt32?
    public var rxQueues: UInt32?
    public var txQueueLength: UInt32?
    public var promiscuity: UInt32?
    /// IFLA_IFALIAS (`ip link set NAME alias TEXT`), at most `LinkInfo.aliasLimit` bytes.
    public var alias: String?
    /// IFLA_STATS64: the link's counters.
    public var statistics: LinkStatistics?
    /// IFLA_CARRIER_CHANGES (`ip -s -s link`'s "transns").
    public var carrierChanges: UInt32?
    // macvlan/macvtap attributes
    public var mode: MacvlanMode?
    public var noPromisc: Bool
    public var noDst: Bool
    public var broadcastQueueLength: UInt32?
    /// Source mode's allowed MACs.
    public var sourceMACs: [MACAddress]
    /// A macvtap's character device (major, minor), from sysfs.
    public var tapDevice: TapDeviceNumber?

    /// The kernel keeps an alias in IFALIASZ (256) bytes with its NUL: longer ones are refused
    /// on the way in and cut here on the way out (to 255 bytes read; an invalid UTF-8 byte
    /// among them reads as U+FFFD, so at most 255 scalars).
    public static let aliasLimit = 255

    public var isUp: Bool { flags & UInt32(IFF_UP.rawValue) != 0 }
    public var isMacvlanFamily: Bool { kind == "macvtap" || kind == "macvlan" }

    init(message: UnsafePointer<nlmsghdr>) {
        let payload = UnsafeRawPointer(message) + MemoryLayout<nlmsghdr>.size
        let total = Int(message.pointee.nlmsg_len) - MemoryLayout<nlmsghdr>.size
        // A message too short for its ifinfomsg reads as zeros, never past its end.
        var ifi = ifinfomsg()
        withUnsafeMutableBytes(of: &ifi) { $0.copyMemory(from: UnsafeRawBufferPointer(start: payload, count: max(0, min(total, $0.count)))) }
        index = ifi.ifi_index
        flags = ifi.ifi_flags
        let attrStart = (MemoryLayout<ifinfomsg>.size + 3) & ~3
        let attrs = total > attrStart
            ? NetlinkAttribute.parse(UnsafeRawBufferPointer(start: payload + attrStart, count: total - attrStart)) : []
        name = attrs.first(IFLA_IFNAME)?.string ?? ""
        address = attrs.first(IFLA_ADDRESS)?.mac.map { MACAddress(octetArray: $0.octets) }
        mtu = attrs.first(IFLA_MTU)?.u32 ?? 0
        operState = Self.operStateName(attrs.first(IFLA_OPERSTATE)?.u8 ?? 0)
        parentIndex = attrs.first(IFLA_LINK)?.i32
        parentInOtherNamespace = attrs.first(IFLA_LINK_NETNSID) != nil
        txQueues = attrs.first(IFLA_NUM_TX_QUEUES)?.u32
        rxQueues = attrs.first(IFLA_NUM_RX_QUEUES)?.u32
        txQueueLength = attrs.first(IFLA_TXQLEN)?.u32
        promiscuity = attrs.first(IFLA_PROMISCUITY)?.u32
        alias = attrs.first(IFLA_IFALIAS).map { $0.string(maxBytes: Self.aliasLimit) }.flatMap { $0.isEmpty ? nil : $0 }
        statistics = attrs.first(IFLA_STATS64).flatMap { LinkStatistics(stats64: $0.payload) }
        carrierChanges = attrs.first(IFLA_CARRIER_CHANGES)?.u32
        noPromisc = false; noDst = false; sourceMACs = []
        if let info = attrs.first(IFLA_LINKINFO)?.nested {
            kind = info.first(IFLA_INFO_KIND)?.string
            if let data = info.first(IFLA_INFO_DATA)?.nested, kind == "macvtap" || kind == "macvlan" {
                if let m = data.first(IFLA_MACVLAN_MODE)?.u32 { mode = MacvlanMode(kernelValue: m) }
                let f = data.first(IFLA_MACVLAN_FLAGS)?.u16 ?? 0
                noPromisc = f & UInt16(MACVLAN_FLAG_NOPROMISC) != 0
                noDst = f & UInt16(MACVLAN_FLAG_NODST) != 0
                broadcastQueueLength = data.first(IFLA_MACVLAN_BC_QUEUE_LEN)?.u32
                if let list = data.first(IFLA_MACVLAN_MACADDR_DATA)?.nested {
                    sourceMACs = list.filter { $0.type == UInt16(IFLA_MACVLAN_MACADDR) }
                        .compactMap { $0.mac.map { MACAddress(octetArray: $0.octets) } }
                }
            }
        }
    }

    static func operStateName(_ v: UInt8) -> String {
        ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"][Int(min(v, 6))]
    }
}

/// A character device number.
public struct TapDeviceNumber: Sendable, Equatable, CustomStringConvertible {
    public var major: UInt32
    public var minor: UInt32
    public init(major: UInt32, minor: UInt32) { self.major = major; self.minor = minor }
    /// Parses sysfs's "MAJOR:MINOR\n".
    public init?(sysfs text: String) {
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":")
        guard parts.count == 2, let a = UInt32(parts[0]), let b = UInt32(parts[1]) else { return nil }
        major = a; minor = b
    }
    public var description: String { "\(major):\(minor)" }
}

extension MACAddress {
    init(octetArray o: [UInt8]) { self.init(o[0], o[1], o[2], o[3], o[4], o[5]) }
}

import Foundation
