// VhostUserPollingTests: a busy transmit ring is polled with the guest's kicks turned off, and
// once it idles the worker asks for kicks again — by the used ring's NO_NOTIFY flag (no
// EVENT_IDX: DPDK virtio-user's way) or by avail_event (EVENT_IDX: a Linux guest's) — so a
// front-end that kicks only when the ring asks for it is never left waiting, whether a frame
// arrives while the worker polls or after it went back to kicks.
import Foundation
import Glibc
import Testing
import TestSupport
import VhostUser

@Suite(.serialized) struct VhostUserPollingTests {
    @Test(arguments: [false, true])
    func frontEndKickingOnlyWhenAskedIsNeverLeftWaiting(eventIndex: Bool) throws {
        let rig = try HostileRig()
        defer { rig.stop() }
        let fe = try SocketFrontend(path: rig.port.path)
        let features = try fe.negotiate(dropping: eventIndex ? 0 : VirtioFeature.eventIndex)
        #expect((features & VirtioFeature.eventIndex != 0) == eventIndex)
        let ram = GuestRAM()
        #expect(try fe.setMemTable(ram))
        let rx = DriverRing(ram: ram, at: ram.gpa, size: 64)
        var tx = DriverRing(ram: ram, at: ram.gpa + 0x4000, size: 64)
        let rxFDs = try fe.setUpRing(0, rx)
        let txFDs = try fe.setUpRing(1, tx)
        defer { for fd in [rxFDs.kick, rxFDs.call, txFDs.kick, txFDs.call] { close(fd) } }
        #expect(until(30) { rig.port.currentStatus.connected })

        /// The driver's side of notification suppression (virtio 1.x 2.7.10 / 2.7.7.2).
        func ringWantsKick(old: UInt16, new: UInt16) -> Bool {
            if eventIndex { return new &- tx.availEvent &- 1 < new &- old }
            return tx.usedFlags & SplitQueue.usedNoNotify == 0
        }
        var kicks = 0
        var buf = [UInt8](repeating: 0, count: 2048)
        // Bursts of 1 to 4 frames, each burst made available at once and kicked only if the ring
        // asks; every frame must come out at the plain port and its chain come back used.
        var sent = 0
        for burst in 0..<24 {
            let n = burst % 4 + 1
            let old = tx.availIdx
            for _ in 0..<n {
                let tag = UInt8(truncatingIfNeeded: sent + 1)
                let at = ram.gpa + 0x30000 + UInt64(sent % 32) * 0x100
                var f = [UInt8](repeating: 0, count: 12) + [UInt8](repeating: tag, count: 60)
                f.replaceSubrange(12..<26, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 9, 0x88, 0xb5])
                f.withUnsafeBytes { ram.host(at).copyMemory(from: $0.baseAddress!, byteCount: f.count) }
                tx.add([(at, UInt32(f.count), false)])
                sent += 1
            }
            if ringWantsKick(old: old, new: tx.availIdx) { kickEventFD(txFDs.kick); kicks += 1 }
            var got = 0
            let end = Date().addingTimeInterval(30)
            while got < n && Date() < end {
                if recv(rig.peers[1], &buf, buf.count, 0) == 60 { got += 1 }
            }
            #expect(got == n, "burst \(burst): \(got) of \(n) frames came out (kicks so far \(kicks))")
            #expect(until(30) { tx.usedIdx == UInt16(sent) }, "burst \(burst): chains returned")
            _ = tx.takeUsed()
            if burst % 3 == 2 {
                // Let the ring idle: the worker must have asked for kicks again.
                #expect(until(30) { eventIndex ? tx.availEvent == tx.availIdx : tx.usedFlags & SplitQueue.usedNoNotify == 0 },
                        "an idle ring asks for kicks (flags \(tx.usedFlags), avail_event \(tx.availEvent), avail idx \(tx.availIdx))")
            }
        }
        #expect(kicks > 0)
        print("vhost-user polling (EVENT_IDX \(eventIndex)): \(sent) frames in 24 bursts, \(kicks) kicks")
    }
}
