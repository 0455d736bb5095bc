// CaptureFormat: the two on-disk capture formats as byte encoders into a caller's buffer.
// pcapng: one Section Header Block, one Interface Description Block per captured port (if_name =
// port name, if_tsresol = 9: nanoseconds), one Enhanced Packet Block per frame (epb_flags carries
// the direction). Classic pcap: the nanosecond magic (0xa1b23c4d), one record per frame, no port.
// Host byte order, as both formats allow (readers detect it from the magic).

public enum CaptureFormat: String, Sendable, CaseIterable {
    case pcapng, pcap
}

/// Where a frame was seen.
public enum CaptureDirection: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case ingress = 1, egress = 2, both = 3
    public var description: String {
        switch self { case .ingress: return "ingress"; case .egress: return "egress"; case .both: return "both" }
    }
    public init?(name: String) {
        switch name { case "ingress", "in": self = .ingress; case "egress", "out": self = .egress
        case "both", "inout": self = .both; default: return nil }
    }
}

/// Link type Ethernet (LINKTYPE_ETHERNET / DLT_EN10MB).
let linktypeEthernet: UInt16 = 1

/// Encodes headers and records. Every `encode*` writes at `into` and returns the bytes used;
/// the caller makes sure `*Size` bytes are free.
struct CaptureEncoder {
    let format: CaptureFormat
    let interfaces: [String]
    let snaplen: UInt32

    /// Bytes of the file header (SHB + IDBs, or the pcap global header).
    var headerSize: Int {
        switch format {
        case .pcap: return 24
        case .pcapng: return shbSize + interfaces.reduce(0) { $0 + idbSize(name: $1) }
        }
    }

    /// Upper bound of one record's size for a frame of `capturedLength` bytes.
    static func recordSize(_ capturedLength: Int) -> Int { 32 + pad4(capturedLength) + 12 }

    func encodeHeader(into p: UnsafeMutableRawPointer) -> Int {
        var w = ByteWriter(p)
        switch format {
        case .pcap:
            w.u32(0xa1b2_3c4d); w.u16(2); w.u16(4); w.u32(0); w.u32(0); w.u32(snaplen); w.u32(UInt32(linktypeEthernet))
        case .pcapng:
            let app = Array("tapbridge".utf8)
            w.u32(0x0A0D_0D0A); w.u32(UInt32(shbSize)); w.u32(0x1A2B_3C4D); w.u16(1); w.u16(0)
            w.u64(UInt64.max)                          // section length: not specified
            w.option(4, app)                           // shb_userappl
            w.u32(0)                                   // opt_endofopt
            w.u32(UInt32(shbSize))
            for name in interfaces {
                let n = Array(name.utf8.prefix(255))
                let size = idbSize(name: name)
                w.u32(1); w.u32(UInt32(size)); w.u16(linktypeEthernet); w.u16(0); w.u32(snaplen)
                w.option(2, n)                         // if_name
                w.option(9, [9])                       // if_tsresol: 10^-9 s
                w.u32(0)
                w.u32(UInt32(size))
            }
        }
        return w.offset
    }

    /// One frame; `timestamp` in ns since the epoch.
    @inline(__always)
    func encodeRecord(into p: UnsafeMutableRawPointer, interface: UInt16, direction: CaptureDirection,
                      timestamp: UInt64, originalLength: Int, data: UnsafeRawBufferPointer) -> Int {
        var w = ByteWriter(p)
        let cap = data.count
        switch format {
        case .pcap:
            w.u32(UInt32(truncatingIfNeeded: timestamp / 1_000_000_000))
            w.u32(UInt32(truncatingIfNeeded: timestamp % 1_000_000_000))
            w.u32(UInt32(cap)); w.u32(UInt32(originalLength))
            w.bytes(data)
        case .pcapng:
            let size = 28 + pad4(cap) + 12 + 4
            w.u32(6); w.u32(UInt32(size)); w.u32(UInt32(interface))
            w.u32(UInt32(truncatingIfNeeded: timestamp >> 32)); w.u32(UInt32(truncatingIfNeeded: timestamp))
            w.u32(UInt32(cap)); w.u32(UInt32(originalLength))
            w.bytes(data); w.zeros(pad4(cap) - cap)
            // epb_flags: bits 0-1 direction (01 inbound, 10 outbound).
            w.u16(2); w.u16(4); w.u32(direction == .ingress ? 1 : 2)
            w.u32(0)
            w.u32(UInt32(size))
        }
        return w.offset
    }

    /// pcapng Interface Statistics Block: frames captured (isb_ifrecv) and dropped (isb_ifdrop)
    /// for one interface, with an optional comment. Size: `statisticsSize(comment:)`.
    func encodeStatistics(into p: UnsafeMutableRawPointer, interface: UInt16, timestamp: UInt64,
                          received: UInt64, dropped: UInt64, comment: String?) -> Int {
        var w = ByteWriter(p)
        let size = statisticsSize(comment: comment)
        w.u32(5); w.u32(UInt32(size)); w.u32(UInt32(interface))
        w.u32(UInt32(truncatingIfNeeded: timestamp >> 32)); w.u32(UInt32(truncatingIfNeeded: timestamp))
        if let c = comment { w.option(1, Array(c.utf8.prefix(1000))) }   // opt_comment
        w.u16(4); w.u16(8); w.u64(received)                               // isb_ifrecv
        w.u16(5); w.u16(8); w.u64(dropped)                                // isb_ifdrop
        w.u32(0)
        w.u32(UInt32(size))
        return w.offset
    }

    func statisticsSize(comment: String?) -> Int {
        20 + (comment.map { 4 + pad4(min(1000, $0.utf8.count)) } ?? 0) + 12 + 12 + 4 + 4
    }

    private var shbSize: Int { 28 + 4 + pad4(9) + 4 }
    private func idbSize(name: String) -> Int {
        20 + 4 + pad4(min(255, name.utf8.count)) + 4 + 4 + 4
    }
}

@inline(__always) func pad4(_ n: Int) -> Int { (n + 3) & ~3 }

/// Little cursor over raw memory (host byte order, unaligned stores).
struct ByteWriter {
    let base: UnsafeMutableRawPointer
    var offset = 0
    init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inline(__always) mutating func u16(_ v: UInt16) { base.storeBytes(of: v, toByteOffset: offset, as: UInt16.self); offset += 2 }
    @inline(__always) mutating func u32(_ v: UInt32) { base.storeBytes(of: v, toByteOffset: offset, as: UInt32.self); offset += 4 }
    @inline(__always) mutating func u64(_ v: UInt64) { base.storeBytes(of: v, toByteOffset: offset, as: UInt64.self); offset += 8 }
    @inline(__always) mutating func bytes(_ b: UnsafeRawBufferPointer) {
        if let a = b.baseAddress, b.count > 0 { (base + offset).copyMemory(from: a, byteCount: b.count) }
        offset += b.count
    }
    @inline(__always) mutating func zeros(_ n: Int) {
        if n > 0 { (base + offset).initializeMemory(as: UInt8.self, repeating: 0, count: n) }
        offset += n
    }
    /// A pcapng option: code, length, value padded to 4.
    mutating func option(_ code: UInt16, _ value: [UInt8]) {
        u16(code); u16(UInt16(value.count))
        value.withUnsafeBytes { bytes($0) }
        zeros(pad4(value.count) - value.count)
    }
}
