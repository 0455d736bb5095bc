// FrameBuilder: Ethernet frames for handler unit tests, built in one reusable buffer the way the
// engine hands frames to handlers (a Frame points into memory it does not own). Pure Swift, no
// system library: a handler package's tests depend on this product alone besides its handler.
import Frames

/// Builds one frame at a time into its own buffer. A frame stays valid until the next `frame`
/// call on the same builder or the builder's end.
public final class FrameBuilder {
    private let buffer: UnsafeMutableRawBufferPointer

    /// `capacity`: the longest frame this builder makes (default: a full 1514-byte frame).
    public init(capacity: Int = 1514) {
        buffer = .allocate(byteCount: max(capacity, 64), alignment: 8)
    }

    deinit { buffer.deallocate() }

    /// A frame from `src` to `dst` arriving on port `port`: an 802.1Q tag (`tag`: the TCI, VLAN ID
    /// in the low 12 bits) if set, then
    /// `etherType` and `payload`, zero-padded to at least `minimumLength` bytes (64 by default,
    /// the shortest frame on a wire with its FCS). Bytes past `payload` are zero.
    public func frame(from src: MACAddress, to dst: MACAddress, port: Int, tag: UInt16? = nil,
                      etherType: UInt16 = EtherType.ipv4, payload: [UInt8] = [], minimumLength: Int = 64) -> Frame {
        let header = tag == nil ? 14 : 18
        let length = min(max(header + payload.count, minimumLength, Frame.minimumLength), buffer.count)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        dst.write(to: buffer.baseAddress!)
        src.write(to: buffer.baseAddress! + 6)
        var o = 12
        if let tag {
            buffer[12] = 0x81; buffer[13] = 0x00; buffer[14] = UInt8(tag >> 8); buffer[15] = UInt8(tag & 0xFF)
            o = 16
        }
        buffer[o] = UInt8(etherType >> 8); buffer[o + 1] = UInt8(etherType & 0xFF)
        for (i, b) in payload.prefix(buffer.count - header).enumerated() { buffer[header + i] = b }
        return Frame(bytes: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]), ingress: PortID(port))
    }
}

/// A port table for a handler under test: ports 0..<names.count with those names.
public func testPortTable(_ names: [String], configure: (inout PortInfo) -> Void = { _ in }) -> PortTable {
    PortTable(names.enumerated().map { i, name in
        var p = PortInfo(id: PortID(i), name: name)
        configure(&p)
        return p
    })
}
