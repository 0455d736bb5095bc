// A vhost-user front-end and virtio driver written for the tests: memfd-backed "guest memory",
// messages sent over a socketpair to a VhostUserBackend driven on the test's own thread, and a
// driver-side split ring (descriptors, available ring, reading the used ring).
import CVhostUserShim
import Glibc
import TestSupport
@testable import VhostUser

/// A front-end over a socketpair to a backend driven synchronously on this thread.
final class TestFrontend {
    let backend: VhostUserBackend
    let backendSide: VhostUserConnection
    let frontendSide: VhostUserConnection
    var logs: [String] = []
    /// Set when a handled message asked the connection to end.
    var ended: String?

    init(queuePairs: Int = 1, offloads: VirtioNetFeatures.Offloads = .all) {
        var fds: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        backendSide = VhostUserConnection(adopting: fds[0])
        frontendSide = VhostUserConnection(adopting: fds[1])
        backend = VhostUserBackend(config: VhostUserDeviceConfig(
            name: "vu-test", deviceFeatures: VirtioNetFeatures.device(offloads: offloads, queuePairs: queuePairs),
            queuePairs: queuePairs))
        backend.log = { [unowned self] in self.logs.append($0) }
    }

    /// Sends raw bytes (+fds, which are dup'ed so the caller keeps its own) and lets the
    /// backend handle one message.
    func sendRaw(_ bytes: [UInt8], fds: [Int32] = []) {
        let dups = fds.map { dup($0) }
        try! frontendSide.send(bytes, fds: dups)
        for d in dups { close(d) }
    }

    /// Lets the backend read and handle one message. Returns false if it asked to end.
    @discardableResult
    func pump() -> Bool {
        do {
            guard let m = try backendSide.receive() else { ended = "eof"; return false }
            if let reason = backend.handle(m, replyingOn: backendSide) { ended = reason; return false }
            return true
        } catch { ended = "\(error)"; return false }
    }

    @discardableResult
    func request(_ r: VhostUserRequest, _ payload: [UInt8] = [], fds: [Int32] = [], needReply: Bool = false) -> Bool {
        sendRaw(VhostUserEncoder.message(request: r.rawValue, flags: 1 | (needReply ? VhostUserHeader.flagNeedReply : 0), payload: payload), fds: fds)
        return pump()
    }

    /// Reads one reply (must be there already).
    func readReply() -> (VhostUserHeader, [UInt8])? {
        var pfd = pollfd(fd: frontendSide.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 1000) == 1, let m = try? frontendSide.receiveReply() else { return nil }
        return m
    }

    func replyU64() -> UInt64? {
        guard let (_, p) = readReply(), p.count == 8 else { return nil }
        return p.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }

    /// GET/SET features (everything offered, or `features`), protocol features.
    func negotiate(features: UInt64? = nil, protocolFeatures: UInt64 = VhostUserProtocolFeature.replyAck) -> UInt64 {
        request(.getFeatures)
        let offered = replyU64()!
        let f = features ?? offered
        request(.setFeatures, VhostUserEncoder.u64(f))
        if f & VirtioFeature.protocolFeatures != 0 {
            request(.getProtocolFeatures)
            _ = replyU64()
            request(.setProtocolFeatures, VhostUserEncoder.u64(protocolFeatures))
        }
        request(.setOwner)
        return f
    }

    func setMemTable(_ ram: GuestRAM) -> Bool {
        request(.setMemTable, VhostUserEncoder.memoryTable([ram.region]), fds: [ram.fd])
    }

    /// Sets up ring `index` (num, base 0, addresses, kick, call, enable); returns kick, call.
    @discardableResult
    func setUpRing(_ index: UInt32, _ ring: DriverRing, enable: Bool = true) -> (kick: Int32, call: Int32) {
        request(.setVringNum, VhostUserEncoder.vringState(index: index, num: UInt32(ring.size)))
        request(.setVringBase, VhostUserEncoder.vringState(index: index, num: 0))
        request(.setVringAddr, VhostUserEncoder.vringAddress(ring.addressIndexed(index)))
        let kick = tb_vu_eventfd(1), call = tb_vu_eventfd(1)
        request(.setVringCall, VhostUserEncoder.u64(UInt64(index)), fds: [call])
        request(.setVringKick, VhostUserEncoder.u64(UInt64(index)), fds: [kick])
        if enable && backend.negotiated(VirtioFeature.protocolFeatures) {
            request(.setVringEnable, VhostUserEncoder.vringState(index: index, num: 1))
        }
        return (kick, call)
    }
}

extension VhostUserConnection {
    /// Front-end side: reads a reply (header must carry REPLY).
    func receiveReply() throws -> (VhostUserHeader, [UInt8])? {
        var h = [UInt8](repeating: 0, count: 12)
        guard read(fd, &h, 12) == 12 else { return nil }
        let header = h.withUnsafeBytes { VhostUserHeader(bytes: $0.baseAddress!) }
        var p = [UInt8](repeating: 0, count: Int(header.size))
        if header.size > 0 { guard read(fd, &p, p.count) == p.count else { return nil } }
        return (header, p)
    }
}

/// Counts open descriptors of this process (to see that refused fds were closed).
/// Descriptors of this process open on the same file as `fd` (a memfd: its own inode), so
/// tests running in parallel, opening and closing descriptors of their own, do not disturb it.
func openFDCount(of fd: Int32) -> Int {
    var target = stat()
    guard fstat(fd, &target) == 0, let d = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(d) }
    var n = 0
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let other = Int32(name) else { continue }
        var st = stat()
        if fstat(other, &st) == 0, st.st_dev == target.st_dev, st.st_ino == target.st_ino { n += 1 }
    }
    return n
}

func testFrame(_ len: Int, seed: UInt8 = 1) -> [UInt8] {
    var f = [UInt8](repeating: 0, count: len)
    for i in 0..<len { f[i] = UInt8(truncatingIfNeeded: i &* 7 &+ Int(seed)) }
    if len >= 12 { f.replaceSubrange(0..<12, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56]) }
    return f
}
