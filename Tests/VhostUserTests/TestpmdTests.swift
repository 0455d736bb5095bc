// The back-end against a front-end that is not ours: DPDK testpmd's virtio-user port. A small
// single-threaded loop (poll on the vhost-user socket and the transmit kick eventfd) serves the
// protocol and the rings; testpmd's txonly frames are counted here, frames written here are
// counted by testpmd's rxonly. Needs root, /usr/bin/dpdk-testpmd and huge pages.
import CVhostUserShim
import Foundation
import Glibc
import Testing
import TestSupport
import VirtioNet
@testable import VhostUser

/// A listening Unix socket in a private temporary directory.
func listenUnix(_ path: String) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    precondition(fd >= 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { p in
        path.utf8CString.withUnsafeBytes { s in p.copyMemory(from: UnsafeRawBufferPointer(rebasing: s.prefix(p.count - 1))) }
    }
    let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    precondition(r == 0 && listen(fd, 1) == 0)
    return fd
}

/// Serves one front-end on a thread: protocol messages, TX frames counted (and dropped), and
/// `rxFrames` frames of `rxSize` bytes written to the guest's receive queue.
final class NetLoop: @unchecked Sendable {
    let listener: Int32
    let rxFrames: Int
    let rxSize: Int
    let txCount = Locked(0)
    let txBytes = Locked(0)
    let rxDelivered = Locked(0)
    let rxPendingAfter = Locked(-1)
    let logs = Locked<[String]>([])
    let ended = Locked<String?>(nil)
    let stopFlag = Locked(false)
    let rxGo = Locked(false)
    var thread: Thread?
    var rxAdvance = 0
    var rxBuffers = 0

    init(listener: Int32, rxFrames: Int = 0, rxSize: Int = 64) {
        self.listener = listener; self.rxFrames = rxFrames; self.rxSize = rxSize
    }

    func start() {
        let t = Thread { [self] in run() }
        t.start()
        thread = t
    }

    func log(_ s: String) { var l = logs.get(); l.append(s); logs.set(l) }

    func run() {
        var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        var waited = 0
        while poll(&pfd, 1, 100) == 0 { waited += 1; if stopFlag.get() || waited > 300 { ended.set("no front-end"); return } }
        let conn = VhostUserConnection(adopting: accept(listener, nil, nil))
        let backend = VhostUserBackend(config: VhostUserDeviceConfig(
            name: "testpmd-peer", deviceFeatures: VirtioNetFeatures.device(offloads: .all, queuePairs: 1)))
        backend.log = { [self] in log($0) }
        var chain = DescriptorChain()
        defer { chain.deallocate() }
        var frame = [UInt8](repeating: 0x5a, count: rxSize)
        frame.replaceSubrange(0..<12, with: [0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2])
        frame[12] = 0x88; frame[13] = 0xb5
        var rxSent = 0
        var rxStartPending: UInt16 = 0
        while !stopFlag.get() {
            // Rings first, so every frame the front-end made available before it stops the
            // ring (GET_VRING_BASE) is counted.
            serveRings(backend, &chain, &frame, &rxSent, &rxStartPending)
            var fds = [pollfd(fd: conn.fd, events: Int16(POLLIN), revents: 0)]
            if backend.vrings[1].running { fds.append(pollfd(fd: backend.vrings[1].kickFD, events: Int16(POLLIN), revents: 0)) }
            _ = poll(&fds, nfds_t(fds.count), 1)
            if fds.count > 1 && fds[1].revents != 0 { var v: UInt64 = 0; _ = read(fds[1].fd, &v, 8) }
            if fds[0].revents != 0 {
                serveRings(backend, &chain, &frame, &rxSent, &rxStartPending)
                do {
                    guard let m = try conn.receive() else { ended.set("front-end closed"); break }
                    if let reason = backend.handle(m, replyingOn: conn) { ended.set(reason); break }
                } catch { ended.set("\(error)"); break }
            }
        }
        backend.disconnect()
    }

    func serveRings(_ backend: VhostUserBackend, _ chain: inout DescriptorChain, _ frame: inout [UInt8], _ rxSent: inout Int, _ rxStartPending: inout UInt16) {
        let headerSize = VirtioNetFeatures.headerSize(backend.ackedFeatures)
        let mergeable = backend.negotiated(VirtioNetFeatures.mergeableRxBuffers)
        do {
            try backend.withQueue(1) { q in
                var n = 0
                while n < 256, let f = try q.nextTransmit(headerSize: headerSize, chain: &chain) {
                    txCount.set(txCount.get() + 1); txBytes.set(txBytes.get() + f.length)
                    q.completeTransmit(head: f.head)
                    n += 1
                }
                q.publishUsed()
                if n > 0 && q.needsInterrupt() && backend.vrings[1].callFD >= 0 {
                    var one: UInt64 = 1; _ = write(backend.vrings[1].callFD, &one, 8)
                }
            }
        } catch { backend.markBroken(1, "\(error)") }
        // testpmd flushes (drops) what its receive ring holds when it starts the port: write
        // only once it is forwarding.
        guard rxFrames > 0, rxGo.get() else { return }
        do {
            try backend.withQueue(0) { q in
                // The front-end re-posts one buffer per frame it took: once the available index
                // has advanced by as many buffers as we filled, testpmd has counted every frame.
                let availIdx = q.nextAvailable &+ (try q.pending())
                if rxSent == 0 && rxAdvance == 0 { rxStartPending = availIdx; rxAdvance = 1 }
                rxAdvance += Int(availIdx &- rxStartPending); rxStartPending = availIdx
                var n = 0
                while rxSent < rxFrames && n < 256 {
                    let r = try frame.withUnsafeBytes { try q.receive(frame: $0, header: VirtioNetHeader(), headerSize: headerSize, mergeable: mergeable, chain: &chain) }
                    guard case .delivered(let buffers) = r else { break }
                    rxSent += 1; n += 1; rxBuffers += buffers
                }
                q.publishUsed()
                if n > 0 && q.needsInterrupt() && backend.vrings[0].callFD >= 0 {
                    var one: UInt64 = 1; _ = write(backend.vrings[0].callFD, &one, 8)
                }
                rxDelivered.set(rxSent)
                // The front-end has taken every frame once it has re-posted as many buffers
                // as it had before we started.
                if rxSent == rxFrames { rxPendingAfter.set(rxAdvance - 1 >= rxBuffers ? 1 : 0) }
            }
        } catch { backend.markBroken(0, "\(error)") }
    }

    func stop() {
        stopFlag.set(true)
        while thread?.isFinished == false { usleep(10_000) }
        close(listener)
    }
}

func waitUntil(_ timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline { if condition() { return true }; usleep(10_000) }
    return condition()
}

@Suite(.serialized, .enabled(if: getuid() == 0 && Testpmd.available, "needs root and dpdk-testpmd"))
struct TestpmdFrontendTests {
    @Test func txonlyFramesArriveAndAreCountedBothEnds() throws {
        let dir = try FileManager.default.url(for: .itemReplacementDirectory, in: .userDomainMask,
                                              appropriateFor: URL(fileURLWithPath: "/tmp"), create: true).path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/vu.sock"
        let loop = NetLoop(listener: listenUnix(path))
        loop.start()
        defer { loop.stop() }
        let pmd = try Testpmd(socket: path, mode: "txonly", frameSize: 64)
        #expect(waitUntil(60) { loop.txCount.get() >= 20_000 || !pmd.process.isRunning })
        let out = pmd.stop()
        #expect(waitUntil(10) { loop.ended.get() != nil })
        let sent = Testpmd.counter("TX-packets", in: out)
        let log = loop.logs.get()
        print("testpmd txonly: sent \(sent ?? -1), backend counted \(loop.txCount.get()) frames, \(loop.txBytes.get()) bytes; \(log.joined(separator: " | "))")
        #expect(sent != nil && sent! >= 20_000, "\(out.suffix(2000))")
        #expect(loop.txCount.get() == sent)
        #expect(loop.txBytes.get() == 64 * loop.txCount.get())
        #expect(log.contains { $0.contains("negotiated features") && $0.contains("VERSION_1") })
    }

    @Test func rxonlyCountsEveryFrameWritten() throws {
        let dir = try FileManager.default.url(for: .itemReplacementDirectory, in: .userDomainMask,
                                              appropriateFor: URL(fileURLWithPath: "/tmp"), create: true).path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/vu.sock"
        let loop = NetLoop(listener: listenUnix(path), rxFrames: 20_000, rxSize: 1500)
        loop.start()
        defer { loop.stop() }
        let pmd = try Testpmd(socket: path, mode: "rxonly")
        #expect(pmd.waitFor("Press enter to exit"))
        loop.rxGo.set(true)
        #expect(waitUntil(60) { loop.rxPendingAfter.get() == 1 || !pmd.process.isRunning })
        let out = pmd.stop()
        let got = Testpmd.counter("RX-packets", in: out)
        print("testpmd rxonly: backend wrote \(loop.rxDelivered.get()), testpmd received \(got ?? -1); \(loop.logs.get().joined(separator: " | "))")
        #expect(loop.rxDelivered.get() == 20_000)
        #expect(got == 20_000, "\(out.suffix(2000))")
    }
}
