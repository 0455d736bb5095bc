// TapOffloads: the TUN_F_* offload bits a tap reader can take (TUNSETOFFLOAD), as an option set.
import CTapbridgeShim

public struct TapOffloads: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Partial checksums (VIRTIO_NET_HDR_F_NEEDS_CSUM); required by every GSO kind.
    public static let checksum = TapOffloads(rawValue: tb_TUN_F_CSUM())
    public static let tso4 = TapOffloads(rawValue: tb_TUN_F_TSO4())
    public static let tso6 = TapOffloads(rawValue: tb_TUN_F_TSO6())
    public static let tsoECN = TapOffloads(rawValue: tb_TUN_F_TSO_ECN())
    public static let uso4 = TapOffloads(rawValue: tb_TUN_F_USO4())
    public static let uso6 = TapOffloads(rawValue: tb_TUN_F_USO6())

    public static let none: TapOffloads = []
    /// Everything the engine knows how to carry through (GSO frames cross unsegmented).
    public static let all: TapOffloads = [.checksum, .tso4, .tso6, .tsoECN, .uso4, .uso6]

    /// Whether a frame with virtio-net `gsoType` (VIRTIO_NET_HDR_GSO_*, ECN bit included) may be
    /// handed to a reader with these offloads.
    @inlinable
    public func accepts(gsoType: UInt8) -> Bool {
        let ecnOK = gsoType & 0x80 == 0 || contains(.tsoECN)
        switch gsoType & 0x7F {
        case 0: return true
        case 1: return contains(.tso4) && ecnOK
        case 4: return contains(.tso6) && ecnOK
        case 5: return contains(.uso4) || contains(.uso6)
        default: return false   // UFO (3) is gone from modern kernels
        }
    }

    public var description: String {
        let names: [(TapOffloads, String)] = [(.checksum, "csum"), (.tso4, "tso4"), (.tso6, "tso6"),
                                              (.tsoECN, "tso-ecn"), (.uso4, "uso4"), (.uso6, "uso6")]
        let on = names.filter { contains($0.0) }.map(\.1)
        return on.isEmpty ? "none" : on.joined(separator: ",")
    }
}
