// Messages: the vhost-user wire format (QEMU docs/interop/vhost-user.rst). Owns the 12-byte
// header, the request numbers, the payload layouts and `VhostUserMessage.decode`, which checks
// every payload size against what its request carries and every descriptor count against what
// it needs. Nothing here touches a socket or guest memory; bytes in, a typed value (or a
// `VhostUserError` naming what was wrong) out.
import Glibc

/// Front-end → back-end request numbers (the subset this back-end knows by name; anything else
/// decodes as `.unsupported`).
public enum VhostUserRequest: UInt32, Sendable, CustomStringConvertible {
    case getFeatures = 1, setFeatures = 2, setOwner = 3, resetOwner = 4, setMemTable = 5,
         setLogBase = 6, setLogFD = 7, setVringNum = 8, setVringAddr = 9, setVringBase = 10,
         getVringBase = 11, setVringKick = 12, setVringCall = 13, setVringErr = 14,
         getProtocolFeatures = 15, setProtocolFeatures = 16, getQueueNum = 17,
         setVringEnable = 18, sendRARP = 19, netSetMTU = 20, setBackendReqFD = 21,
         iotlbMessage = 22, setVringEndian = 23, getConfig = 24, setConfig = 25,
         getInflightFD = 31, setInflightFD = 32, resetDevice = 34, vringKick = 35,
         getMaxMemSlots = 36, addMemReg = 37, remMemReg = 38, setStatus = 39, getStatus = 40

    public var description: String {
        switch self {
        case .getFeatures: "GET_FEATURES"
        case .setFeatures: "SET_FEATURES"
        case .setOwner: "SET_OWNER"
        case .resetOwner: "RESET_OWNER"
        case .setMemTable: "SET_MEM_TABLE"
        case .setLogBase: "SET_LOG_BASE"
        case .setLogFD: "SET_LOG_FD"
        case .setVringNum: "SET_VRING_NUM"
        case .setVringAddr: "SET_VRING_ADDR"
        case .setVringBase: "SET_VRING_BASE"
        case .getVringBase: "GET_VRING_BASE"
        case .setVringKick: "SET_VRING_KICK"
        case .setVringCall: "SET_VRING_CALL"
        case .setVringErr: "SET_VRING_ERR"
        case .getProtocolFeatures: "GET_PROTOCOL_FEATURES"
        case .setProtocolFeatures: "SET_PROTOCOL_FEATURES"
        case .getQueueNum: "GET_QUEUE_NUM"
        case .setVringEnable: "SET_VRING_ENABLE"
        case .sendRARP: "SEND_RARP"
        case .netSetMTU: "NET_SET_MTU"
        case .setBackendReqFD: "SET_BACKEND_REQ_FD"
        case .iotlbMessage: "IOTLB_MSG"
        case .setVringEndian: "SET_VRING_ENDIAN"
        case .getConfig: "GET_CONFIG"
        case .setConfig: "SET_CONFIG"
        case .getInflightFD: "GET_INFLIGHT_FD"
        case .setInflightFD: "SET_INFLIGHT_FD"
        case .resetDevice: "RESET_DEVICE"
        case .vringKick: "VRING_KICK"
        case .getMaxMemSlots: "GET_MAX_MEM_SLOTS"
        case .addMemReg: "ADD_MEM_REG"
        case .remMemReg: "REM_MEM_REG"
        case .setStatus: "SET_STATUS"
        case .getStatus: "GET_STATUS"
        }
    }

    /// A request number for messages (known or not).
    public static func name(_ raw: UInt32) -> String {
        VhostUserRequest(rawValue: raw)?.description ?? "request \(raw)"
    }
}

/// The 12-byte header before every message: request, flags, payload size (little-endian).
public struct VhostUserHeader: Equatable, Sendable {
    public static let size = 12
    /// Bits 0-1 of flags: the protocol version, always 1.
    public static let versionMask: UInt32 = 0x3
    public static let version: UInt32 = 0x1
    /// Set on every back-end → front-end reply.
    public static let flagReply: UInt32 = 0x4
    /// The front-end wants a REPLY_ACK u64 for this request (when REPLY_ACK was negotiated).
    public static let flagNeedReply: UInt32 = 0x8

    public var request: UInt32
    public var flags: UInt32
    public var size: UInt32

    public init(request: UInt32, flags: UInt32, size: UInt32) {
        self.request = request; self.flags = flags; self.size = size
    }

    public init(bytes p: UnsafeRawPointer) {
        request = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        flags = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        size = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
    }

    public func store(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: request.littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: flags.littleEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: size.littleEndian, toByteOffset: 8, as: UInt32.self)
    }

    public var needsReply: Bool { flags & Self.flagNeedReply != 0 }

    /// Checks what can be checked before reading the payload: version 1, not a reply, a payload
    /// no larger than any request of ours carries.
    public func validate() throws(VhostUserError) {
        if flags & Self.versionMask != Self.version {
            throw .badVersion(request: request, flags: flags)
        }
        if flags & Self.flagReply != 0 { throw .unexpectedReply(request: request) }
        if Int(size) > VhostUserLimits.maxPayload {
            throw .payloadTooLarge(request: request, size: Int(size))
        }
    }
}

/// Bounds on everything read off the socket.
public enum VhostUserLimits {
    /// VHOST_MEMORY_BASELINE_NREGIONS: regions in one SET_MEM_TABLE (and fds in one message).
    public static let maxRegions = 8
    public static let maxFDs = 8
    /// Largest payload accepted (the biggest one we decode is the 264-byte memory table; the
    /// spec's largest, GET/SET_CONFIG, is 268). A larger size field closes the connection.
    public static let maxPayload = 4096
    /// Virtqueues per device: 2 per queue pair (plus a control queue index we never serve).
    public static let maxQueues = 256
    /// Largest split-ring size (the spec's limit for split virtqueues).
    public static let maxQueueSize = 32768
}

/// One SET_MEM_TABLE region as the front-end describes it.
public struct MemoryRegionDescriptor: Equatable, Sendable {
    public var guestPhysicalAddress: UInt64
    public var size: UInt64
    /// The front-end's own virtual address of the region (ring addresses are given in these).
    public var userAddress: UInt64
    /// Where the region starts inside the fd sent with it.
    public var mmapOffset: UInt64
    public init(guestPhysicalAddress: UInt64, size: UInt64, userAddress: UInt64, mmapOffset: UInt64) {
        self.guestPhysicalAddress = guestPhysicalAddress; self.size = size
        self.userAddress = userAddress; self.mmapOffset = mmapOffset
    }
    public static let encodedSize = 32
}

/// SET_VRING_ADDR's payload: where a ring's three parts live, in the front-end's user addresses.
public struct VringAddress: Equatable, Sendable {
    public var index: UInt32
    public var flags: UInt32
    public var descriptorTable: UInt64
    public var usedRing: UInt64
    public var availableRing: UInt64
    public var log: UInt64
    public init(index: UInt32, flags: UInt32 = 0, descriptorTable: UInt64, usedRing: UInt64, availableRing: UInt64, log: UInt64 = 0) {
        self.index = index; self.flags = flags; self.descriptorTable = descriptorTable
        self.usedRing = usedRing; self.availableRing = availableRing; self.log = log
    }
    public static let encodedSize = 40
    /// VHOST_VRING_F_LOG: log writes to `log` (needs LOG_ALL, never offered).
    public static let flagLog: UInt32 = 1
}

/// A decoded request. Descriptors in it are owned by whoever holds the value (close them or
/// hand them on); `decode` closes every descriptor of a message it rejects.
public enum VhostUserMessage: Sendable {
    case getFeatures
    case setFeatures(UInt64)
    case setOwner
    case resetOwner
    case setMemTable([MemoryRegionDescriptor], fds: [Int32])
    case setVringNum(index: UInt32, num: UInt32)
    case setVringAddr(VringAddress)
    case setVringBase(index: UInt32, num: UInt32)
    case getVringBase(index: UInt32)
    /// fd nil: the front-end set VHOST_USER_VRING_NOFD_MASK (polling / no eventfd).
    case setVringKick(index: UInt32, fd: Int32?)
    case setVringCall(index: UInt32, fd: Int32?)
    case setVringErr(index: UInt32, fd: Int32?)
    case getProtocolFeatures
    case setProtocolFeatures(UInt64)
    case getQueueNum
    case setVringEnable(index: UInt32, enable: Bool)
    case resetDevice
    /// A well-framed request this back-end does not implement (its features were never
    /// offered); any descriptors it carried are already closed.
    case unsupported(request: UInt32)

    /// Bit 8 of the u64 of SET_VRING_KICK/CALL/ERR: no descriptor follows.
    public static let vringNoFDMask: UInt64 = 0x100
    public static let vringIndexMask: UInt64 = 0xFF

    /// Decodes one message. Takes ownership of `fds`: on success they are in the value (or
    /// closed if the request keeps none), on error they are closed.
    public static func decode(header: VhostUserHeader, payload: UnsafeRawBufferPointer, fds: [Int32]) throws(VhostUserError) -> VhostUserMessage {
        var keep = false
        defer { if !keep { for fd in fds { _ = Glibc.close(fd) } } }
        try header.validate()
        guard payload.count == Int(header.size) else {
            throw .truncated(request: header.request, expected: Int(header.size), got: payload.count)
        }
        let request = header.request
        func size(_ expected: Int) throws(VhostUserError) {
            if payload.count != expected { throw .badSize(request: request, expected: expected, got: payload.count) }
        }
        func fdCount(_ expected: Int) throws(VhostUserError) {
            if fds.count != expected { throw .badFDCount(request: request, expected: expected, got: fds.count) }
        }
        func u64(_ offset: Int) -> UInt64 {
            UInt64(littleEndian: payload.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        func u32(_ offset: Int) -> UInt32 {
            UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        }
        guard let known = VhostUserRequest(rawValue: request) else {
            return .unsupported(request: request)
        }
        switch known {
        case .getFeatures, .getProtocolFeatures, .getQueueNum, .setOwner, .resetOwner, .resetDevice:
            // Some front-ends send RESET_OWNER with a zero u64; accept 0 or 8 bytes there.
            if known == .resetOwner && payload.count == 8 { try fdCount(0) } else { try size(0); try fdCount(0) }
            switch known {
            case .getFeatures: return .getFeatures
            case .getProtocolFeatures: return .getProtocolFeatures
            case .getQueueNum: return .getQueueNum
            case .setOwner: return .setOwner
            case .resetOwner: return .resetOwner
            default: return .resetDevice
            }
        case .setFeatures, .setProtocolFeatures:
            try size(8); try fdCount(0)
            return known == .setFeatures ? .setFeatures(u64(0)) : .setProtocolFeatures(u64(0))
        case .setVringNum, .setVringBase, .getVringBase, .setVringEnable:
            try size(8); try fdCount(0)
            let index = u32(0), num = u32(4)
            if index >= UInt32(VhostUserLimits.maxQueues) { throw .badQueueIndex(request: request, index: index) }
            switch known {
            case .setVringNum: return .setVringNum(index: index, num: num)
            case .setVringBase: return .setVringBase(index: index, num: num)
            case .getVringBase: return .getVringBase(index: index)
            default:
                if num > 1 { throw .badValue(request: request, what: "enable \(num) (0 or 1)") }
                return .setVringEnable(index: index, enable: num == 1)
            }
        case .setVringAddr:
            try size(VringAddress.encodedSize); try fdCount(0)
            let a = VringAddress(index: u32(0), flags: u32(4), descriptorTable: u64(8), usedRing: u64(16),
                                 availableRing: u64(24), log: u64(32))
            if a.index >= UInt32(VhostUserLimits.maxQueues) { throw .badQueueIndex(request: request, index: a.index) }
            return .setVringAddr(a)
        case .setVringKick, .setVringCall, .setVringErr:
            try size(8)
            let value = u64(0)
            if value & ~(vringIndexMask | vringNoFDMask) != 0 {
                throw .badValue(request: request, what: "u64 0x\(String(value, radix: 16)) (only bits 0-8 defined)")
            }
            let index = UInt32(value & vringIndexMask)
            let noFD = value & vringNoFDMask != 0
            try fdCount(noFD ? 0 : 1)
            keep = true
            let fd: Int32? = noFD ? nil : fds[0]
            switch known {
            case .setVringKick: return .setVringKick(index: index, fd: fd)
            case .setVringCall: return .setVringCall(index: index, fd: fd)
            default: return .setVringErr(index: index, fd: fd)
            }
        case .setMemTable:
            guard payload.count >= 8 else { throw .badSize(request: request, expected: 8, got: payload.count) }
            let count = Int(u32(0))
            if count == 0 || count > VhostUserLimits.maxRegions {
                throw .badValue(request: request, what: "\(count) regions (1...\(VhostUserLimits.maxRegions))")
            }
            try size(8 + count * MemoryRegionDescriptor.encodedSize)
            try fdCount(count)
            var regions: [MemoryRegionDescriptor] = []
            regions.reserveCapacity(count)
            for i in 0..<count {
                let o = 8 + i * MemoryRegionDescriptor.encodedSize
                regions.append(MemoryRegionDescriptor(guestPhysicalAddress: u64(o), size: u64(o + 8),
                                                      userAddress: u64(o + 16), mmapOffset: u64(o + 24)))
            }
            keep = true
            return .setMemTable(regions, fds: fds)
        default:
            // Requests for features never offered (log, config, inflight, status, slots, ...).
            return .unsupported(request: request)
        }
    }
}

/// Everything that can be wrong with a message or what it asks for. The text names the
/// request and the value at fault.
public enum VhostUserError: Error, Equatable, CustomStringConvertible, Sendable {
    case badVersion(request: UInt32, flags: UInt32)
    case unexpectedReply(request: UInt32)
    case payloadTooLarge(request: UInt32, size: Int)
    case truncated(request: UInt32, expected: Int, got: Int)
    case badSize(request: UInt32, expected: Int, got: Int)
    case badFDCount(request: UInt32, expected: Int, got: Int)
    case badQueueIndex(request: UInt32, index: UInt32)
    case badValue(request: UInt32, what: String)
    case controlTruncated
    case disconnectedMidMessage(read: Int, of: Int)
    case socket(String, errno: Int32)
    /// A request that is well-formed but refused (bad memory table, ring outside memory...).
    case refused(String)

    public var description: String {
        func n(_ r: UInt32) -> String { VhostUserRequest.name(r) }
        switch self {
        case .badVersion(let r, let f): return "\(n(r)): flags 0x\(String(f, radix: 16)) do not carry version 1"
        case .unexpectedReply(let r): return "\(n(r)): a reply where a request was expected"
        case .payloadTooLarge(let r, let s): return "\(n(r)): payload of \(s) bytes (at most \(VhostUserLimits.maxPayload))"
        case .truncated(let r, let e, let g): return "\(n(r)): payload of \(g) bytes, header says \(e)"
        case .badSize(let r, let e, let g): return "\(n(r)): payload of \(g) bytes, the request carries \(e)"
        case .badFDCount(let r, let e, let g): return "\(n(r)): \(g) file descriptors, the request carries \(e)"
        case .badQueueIndex(let r, let i): return "\(n(r)): queue index \(i) out of range"
        case .badValue(let r, let w): return "\(n(r)): \(w)"
        case .controlTruncated: return "control message truncated (too many file descriptors)"
        case .disconnectedMidMessage(let r, let o): return "front-end disconnected mid-message (\(r) of \(o) bytes)"
        case .socket(let op, let e): return "\(op): \(String(cString: strerror(e)))"
        case .refused(let why): return why
        }
    }
}

/// Encodes replies (and, for tests and fuzzing, requests).
public enum VhostUserEncoder {
    public static func message(request: UInt32, flags: UInt32, payload: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: VhostUserHeader.size + payload.count)
        out.withUnsafeMutableBytes { b in
            VhostUserHeader(request: request, flags: flags, size: UInt32(payload.count)).store(to: b.baseAddress!)
        }
        out.replaceSubrange(VhostUserHeader.size..., with: payload)
        return out
    }
    public static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    public static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    public static func vringState(index: UInt32, num: UInt32) -> [UInt8] { u32(index) + u32(num) }
    public static func vringAddress(_ a: VringAddress) -> [UInt8] {
        u32(a.index) + u32(a.flags) + u64(a.descriptorTable) + u64(a.usedRing) + u64(a.availableRing) + u64(a.log)
    }
    public static func memoryTable(_ regions: [MemoryRegionDescriptor]) -> [UInt8] {
        var out = u32(UInt32(regions.count)) + u32(0)
        for r in regions { out += u64(r.guestPhysicalAddress) + u64(r.size) + u64(r.userAddress) + u64(r.mmapOffset) }
        return out
    }
}
