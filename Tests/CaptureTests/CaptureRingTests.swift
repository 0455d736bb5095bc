// CaptureRing: bounded (a full ring drops and counts, never blocks), records survive the wrap
// at the end of the ring intact and in order.
import Testing
@testable import Capture
import PacketFilter

@Suite struct CaptureRingTests {
    @Test func fullRingDropsAndCountsThenWrapsCleanly() {
        let ring = CaptureRing(bytes: 1 << 16)
        let tap = CaptureTap(ring: ring, filter: nil, snaplen: 1000)
        var frame = [UInt8](repeating: 0, count: 1500)
        var accepted = 0
        // 1000 captured bytes + header per record: a 64 KiB ring takes 63 of them.
        for i in 0..<100 {
            frame[0] = UInt8(i)
            let before = ring.dropped
            frame.withUnsafeBytes { tap.offer($0, interface: 0, direction: .ingress) }
            if ring.dropped == before { accepted += 1 }
        }
        #expect(accepted > 0 && accepted < 100)
        #expect(ring.dropped == UInt64(100 - accepted))
        var seen: [UInt8] = []
        ring.drain { _, _, _, original, data in
            #expect(original == 1500 && data.count == 1000)
            seen.append(data[0])
        }
        #expect(seen == (0..<accepted).map { UInt8($0) })
        // Many more rounds: every record crosses the end of the ring at some point.
        var next: UInt8 = 0, expected: UInt8 = 0, bad = 0
        for _ in 0..<50 {
            for _ in 0..<20 {
                frame[0] = next; next &+= 1
                frame.withUnsafeBytes { tap.offer(UnsafeRawBufferPointer(rebasing: $0[0..<Int(37 + next % 200)]), interface: 3, direction: .egress) }
            }
            ring.drain { interface, direction, _, original, data in
                if data[0] != expected || interface != 3 || direction != .egress || original != data.count { bad += 1 }
                expected &+= 1
            }
        }
        #expect(bad == 0 && expected == next)
    }
}

@Suite struct CaptureTapTests {
    @Test func filteredOutFramesAreCountedNotCopied() throws {
        let tap = CaptureTap(ring: CaptureRing(bytes: 1 << 16), filter: try PcapProgram("tcp port 22"), snaplen: 65535)
        var frame = [UInt8](repeating: 0, count: 64)
        frame[12] = 0x08; frame[13] = 0x00; frame[14] = 0x45; frame[23] = 17
        for _ in 0..<1000 { frame.withUnsafeBytes { tap.offer($0, interface: 0, direction: .ingress) } }
        #expect(tap.filteredOut == 1000)
        #expect(tap.ring.offered == 0 && tap.ring.dropped == 0)
        #expect(tap.ring.drain { _, _, _, _, _ in } == 0)
    }
}
