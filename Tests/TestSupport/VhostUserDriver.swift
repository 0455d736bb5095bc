// VhostUserDriver: the guest side of vhost-user for tests: memfd-backed "guest memory" and a
// driver-side split ring (descriptors, available ring, reading the used ring), plus a front-end
// that speaks the protocol over a real socket to a back-end running elsewhere (a VhostUserPort).
import CVhostUserShim
import Foundation
import Glibc
import SystemCalls
import VhostUser

/// Guest memory: one memfd mapped here; guest-physical `gpa`, front-end user address `uva`.
public final class GuestRAM {
    public let fd: Int32
    public let size: Int
    public let base: UnsafeMutableRawPointer
    public let gpa: UInt64
    public let uva: UInt64
    public init(size: Int = 1 << 20, gpa: UInt64 = 0x10_0000, uva: UInt64 = 0x7f00_0000_0000) {
        fd = tb_vu_memfd("tbt-guest")
        precondition(fd >= 0)
        precondition(ftruncate(fd, off_t(size)) == 0)
        self.size = size; self.gpa = gpa; self.uva = uva
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        precondition(p != MAP_FAILED)
        base = p!
    }
    deinit { munmap(base, size); close(fd) }
    public func host(_ guest: UInt64) -> UnsafeMutableRawPointer { base + Int(guest - gpa) }
    public func uvaOf(_ guest: UInt64) -> UInt64 { guest - gpa + uva }
    public var region: MemoryRegionDescriptor { MemoryRegionDescriptor(guestPhysicalAddress: gpa, size: UInt64(size), userAddress: uva, mmapOffset: 0) }
}

/// The driver side of one split ring laid out in GuestRAM at `at` (guest-physical).
public struct DriverRing {
    public let ram: GuestRAM
    public let size: Int
    public let desc: UInt64, avail: UInt64, used: UInt64
    public var nextDesc = 0
    public var availIdx: UInt16 = 0
    public var lastUsed: UInt16 = 0
    public init(ram: GuestRAM, at: UInt64, size: Int) {
        self.ram = ram; self.size = size
        desc = at
        avail = at + UInt64(16 * size)
        used = (avail + UInt64(6 + 2 * size) + 3) & ~3
        memset(ram.host(desc), 0, Int(used - desc) + 6 + 8 * size)
    }
    public var address: VringAddress { addressIndexed(0) }
    public func addressIndexed(_ i: UInt32) -> VringAddress {
        VringAddress(index: i, descriptorTable: ram.uvaOf(desc), usedRing: ram.uvaOf(used), availableRing: ram.uvaOf(avail))
    }
    public func writeDescriptor(_ i: Int, addr: UInt64, len: UInt32, flags: UInt16, next: UInt16, table: UInt64? = nil) {
        let d = ram.host((table ?? desc) + UInt64(16 * i))
        d.storeBytes(of: addr.littleEndian, toByteOffset: 0, as: UInt64.self)
        d.storeBytes(of: len.littleEndian, toByteOffset: 8, as: UInt32.self)
        d.storeBytes(of: flags.littleEndian, toByteOffset: 12, as: UInt16.self)
        d.storeBytes(of: next.littleEndian, toByteOffset: 14, as: UInt16.self)
    }
    /// Adds a chain of buffers (guest address, length, device-writable); returns its head.
    @discardableResult
    public mutating func add(_ buffers: [(UInt64, UInt32, Bool)]) -> UInt16 {
        let head = nextDesc
        for (k, b) in buffers.enumerated() {
            let i = (head + k) % size
            let last = k == buffers.count - 1
            writeDescriptor(i, addr: b.0, len: b.1, flags: (b.2 ? 2 : 0) | (last ? 0 : 1), next: UInt16((i + 1) % size))
        }
        nextDesc = (head + buffers.count) % size
        publish(head: UInt16(head))
        return UInt16(head)
    }
    public mutating func publish(head: UInt16) {
        ram.host(avail + 4 + UInt64(2 * (Int(availIdx) % size))).storeBytes(of: head.littleEndian, as: UInt16.self)
        availIdx &+= 1
        tb_vu_store_release_u16(ram.host(avail + 2), availIdx)
    }
    public var usedIdx: UInt16 { tb_vu_load_acquire_u16(ram.host(used + 2)) }
    /// Used elements not read yet.
    public mutating func takeUsed() -> [(id: UInt32, len: UInt32)] {
        var out: [(UInt32, UInt32)] = []
        while lastUsed != usedIdx {
            let e = ram.host(used + 4 + UInt64(8 * (Int(lastUsed) % size)))
            out.append((e.load(fromByteOffset: 0, as: UInt32.self), e.load(fromByteOffset: 4, as: UInt32.self)))
            lastUsed &+= 1
        }
        return out
    }
    public func setUsedEvent(_ v: UInt16) { ram.host(avail + 4 + UInt64(2 * size)).storeBytes(of: v, as: UInt16.self) }
    public func setAvailFlags(_ v: UInt16) { ram.host(avail).storeBytes(of: v, as: UInt16.self) }
    public var availEvent: UInt16 { ram.host(used + 4 + UInt64(8 * size)).load(as: UInt16.self) }
    public var usedFlags: UInt16 { ram.host(used).load(as: UInt16.self) }
}


public struct FrontendError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A vhost-user front-end over a real socket (the back-end runs elsewhere, e.g. a VhostUserPort).
/// REPLY_ACK is negotiated and asked for on every request without a reply of its own, so each
/// call returns once the back-end has applied it.
public final class SocketFrontend {
    public let fd: Int32
    public var acked: UInt64 = 0

    /// Connects to `path`, retrying until `timeout` (the back-end may still be binding).
    public init(path: String, timeout: Double = 10) throws {
        let end = Date().addingTimeInterval(timeout)
        while true {
            let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: Array(path.utf8).prefix($0.count - 1)) }
            let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            if r == 0 { fd = s; break }
            close(s)
            if Date() > end { throw FrontendError("cannot connect to \(path): errno \(errno)") }
            usleep(20_000)
        }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    deinit { close(fd) }

    /// Raw bytes (and descriptors, sent with the first byte).
    public func sendRaw(_ bytes: [UInt8], fds: [Int32] = []) throws {
        var msg = msghdr()
        var control = [UInt8](repeating: 0, count: tb_vu_cmsg_space(Int32(max(fds.count, 1))))
        let n: Int = bytes.withUnsafeBytes { b in
            var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)
            return withUnsafeMutablePointer(to: &iov) { iovp in
                msg.msg_iov = iovp; msg.msg_iovlen = 1
                return control.withUnsafeMutableBytes { c in
                    if !fds.isEmpty { fds.withUnsafeBufferPointer { tb_vu_put_fds(&msg, c.baseAddress, $0.baseAddress, Int32($0.count)) } }
                    // Retried on EINTR (SystemCalls): a signal must not fail a test's request.
                    return Syscall.uninterrupted { sendmsg(fd, &msg, Int32(MSG_NOSIGNAL)) }
                }
            }
        }
        if n != bytes.count { throw FrontendError("sendmsg: \(n) of \(bytes.count) bytes, errno \(errno)") }
    }

    private func readExactly(_ n: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var got = 0
        while got < n {
            // Through SystemCalls, which retries EINTR: a read on a socket with SO_RCVTIMEO is
            // not restarted after a signal (or a stop and continue) even with SA_RESTART, so a
            // raw read(2) here failed a test with EINTR on a loaded machine. EAGAIN is the
            // receive timeout.
            let r = out.withUnsafeMutableBytes { b in
                Result { () throws(SyscallError) in try Syscall.read(fd, b.baseAddress! + got, n - got) }
            }
            switch r {
            case .success(.processed(let k)) where k > 0: got += k
            case .success(.processed): throw FrontendError("back-end closed the connection (read \(got) of \(n))")
            case .success(.wouldBlock): throw FrontendError("back-end did not answer within the receive timeout (read \(got) of \(n))")
            case .failure(let e): throw FrontendError("reading the back-end's reply: \(e) (read \(got) of \(n))")
            }
        }
        return out
    }

    /// Sends a request and returns its reply payload (requests with their own reply) or the
    /// REPLY_ACK value (all others, once REPLY_ACK is negotiated).
    @discardableResult
    public func request(_ r: VhostUserRequest, _ payload: [UInt8] = [], fds: [Int32] = []) throws -> [UInt8] {
        let ownReply: Set<VhostUserRequest> = [.getFeatures, .getProtocolFeatures, .getQueueNum, .getVringBase]
        let ack = !ownReply.contains(r) && acked & (1 << 3) != 0
        try sendRaw(VhostUserEncoder.message(request: r.rawValue, flags: 1 | (ack ? VhostUserHeader.flagNeedReply : 0), payload: payload), fds: fds)
        guard ownReply.contains(r) || ack else { return [] }
        let h = try readExactly(12)
        let header = h.withUnsafeBytes { VhostUserHeader(bytes: $0.baseAddress!) }
        return try readExactly(Int(header.size))
    }

    public static func u64(_ b: [UInt8]) -> UInt64 { b.count == 8 ? b.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } : .max }

    /// GET/SET_FEATURES (all offered but `dropping`), protocol features (REPLY_ACK), SET_OWNER;
    /// returns the features set.
    public func negotiate(dropping: UInt64 = 0) throws -> UInt64 {
        let offered = Self.u64(try request(.getFeatures)) & ~dropping
        _ = try request(.getProtocolFeatures)
        try request(.setProtocolFeatures, VhostUserEncoder.u64(1 << 3))
        acked = 1 << 3
        guard Self.u64(try request(.setFeatures, VhostUserEncoder.u64(offered))) == 0 else { throw FrontendError("SET_FEATURES refused") }
        try request(.setOwner)
        return offered
    }

    /// SET_MEM_TABLE with one memfd region; true if acked.
    public func setMemTable(_ ram: GuestRAM) throws -> Bool {
        Self.u64(try request(.setMemTable, VhostUserEncoder.memoryTable([ram.region]), fds: [ram.fd])) == 0
    }

    /// Sets up ring `index` and enables it; returns (kick, call) eventfds (the caller closes them).
    public func setUpRing(_ index: UInt32, _ ring: DriverRing) throws -> (kick: Int32, call: Int32) {
        try request(.setVringNum, VhostUserEncoder.vringState(index: index, num: UInt32(ring.size)))
        try request(.setVringBase, VhostUserEncoder.vringState(index: index, num: 0))
        try request(.setVringAddr, VhostUserEncoder.vringAddress(ring.addressIndexed(index)))
        let kick = tb_vu_eventfd(1), call = tb_vu_eventfd(1)
        try request(.setVringCall, VhostUserEncoder.u64(UInt64(index)), fds: [call])
        try request(.setVringKick, VhostUserEncoder.u64(UInt64(index)), fds: [kick])
        try request(.setVringEnable, VhostUserEncoder.vringState(index: index, num: 1))
        return (kick, call)
    }
}

/// Writes 1 to an eventfd (a kick).
public func kickEventFD(_ fd: Int32) { var one: UInt64 = 1; _ = write(fd, &one, 8) }
