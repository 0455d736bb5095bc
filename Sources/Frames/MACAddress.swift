// MACAddress: a 48-bit Ethernet address held in a UInt64, so it hashes and compares as one word.

/// An IEEE 802 MAC address. The low 48 bits hold the address, most significant octet first
/// (`52:54:00:12:34:56` is `0x5254_0012_3456`).
public struct MACAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue & 0xFFFF_FFFF_FFFF }

    public init(_ o0: UInt8, _ o1: UInt8, _ o2: UInt8, _ o3: UInt8, _ o4: UInt8, _ o5: UInt8) {
        rawValue = UInt64(o0) << 40 | UInt64(o1) << 32 | UInt64(o2) << 24
            | UInt64(o3) << 16 | UInt64(o4) << 8 | UInt64(o5)
    }

    /// Reads six octets at `offset` (no bounds check beyond the caller's: the frame parser
    /// checks the frame is at least an Ethernet header long before asking).
    @inlinable
    public init(bytes: UnsafeRawPointer) {
        var v: UInt64 = 0
        for i in 0..<6 { v = v << 8 | UInt64(bytes.load(fromByteOffset: i, as: UInt8.self)) }
        rawValue = v
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (also `-` as separator); nil when it is not exactly that.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let groups = parts.count == 6 ? parts : text.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.count == 6 else { return nil }
        var v: UInt64 = 0
        for g in groups {
            guard (1...2).contains(g.count), let b = UInt8(g, radix: 16) else { return nil }
            v = v << 8 | UInt64(b)
        }
        rawValue = v
    }

    public static let broadcast = MACAddress(rawValue: 0xFFFF_FFFF_FFFF)
    public static let zero = MACAddress(rawValue: 0)

    /// Group bit: broadcast and multicast destinations.
    @inlinable public var isMulticast: Bool { rawValue & 0x0100_0000_0000 != 0 }
    @inlinable public var isBroadcast: Bool { rawValue == 0xFFFF_FFFF_FFFF }
    @inlinable public var isUnicast: Bool { !isMulticast }
    @inlinable public var isLocallyAdministered: Bool { rawValue & 0x0200_0000_0000 != 0 }

    public var octets: [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: rawValue >> (40 - 8 * UInt64($0))) } }

    public func write(to p: UnsafeMutableRawPointer) {
        for i in 0..<6 { p.storeBytes(of: UInt8(truncatingIfNeeded: rawValue >> (40 - 8 * UInt64(i))), toByteOffset: i, as: UInt8.self) }
    }

    public var description: String {
        octets.map { let s = String($0, radix: 16); return s.count == 1 ? "0" + s : s }.joined(separator: ":")
    }

    public static func < (a: MACAddress, b: MACAddress) -> Bool { a.rawValue < b.rawValue }
}
