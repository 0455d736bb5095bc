// Framing and socket-file tests with hostile input written here: no kernel network setup, only
// Unix sockets. The length-prefix decoder under test is the datapath's (StreamPrefix), the one
// the io_uring workers use; the socket files are UnixSocketFiles', which the VM ports and the
// control socket share.
import Datapath
import Glibc
import SystemCalls
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

func tempPath(_ tag: String) -> String { "/tmp/tbvm-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max)).sock" }

/// What a worker makes of a received byte stream, step by step through `StreamPrefix.next`:
/// the frames delivered, the rejections, and how many bytes are left unconsumed.
struct PrefixDecoding {
    var frames: [Int] = []
    var rejected: [FramingError] = []
    var closed = false
    var buffer: [UInt8] = []

    /// Appends `bytes` and decodes as far as they allow (nothing after a fatal prefix).
    mutating func receive(_ bytes: [UInt8], maxFrame: Int = 1518) {
        guard !closed else { return }
        buffer += bytes
        var offset = 0
        decoding: while true {
            let step = buffer.withUnsafeBytes { p in
                StreamPrefix.next(p.baseAddress! + offset, available: p.count - offset, maxFrame: maxFrame)
            }
            switch step {
            case .needMore: break decoding
            case .frame(let length): frames.append(length); offset += StreamPrefix.size + length
            case let .skip(length, e): rejected.append(e); offset += StreamPrefix.size + length
            case .fatal(let e): rejected.append(e); closed = true; break decoding
            }
        }
        buffer.removeFirst(offset)
    }
}

@Suite struct StreamPrefixTests {
    @Test func framesSplitAcrossReadsAndSeveralPerRead() {
        let stream = prefixed(ethFrame(42)) + prefixed(ethFrame(60)) + prefixed(ethFrame(1518))
        // one byte at a time
        var d = PrefixDecoding()
        for b in stream { d.receive([b]) }
        #expect(d.frames == [42, 60, 1518])
        #expect(d.buffer.isEmpty && d.rejected.isEmpty)
        // all at once, twice over
        d = PrefixDecoding()
        d.receive(stream + stream)
        #expect(d.frames == [42, 60, 1518, 42, 60, 1518])
        #expect(d.buffer.isEmpty)
        // a partial frame waits for the rest
        d = PrefixDecoding()
        d.receive(Array(prefixed(ethFrame(100)).prefix(50)))
        #expect(d.frames.isEmpty && d.buffer.count == 50 && !d.closed)
        #expect(StreamPrefix.next([0, 0, 0], available: 3, maxFrame: 1518) == .needMore)
    }

    @Test func rejectsWithTypedReasons() {
        var d = PrefixDecoding()
        d.receive(prefixLength(0) + ethFrame(60))
        #expect(d.rejected == [.zeroLength] && d.closed && d.frames.isEmpty)
        #expect(FramingError.zeroLength.isFatal)

        d = PrefixDecoding()
        // An oversized prefix is fatal at once, before its frame arrives.
        d.receive(prefixLength(1519), maxFrame: 1518)
        #expect(d.rejected == [.tooLarge(length: 1519, max: 1518)] && d.closed)

        d = PrefixDecoding()
        // A runt is skipped once whole (framing stays in sync) and the next frame is delivered.
        d.receive(prefixed(ethFrame(13)) + prefixed(ethFrame(14)))
        #expect(d.rejected == [.runt(length: 13)] && !d.closed)
        #expect(d.frames == [14])
        #expect(!FramingError.runt(length: 13).isFatal)

        #expect(StreamPrefix.check(65535, maxFrame: StreamPrefix.absoluteMaxFrame) == nil)
        #expect(FrameLimits(maxFrame: 1 << 20).maxFrame == 65535)
        #expect(FrameLimits(maxFrame: 1).maxFrame == 14)
        #expect(FrameLimits(mtu: 1500).maxFrame == 1518)
    }

    @Test func garbageEndsTheStreamWithoutGrowingTheBuffer() {
        var rng = SystemRandomNumberGenerator()
        for round in 0..<200 {
            var d = PrefixDecoding()
            var chunks = 0
            while !d.closed && chunks < 50 {
                var chunk = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if round % 2 == 0 { chunk[0] = 0 }  // lengths < 16M: tooLarge and runt paths both exercised
                d.receive(chunk)
                chunks += 1
                // Never more than one partial prefix + frame is held back.
                #expect(d.buffer.count < StreamPrefix.size + 1518 || d.closed)
            }
            #expect(d.closed, "a garbage stream must end the connection")
            #expect(d.rejected.last.map(\.isFatal) == true)
        }
    }

    @Test func truncationIsDescribed() {
        #expect(FramingError.truncated(have: 96, want: 200).description == "peer disconnected after 96 of 200 bytes of a frame")
        #expect(FramingError.truncated(have: 1, want: 2).isFatal)
    }
}

@Suite struct SocketFileTests {
    @Test func listeningSocketModeAndRefusesNothingLive() throws {
        let path = tempPath("srv")
        let listener = try UnixSocketFile.listenStream(at: path)
        defer { unlink(path) }
        var st = stat(); #expect(lstat(path, &st) == 0); #expect(st.st_mode & 0o777 == 0o660)
        let c = try UnixSocketFile.connectStream(to: path)
        var accepted: OwnedDescriptor? = nil
        for _ in 0..<100 where accepted?.rawValue == nil {
            accepted = try UnixSocketFile.accept(listener.rawValue, path: path)
            if accepted?.rawValue == nil { usleep(5000) }
        }
        let acceptedFD = accepted?.rawValue ?? -1
        #expect(acceptedFD >= 0)
        #expect(fcntl(c.rawValue, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(acceptedFD, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(acceptedFD, F_GETFD) & FD_CLOEXEC != 0)
        _ = consume c
        accepted = nil
        let none = try UnixSocketFile.accept(listener.rawValue, path: path)?.rawValue
        #expect(none == nil)
    }

    @Test func staleSocketReplacedSafely() throws {
        // a stale socket (nobody listening) is replaced
        let path = tempPath("stale")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        _ = try UnixAddress.with(path) { bind(fd, $0, $1) }
        close(fd)
        let live = try UnixSocketFile.listenStream(at: path)
        defer { unlink(path) }
        // a live listener is not stolen
        #expect(throws: UnixSocketError.self) { _ = try UnixSocketFile.listenStream(at: path) }
        #expect(throws: UnixSocketError.self) { _ = try UnixSocketFile.bindDatagram(at: path) }
        // a regular file is never deleted
        let file = tempPath("file")
        let f = open(file, O_CREAT | O_WRONLY, 0o600); close(f)
        #expect(throws: UnixSocketError.self) { _ = try UnixSocketFile.listenStream(at: file) }
        var st = stat(); #expect(lstat(file, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG)
        // a symlink to a socket is neither followed nor removed
        let link = tempPath("link")
        symlink(path, link)
        #expect(throws: UnixSocketError.self) { _ = try UnixSocketFile.listenStream(at: link) }
        #expect(lstat(link, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK)
        // a path longer than sun_path is refused, not truncated
        let long = "/tmp/" + String(repeating: "x", count: 120)
        #expect(throws: UnixSocketError.self) { _ = try UnixSocketFile.listenStream(at: long) }
        unlink(file); unlink(link)
        _ = live
    }

    @Test func ownerAndGroupApplied() throws {
        let path = tempPath("own")
        let listener = try UnixSocketFile.listenStream(at: path, access: SocketFileAccess(mode: 0o660, owner: 65534, group: 65534))
        defer { unlink(path) }
        var st = stat(); #expect(lstat(path, &st) == 0)
        #expect(st.st_uid == 65534 && st.st_gid == 65534 && st.st_mode & 0o777 == 0o660)
        let dpath = tempPath("dgram")
        let datagram = try UnixSocketFile.bindDatagram(at: dpath, access: SocketFileAccess(mode: 0o600))
        defer { unlink(dpath) }
        #expect(lstat(dpath, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK && st.st_mode & 0o777 == 0o600)
        _ = listener; _ = datagram
    }

    @Test func backoffDoublesToMaximumAndResets() {
        var b = ReconnectBackoff(initialMilliseconds: 50, maximumMilliseconds: 300)
        #expect([b.failed(), b.failed(), b.failed(), b.failed()] == [50, 100, 200, 300])
        b.succeeded(); #expect(b.failed() == 50)
    }
}
