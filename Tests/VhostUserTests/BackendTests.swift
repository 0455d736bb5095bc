// The vhost-user back-end against a front-end written here (socketpair, memfd guest memory):
// negotiation, memory table, rings, a frame each way, EVENT_IDX, indirect descriptors,
// mergeable receive buffers. No root, no network.
import CVhostUserShim
import Glibc
import Testing
import TestSupport
import VirtioNet
@testable import VhostUser

/// A front-end with features negotiated, memory set and both rings of pair 0 running.
struct Rig {
    let fe: TestFrontend
    let ram: GuestRAM
    var rx: DriverRing
    var tx: DriverRing
    let rxFDs: (kick: Int32, call: Int32)
    let txFDs: (kick: Int32, call: Int32)
    let features: UInt64
    var chain = DescriptorChain()
    init(features: UInt64? = nil, size: Int = 256) {
        fe = TestFrontend()
        ram = GuestRAM()
        self.features = fe.negotiate(features: features)
        precondition(fe.setMemTable(ram))
        rx = DriverRing(ram: ram, at: ram.gpa, size: size)
        tx = DriverRing(ram: ram, at: ram.gpa + 0x8000, size: size)
        rxFDs = fe.setUpRing(0, rx)
        txFDs = fe.setUpRing(1, tx)
    }
    var buffers: UInt64 { ram.gpa + 0x20000 }
    var headerSize: Int { VirtioNetFeatures.headerSize(features) }
    func close() {
        chain.deallocate()
        for fd in [rxFDs.kick, rxFDs.call, txFDs.kick, txFDs.call] { Glibc.close(fd) }
    }
}

@Suite struct NegotiationTests {
    @Test func featuresProtocolFeaturesAndQueueCount() {
        let fe = TestFrontend(queuePairs: 2)
        fe.request(.getFeatures)
        let offered = fe.replyU64()!
        #expect(offered & VirtioFeature.version1 != 0)
        #expect(offered & VirtioFeature.eventIndex != 0)
        #expect(offered & VirtioFeature.indirectDescriptors != 0)
        #expect(offered & VirtioFeature.protocolFeatures != 0)
        #expect(offered & VirtioNetFeatures.mergeableRxBuffers != 0)
        #expect(offered & VirtioNetFeatures.mq != 0)
        #expect(offered & VirtioNetFeatures.hostTSO4 != 0 && offered & VirtioNetFeatures.guestCsum != 0)
        #expect(offered & VirtioNetFeatures.controlQueue == 0)   // QEMU/virtio-user keep the control queue
        fe.request(.setFeatures, VhostUserEncoder.u64(offered))
        #expect(fe.logs.contains { $0.contains("negotiated features:") && $0.contains("VERSION_1") && $0.contains("MRG_RXBUF") })
        fe.request(.getProtocolFeatures)
        let proto = fe.replyU64()!
        #expect(proto == VhostUserProtocolFeature.replyAck | VhostUserProtocolFeature.mq)
        fe.request(.setProtocolFeatures, VhostUserEncoder.u64(proto))
        #expect(fe.logs.contains { $0.contains("protocol features: MQ REPLY_ACK") })
        fe.request(.getQueueNum)
        #expect(fe.replyU64() == 2)
        // REPLY_ACK: a good request acks 0.
        fe.request(.setOwner, needReply: true)
        #expect(fe.replyU64() == 0)
        #expect(fe.ended == nil)
    }

    @Test func featuresNotOfferedAreRefused() {
        let fe = TestFrontend()
        fe.request(.getFeatures)
        let offered = fe.replyU64()!
        fe.request(.setFeatures, VhostUserEncoder.u64(offered | (1 << 34)))   // RING_PACKED
        #expect(fe.backend.counters.refused == 1)
        #expect(fe.logs.contains { $0.contains("SET_FEATURES refused") && $0.contains("not offered") })
        #expect(fe.ended == nil)
    }

    /// QEMU's order: SET_PROTOCOL_FEATURES, then SET_VRING_ENABLE 0 for every ring, and only
    /// later SET_FEATURES with the PROTOCOL_FEATURES bit. Regression: the enables were refused.
    @Test func vringEnableBeforeSetFeaturesAsQEMUSendsIt() {
        let fe = TestFrontend()
        fe.request(.getFeatures)
        let offered = fe.replyU64()!
        fe.request(.getProtocolFeatures)
        _ = fe.replyU64()
        fe.request(.setProtocolFeatures, VhostUserEncoder.u64(VhostUserProtocolFeature.replyAck))
        fe.request(.setVringEnable, VhostUserEncoder.vringState(index: 0, num: 0), needReply: true)
        #expect(fe.replyU64() == 0)
        fe.request(.setFeatures, VhostUserEncoder.u64(offered))
        #expect(fe.backend.counters.refused == 0)
    }

    @Test func withoutProtocolFeaturesRingsStartEnabled() {
        let fe = TestFrontend()
        let ram = GuestRAM()
        fe.request(.getFeatures)
        let offered = fe.replyU64()!
        fe.request(.setFeatures, VhostUserEncoder.u64(offered & ~VirtioFeature.protocolFeatures))
        #expect(fe.setMemTable(ram))
        let ring = DriverRing(ram: ram, at: ram.gpa, size: 64)
        let fds = fe.setUpRing(1, ring)
        #expect(fe.backend.vrings[1].running)
        close(fds.kick); close(fds.call)
    }
}

@Suite struct FrameTests {
    @Test func transmitFrameFromGuestAsIovecsInGuestMemory() throws {
        var rig = Rig()
        defer { rig.close() }
        #expect(rig.fe.backend.vrings[1].running)
        #expect(rig.headerSize == 12)
        let frame = testFrame(300)
        // Header in its own descriptor, the frame split over two.
        var hdr = VirtioNetHeader()
        hdr.flags = VirtioNetHeader.flagNeedsChecksum; hdr.checksumStart = 34; hdr.checksumOffset = 16
        hdr.store(to: rig.ram.host(rig.buffers), size: 12)
        frame.withUnsafeBytes { rig.ram.host(rig.buffers + 0x100).copyMemory(from: $0.baseAddress!, byteCount: 300) }
        rig.tx.add([(rig.buffers, 12, false), (rig.buffers + 0x100, 100, false), (rig.buffers + 0x164, 200, false)])
        let got: VirtioNetTransmitFrame? = try rig.fe.backend.withQueue(1) { q in
            try q.nextTransmit(headerSize: 12, chain: &rig.chain)
        } ?? nil
        let f = try #require(got)
        #expect(f.header.needsChecksum && f.header.checksumStart == 34 && f.header.checksumOffset == 16)
        #expect(f.length == 300 && f.iovecCount == 2)
        // The iovecs point into the back-end's mapping of guest memory (no copy).
        let mapped = try #require(rig.fe.backend.memory?.regions.first)
        #expect(UInt(bitPattern: f.iovecs[0].iov_base) == mapped.host + UInt(rig.buffers + 0x100 - rig.ram.gpa))
        var bytes: [UInt8] = []
        for i in 0..<f.iovecCount { bytes += UnsafeRawBufferPointer(start: f.iovecs[i].iov_base, count: f.iovecs[i].iov_len) }
        #expect(bytes == frame)
        let call = rig.fe.backend.withQueue(1) { q in
            q.completeTransmit(head: f.head)
            q.publishUsed()
            return q.needsInterrupt()
        }
        #expect(call == true)
        #expect(rig.tx.takeUsed().map { $0.id } == [UInt32(f.head)])
    }

    @Test func headerAndFrameInOneDescriptorAndHeaderSplitOddly() throws {
        var rig = Rig()
        defer { rig.close() }
        let frame = testFrame(64)
        var buf = [UInt8](repeating: 0, count: 12) + frame
        buf[1] = VirtioNetHeader.gsoTCPv4
        buf.withUnsafeBytes { rig.ram.host(rig.buffers).copyMemory(from: $0.baseAddress!, byteCount: buf.count) }
        rig.tx.add([(rig.buffers, 5, false), (rig.buffers + 5, UInt32(buf.count - 5), false)])
        let f = try #require(try rig.fe.backend.withQueue(1) { q in try q.nextTransmit(headerSize: 12, chain: &rig.chain) } ?? nil)
        #expect(f.header.gsoType == VirtioNetHeader.gsoTCPv4)
        #expect(f.length == 64 && f.iovecCount == 1)
        #expect(Array(UnsafeRawBufferPointer(start: f.iovecs[0].iov_base, count: 64)) == frame)
    }

    @Test func receiveFrameIntoGuestBuffer() throws {
        var rig = Rig()
        defer { rig.close() }
        rig.rx.add([(rig.buffers, 2048, true)])
        let frame = testFrame(1514)
        var header = VirtioNetHeader()
        header.flags = VirtioNetHeader.flagDataValid
        let result = try rig.fe.backend.withQueue(0) { q in
            let r = try frame.withUnsafeBytes { try q.receive(frame: $0, header: header, headerSize: 12, mergeable: true, chain: &rig.chain) }
            q.publishUsed()
            return r
        }
        #expect(result == .delivered(buffers: 1))
        let used = rig.rx.takeUsed()
        #expect(used.count == 1 && used[0].len == 1526)
        let got = VirtioNetHeader(loadingFrom: rig.ram.host(rig.buffers), size: 12)
        #expect(got.flags == VirtioNetHeader.flagDataValid && got.numBuffers == 1)
        #expect(Array(UnsafeRawBufferPointer(start: rig.ram.host(rig.buffers + 12), count: 1514)) == frame)
    }

    @Test func mergeableReceiveAcrossBuffers() throws {
        var rig = Rig()
        defer { rig.close() }
        for k in 0..<8 { rig.rx.add([(rig.buffers + UInt64(k) * 0x400, 256, true)]) }
        let frame = testFrame(1000, seed: 9)
        let result = try rig.fe.backend.withQueue(0) { q in
            let r = try frame.withUnsafeBytes { try q.receive(frame: $0, header: VirtioNetHeader(), headerSize: 12, mergeable: true, chain: &rig.chain) }
            q.publishUsed()
            return r
        }
        #expect(result == .delivered(buffers: 4))   // 1012 bytes in 256-byte buffers
        let used = rig.rx.takeUsed()
        #expect(used.map { $0.len } == [256, 256, 256, 244])
        #expect(VirtioNetHeader(loadingFrom: rig.ram.host(rig.buffers), size: 12).numBuffers == 4)
        var bytes: [UInt8] = []
        for (k, u) in used.enumerated() {
            bytes += UnsafeRawBufferPointer(start: rig.ram.host(rig.buffers + UInt64(k) * 0x400), count: Int(u.len))
        }
        #expect(Array(bytes.dropFirst(12)) == frame)
    }

    @Test func tooFewBuffersConsumesNothing() throws {
        var rig = Rig()
        defer { rig.close() }
        rig.rx.add([(rig.buffers, 256, true)])
        let frame = testFrame(1000)
        let result = try rig.fe.backend.withQueue(0) { q in
            let r = try frame.withUnsafeBytes { try q.receive(frame: $0, header: VirtioNetHeader(), headerSize: 12, mergeable: true, chain: &rig.chain) }
            q.publishUsed()
            return (r, q.nextAvailable)
        }
        #expect(result?.0 == .noBuffers)
        #expect(result?.1 == 0)
        #expect(rig.rx.usedIdx == 0)
        // Without MRG_RXBUF one buffer must hold it all.
        let small = try rig.fe.backend.withQueue(0) { q in
            try frame.withUnsafeBytes { try q.receive(frame: $0, header: VirtioNetHeader(), headerSize: 12, mergeable: false, chain: &rig.chain) }
        }
        #expect(small == .bufferTooSmall)
    }

    @Test func indirectDescriptors() throws {
        var rig = Rig()
        defer { rig.close() }
        let table = rig.buffers + 0x8000
        let frame = testFrame(200)
        frame.withUnsafeBytes { rig.ram.host(rig.buffers + 0x100).copyMemory(from: $0.baseAddress!, byteCount: 200) }
        memset(rig.ram.host(rig.buffers), 0, 12)
        rig.tx.writeDescriptor(0, addr: rig.buffers, len: 12, flags: 1, next: 1, table: table)
        rig.tx.writeDescriptor(1, addr: rig.buffers + 0x100, len: 200, flags: 0, next: 0, table: table)
        rig.tx.writeDescriptor(0, addr: table, len: 32, flags: SplitQueue.descriptorIndirect, next: 0)
        rig.tx.publish(head: 0)
        let f = try #require(try rig.fe.backend.withQueue(1) { q in try q.nextTransmit(headerSize: 12, chain: &rig.chain) } ?? nil)
        #expect(f.length == 200)
        #expect(Array(UnsafeRawBufferPointer(start: f.iovecs[0].iov_base, count: 200)) == frame)
    }

    @Test func eventIndexSuppressesInterruptsAndAsksForKicks() throws {
        var rig = Rig()
        defer { rig.close() }
        #expect(rig.features & VirtioFeature.eventIndex != 0)
        for k in 0..<4 { rig.tx.add([(rig.buffers + UInt64(k) * 0x100, 76, false)]) }
        // The driver wants an interrupt only once used.idx passes 2 (i.e. after the 3rd).
        rig.tx.setUsedEvent(2)
        var calls: [Bool] = []
        try rig.fe.backend.withQueue(1) { q in
            for _ in 0..<4 {
                let f = try q.nextTransmit(headerSize: 12, chain: &rig.chain)!
                q.completeTransmit(head: f.head)
                q.publishUsed()
                calls.append(q.needsInterrupt())
            }
            #expect(try q.enableKicks() == false)
        }
        // First decision always signals (nothing signalled yet); then only crossing used_event.
        #expect(calls == [true, false, true, false])
        #expect(rig.tx.availEvent == 4)
    }

    @Test func noInterruptFlagWithoutEventIndex() throws {
        let offered: UInt64 = VirtioFeature.version1 | VirtioFeature.protocolFeatures | VirtioNetFeatures.mergeableRxBuffers
        var rig = Rig(features: offered)
        defer { rig.close() }
        rig.tx.setAvailFlags(SplitQueue.availableNoInterrupt)
        rig.tx.add([(rig.buffers, 76, false)])
        let call = try rig.fe.backend.withQueue(1) { q in
            let f = try q.nextTransmit(headerSize: 12, chain: &rig.chain)!
            q.completeTransmit(head: f.head); q.publishUsed()
            let c = q.needsInterrupt()
            q.disableKicks()
            return c
        }
        #expect(call == false)
        #expect(rig.tx.usedFlags == SplitQueue.usedNoNotify)
    }

    @Test func getVringBaseStopsAndReportsPosition() throws {
        var rig = Rig()
        defer { rig.close() }
        for k in 0..<3 { rig.tx.add([(rig.buffers + UInt64(k) * 0x100, 76, false)]) }
        try rig.fe.backend.withQueue(1) { q in
            for _ in 0..<3 { let f = try q.nextTransmit(headerSize: 12, chain: &rig.chain)!; q.completeTransmit(head: f.head) }
            q.publishUsed()
        }
        rig.fe.request(.getVringBase, VhostUserEncoder.vringState(index: 1, num: 0))
        let reply = try #require(rig.fe.readReply())
        #expect(reply.1 == VhostUserEncoder.vringState(index: 1, num: 3))
        #expect(!rig.fe.backend.vrings[1].running && !rig.fe.backend.vrings[1].started)
        // Restart from there: a new kick.
        let kick = tb_vu_eventfd(1)
        rig.fe.request(.setVringKick, VhostUserEncoder.u64(1), fds: [kick])
        close(kick)
        #expect(rig.fe.backend.vrings[1].running)
        #expect(rig.fe.backend.withQueue(1) { $0.nextAvailable } == 3)
    }
}
