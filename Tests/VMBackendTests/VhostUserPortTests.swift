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
