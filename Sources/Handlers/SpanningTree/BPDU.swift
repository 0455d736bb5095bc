// BPDU: the spanning tree's wire format (IEEE 802.1D-2004 clause 9), decoded from and encoded
// into Ethernet frames. Owns every bound on BPDU bytes: a BPDU arrives from any peer on the
// LAN, so decoding checks the 802.3 length field, the LLC header, the protocol identifier and
// the length each BPDU type needs before reading a field, and refuses timer values outside
// what the standard allows. Pure values, no I/O; the protocol (SpanningTreeProtocol.swift)
// consumes `BPDU`s and produces them.
//
// Frame layout: destination 01:80:C2:00:00:00, source, an 802.3 length (not an EtherType),
// LLC DSAP 0x42 SSAP 0x42 control 0x03, then the BPDU:
//   0  protocol identifier (2, zero)   2 version (0 STP, 2 RSTP)   3 type (0x00 config,
//   0x80 topology change notification, 0x02 RST)   4 flags   5 root identifier (8)
//   13 root path cost (4)   17 bridge identifier (8)   25 port identifier (2)
//   27 message age   29 max age   31 hello time   33 forward delay (each 2, in 1/256 s)
//   35 (RST only) version 1 length (1)
// Flags: bit 0 topology change, 7 acknowledgment (configuration BPDUs); RST BPDUs (version 2 or
// more, MSTP's 3 read as RSTP; a type 0x02 claiming version 0 or 1 is refused) add bit 1
// proposal, bits 2-3 port role, 4 learning, 5 forwarding, 6 agreement.
import Frames

/// A bridge identifier: 16-bit priority (the top 4 bits settable, the rest the system ID
/// extension) then the bridge's MAC. Compared as one 64-bit number: lower is better.
public struct BridgeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(priority: UInt16, mac: MACAddress) { rawValue = UInt64(priority) << 48 | mac.rawValue }
    public var priority: UInt16 { UInt16(truncatingIfNeeded: rawValue >> 48) }
    public var mac: MACAddress { MACAddress(rawValue: rawValue) }
    public static func < (a: BridgeID, b: BridgeID) -> Bool { a.rawValue < b.rawValue }
    /// As the Linux bridge prints it: `8000.525400000001`.
    public var description: String {
        let hex = String(priority, radix: 16)
        let m = mac.octets.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        return String(repeating: "0", count: 4 - hex.count) + hex + "." + m
    }
}

/// One decoded BPDU.
public struct BPDU: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        case configuration = 0x00
        case topologyChangeNotification = 0x80
        case rapid = 0x02
    }
    public var kind: Kind
    /// 0 for STP; 2 for RSTP (a rapid BPDU; read as a configuration BPDU by this STP).
    public var version: UInt8 = 0
    public var topologyChange = false
    public var topologyChangeAcknowledgment = false
    /// RST BPDU flags (802.1D-2004 9.3.3): bits 1 proposal, 2-3 port role, 4 learning,
    /// 5 forwarding, 6 agreement. Zero in configuration BPDUs.
    public var proposal = false
    public var portRole: RSTPRole = .unknown
    public var learning = false
    public var forwarding = false
    public var agreement = false
    public var rootID = BridgeID(rawValue: 0)
    public var rootPathCost: UInt32 = 0
    public var bridgeID = BridgeID(rawValue: 0)
    public var portID: UInt16 = 0
    /// Timers in 1/256 s, as on the wire.
    public var messageAge: UInt16 = 0
    public var maxAge: UInt16 = 0
    public var helloTime: UInt16 = 0
    public var forwardDelay: UInt16 = 0

    public init(kind: Kind) { self.kind = kind }

    /// The spanning tree's group address (never forwarded by an 802.1D bridge).
    public static let groupAddress = MACAddress(rawValue: 0x0180_C200_0000)
    /// Bytes after the Ethernet header: LLC (3) + configuration BPDU (35).
    static let configLength = 3 + 35
    static let tcnLength = 3 + 4
    /// A frame is padded to the Ethernet minimum (60 bytes without FCS).
    public static let frameLength = 60
    /// The most BPDU bytes anything reads (an RST BPDU: 36 + LLC); longer frames are padding.
    public static let maximumParsed = 14 + 3 + 36

    public enum DecodeError: Error, Equatable, Sendable {
        case tooShort, notLLC, badProtocol, unknownType(UInt8), badTimers
        /// An RST BPDU (type 0x02) claiming protocol version 0 or 1.
        case badVersion(UInt8)
    }

    /// The port role an RST BPDU's flags carry (bits 2-3).
    public enum RSTPRole: UInt8, Sendable {
        case unknown = 0, alternateOrBackup = 1, root = 2, designated = 3
    }

    /// Decodes a whole Ethernet frame (destination first). Throws on anything malformed; never
    /// reads outside `frame`.
    public static func decode(frame: UnsafeRawBufferPointer) throws(DecodeError) -> BPDU {
        guard frame.count >= 14 + 3 + 4 else { throw .tooShort }
        let lengthField = Int(frame[12]) << 8 | Int(frame[13])
        // An 802.3 length (< 0x600), and no more than the frame carries.
        guard lengthField < 0x600, lengthField >= 3 + 4, lengthField <= frame.count - 14 else { throw .notLLC }
        guard frame[14] == 0x42, frame[15] == 0x42, frame[16] == 0x03 else { throw .notLLC }
        let b = 17   // start of the BPDU
        let available = lengthField - 3
        guard frame[b] == 0, frame[b + 1] == 0 else { throw .badProtocol }
        let type = frame[b + 3]
        guard let kind = Kind(rawValue: type) else { throw .unknownType(type) }
        var out = BPDU(kind: kind)
        out.version = frame[b + 2]
        if kind == .topologyChangeNotification { return out }
        guard available >= (kind == .rapid ? 36 : 35) else { throw .tooShort }
        // An RST BPDU is protocol version 2 (3 and up: MSTP, read as RSTP, 802.1Q 14.4).
        if kind == .rapid && out.version < 2 { throw .badVersion(out.version) }
        func u16(_ o: Int) -> UInt16 { UInt16(frame[b + o]) << 8 | UInt16(frame[b + o + 1]) }
        func u32(_ o: Int) -> UInt32 { UInt32(u16(o)) << 16 | UInt32(u16(o + 2)) }
        func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) << 32 | UInt64(u32(o + 4)) }
        let flags = frame[b + 4]
        out.topologyChange = flags & 0x01 != 0
        out.topologyChangeAcknowledgment = flags & 0x80 != 0
        if kind == .rapid {
            out.proposal = flags & 0x02 != 0
            out.portRole = RSTPRole(rawValue: (flags >> 2) & 0x03)!
            out.learning = flags & 0x10 != 0
            out.forwarding = flags & 0x20 != 0
            out.agreement = flags & 0x40 != 0
            out.topologyChangeAcknowledgment = false   // unused in RST BPDUs (9.3.3)
        }
        out.rootID = BridgeID(rawValue: u64(5))
        out.rootPathCost = u32(13)
        out.bridgeID = BridgeID(rawValue: u64(17))
        out.portID = u16(25)
        out.messageAge = u16(27)
        out.maxAge = u16(29)
        out.helloTime = u16(31)
        out.forwardDelay = u16(33)
        // 802.1D-2004 9.3.4: a BPDU whose message age is not below its max age is discarded;
        // timers are also held to sane bounds (max age at most 60 s, hello 1/256..60 s).
        guard out.messageAge < out.maxAge, out.maxAge <= 60 * 256, out.helloTime > 0, out.helloTime <= 60 * 256,
              out.forwardDelay <= 60 * 256 else { throw .badTimers }
        return out
    }

    public static func decode(frame: [UInt8]) throws(DecodeError) -> BPDU {
        var result: Result<BPDU, DecodeError> = .failure(.tooShort)
        frame.withUnsafeBytes { buf in
            do throws(DecodeError) { result = .success(try decode(frame: buf)) } catch { result = .failure(error) }
        }
        return try result.get()
    }

    /// The whole Ethernet frame (60 bytes, zero padding) from `source`.
    public func encode(source: MACAddress) -> [UInt8] {
        var f = [UInt8](repeating: 0, count: BPDU.frameLength)
        func put16(_ o: Int, _ v: UInt16) { f[o] = UInt8(v >> 8); f[o + 1] = UInt8(truncatingIfNeeded: v) }
        func put32(_ o: Int, _ v: UInt32) { put16(o, UInt16(v >> 16)); put16(o + 2, UInt16(truncatingIfNeeded: v)) }
        func put64(_ o: Int, _ v: UInt64) { put32(o, UInt32(v >> 32)); put32(o + 4, UInt32(truncatingIfNeeded: v)) }
        for (i, o) in BPDU.groupAddress.octets.enumerated() { f[i] = o }
        for (i, o) in source.octets.enumerated() { f[6 + i] = o }
        let tcn = kind == .topologyChangeNotification
        put16(12, UInt16(tcn ? BPDU.tcnLength : kind == .rapid ? BPDU.configLength + 1 : BPDU.configLength))
        f[14] = 0x42; f[15] = 0x42; f[16] = 0x03
        let b = 17
        f[b + 2] = version
        f[b + 3] = kind.rawValue
        if tcn { return f }
        f[b + 4] = (topologyChange ? 0x01 : 0) | (topologyChangeAcknowledgment ? 0x80 : 0)
        if kind == .rapid {
            f[b + 4] |= (proposal ? 0x02 : 0) | portRole.rawValue << 2 | (learning ? 0x10 : 0)
                | (forwarding ? 0x20 : 0) | (agreement ? 0x40 : 0)
        }
        put64(b + 5, rootID.rawValue)
        put32(b + 13, rootPathCost)
        put64(b + 17, bridgeID.rawValue)
        put16(b + 25, portID)
        put16(b + 27, messageAge)
        put16(b + 29, maxAge)
        put16(b + 31, helloTime)
        put16(b + 33, forwardDelay)
        // (RST) b + 35: version 1 length, 0: no MSTP information follows.
        return f
    }
}
