// The worker's timed queue (WorkerHold.swift) on its own: copies come out in release-time
// order, copies due at the same time in arrival order, and the bounds are a quarter of each
// buffer pool.
import Testing
@testable import Datapath

@Suite struct HoldQueueTests {
    @Test func releaseOrderIsTimeThenArrival() {
        var q = HoldQueue(ringBuffers: 512, otherBuffers: 64)
        defer { q.deallocate() }
        #expect(q.ringShare == 128 && q.otherShare == 16 && q.capacity == 144)
        var state: UInt64 = 0x1234_5678
        var pushed: [(until: UInt64, buffer: Int32)] = []
        for i in 0..<q.capacity {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let until = (state >> 33) % 20   // many ties
            q.push(HeldFrame(until: until, buffer: Int32(i)))
            pushed.append((until, Int32(i)))
        }
        let expected = pushed.enumerated().sorted { a, b in
            a.element.until != b.element.until ? a.element.until < b.element.until : a.offset < b.offset
        }.map(\.element.buffer)
        var got: [Int32] = []
        while q.count > 0 {
            if got.isEmpty { #expect(q.earliest == pushed.map(\.until).min()) }
            got.append(q.pop().buffer)
        }
        #expect(got == expected)
    }

    @Test func interleavedPushAndPopStaysOrdered() {
        var q = HoldQueue(ringBuffers: 64, otherBuffers: 8)
        defer { q.deallocate() }
        var last: UInt64 = 0
        var t: UInt64 = 1000
        for round in 0..<1000 {
            while q.count < q.capacity && q.count < 10 {
                t &+= UInt64(round % 7)
                q.push(HeldFrame(until: t + UInt64((round * 37) % 50)))
            }
            let f = q.pop()
            #expect(f.until >= last || f.until >= t - 50, "released out of order")
            last = max(last, f.until)
        }
    }
}
