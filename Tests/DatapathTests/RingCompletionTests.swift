// The completion queue taken out of order: completions a submit posted are handled before the
// older ones queued ahead of them, and the in-order pass skips what was taken.
import Ring
import Testing

@Suite struct RingCompletionTests {
    private func nops(_ ring: Ring, _ ids: [UInt64]) {
        for id in ids {
            guard let sqe = ring.sqe() else { Issue.record("no SQE"); return }
            sqe.prepareNop()
            sqe.setUserData(id)
        }
        #expect(ring.submit() == Int32(ids.count))
    }

    private func drain(_ ring: Ring) -> [UInt64] {
        var seen: [UInt64] = []
        while ring.forEachCompletion(limit: 2, { seen.append($0.userData) }) > 0 {}
        return seen
    }

    @Test func completionsPostedSinceAMarkAreTakenAheadAndSkippedLater() throws {
        let ring = try Ring(entries: 16, completionEntries: 32)
        nops(ring, [1, 2, 3])
        let mark = ring.completionMark
        nops(ring, [4, 5, 6])
        var offered: [UInt64] = []
        let taken = ring.takeCompletions(postedSince: mark, replacingWith: 99) { c in
            offered.append(c.userData)
            return c.userData != 5
        }
        #expect(offered == [4, 5, 6], "only what the second submit posted")
        #expect(taken == 2)
        #expect(drain(ring) == [1, 2, 3, 99, 5, 99])
    }

    @Test func aMarkBehindTheHeadStartsAtTheHeadAndTheRingWraps() throws {
        let ring = try Ring(entries: 16, completionEntries: 32)
        // Go round the 32-entry completion queue a few times so positions wrap.
        for round in 0..<5 {
            let base = UInt64(round * 100)
            let stale = ring.completionMark
            nops(ring, [base + 1, base + 2, base + 3, base + 4, base + 5, base + 6, base + 7])
            #expect(drain(ring).count == 7)
            nops(ring, [base + 8, base + 9])
            // `stale` is behind the head now: nothing consumed may be offered again.
            var offered: [UInt64] = []
            _ = ring.takeCompletions(postedSince: stale, replacingWith: 0) { offered.append($0.userData); return true }
            #expect(offered == [base + 8, base + 9])
            #expect(drain(ring) == [0, 0])
            // Taking again offers nothing already taken.
            let mark = ring.completionMark
            #expect(ring.takeCompletions(postedSince: mark, replacingWith: 0) { _ in true } == 0)
        }
    }
}
