// PcapngStreamReader: reads the pcapng stream a daemon sends for `tapbridge capture` (as written
// by CaptureWriter: host byte order, ns timestamps) block by block from arbitrary chunks, and
// hands out frames (EPB) and statistics (ISB). Bounded: a block larger than `maxBlock` or with
// an impossible length is an error, never a reason to buffer without end.

public struct PcapngStreamReader {
    public static let maxBlock = CaptureWriter.maxSnaplen + 4096
    private var buffer: [UInt8] = []
    private var start = 0
    public private(set) var sawSectionHeader = false

    public init() {}

    /// One captured frame.
    public struct Packet {
        public var interface: UInt16
        public var direction: CaptureDirection
        public var timestamp: UInt64
        public var originalLength: Int
        public var data: UnsafeRawBufferPointer
    }

    /// Appends `bytes` and calls `frame` for every complete EPB, `statistics` for every ISB
    /// (interface, frames received, frames dropped).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer,
                              frame: (Packet) throws -> Void,
                              statistics: (UInt16, UInt64, UInt64) -> Void) throws {
        buffer.append(contentsOf: bytes)
        try buffer.withUnsafeBytes { all in
            while all.count - start >= 12 {
                let b = all.baseAddress! + start
                let type = b.loadUnaligned(as: UInt32.self)
                let len = Int(b.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                if type == 0x0A0D_0D0A {
                    guard b.loadUnaligned(fromByteOffset: 8, as: UInt32.self) == 0x1A2B_3C4D else {
                        throw CaptureError("capture stream: not a pcapng stream in this byte order")
                    }
                    sawSectionHeader = true
                } else if !sawSectionHeader {
                    throw CaptureError("capture stream: no pcapng section header")
                }
                guard len >= 12, len % 4 == 0, len <= PcapngStreamReader.maxBlock else {
                    throw CaptureError("capture stream: bad block length \(len)")
                }
                guard all.count - start >= len else { break }
                switch type {
                case 6 where len >= 32:
                    let cap = Int(b.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
                    guard 28 + cap <= len - 4 else { throw CaptureError("capture stream: packet longer than its block") }
                    var direction = CaptureDirection.ingress
                    // Options after the padded data: epb_flags (2) carries the direction.
                    var o = 28 + ((cap + 3) & ~3)
                    while o + 4 <= len - 4 {
                        let code = b.loadUnaligned(fromByteOffset: o, as: UInt16.self)
                        let olen = Int(b.loadUnaligned(fromByteOffset: o + 2, as: UInt16.self))
                        if code == 0 { break }
                        if code == 2 && olen == 4 && o + 8 <= len - 4 {
                            direction = b.loadUnaligned(fromByteOffset: o + 4, as: UInt32.self) & 3 == 2 ? .egress : .ingress
                        }
                        o += 4 + ((olen + 3) & ~3)
                    }
                    let ts = UInt64(b.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) << 32
                        | UInt64(b.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
                    try frame(Packet(interface: UInt16(truncatingIfNeeded: b.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
                                     direction: direction, timestamp: ts,
                                     originalLength: Int(b.loadUnaligned(fromByteOffset: 24, as: UInt32.self)),
                                     data: UnsafeRawBufferPointer(start: b + 28, count: cap)))
                case 5 where len >= 24:
                    var received: UInt64 = 0, dropped: UInt64 = 0
                    var o = 20
                    while o + 4 <= len - 4 {
                        let code = b.loadUnaligned(fromByteOffset: o, as: UInt16.self)
                        let olen = Int(b.loadUnaligned(fromByteOffset: o + 2, as: UInt16.self))
                        if code == 0 { break }
                        if olen == 8 && o + 12 <= len - 4 {
                            if code == 4 { received = b.loadUnaligned(fromByteOffset: o + 4, as: UInt64.self) }
                            if code == 5 { dropped = b.loadUnaligned(fromByteOffset: o + 4, as: UInt64.self) }
                        }
                        o += 4 + ((olen + 3) & ~3)
                    }
                    statistics(UInt16(truncatingIfNeeded: b.loadUnaligned(fromByteOffset: 8, as: UInt32.self)), received, dropped)
                default:
                    break   // SHB, IDB and anything else: nothing the CLI needs from them
                }
                start += len
            }
        }
        if start > 0 && (start == buffer.count || start > 1 << 16) {
            buffer.removeFirst(start)
            start = 0
        }
    }
}
