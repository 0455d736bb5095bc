// Frame: one Ethernet frame as a handler sees it, borrowed from the engine's buffer pool for the
// duration of one handler pipeline run. Nothing here allocates.

/// The virtio-net header that travels with a frame on ports opened with IFF_VNET_HDR
/// (struct virtio_net_hdr_v1, little-endian on x86). All zero for a plain frame.
public struct VirtioNetHeader: Equatable, Sendable {
    public var flags: UInt8 = 0
    public var gsoType: UInt8 = 0
    public var headerLength: UInt16 = 0
    public var gsoSize: UInt16 = 0
    public var checksumStart: UInt16 = 0
    public var checksumOffset: UInt16 = 0
    public var numBuffers: UInt16 = 0

    public init() {}

    /// VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum from checksumStart is partial and must be completed.
    public static let flagNeedsChecksum: UInt8 = 1
    /// VIRTIO_NET_HDR_F_DATA_VALID
    public static let flagDataValid: UInt8 = 2
    public static let gsoNone: UInt8 = 0, gsoTCPv4: UInt8 = 1, gsoUDP: UInt8 = 3, gsoTCPv6: UInt8 = 4,
        gsoUDPL4: UInt8 = 5, gsoECN: UInt8 = 0x80

    @inlinable public var isGSO: Bool { gsoType & 0x7F != 0 }
    @inlinable public var needsChecksum: Bool { flags & Self.flagNeedsChecksum != 0 }

    /// Decodes the 10 (or 12) bytes at `p`.
    public init(loadingFrom p: UnsafeRawPointer, size: Int) {
        flags = p.load(fromByteOffset: 0, as: UInt8.self)
        gsoType = p.load(fromByteOffset: 1, as: UInt8.self)
        headerLength = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        gsoSize = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        checksumStart = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        checksumOffset = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
        numBuffers = size >= 12 ? UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 10, as: UInt16.self)) : 0
    }

    /// Encodes into `size` (10 or 12) bytes at `p`.
    public func store(to p: UnsafeMutableRawPointer, size: Int) {
        p.storeBytes(of: flags, toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
        if size >= 12 { p.storeBytes(of: numBuffers.littleEndian, toByteOffset: 10, as: UInt16.self) }
    }
}

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

    @inlinable
    public init(bytes: UnsafeMutableRawBufferPointer, ingress: PortID, vnet: VirtioNetHeader = .init(), vlan: UInt16 = 0) {
        self.bytes = bytes; self.ingress = ingress; self.vnet = vnet; self.vlan = vlan; self.mirror = PortSet()
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
