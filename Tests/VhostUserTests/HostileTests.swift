// A hostile front-end and a hostile driver: malformed, truncated and oversized messages, wrong
// descriptor counts, memory tables that lie, rings outside memory, descriptor loops, over-long
// chains, buffers beyond a region. Each ends in a clear error or a broken ring, never a crash.
import CVhostUserShim
import Glibc
import Testing
import TestSupport
import VirtioNet
@testable import VhostUser

@Suite struct HostileMessageTests {
    @Test func truncatedMessageEndsTheConnection() {
        let fe = TestFrontend()
        let full = VhostUserEncoder.message(request: VhostUserRequest.setFeatures.rawValue, flags: 1, payload: VhostUserEncoder.u64(1))
        fe.sendRaw(Array(full.prefix(16)))
        shutdown(fe.frontendSide.fd, Int32(SHUT_WR))
        #expect(!fe.pump())
        #expect(fe.ended?.contains("disconnected mid-message (16 of 20 bytes)") == true)
    }

    @Test func truncatedHeaderEndsTheConnection() {
        let fe = TestFrontend()
        fe.sendRaw([1, 0, 0])
        shutdown(fe.frontendSide.fd, Int32(SHUT_WR))
        #expect(!fe.pump())
        #expect(fe.ended?.contains("mid-message (3 of 12 bytes)") == true)
    }

    @Test func oversizedPayloadAndBadVersionAndRepliesAreRefused() {
        for (flags, size, text) in [(UInt32(1), UInt32(1 << 20), "at most 4096"), (UInt32(2), UInt32(0), "version 1"),
                                    (UInt32(5), UInt32(0), "a reply where")] {
            let fe = TestFrontend()
            var h = [UInt8](repeating: 0, count: 12)
            h.withUnsafeMutableBytes { VhostUserHeader(request: 1, flags: flags, size: size).store(to: $0.baseAddress!) }
            fe.sendRaw(h)
            #expect(!fe.pump())
            #expect(fe.ended?.contains(text) == true, "\(fe.ended ?? "nil")")
        }
    }

    @Test func wrongPayloadSizesCloseTheConnection() {
        let cases: [(VhostUserRequest, [UInt8])] = [
            (.setFeatures, [1, 2, 3]), (.getFeatures, [0]), (.setVringAddr, [UInt8](repeating: 0, count: 39)),
            (.setVringNum, [UInt8](repeating: 0, count: 12)),
            (.setMemTable, VhostUserEncoder.u32(2) + VhostUserEncoder.u32(0) + [UInt8](repeating: 0, count: 32)),
            (.setMemTable, VhostUserEncoder.u32(9) + VhostUserEncoder.u32(0)),
        ]
        for (r, payload) in cases {
            let fe = TestFrontend()
            #expect(!fe.request(r, payload), "\(r)")
            #expect(fe.ended != nil)
        }
    }

    @Test func unexpectedDescriptorsAreClosed() {
        let fe = TestFrontend()
        let efd = tb_vu_memfd("tbt-fdcount")
        defer { close(efd) }
        let before = openFDCount(of: efd)
        // GET_FEATURES carries no descriptor: the connection ends, and the fds are closed.
        #expect(!fe.request(.getFeatures, fds: [efd, efd, efd]))
        #expect(fe.ended?.contains("3 file descriptors, the request carries 0") == true)
        #expect(openFDCount(of: efd) == before)
    }

    @Test func kickWithoutDescriptorOrWithTwo() {
        let efd = tb_vu_memfd("tbt-fdcount")
        defer { close(efd) }
        let fe = TestFrontend()
        #expect(!fe.request(.setVringKick, VhostUserEncoder.u64(0)))   // no NOFD flag, no fd
        #expect(fe.ended?.contains("0 file descriptors, the request carries 1") == true)
        let fe2 = TestFrontend()
        let before = openFDCount(of: efd)
        #expect(!fe2.request(.setVringCall, VhostUserEncoder.u64(0x100), fds: [efd]))   // NOFD flag plus an fd
        #expect(openFDCount(of: efd) == before)
        let fe3 = TestFrontend()
        #expect(!fe3.request(.setVringCall, VhostUserEncoder.u64(0x200)))   // undefined bits
    }

    @Test func tooManyDescriptorsInOneMessage() {
        let fe = TestFrontend()
        let efd = tb_vu_memfd("tbt-fdcount")
        defer { close(efd) }
        let before = openFDCount(of: efd)
        #expect(!fe.request(.getFeatures, fds: Array(repeating: efd, count: 12)))
        #expect(fe.ended != nil)
        #expect(openFDCount(of: efd) == before)
    }

    @Test func queueIndexOutOfRange() {
        let fe = TestFrontend()
        _ = fe.negotiate()
        fe.request(.setVringNum, VhostUserEncoder.vringState(index: 7, num: 256), needReply: true)
        #expect(fe.replyU64() == 1)
        fe.request(.setVringNum, VhostUserEncoder.vringState(index: 0, num: 300), needReply: true)
        #expect(fe.replyU64() == 1)
        #expect(fe.logs.contains { $0.contains("size 300") })
        #expect(!fe.request(.setVringNum, VhostUserEncoder.vringState(index: 4096, num: 256)))
    }

    @Test func unknownAndUnofferedRequestsAreRefusedNotFatal() {
        let fe = TestFrontend()
        _ = fe.negotiate()
        fe.request(.getConfig, [UInt8](repeating: 0, count: 12), needReply: true)
        #expect(fe.replyU64() == 1)
        let efd = tb_vu_memfd("tbt-fdcount")
        defer { close(efd) }
        let before = openFDCount(of: efd)
        fe.request(.setBackendReqFD, fds: [efd])
        #expect(openFDCount(of: efd) == before)
        fe.sendRaw(VhostUserEncoder.message(request: 999, flags: 1 | VhostUserHeader.flagNeedReply, payload: [1, 2]))
        #expect(fe.pump())
        #expect(fe.replyU64() == 1)
        #expect(fe.backend.counters.unsupported == 3)
        #expect(fe.ended == nil)
    }
}

@Suite struct HostileMemoryTests {
    func refuse(_ regions: [MemoryRegionDescriptor], fds: [Int32], _ text: String) {
        let fe = TestFrontend()
        _ = fe.negotiate()
        fe.request(.setMemTable, VhostUserEncoder.memoryTable(regions), fds: fds, needReply: true)
        #expect(fe.replyU64() == 1)
        #expect(fe.backend.memory == nil)
        #expect(fe.logs.contains { $0.contains(text) }, "\(fe.logs)")
    }

    @Test func regionPastTheEndOfItsFile() {
        let ram = GuestRAM(size: 1 << 16)
        var r = ram.region
        r.size = 1 << 17
        refuse([r], fds: [ram.fd], "past the end of its file")
        r = ram.region
        r.mmapOffset = 4096
        refuse([r], fds: [ram.fd], "past the end of its file")
    }

    @Test func overflowsZeroSizeAndOverlaps() {
        let ram = GuestRAM(size: 1 << 16)
        var r = ram.region
        r.size = 0
        refuse([r], fds: [ram.fd], "size 0")
        r = ram.region
        r.guestPhysicalAddress = UInt64.max - 10
        refuse([r], fds: [ram.fd], "overflows")
        r = ram.region
        r.mmapOffset = UInt64.max - 100
        refuse([r], fds: [ram.fd], "overflows")
        let a = ram.region
        var b = ram.region
        b.guestPhysicalAddress += 0x1000
        b.userAddress += 0x100000
        refuse([a, b], fds: [ram.fd, ram.fd], "overlap in guest-physical space")
        b = ram.region
        b.guestPhysicalAddress += 0x100000
        b.userAddress += 0x1000
        refuse([a, b], fds: [ram.fd, ram.fd], "overlap in user address space")
    }

    @Test func notARegularFile() {
        let efd = tb_vu_eventfd(1)
        defer { close(efd) }
        refuse([MemoryRegionDescriptor(guestPhysicalAddress: 0, size: 4096, userAddress: 0, mmapOffset: 0)], fds: [efd], "not a regular file")
    }

    @Test func translationStaysInsideRegions() throws {
        let ram = GuestRAM(size: 1 << 16)
        let m = try GuestMemoryMapping.map([ram.region], fds: [dup(ram.fd)])
        let t = m.table
        #expect(t.guestPhysical(ram.gpa, length: 1 << 16) != nil)
        #expect(t.guestPhysical(ram.gpa, length: (1 << 16) + 1) == nil)
        #expect(t.guestPhysical(ram.gpa - 1, length: 1) == nil)
        #expect(t.guestPhysical(ram.gpa + (1 << 16), length: 0) == nil)
        #expect(t.guestPhysical(ram.gpa + 10, length: UInt64.max) == nil)
        #expect(t.userAddress(ram.uva + 0xFFFF, length: 1) != nil)
        #expect(t.userAddress(ram.uva + 0xFFFF, length: 2) == nil)
        m.unmap()
        #expect(m.table.guestPhysical(ram.gpa, length: 1) == nil)
    }
}

@Suite struct HostileRingTests {
    @Test func ringAddressesOutsideMemoryBreakTheRing() {
        let fe = TestFrontend()
        let ram = GuestRAM()
        _ = fe.negotiate()
        #expect(fe.setMemTable(ram))
        var ring = DriverRing(ram: ram, at: ram.gpa, size: 256)
        fe.request(.setVringNum, VhostUserEncoder.vringState(index: 1, num: 256))
        var addr = ring.addressIndexed(1)
        addr.usedRing = ram.uva + UInt64(ram.size) - 64   // used ring runs off the end
        fe.request(.setVringAddr, VhostUserEncoder.vringAddress(addr))
        let kick = tb_vu_eventfd(1)
        defer { close(kick) }
        fe.request(.setVringKick, VhostUserEncoder.u64(1), fds: [kick])
        #expect(fe.backend.vrings[1].broken?.contains("used ring") == true)
        #expect(!fe.backend.vrings[1].running)
        #expect(fe.backend.counters.ringsBroken == 1)
        #expect(fe.logs.contains { $0.contains("queue 1 broken") })
        // Misaligned descriptor table.
        addr = ring.addressIndexed(1)
        addr.descriptorTable += 8
        fe.request(.setVringAddr, VhostUserEncoder.vringAddress(addr))
        fe.request(.setVringKick, VhostUserEncoder.u64(1), fds: [kick])
        #expect(fe.backend.vrings[1].broken?.contains("misaligned") == true)
        // Fixed: it runs again.
        fe.request(.setVringAddr, VhostUserEncoder.vringAddress(ring.addressIndexed(1)))
        fe.request(.setVringKick, VhostUserEncoder.u64(1), fds: [kick])
        fe.request(.setVringEnable, VhostUserEncoder.vringState(index: 1, num: 1))
        #expect(fe.backend.vrings[1].running)
        ring.add([(ram.gpa + 0x20000, 64, false)])
        _ = ring
    }

    func walkError(_ setup: (inout DriverRing, GuestRAM) -> Void) -> VirtqueueError? {
        var rig = Rig()
        defer { rig.close() }
        setup(&rig.tx, rig.ram)
        do {
            _ = try rig.fe.backend.withQueue(1) { q in try q.nextTransmit(headerSize: 12, chain: &rig.chain) }
            return nil
        } catch let e as VirtqueueError { return e } catch { return nil }
    }

    @Test func descriptorLoop() {
        let e = walkError { ring, ram in
            ring.writeDescriptor(0, addr: ram.gpa + 0x20000, len: 64, flags: 1, next: 1)
            ring.writeDescriptor(1, addr: ram.gpa + 0x20000, len: 64, flags: 1, next: 0)
            ring.publish(head: 0)
        }
        #expect(e == .chainTooLong(256))
    }

    @Test func overLongChainWithoutALoop() {
        // A 16-entry ring and a 17-descriptor chain is impossible without revisiting; use the
        // indirect table instead: 300 entries in a 256-entry queue.
        let e = walkError { ring, ram in
            ring.writeDescriptor(0, addr: ram.gpa + 0x40000, len: 300 * 16, flags: SplitQueue.descriptorIndirect, next: 0)
            ring.publish(head: 0)
        }
        #expect(e == .badIndirectLength(4800))
    }

    @Test func nestedIndirectAndIndirectWithNext() {
        let nested = walkError { ring, ram in
            let table = ram.gpa + 0x40000
            ring.writeDescriptor(0, addr: table, len: 16, flags: SplitQueue.descriptorIndirect, next: 0, table: table)
            ring.writeDescriptor(0, addr: table, len: 16, flags: SplitQueue.descriptorIndirect, next: 0)
            ring.publish(head: 0)
        }
        #expect(nested == .nestedIndirect)
        let withNext = walkError { ring, ram in
            ring.writeDescriptor(0, addr: ram.gpa + 0x40000, len: 16, flags: SplitQueue.descriptorIndirect | 1, next: 1)
            ring.publish(head: 0)
        }
        #expect(withNext == .indirectWithNext)
    }

    @Test func lengthsBeyondARegion() {
        let e = walkError { ring, ram in
            ring.writeDescriptor(0, addr: ram.gpa + UInt64(ram.size) - 100, len: 200, flags: 0, next: 0)
            ring.publish(head: 0)
        }
        #expect(e == .bufferOutsideMemory(address: 0x10_0000 + (1 << 20) - 100, length: 200))
        let wrap = walkError { ring, ram in
            ring.writeDescriptor(0, addr: UInt64.max - 10, len: 200, flags: 0, next: 0)
            ring.publish(head: 0)
        }
        #expect(wrap == .bufferOutsideMemory(address: UInt64.max - 10, length: 200))
    }

    @Test func headsAndLinksOutOfRangeAndIndexJumps() {
        let head = walkError { ring, _ in ring.publish(head: 999) }
        #expect(head == .headOutOfRange(999))
        let link = walkError { ring, ram in
            ring.writeDescriptor(0, addr: ram.gpa + 0x20000, len: 64, flags: 1, next: 4000)
            ring.publish(head: 0)
        }
        #expect(link == .descriptorOutOfRange(4000))
        let jump = walkError { ring, ram in
            tb_vu_store_release_u16(ram.host(ring.avail + 2), 1000)
        }
        #expect(jump == .availableIndexJump(available: 1000, next: 0, size: 256))
        let order = walkError { ring, ram in
            ring.writeDescriptor(0, addr: ram.gpa + 0x20000, len: 64, flags: 3, next: 1)
            ring.writeDescriptor(1, addr: ram.gpa + 0x20000, len: 64, flags: 0, next: 0)
            ring.publish(head: 0)
        }
        #expect(order == .readableAfterWritable)
    }

    @Test func brokenRingIsContainedAndCounted() {
        var rig = Rig()
        defer { rig.close() }
        rig.tx.writeDescriptor(0, addr: rig.ram.gpa + 0x20000, len: 64, flags: 1, next: 0)
        rig.tx.publish(head: 0)
        do {
            _ = try rig.fe.backend.withQueue(1) { q in try q.nextTransmit(headerSize: 12, chain: &rig.chain) }
            Issue.record("a looping chain was accepted")
        } catch {
            rig.fe.backend.markBroken(1, "\(error)")
        }
        #expect(rig.fe.backend.counters.ringsBroken == 1)
        #expect(!rig.fe.backend.vrings[1].running)
        #expect(rig.fe.backend.vrings[0].running)   // the other ring keeps going
    }
}
