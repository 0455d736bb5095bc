// VirtioNetOffloads: the offloads a virtio-net header can carry between two ends (partial
// checksums, TCP/UDP segmentation), as an option set. The same 12-byte header serves a macvtap,
// a tap and a vhost-user queue, so every port kind states its offloads in these terms. Raw values
// are the kernel's TUN_F_* bits (what TUNSETOFFLOAD takes; Tap checks them against the kernel
// headers); a vhost-user port maps its negotiated VIRTIO_NET_F_GUEST_* features onto them.
// Pure Swift, no OS calls.

public struct VirtioNetOffloads: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Partial checksums (VIRTIO_NET_HDR_F_NEEDS_CSUM); required by every GSO kind. TUN_F_CSUM.
    public static let checksum = VirtioNetOffloads(rawValue: 0x01)
    /// TCP segmentation over IPv4 / IPv6 (VIRTIO_NET_HDR_GSO_TCPV4 / TCPV6). TUN_F_TSO4 / TSO6.
    public static let tso4 = VirtioNetOffloads(rawValue: 0x02)
    public static let tso6 = VirtioNetOffloads(rawValue: 0x04)
    /// TSO frames with the ECN bit (VIRTIO_NET_HDR_GSO_ECN). TUN_F_TSO_ECN.
    public static let tsoECN = VirtioNetOffloads(rawValue: 0x08)
    /// UDP segmentation (VIRTIO_NET_HDR_GSO_UDP_L4), kernel 6.2+. TUN_F_USO4 / USO6.
    public static let uso4 = VirtioNetOffloads(rawValue: 0x20)
    public static let uso6 = VirtioNetOffloads(rawValue: 0x40)

    public static let none: VirtioNetOffloads = []
    /// Everything the engine knows how to carry through (GSO frames cross unsegmented).
    public static let all: VirtioNetOffloads = [.checksum, .tso4, .tso6, .tsoECN, .uso4, .uso6]

    /// Whether a frame with virtio-net `gsoType` (VIRTIO_NET_HDR_GSO_*, ECN bit included) may be
    /// handed to a reader with these offloads.
    @inlinable
    public func accepts(gsoType: UInt8) -> Bool {
        let ecnOK = gsoType & VirtioNetHeader.gsoECN == 0 || contains(.tsoECN)
        switch gsoType & ~VirtioNetHeader.gsoECN {
        case VirtioNetHeader.gsoNone: return true
        case VirtioNetHeader.gsoTCPv4: return contains(.tso4) && ecnOK
        case VirtioNetHeader.gsoTCPv6: return contains(.tso6) && ecnOK
        case VirtioNetHeader.gsoUDPL4: return contains(.uso4) || contains(.uso6)
        default: return false   // UFO (gsoUDP) is gone from modern kernels
        }
    }

    public var description: String {
        let names: [(VirtioNetOffloads, String)] = [(.checksum, "csum"), (.tso4, "tso4"), (.tso6, "tso6"),
                                                    (.tsoECN, "tso-ecn"), (.uso4, "uso4"), (.uso6, "uso6")]
        let on = names.filter { contains($0.0) }.map(\.1)
        return on.isEmpty ? "none" : on.joined(separator: ",")
    }
}
