// Framing and socket tests with hostile clients written here: no kernel network setup, only Unix sockets.
import Glibc
import Testing
import UnixSocketFiles
@testable import VMBackend

func ethFrame(_ len: Int, fill: UInt8 = 0xab) -> [UInt8] {
    var f = [UInt8](repeating: fill, count: len)
    if len >= 12 { f.replaceSubrange(0..<12, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56]) }
    return f
}
func prefixed(_ f: [UInt8]) -> [UInt8] { prefixLength(f.count) + f }
func prefixLength(_ n: Int) -> [UInt8] { [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] }

func streamPair() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
    return (fds[0], fds[1])
}
func writeAll(_ fd: Int32, _ b: [UInt8]) { b.withUnsafeBytes { p in var o = 0; while o < p.count { let n = write(fd, p.baseAddress! + o, p.count - o); precondition(n > 0); o += n } } }

/// Reads from `peer` until it closes or `rounds` polls pass; returns delivered frame sizes and the outcome.
func pump(_ peer: StreamPeer, rounds: Int = 200) -> ([Int], ReadOutcome) {
    var sizes: [Int] = []
    for _ in 0..<rounds {
        let r = peer.readAvailable { sizes.append($0.count) }
        if case .closed = r { return (sizes, r) }
        var pfd = pollfd(fd: peer.fd, events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, 10) == 0 { return (sizes, .wouldBlock) }
    }
    return (sizes, .wouldBlock)
}

func tempPath(_ tag: String) -> String { "/tmp/tbvm-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max)).sock" }

@Suite struct DecoderTests {
    @Test func framesSplitAcrossReadsAndSeveralPerRead() {
        let d = StreamFrameDecoder()
        let stream = prefixed(ethFrame(42)) + prefixed(ethFrame(60)) + prefixed(ethFrame(1518))
        var sizes: [Int] = []
        // one byte at a time
        for b in stream { [b].withUnsafeBytes { _ = d.append($0) }
            while case let .frame(f) = d.next() { sizes.append(f.count) } }
        #expect(sizes == [42, 60, 1518])
        // all at once
        sizes = []
        (stream + stream).withUnsafeBytes { _ = d.append($0) }
        while case let .frame(f) = d.next() { sizes.append(f.count) }
        #expect(sizes == [42, 60, 1518, 42, 60, 1518])
        #expect(d.pending == 0)
    }

    @Test func rejectsWithTypedReasons() {
        let d = StreamFrameDecoder(limits: FrameLimits(mtu: 1500))
        prefixLength(0).withUnsafeBytes { _ = d.append($0) }
        guard case .rejected(.zeroLength) = d.next() else { Issue.record("zero length accepted"); return }
        d.reset()
        prefixLength(1519).withUnsafeBytes { _ = d.append($0) }
        guard case .rejected(.tooLarge(1519, 1518)) = d.next() else { Issue.record("oversize accepted"); return }
        d.reset()
        (prefixed(ethFrame(13)) + prefixed(ethFrame(14))).withUnsafeBytes { _ = d.append($0) }
        guard case .rejected(.runt(13)) = d.next() else { Issue.record("runt accepted"); return }
        guard case let .frame(f) = d.next(), f.count == 14 else { Issue.record("frame after runt lost"); return }
        prefixed(ethFrame(100)).prefix(50).withUnsafeBytes { _ = d.append($0) }
        #expect(d.finish() == .truncated(have: 46, want: 100))
        #expect(FrameLimits(maxFrame: 1 << 20).maxFrame == 65535)
    }
}

@Suite struct HostilePeerTests {
    @Test func zeroLengthClosesConnection() {
        let (a, b) = streamPair(); defer { close(b) }
        let p = StreamPeer(fd: a, name: "t"); try! UnixSocketFile.setNonblocking(a, path: "t")
        writeAll(b, prefixed(ethFrame(60)) + prefixLength(0) + prefixed(ethFrame(60)))
        let (sizes, r) = pump(p)
        #expect(sizes == [60])
        #expect(r == .closed(reason: FramingError.zeroLength.description))
        #expect(p.counters.closedZeroLength == 1)
    }

    @Test func tooLargeClosesConnection() {
        let (a, b) = streamPair(); defer { close(b) }
        let p = StreamPeer(fd: a, name: "t"); try! UnixSocketFile.setNonblocking(a, path: "t")
        writeAll(b, prefixLength(70000) + ethFrame(100))
        let (sizes, r) = pump(p)
        #expect(sizes.isEmpty)
        #expect(r == .closed(reason: FramingError.tooLarge(length: 70000, max: 1518).description))
        #expect(p.counters.closedTooLarge == 1)
    }

    @Test func runtIsDroppedAndCounted() {
        let (a, b) = streamPair(); defer { close(b) }
        let p = StreamPeer(fd: a, name: "t"); try! UnixSocketFile.setNonblocking(a, path: "t")
        writeAll(b, prefixed(ethFrame(5)) + prefixed(ethFrame(42)))
        let (sizes, r) = pump(p)
        #expect(sizes == [42]); #expect(r == .wouldBlock); #expect(p.counters.droppedRunt == 1)
    }

    @Test func truncatedThenDisconnect() {
        let (a, b) = streamPair()
        let p = StreamPeer(fd: a, name: "t"); try! UnixSocketFile.setNonblocking(a, path: "t")
        writeAll(b, prefixed(ethFrame(60)) + Array(prefixed(ethFrame(200)).prefix(100)))
        close(b)
        let (sizes, r) = pump(p)
        #expect(sizes == [60])
        #expect(r == .closed(reason: FramingError.truncated(have: 96, want: 200).description))
        #expect(p.counters.closedTruncated == 1)
    }

    @Test func garbageFloodIsBounded() {
        let (a, b) = streamPair(); defer { close(b) }
        try! UnixSocketFile.setNonblocking(b, path: "t")
        let p = StreamPeer(fd: a, name: "t"); try! UnixSocketFile.setNonblocking(a, path: "t")
        let capacity = p.decoder.capacity
        var rng = SystemRandomNumberGenerator()
        // Plausible-looking lengths first so the parser consumes some garbage as frames, then noise.
        var sent = 0
        var closed = false
        for i in 0..<2000 where !closed {
            var chunk = (i % 3 == 0) ? prefixed(ethFrame(Int.random(in: 14...1518, using: &rng), fill: UInt8(i & 0xff)))
                                     : (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if i % 3 != 0 { chunk[0] = 0 }  // keep lengths < 16M so both tooLarge and runt paths get exercised
            let n = chunk.withUnsafeBytes { write(b, $0.baseAddress, $0.count) }
            if n > 0 { sent += n }
            let r = p.readAvailable { _ in }
            if case .closed = r { closed = true }
        }
        #expect(closed, "a garbage stream must end the connection")
        #expect(p.decoder.capacity == capacity)
        #expect(p.counters.closedTooLarge + p.counters.closedZeroLength == 1)
    }

    @Test func peerThatStopsReadingNeverBlocks() {
        // Both ends are owned (and closed) by their StreamPeer: closing one here as well would
        // close a descriptor number that another test may already have been given.
        let (a, b) = streamPair()
        try! UnixSocketFile.setNonblocking(a, path: "t")
        try! UnixSocketFile.setNonblocking(b, path: "r")
        let reader = StreamPeer(fd: b, name: "r")
        let p = StreamPeer(fd: a, name: "t", queueCapacity: 64 * 1024)
        let f = ethFrame(1500)
        var outcomes: [SendOutcome: Int] = [:]
        let t0 = clock()
        for _ in 0..<5000 { f.withUnsafeBytes { outcomes[p.send($0), default: 0] += 1 } }
        #expect(Double(clock() - t0) / Double(CLOCKS_PER_SEC) < 5)
        #expect((outcomes[.dropped] ?? 0) > 0)
        #expect(p.counters.droppedQueueFull == outcomes[.dropped])
        #expect(p.queuedBytes <= p.queueCapacity)
        #expect(p.isOpen)
        // Once the peer reads again, the queue drains in order: the stream stays well-framed.
        var got = 0
        for _ in 0..<1000 {
            p.flush()
            let r = reader.readAvailable { fr in if fr.count == 1500 { got += 1 } }
            #expect(r == .wouldBlock)
            if p.queuedBytes == 0 && reader.decoder.pending == 0 { break }
        }
        _ = reader.readAvailable { fr in if fr.count == 1500 { got += 1 } }
        #expect(got == p.counters.framesOut)
        #expect(reader.counters.closedTooLarge == 0 && reader.counters.droppedRunt == 0)
    }
}

@Suite struct SocketLifecycleTests {
    func connectRaw(_ path: String) -> Int32 { try! UnixSocketFile.connectStream(to: path) }

    @Test func secondConnectionIsRefusedThenReconnectWorks() throws {
        let path = tempPath("srv")
        var logs: [String] = []
        let s = try StreamServer(path: path, log: { logs.append($0) })
        var st = stat(); #expect(lstat(path, &st) == 0); #expect(st.st_mode & 0o777 == 0o660)
        let c1 = connectRaw(path)
        try s.acceptPending()
        #expect(s.counters.connections == 1)
        let c2 = connectRaw(path)
        try s.acceptPending()
        #expect(s.counters.refusedSecondConnection == 1)
        // the refused client sees EOF
        var byte: UInt8 = 0
        try UnixSocketFile.setNonblocking(c2, path: path)
        var n = -1
        for _ in 0..<100 { n = read(c2, &byte, 1); if n == 0 { break }; usleep(5000) }
        #expect(n == 0); close(c2)
        // the first still works
        writeAll(c1, prefixed(ethFrame(60)))
        usleep(10000)
        var got = 0
        _ = s.peer!.readAvailable { got = $0.count }
        #expect(got == 60)
        // the VM goes away and comes back (QEMU restarted)
        close(c1)
        let c3 = connectRaw(path)
        try s.acceptPending()
        #expect(s.counters.connections == 2)
        writeAll(c3, prefixed(ethFrame(42)))
        usleep(10000)
        _ = s.peer!.readAvailable { got = $0.count }
        #expect(got == 42)
        close(c3)
        #expect(logs.contains { $0.contains("refused a second connection") })
    }

    @Test func staleSocketReplacedSafely() throws {
        // a stale socket (nobody listening) is replaced
        let path = tempPath("stale")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        _ = try UnixAddress.with(path) { bind(fd, $0, $1) }
        close(fd)
        do { let s = try StreamServer(path: path); _ = s }
        // a live listener is not stolen
        let live = try StreamServer(path: path)
        #expect(throws: UnixSocketError.self) { _ = try StreamServer(path: path) }
        _ = live
        // a regular file is never deleted
        let file = tempPath("file")
        let f = open(file, O_CREAT | O_WRONLY, 0o600); close(f)
        #expect(throws: UnixSocketError.self) { _ = try StreamServer(path: file) }
        var st = stat(); #expect(lstat(file, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG)
        // a symlink to a socket is neither followed nor removed
        let link = tempPath("link")
        symlink(path, link)
        #expect(throws: UnixSocketError.self) { _ = try StreamServer(path: link) }
        #expect(lstat(link, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK)
        unlink(file); unlink(link)
    }

    @Test func ownerAndGroupApplied() throws {
        let path = tempPath("own")
        let s = try StreamServer(path: path, access: SocketFileAccess(mode: 0o660, owner: 65534, group: 65534))
        var st = stat(); #expect(lstat(path, &st) == 0)
        #expect(st.st_uid == 65534 && st.st_gid == 65534 && st.st_mode & 0o777 == 0o660)
        _ = s
    }

    @Test func adoptedFdAndDatagram() throws {
        let (a, b) = streamPair(); defer { close(b) }
        let s = try StreamServer(path: tempPath("adopt"))
        try s.adopt(fd: a)
        writeAll(b, prefixed(ethFrame(64)))
        usleep(5000)
        var got = 0; _ = s.peer!.readAvailable { got = $0.count }
        #expect(got == 64)

        let qemuPath = tempPath("qemu"), ourPath = tempPath("ours")
        let q = try DatagramPeer(localPath: qemuPath, remotePath: ourPath)
        let us = try DatagramPeer(localPath: ourPath, remotePath: qemuPath)
        ethFrame(60).withUnsafeBytes { #expect(q.send($0) == .sent) }
        ethFrame(5).withUnsafeBytes { _ = q.send($0) }
        ethFrame(1600).withUnsafeBytes { #expect(q.send($0) == .dropped) }
        usleep(5000)
        var sizes: [Int] = []
        us.readAvailable { sizes.append($0.count) }
        #expect(sizes == [60]); #expect(us.counters.droppedRunt == 1)
        // nobody at the remote path: dropped and counted, no error thrown
        let lonely = try DatagramPeer(localPath: tempPath("lonely"), remotePath: tempPath("absent"))
        ethFrame(60).withUnsafeBytes { #expect(lonely.send($0) == .dropped) }
    }

    @Test func backoffDoublesToMaximumAndResets() {
        var b = ReconnectBackoff(initialMilliseconds: 50, maximumMilliseconds: 300)
        #expect([b.failed(), b.failed(), b.failed(), b.failed()] == [50, 100, 200, 300])
        b.succeeded(); #expect(b.failed() == 50)
    }

    @Test func sourceMACCheck() {
        let f = ethFrame(60)
        f.withUnsafeBytes {
            #expect(sourceMACMatches($0, (0x52, 0x54, 0, 0x12, 0x34, 0x56)))
            #expect(!sourceMACMatches($0, (0x52, 0x54, 0, 0x12, 0x34, 0x57)))
        }
    }
}
