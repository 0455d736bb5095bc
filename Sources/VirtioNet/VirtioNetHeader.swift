// VirtioNetHeader: the virtio-net header (struct virtio_net_hdr_v1) that precedes each frame on
// a macvtap or tap opened with IFF_VNET_HDR and in a virtio-net queue (vhost-user): checksum
// offload flags, GSO kind and size. Its layout, flag and GSO constants live here and nowhere
// else. Pure Swift, no OS calls.

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

    /// Bytes on the wire: struct virtio_net_hdr (10) and virtio_net_hdr_v1 / _mrg_rxbuf, with
    /// `numBuffers` (12). macvtap and tap take either (TUNSETVNETHDRSZ); vhost-user and QEMU use 12.
    public static let legacySize = 10
    public static let size = 12

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
