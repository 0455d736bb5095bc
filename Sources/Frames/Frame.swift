// Frame: one Ethernet frame as a handler sees it, borrowed from the engine's buffer pool for the
// duration of one handler pipeline run. Nothing here allocates. The virtio-net header it carries
// (`Frame.vnet`) is defined in the VirtioNet module.
@_exported import VirtioNet   // Frame.vnet is part of the handler seam

/// One Ethernet frame in flight. The engine guarantees `bytes.count >= Frame.minimumLength`
/// before any handler sees it (shorter frames are dropped as `.malformed`).
public struct Frame {
    /// Ethernet header (destination, source, EtherType/TPID).
    public static let minimumLength = 14

    /// The frame, destination MAC first. Handlers may rewrite bytes in place, or shrink it.
    public var bytes: UnsafeMutableRawBufferPointer
    /// The virtio-net header it came with (GSO and checksum offload state); zero if none.
    public var vnet: VirtioNetHeader
    /// The port it arrived on.
    public let ingress: PortID
    /// The VLAN a VLAN-aware handler classified it into (0: not classified). The engine uses it
    /// on transmit to tag/untag per the egress port's `VLANMode`.
    public var vlan: UInt16
    /// Ports that also get a copy of the frame, whatever the final verdict (a filter's
    /// `mirror PORT` action: an analyser sees dropped frames too). Copies leave as they are.
    public var mirror: PortSet
    /// Hold the frame before it leaves (an impairment's delay, rate, duplicate): set by an
    /// ingress handler for every destination's copy, or by an egress judge for one
    /// destination's copy. Zero (the default): leave at once. See `FrameHold`.
    public var hold: FrameHold

    @inlinable
    public init(bytes: UnsafeMutableRawBufferPointer, ingress: PortID, vnet: VirtioNetHeader = .init(), vlan: UInt16 = 0) {
        self.bytes = bytes; self.ingress = ingress; self.vnet = vnet; self.vlan = vlan; self.mirror = PortSet()
        self.hold = FrameHold()
    }

    @inlinable public var length: Int { bytes.count }

    @inlinable public var destination: MACAddress { MACAddress(bytes: UnsafeRawPointer(bytes.baseAddress!)) }
    @inlinable public var source: MACAddress { MACAddress(bytes: UnsafeRawPointer(bytes.baseAddress! + 6)) }

    /// Big-endian 16-bit field at `offset`, or nil past the end of the frame.
    @inlinable public func uint16(at offset: Int) -> UInt16? {
        guard offset >= 0, offset + 2 <= bytes.count else { return nil }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    /// The outer EtherType/TPID (offset 12).
    @inlinable public var etherType: UInt16 { UInt16(bytes[12]) << 8 | UInt16(bytes[13]) }

    /// The outer 802.1Q/802.1ad tag's VLAN ID, if the frame carries one.
    @inlinable public var taggedVLAN: UInt16? {
        let t = etherType
        guard t == EtherType.vlan || t == EtherType.qinq, let tci = uint16(at: 14) else { return nil }
        return tci & 0x0FFF
    }

    /// EtherType after any VLAN tags, and the offset of the L3 header; nil if truncated.
    @inlinable public var payload: (etherType: UInt16, offset: Int)? {
        var off = 12
        var t = etherType
        while t == EtherType.vlan || t == EtherType.qinq {
            off += 4
            guard let next = uint16(at: off) else { return nil }
            t = next
        }
        return (t, off + 2)
    }
}

/// EtherType values used by the bundled handlers.
public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let vlan: UInt16 = 0x8100
    public static let qinq: UInt16 = 0x88A8
    public static let ipv6: UInt16 = 0x86DD
}
