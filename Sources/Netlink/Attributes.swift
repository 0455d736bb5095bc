// Attributes: reading netlink TLV attributes (struct nlattr) from a received message, with
// every length checked against the buffer it came in. Building messages goes through libmnl.

/// One attribute: its type (nesting/byte-order bits removed) and payload.
public struct NetlinkAttribute {
    public let type: UInt16
    public let payload: UnsafeRawBufferPointer

    public var u8: UInt8? { payload.count >= 1 ? payload.load(as: UInt8.self) : nil }
    public var u16: UInt16? { payload.count >= 2 ? payload.loadUnaligned(as: UInt16.self) : nil }
    public var u32: UInt32? { payload.count >= 4 ? payload.loadUnaligned(as: UInt32.self) : nil }
    public var i32: Int32? { u32.map { Int32(bitPattern: $0) } }
    /// A NUL-terminated string attribute (terminator optional, bytes past it ignored).
    public var string: String {
        let bytes = payload.prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }
    /// The string attribute's first `maxBytes` bytes at most (a bound on what a reply can make
    /// us keep; a UTF-8 sequence cut in two decodes as U+FFFD).
    public func string(maxBytes: Int) -> String {
        let bytes = payload.prefix { $0 != 0 }.prefix(maxBytes)
        return String(decoding: bytes, as: UTF8.self)
    }
    public var mac: MACBytes? { payload.count == 6 ? MACBytes(payload) : nil }
    /// The attributes nested inside this one.
    public var nested: [NetlinkAttribute] { NetlinkAttribute.parse(payload) }

    /// Splits `buffer` into attributes; stops at the first malformed one.
    public static func parse(_ buffer: UnsafeRawBufferPointer) -> [NetlinkAttribute] {
        var out: [NetlinkAttribute] = []
        var offset = 0
        while offset + 4 <= buffer.count {
            let len = Int(buffer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = buffer.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self) & 0x3FFF
            guard len >= 4, offset + len <= buffer.count else { break }
            out.append(NetlinkAttribute(type: type, payload: UnsafeRawBufferPointer(rebasing: buffer[(offset + 4)..<(offset + len)])))
            offset += (len + 3) & ~3
        }
        return out
    }
}

/// Six bytes of a hardware address as they came off the wire.
public struct MACBytes {
    public let octets: [UInt8]
    init(_ p: UnsafeRawBufferPointer) { octets = Array(p) }
}

extension Array where Element == NetlinkAttribute {
    func first<T: BinaryInteger>(_ type: T) -> NetlinkAttribute? { first { $0.type == UInt16(truncatingIfNeeded: type) } }
}
