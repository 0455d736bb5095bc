// Multi-queue vhost-user ports in the real engine, driven by a front-end written here (so every
// step is ours to order): MQ is offered and GET_QUEUE_NUM answers the pairs; pair i is served by
// worker i mod workers (two pairs on two workers, and both on one worker, whose kicks then come
// through an epoll set); a pair enabled later joins, a pair disabled leaves without losing the
// frames its worker switches (handed to a worker with an active pair); indexes past the pairs
// are refused, counted and logged, and the connection keeps working.
import Datapath
import Foundation
import Frames
import Testing
import TestSupport
import VhostUser
@testable import VMBackend

/// Engine with a hub bridge: a multi-queue vhost-user port (server) and plain datagram ports.
final class MultiQueueRig {
    let engine: Engine
    let bridge: Bridge
    let port: VhostUserPort
    let peers: [Int32]
    let dir: String
    let logs = Lines()

    init(workers: Int, pairs: Int, plainPorts: Int = 2) throws {
        dir = try vhostTempDir()
        var c = EngineConfiguration(workers: workers)
        c.buffersPerWorker = 64
        let logs = self.logs
        c.log = { l, s in logs.add("\(l): \(s)") }
        engine = Engine(configuration: c)
        bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
        port = VhostUserPort(name: "vu0", path: dir + "/vu0.sock", queuePairs: pairs, log: { logs.add($0) })
        let id = try bridge.attach(port)
        var peers: [Int32] = []
        for k in 0..<plainPorts {
            var fds: [Int32] = [0, 0]
            precondition(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &fds) == 0)
            var tv = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(fds[1], SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            try bridge.attach(DescriptorPort(name: "p\(k)", descriptor: fds[0]))
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

    /// Waits for a 60-byte frame tagged `tag` at plain port `k`.
    func peerReceives(_ k: Int, tag: UInt8, within seconds: Double = 10) -> Bool {
        var buf = [UInt8](repeating: 0, count: 2048)
        let end = Date().addingTimeInterval(seconds)
        while Date() < end { if recv(peers[k], &buf, buf.count, 0) == 60 && buf[20] == tag { return true } }
        return false
    }

    /// A broadcast frame tagged `tag` from plain port `k`.
    func peerSends(_ k: Int, tag: UInt8) {
        var f = [UInt8](repeating: tag, count: 60)
        f.replaceSubrange(0..<14, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0x10, UInt8(k + 1), 0x88, 0xb5])
        _ = send(peers[k], f, f.count, 0)
    }
}

/// One queue pair of the test driver: two rings in GuestRAM and their eventfds.
struct DriverPair {
    var rx: DriverRing
    var tx: DriverRing
    var fds: (rxKick: Int32, rxCall: Int32, txKick: Int32, txCall: Int32) = (-1, -1, -1, -1)
    let number: Int
    let ram: GuestRAM

    /// Pair `number`'s rings at 32 KiB apart, its buffers in a 64 KiB area of their own.
    init(ram: GuestRAM, number: Int) {
        self.ram = ram; self.number = number
        rx = DriverRing(ram: ram, at: ram.gpa + UInt64(number) * 0x8000, size: 64)
        tx = DriverRing(ram: ram, at: ram.gpa + UInt64(number) * 0x8000 + 0x4000, size: 64)
    }

    var bufferArea: UInt64 { ram.gpa + 0x40000 + UInt64(number) * 0x10000 }

    mutating func setUp(_ fe: SocketFrontend) throws {
        let r = try fe.setUpRing(UInt32(2 * number), rx)
        let t = try fe.setUpRing(UInt32(2 * number + 1), tx)
        fds = (r.kick, r.call, t.kick, t.call)
        // Receive buffers: 8 of 2 KiB.
        for k in 0..<8 { rx.add([(bufferArea + UInt64(k) * 0x800, 2048, true)]) }
    }

    func close() { for fd in [fds.rxKick, fds.rxCall, fds.txKick, fds.txCall] where fd >= 0 { Glibc.close(fd) } }

    /// The guest transmits a broadcast frame tagged `tag` on this pair (header + frame in one
    /// buffer) and kicks.
    mutating func send(tag: UInt8) {
        let at = bufferArea + 0x8000 + UInt64(tag) * 0x80
        var f = [UInt8](repeating: 0, count: 12) + [UInt8](repeating: tag, count: 60)
        f.replaceSubrange(12..<26, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 9, 0x88, 0xb5])
        f.withUnsafeBytes { ram.host(at).copyMemory(from: $0.baseAddress!, byteCount: f.count) }
        tx.add([(at, UInt32(f.count), false)])
        kickEventFD(fds.txKick)
    }

    /// Tags of the frames the back-end wrote into this pair's receive ring since the last call
    /// (each buffer re-posted).
    mutating func received() -> [UInt8] {
        var tags: [UInt8] = []
        for e in rx.takeUsed() {
            let at = bufferArea + UInt64(e.id) * 0x800
            if e.len == 72 { tags.append(ram.host(at + 12 + 20).load(as: UInt8.self)) }
            rx.add([(at, 2048, true)])
        }
        return tags
    }
}

@Suite(.serialized) struct VhostUserMultiQueueTests {
    /// GET_FEATURES carries VIRTIO_NET_F_MQ, GET_PROTOCOL_FEATURES carries MQ, GET_QUEUE_NUM the
    /// pairs; negotiated with MQ + REPLY_ACK.
    func negotiateMQ(_ fe: SocketFrontend, pairs: Int) throws {
        let features = SocketFrontend.u64(try fe.request(.getFeatures))
        #expect(features & VirtioNetFeatures.mq != 0)
        let protocolFeatures = SocketFrontend.u64(try fe.request(.getProtocolFeatures))
        #expect(protocolFeatures & VhostUserProtocolFeature.mq != 0)
        try fe.request(.setProtocolFeatures, VhostUserEncoder.u64(VhostUserProtocolFeature.mq | VhostUserProtocolFeature.replyAck))
        fe.acked = VhostUserProtocolFeature.replyAck
        #expect(SocketFrontend.u64(try fe.request(.getQueueNum)) == UInt64(pairs))
        #expect(SocketFrontend.u64(try fe.request(.setFeatures, VhostUserEncoder.u64(features))) == 0)
        try fe.request(.setOwner)
    }

    @Test func pairsOnTwoWorkersEnabledLaterDisabledAndRefusedPastTheLast() throws {
        let rig = try MultiQueueRig(workers: 2, pairs: 2)
        defer { rig.stop() }
        let fe = try SocketFrontend(path: rig.port.path)
        try negotiateMQ(fe, pairs: 2)
        let ram = GuestRAM()
        #expect(try fe.setMemTable(ram))
        var p0 = DriverPair(ram: ram, number: 0), p1 = DriverPair(ram: ram, number: 1)
        defer { p0.close(); p1.close() }

        // Pair 0 only (a driver using 1 of 2): the port connects; pair 0 carries both ways,
        // whichever worker reads the plain port.
        try p0.setUp(fe)
        #expect(until(10) { rig.port.currentStatus.connected && rig.port.currentStatus.activePairs == [0] })
        p0.send(tag: 1)
        #expect(rig.peerReceives(0, tag: 1))
        rig.peerSends(0, tag: 2)
        rig.peerSends(1, tag: 3)
        var got0: [UInt8] = []
        #expect(until(10) { got0 += p0.received(); return got0.contains(2) && got0.contains(3) }, "got \(got0)")

        // Pair 1 enabled later: worker 1 serves it. Its transmit ring carries, and frames from
        // the plain port worker 1 reads land in pair 1's receive ring.
        try p1.setUp(fe)
        #expect(until(10) { rig.port.currentStatus.connected && rig.port.currentStatus.activePairs == [0, 1] })
        p1.send(tag: 4)
        #expect(rig.peerReceives(0, tag: 4))
        var got1: [UInt8] = []
        got0 = []
        for tag in UInt8(5)...8 { rig.peerSends(Int(tag) % 2, tag: tag) }
        #expect(until(10) { got0 += p0.received(); got1 += p1.received(); return (got0 + got1).count >= 4 }, "pair 0 \(got0), pair 1 \(got1)")
        #expect(Set(got0 + got1) == [5, 6, 7, 8])
        #expect(!got0.isEmpty && !got1.isEmpty, "both pairs' receive rings carry frames: pair 0 \(got0), pair 1 \(got1)")
        let frames = rig.port.currentStatus.pairFrames
        #expect(frames.count == 2 && frames.allSatisfy { $0.fromGuest >= 1 && $0.toGuest >= 1 }, "\(frames)")
        #expect(rig.logs.all.contains { $0.contains("queue pairs active: 0 (worker 0), 1 (worker 1) of 2") })

        // The driver disables pair 1 (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 1, as QEMU turns it into
        // SET_VRING_ENABLE 0): nothing is lost, every frame reaches pair 0.
        try fe.request(.setVringEnable, VhostUserEncoder.vringState(index: 2, num: 0))
        try fe.request(.setVringEnable, VhostUserEncoder.vringState(index: 3, num: 0))
        #expect(until(10) { rig.port.currentStatus.connected && rig.port.currentStatus.activePairs == [0] })
        got0 = []; got1 = []
        for tag in UInt8(9)...12 { rig.peerSends(Int(tag) % 2, tag: tag) }
        #expect(until(10) { got0 += p0.received(); return got0.count >= 4 }, "pair 0 \(got0)")
        #expect(Set(got0) == [9, 10, 11, 12])
        #expect(p1.received().isEmpty)
        let drops = rig.engine.snapshot().bridge("br")?.ports.first { $0.name == "vu0" }?.totalDrops ?? 99
        #expect(drops == 0)

        // Indexes past the last pair: refused (REPLY_ACK non-zero), logged, counted at the end
        // of the connection; the connection keeps working.
        #expect(SocketFrontend.u64(try fe.request(.setVringNum, VhostUserEncoder.vringState(index: 4, num: 64))) != 0)
        #expect(SocketFrontend.u64(try fe.request(.setVringEnable, VhostUserEncoder.vringState(index: 7, num: 1))) != 0)
        #expect(SocketFrontend.u64(try fe.request(.setVringAddr, VhostUserEncoder.vringAddress(p1.rx.addressIndexed(5)))) != 0)
        // Any descriptor will do: the back-end refuses the index before it looks at it.
        var stray: [Int32] = [-1, -1]
        #expect(pipe(&stray) == 0)
        let strayKick = stray[0], strayCall = stray[1]
        defer { Glibc.close(strayKick); Glibc.close(strayCall) }
        #expect(SocketFrontend.u64(try fe.request(.setVringKick, VhostUserEncoder.u64(4), fds: [strayKick])) != 0)
        #expect(SocketFrontend.u64(try fe.request(.setVringCall, VhostUserEncoder.u64(5), fds: [strayCall])) != 0)
        let base = try fe.request(.getVringBase, VhostUserEncoder.vringState(index: 6, num: 0))
        #expect(base == VhostUserEncoder.vringState(index: 6, num: 0))
        #expect(rig.logs.all.contains { $0.contains("SET_VRING_NUM refused: SET_VRING_NUM: queue index 4 beyond 4 queues (2 pairs offered)") })
        p0.send(tag: 13)
        #expect(rig.peerReceives(0, tag: 13))
        Glibc.shutdown(fe.fd, Int32(SHUT_RDWR))
        #expect(until(10) { !rig.port.currentStatus.connected && rig.port.currentStatus.refused == 6 })

        // A new front-end (a VMM that reconnected) sets both pairs up again.
        let again = try SocketFrontend(path: rig.port.path)
        try negotiateMQ(again, pairs: 2)
        let ram2 = GuestRAM()
        #expect(try again.setMemTable(ram2))
        var q0 = DriverPair(ram: ram2, number: 0), q1 = DriverPair(ram: ram2, number: 1)
        defer { q0.close(); q1.close() }
        try q0.setUp(again); try q1.setUp(again)
        #expect(until(10) { rig.port.currentStatus.connected && rig.port.currentStatus.activePairs == [0, 1] })
        q1.send(tag: 14)
        #expect(rig.peerReceives(1, tag: 14))
        q0.send(tag: 15)
        #expect(rig.peerReceives(1, tag: 15))
    }

    /// Two pairs on one worker: its descriptor is an epoll set of both kick eventfds; a kick of
    /// either wakes it, again and again (each after the ring went idle and kicks came back on).
    @Test func twoPairsOnOneWorkerWakeOnEitherKick() throws {
        let rig = try MultiQueueRig(workers: 1, pairs: 2, plainPorts: 1)
        defer { rig.stop() }
        let fe = try SocketFrontend(path: rig.port.path)
        try negotiateMQ(fe, pairs: 2)
        let ram = GuestRAM()
        #expect(try fe.setMemTable(ram))
        var p0 = DriverPair(ram: ram, number: 0), p1 = DriverPair(ram: ram, number: 1)
        defer { p0.close(); p1.close() }
        try p0.setUp(fe); try p1.setUp(fe)
        #expect(until(10) { rig.port.currentStatus.connected && rig.port.currentStatus.activePairs == [0, 1] })
        for round in 0..<6 {
            let tag = UInt8(20 + round)
            if round % 3 == 0 { p0.send(tag: tag) } else { p1.send(tag: tag) }
            #expect(rig.peerReceives(0, tag: tag), "round \(round)")
            // Let the ring go idle (the poll window is 50 µs) so the next frame needs a kick.
            usleep(5_000)
        }
        rig.peerSends(0, tag: 30)
        var got: [UInt8] = []
        #expect(until(10) { got += p0.received() + p1.received(); return got.contains(30) })
        let frames = rig.port.currentStatus.pairFrames
        #expect(frames[0].fromGuest == 2 && frames[1].fromGuest == 4, "\(frames)")
        #expect(rig.logs.all.contains { $0.contains("queue pairs active: 0 (worker 0), 1 (worker 0) of 2") })
    }

    /// A ring the guest breaks on one pair stops the port (every pair: the engine disconnects
    /// it, workers serving the other pair included), counted and logged; the other ports keep
    /// forwarding; once the front-end restarts that ring both pairs run again.
    @Test func brokenRingOnOnePairIsContainedAndReset() throws {
        let rig = try MultiQueueRig(workers: 2, pairs: 2)
        defer { rig.stop() }
        let fe = try SocketFrontend(path: rig.port.path)
        try negotiateMQ(fe, pairs: 2)
        let ram = GuestRAM()
        #expect(try fe.setMemTable(ram))
        var p0 = DriverPair(ram: ram, number: 0), p1 = DriverPair(ram: ram, number: 1)
        defer { p0.close(); p1.close() }
        try p0.setUp(fe); try p1.setUp(fe)
        #expect(until(10) { rig.port.currentStatus.connected && rig.port.currentStatus.activePairs == [0, 1] })
        p1.send(tag: 40)
        #expect(rig.peerReceives(0, tag: 40))

        // A descriptor loop on pair 1's transmit ring.
        p1.tx.writeDescriptor(20, addr: p1.bufferArea + 0x8000, len: 60, flags: 1, next: 21)
        p1.tx.writeDescriptor(21, addr: p1.bufferArea + 0x8000, len: 60, flags: 1, next: 20)
        p1.tx.publish(head: 20)
        kickEventFD(p1.fds.txKick)
        #expect(until(10) { rig.port.currentStatus.ringsBroken == 1 && !rig.port.currentStatus.connected })
        #expect(rig.port.currentStatus.lastError?.contains("descriptor chain longer than 64") == true, "\(rig.port.currentStatus)")
        #expect(rig.logs.all.contains { $0.contains("queue pair 1 broken") })
        rig.peerSends(0, tag: 41)
        #expect(rig.peerReceives(1, tag: 41), "the other ports keep forwarding")

        // The front-end restarts the broken ring (stop, fresh layout, kick): both pairs run.
        let base = try fe.request(.getVringBase, VhostUserEncoder.vringState(index: 3, num: 0))
        #expect(base.count == 8)
        Glibc.close(p1.fds.txKick); Glibc.close(p1.fds.txCall)
        p1.tx = DriverRing(ram: ram, at: ram.gpa + 0x8000 + 0x4000, size: 64)
        let t = try fe.setUpRing(3, p1.tx)
        p1.fds.txKick = t.kick; p1.fds.txCall = t.call
        #expect(until(10) { rig.port.currentStatus.connected && rig.port.currentStatus.activePairs == [0, 1] })
        p1.send(tag: 42)
        #expect(rig.peerReceives(0, tag: 42))
        p0.send(tag: 43)
        #expect(rig.peerReceives(0, tag: 43))
    }
}
