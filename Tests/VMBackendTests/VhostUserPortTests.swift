// A vhost-user port in the real engine against DPDK testpmd's virtio-user front-end (a peer we
// did not write): frames from testpmd reach a socket port through the io_uring worker straight
// from guest memory, frames written to the socket port land in testpmd's receive ring, counts
// agree at both ends; then the same through a macvtap to a host in a namespace. Needs root,
// dpdk-testpmd and huge pages (reserved and given back by TestSupport.Testpmd).
import Datapath
import Foundation
import Frames
import Handlers
import Testing
import TestSupport
import UnixSocketFiles
import VhostUser
@testable import VMBackend

/// A private directory for socket files (mode 0700, removed by the caller).
func vhostTempDir() throws -> String {
    var template = Array("/tmp/tbvu-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw UnixSocketError("create a directory for", "/tmp/tbvu-*", errno: errno) }
    return String(cString: p)
}

func until(_ seconds: Double, _ cond: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end { if cond() { return true }; usleep(10_000) }
    return cond()
}

final class Lines: @unchecked Sendable {
    let lock = NSLock()
    var lines: [String] = []
    func add(_ s: String) { lock.withLock { lines.append(s) } }
    var all: [String] { lock.withLock { lines } }
}

/// Engine with a hub bridge: a vhost-user port (server) and a datagram socketpair port.
struct VhostRig {
    let engine: Engine
    let bridge: Bridge
    let port: VhostUserPort
    let vhostID: PortID
    let socketID: PortID
    let peer: Int32
    let dir: String
    let logs = Lines()

    init(workers: Int = 1) throws {
        dir = try vhostTempDir()
        var c = EngineConfiguration(workers: workers)
        c.buffersPerWorker = 256
        let logs = self.logs
        c.log = { l, s in logs.add("\(l): \(s)") }
        engine = Engine(configuration: c)
        bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
        port = VhostUserPort(name: "vu0", path: dir + "/vu0.sock", log: { logs.add($0) })
        vhostID = try bridge.attach(port)
        var fds: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &fds) == 0)
        var big: Int32 = 8 << 20
        for fd in fds { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, 4); setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, 4) }
        peer = fds[1]
        socketID = try bridge.attach(DescriptorPort(name: "sock", descriptor: fds[0]))
        try engine.start()
        try port.start(engine: engine, id: vhostID, bridge: bridge)
    }

    func stop() {
        port.stop()
        engine.stop()
        close(peer)
        try? FileManager.default.removeItem(atPath: dir)
    }

    func stats(_ id: PortID) -> PortStatistics? { engine.snapshot().bridge("br")?.port(id) }
}

@Suite(.serialized, .enabled(if: getuid() == 0 && Testpmd.available, "needs root and dpdk-testpmd"))
struct VhostUserPortTests {
    @Test func testpmdTxonlyThroughEngineToSocket() throws {
        let rig = try VhostRig()
        defer { rig.stop() }
        let pmd = try Testpmd(socket: rig.port.path, mode: "txonly", frameSize: 64)
        var received = 0
        var buf = [UInt8](repeating: 0, count: 2048)
        func drain() { while recv(rig.peer, &buf, buf.count, Int32(MSG_DONTWAIT)) > 0 { received += 1 } }
        #expect(until(60) { drain(); return received >= 20_000 || !pmd.process.isRunning })
        let out = pmd.stop()
        #expect(until(10) { !rig.port.currentStatus.connected })
        _ = until(1) { drain(); return false }
        let sent = Testpmd.counter("TX-packets", in: out) ?? -1
        if sent < 0 { print("testpmd printed no TX-packets (it failed to start or run?); its output:\n\(out.suffix(3000))") }
        let v = try #require(rig.stats(rig.vhostID)), s = try #require(rig.stats(rig.socketID))
        print("vhost-user txonly: testpmd sent \(sent); vhost port rx \(v.rxFrames) (drops \(v.drops)); socket port tx \(s.txFrames) drops \(s.drops); socket peer got \(received); \(rig.port.currentStatus)")
        #expect(sent >= 20_000)
        #expect(Int(v.rxFrames) == sent, "every frame testpmd made available was taken")
        #expect(Int(s.txFrames) == received)
        #expect(s.txFrames + s.totalDrops == v.rxFrames - v.totalDrops)
        #expect(rig.logs.all.contains { $0.contains("rings running; negotiated") && $0.contains("MRG_RXBUF") })
    }

    @Test func socketFramesIntoTestpmdRxonly() throws {
        let rig = try VhostRig()
        defer { rig.stop() }
        let pmd = try Testpmd(socket: rig.port.path, mode: "rxonly", extra: ["--stats-period=1"])
        // With --stats-period testpmd prints port statistics once forwarding runs.
        #expect(pmd.waitFor("NIC statistics for port 0"))
        #expect(until(10) { rig.port.currentStatus.connected })
        var frame = [UInt8](repeating: 0x33, count: 1000)
        frame.replaceSubrange(0..<14, with: [0x02, 0, 0, 0, 0, 0x10, 0x02, 0, 0, 0, 0, 0x20, 0x88, 0xb5])
        let n = 20_000
        for k in 0..<n {
            frame[20] = UInt8(truncatingIfNeeded: k)
            while send(rig.peer, frame, frame.count, 0) < 0 && errno == ENOBUFS { usleep(100) }
            // Stay at most 64 frames ahead of the port (its guest ring holds 256).
            if k % 64 == 63 { _ = until(5) { (rig.stats(rig.vhostID).map { Int($0.txFrames + $0.totalDrops) } ?? 0) >= k - 64 } }
        }
        #expect(until(20) { (rig.stats(rig.vhostID).map { Int($0.txFrames + $0.totalDrops) } ?? 0) >= n })
        let v = try #require(rig.stats(rig.vhostID))
        // testpmd's periodic port statistics show when it has taken them all.
        _ = until(10) { (Testpmd.lastCounter("RX-packets", in: pmd.output) ?? 0) >= Int(v.txFrames) }
        let out = pmd.stop()
        let got = Testpmd.counter("RX-packets", in: out) ?? Testpmd.lastCounter("RX-packets", in: out) ?? -1
        print("vhost-user rxonly: wrote \(n); vhost port tx \(v.txFrames) drops \(v.drops); testpmd received \(got)")
        #expect(Int(v.txFrames) + Int(v.totalDrops) == n)
        #expect(got == Int(v.txFrames))
        // Drops are the guest having no buffer posted (testpmd's core shares this machine).
        #expect(v.txFrames >= UInt64(n / 4))
    }
}

@Suite(.serialized, .enabled(if: getuid() == 0 && Guest.available, "needs root, qemu-system-x86_64 and the tools/build-guest guest"))
struct VhostUserQEMUTests {
    /// A QEMU guest (TCG) with a vhost-user NIC served by tapbridge pings, then fetches 2 MiB
    /// from, a namespace host behind a macvtap.
    @Test func qemuGuestPingsAndTransfersThroughVhostUser() throws {
        try withTopology { t in
            let lan = try LAN(t, vmMACs: [vmMAC])
            let dir = try vhostTempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let logs = Lines()
            var c = EngineConfiguration(workers: 1)
            c.buffersPerWorker = 128
            c.log = { l, s in logs.add("\(l): \(s)") }
            let engine = Engine(configuration: c)
            let guard_ = SourceGuard(policies: ["vm0": .init()])
            let bridge = engine.addBridge(name: "vmbr", pipeline: HandlerPipeline([guard_]))
            try bridge.attach(MacvtapPort(name: lan.macvtap))
            let port = VhostUserPort(name: "vm0", path: dir + "/vm0.sock", settings: vmSettings, log: { logs.add($0) })
            let id = try bridge.attach(port)
            try engine.start()
            defer { port.stop(); engine.stop() }
            try port.start(engine: engine, id: id, bridge: bridge)
            let netdev = "vhost-user,id=n0,chardev=c0"
            let start = Date()
            let out = try Guest.boot(netdev: netdev, mac: vmMAC, cmdline: guestNet + " tb.test=transfer", timeout: 150,
                                     vhostUser: true, extraArgs: ["-chardev", "socket,id=c0,path=\(port.path)"])
            let s = engine.snapshot().bridge("vmbr")?.port(id)
            print("vhost-user QEMU guest: \(String(format: "%.1f", Date().timeIntervalSince(start))) s, \(out.split(separator: "\n").filter { $0.contains("TAPBRIDGE-GUEST") }); port \(s.map { "\($0)" } ?? "-"); \(port.currentStatus)")
            print(logs.all.filter { $0.contains("vhost") || $0.contains("negotiated") || $0.contains("broken") }.joined(separator: "\n"))
            #expect(out.contains("TAPBRIDGE-GUEST: PASS transfer \(LAN.blobBytes) bytes"), "\(out.suffix(1500))")
            #expect((s?.txLargeFrames ?? 0) > 0, "TCP super-frames went into the guest unsegmented (GUEST_TSO)")

            // QEMU restarted, tapbridge not: the guest now serves 4 MiB and the LAN host fetches
            // it; the guest's TSO super-frames cross the port (rx large) and arrive intact.
            let lanFetch = Locked<String?>(nil)
            let lanTries = Locked<[String]>([])
            let fetcher = Thread {
                let end = Date().addingTimeInterval(90)
                while Date() < end {
                    let r = try? t.exec(lan.namespace, ["curl", "-sf", "--connect-timeout", "3", "--max-time", "40",
                                                        "-o", "/tmp/tbvu-\(t.tag).blob", "http://198.18.0.10:8080/blob"], check: false, timeout: 30)
                    lanTries.set(lanTries.get() + ["\(r?.status ?? -1)"])
                    if let r, r.succeeded {
                        let size = (try? FileManager.default.attributesOfItem(atPath: "/tmp/tbvu-\(t.tag).blob")[.size] as? Int) ?? -1
                        lanFetch.set("fetched \(size)")
                        return
                    }
                    usleep(300_000)
                }
                lanFetch.set("gave up")
            }
            fetcher.start()
            defer { unlink("/tmp/tbvu-\(t.tag).blob") }
            let before = engine.snapshot().bridge("vmbr")?.port(id)?.rxLargeFrames ?? 0
            let served = try Guest.boot(netdev: netdev, mac: vmMAC, cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.test=serve tb.bytes=4194304 tb.port=8080 tb.wait=20",
                                        timeout: 150, vhostUser: true, extraArgs: ["-chardev", "socket,id=c0,path=\(port.path)"])
            _ = until(30) { lanFetch.get() != nil }
            let after = engine.snapshot().bridge("vmbr")?.port(id)
            print("vhost-user guest serving: LAN host \(lanFetch.get() ?? "-"); port \(after.map { "\($0)" } ?? "-"); connections \(port.currentStatus.connections); tries \(lanTries.get().suffix(5))")
            #expect(served.contains("TAPBRIDGE-GUEST: SERVING"), "\(served.suffix(800))")
            #expect(lanFetch.get() == "fetched 4194304")
            #expect((after?.rxLargeFrames ?? 0) > before, "guest TSO super-frames crossed the port")
            #expect(port.currentStatus.connections == 2)

            // A guest that changes its MAC gets nothing through (anti-spoofing, counted).
            let spoofed = try Guest.boot(netdev: netdev, mac: vmMAC, cmdline: guestNet + " tb.mac=52:54:00:66:66:66 tb.test=ping",
                                         timeout: 150, vhostUser: true, extraArgs: ["-chardev", "socket,id=c0,path=\(port.path)"])
            #expect(spoofed.contains("TAPBRIDGE-GUEST: FAIL no reply from 198.18.0.1"), "\(spoofed.suffix(600))")
            #expect(guard_.counters().first!.value > 0)
        }
    }
}

/// Two plain datagram ports beside a vhost-user port on a hub; a front-end written here.
struct HostileRig {
    let engine: Engine
    let bridge: Bridge
    let port: VhostUserPort
    let peers: [Int32]
    let dir: String
    let logs = Lines()

    init() throws {
        dir = try vhostTempDir()
        var c = EngineConfiguration(workers: 1)
        c.buffersPerWorker = 64
        let logs = self.logs
        c.log = { l, s in logs.add("\(l): \(s)") }
        engine = Engine(configuration: c)
        bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
        port = VhostUserPort(name: "vu0", path: dir + "/vu0.sock", log: { logs.add($0) })
        let id = try bridge.attach(port)
        var peers: [Int32] = []
        for name in ["a", "b"] {
            var fds: [Int32] = [0, 0]
            precondition(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &fds) == 0)
            var tv = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(fds[1], SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            try bridge.attach(DescriptorPort(name: name, descriptor: fds[0]))
            peers.append(fds[1])
        }
        self.peers = peers
        try engine.start()
        try port.start(engine: engine, id: id, bridge: bridge)
    }

    func stop() {
        port.stop(); engine.stop()
        peers.forEach { close($0) }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// A frame from plain port `from` arrives at plain port `to` (within `timeout`).
    func forwards(from: Int, to: Int, tag: UInt8) -> Bool {
        var f = [UInt8](repeating: tag, count: 60)
        f.replaceSubrange(0..<14, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, UInt8(from + 1), 0x88, 0xb5])
        _ = send(peers[from], f, f.count, 0)
        var buf = [UInt8](repeating: 0, count: 2048)
        let end = Date().addingTimeInterval(30)   // ends as soon as it arrives
        while Date() < end {
            let n = recv(peers[to], &buf, buf.count, 0)
            if n == 60 && buf[20] == tag { return true }
        }
        return false
    }
}

@Suite(.serialized) struct VhostUserHostileFrontendTests {
    @Test func badMessagesEndOnlyThatConnection() throws {
        let rig = try HostileRig()
        defer { rig.stop() }
        // An oversized payload size, then a message cut off mid-payload: each connection ends,
        // the port keeps listening, the other ports keep forwarding.
        let a = try SocketFrontend(path: rig.port.path)
        try a.sendRaw(VhostUserEncoder.message(request: 1, flags: 1, payload: []).prefix(8) + [0xff, 0xff, 0xff, 0x7f])
        #expect((try? a.request(.getFeatures)) == nil, "the port closed the connection")
        let b = try SocketFrontend(path: rig.port.path)
        try b.sendRaw(Array(VhostUserEncoder.message(request: 2, flags: 1, payload: VhostUserEncoder.u64(1)).prefix(15)))
        shutdown(b.fd, Int32(SHUT_WR))
        #expect(until(30) { rig.port.currentStatus.connections == 2 })
        #expect(rig.forwards(from: 0, to: 1, tag: 1))
        let c = try SocketFrontend(path: rig.port.path)
        #expect(try c.negotiate() & (1 << 32) != 0, "a well-behaved front-end is served after them")
        #expect(rig.logs.all.contains { $0.contains("payload of 2147483647 bytes") })
        #expect(rig.logs.all.contains { $0.contains("disconnected mid-message (15 of 20 bytes)") })
    }

    @Test func brokenRingIsContainedCountedAndResettable() throws {
        let rig = try HostileRig()
        defer { rig.stop() }
        let fe = try SocketFrontend(path: rig.port.path)
        _ = try fe.negotiate()
        let ram = GuestRAM()
        #expect(try fe.setMemTable(ram))
        var rx = DriverRing(ram: ram, at: ram.gpa, size: 64)
        var tx = DriverRing(ram: ram, at: ram.gpa + 0x4000, size: 64)
        let rxFDs = try fe.setUpRing(0, rx)
        var txFDs = try fe.setUpRing(1, tx)
        defer { for fd in [rxFDs.kick, rxFDs.call, txFDs.kick, txFDs.call] { close(fd) } }
        #expect(until(30) { rig.port.currentStatus.connected })

        // A frame from port a lands in the guest's receive buffer (header + frame, num_buffers 1).
        for k in 0..<4 { rx.add([(ram.gpa + 0x20000 + UInt64(k) * 0x800, 2048, true)]) }
        #expect(rig.forwards(from: 0, to: 1, tag: 7))
        #expect(until(30) { rx.usedIdx >= 1 })
        let used = rx.takeUsed()
        #expect(used.first?.len == 72)
        #expect(ram.host(ram.gpa + 0x20000 + 10).load(as: UInt16.self) == 1)
        #expect(ram.host(ram.gpa + 0x20000 + 12 + 20).load(as: UInt8.self) == 7)

        // The guest transmits a frame: both plain ports get it, the chain comes back used.
        func guestSends(_ tag: UInt8) -> Bool {
            let at = ram.gpa + 0x30000 + UInt64(tag) * 0x100
            var f = [UInt8](repeating: 0, count: 12) + [UInt8](repeating: tag, count: 60)
            f.replaceSubrange(12..<26, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 9, 0x88, 0xb5])
            f.withUnsafeBytes { ram.host(at).copyMemory(from: $0.baseAddress!, byteCount: f.count) }
            tx.add([(at, UInt32(f.count), false)])
            kickEventFD(txFDs.kick)
            var buf = [UInt8](repeating: 0, count: 2048)
            let end = Date().addingTimeInterval(30)   // ends as soon as it arrives
            while Date() < end { if recv(rig.peers[1], &buf, buf.count, 0) == 60 && buf[20] == tag { return true } }
            return false
        }
        #expect(guestSends(1))
        #expect(until(30) { tx.usedIdx == 1 })

        // A descriptor loop: the ring is marked broken and counted, the port disconnects, the
        // other ports keep forwarding.
        tx.writeDescriptor(10, addr: ram.gpa + 0x30000, len: 60, flags: 1, next: 11)
        tx.writeDescriptor(11, addr: ram.gpa + 0x30000, len: 60, flags: 1, next: 10)
        tx.publish(head: 10)
        kickEventFD(txFDs.kick)
        #expect(until(30) { rig.port.currentStatus.ringsBroken == 1 && !rig.port.currentStatus.connected })
        #expect(rig.port.currentStatus.lastError?.contains("descriptor chain longer than 64") == true)
        #expect(rig.forwards(from: 0, to: 1, tag: 8))
        #expect(rig.forwards(from: 1, to: 0, tag: 9))

        // The front-end resets the ring (stop, new layout, kick): it runs again.
        let base = try fe.request(.getVringBase, VhostUserEncoder.vringState(index: 1, num: 0))
        #expect(base.count == 8)
        tx = DriverRing(ram: ram, at: ram.gpa + 0x4000, size: 64)
        close(txFDs.kick); close(txFDs.call)
        txFDs = try fe.setUpRing(1, tx)
        #expect(until(30) { rig.port.currentStatus.connected })
        #expect(guestSends(2))
    }
}
