// 802.1Q port membership: how a port classifies untagged/tagged ingress frames and tags egress.

/// A set of VLAN IDs 1...4094 as a bitmap (512 bytes, held by value in port configuration).
public struct VLANSet: Equatable, Sendable {
    @usableFromInline var bits: [UInt64]
    public init() { bits = [UInt64](repeating: 0, count: 64) }
    public init<S: Sequence>(_ ids: S) where S.Element == UInt16 { self.init(); for v in ids { insert(v) } }
    public static var all: VLANSet { var s = VLANSet(); for v in UInt16(1)...4094 { s.insert(v) }; return s }
    @inlinable public func contains(_ v: UInt16) -> Bool { v < 4096 && bits[Int(v >> 6)] & (1 << UInt64(v & 63)) != 0 }
    public mutating func insert(_ v: UInt16) { if v >= 1 && v <= 4094 { bits[Int(v >> 6)] |= 1 << UInt64(v & 63) } }
    public var ids: [UInt16] { (UInt16(1)...4094).filter(contains) }
}

/// A port's VLAN behaviour.
public enum VLANMode: Equatable, Sendable {
    /// VLAN-unaware: frames pass as they are, tags included (`Frame.vlan` stays 0).
    case unaware
    /// Access port: untagged frames belong to `pvid`; egress is untagged; tagged ingress is dropped.
    case access(pvid: UInt16)
    /// Trunk port: tagged frames for `allowed` VLANs; untagged frames belong to `native` if set
    /// (and leave untagged on it), else are dropped.
    case trunk(allowed: VLANSet, native: UInt16?)
}

/// What transmit must do to a frame's 802.1Q tag for one egress port.
public enum EgressTagging: Equatable, Sendable {
    /// Send the bytes as they are.
    case asIs
    /// Remove the outer tag (bytes 12..<16).
    case stripTag
    /// Insert a tag with this VLAN ID after the source MAC.
    case insertTag(UInt16)
    /// The VLAN is not carried on that port.
    case drop
}

extension Frame {
    /// How this frame must leave through a port with `mode`. Frames not classified into a VLAN
    /// (`vlan == 0`) always leave as they are.
    @inlinable
    public func egressTagging(for mode: VLANMode) -> EgressTagging {
        switch mode {
        case .unaware:
            return .asIs
        case .access(let pvid):
            return egressTagging(accessPVID: pvid)
        case .trunk(let allowed, let native):
            return egressTagging(trunkNative: native ?? 0, carries: allowed.contains(vlan))
        }
    }

    /// Egress through an access port of VLAN `pvid`. The datapath calls the two forms below
    /// directly with plain values so that no VLANSet (an array) is copied per frame.
    @inlinable
    public func egressTagging(accessPVID pvid: UInt16) -> EgressTagging {
        guard vlan != 0 else { return .asIs }
        guard pvid == vlan else { return .drop }
        return taggedVLAN != nil ? .stripTag : .asIs
    }

    /// Egress through a trunk port whose native VLAN is `native` (0: none) and which
    /// `carries` (or not) this frame's VLAN.
    @inlinable
    public func egressTagging(trunkNative native: UInt16, carries: Bool) -> EgressTagging {
        guard vlan != 0 else { return .asIs }
        let tagged = taggedVLAN
        if native != 0 && native == vlan { return tagged != nil ? .stripTag : .asIs }
        guard carries else { return .drop }
        if let t = tagged { return t == vlan ? .asIs : .drop }
        return .insertTag(vlan)
    }
}
