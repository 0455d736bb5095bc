// SnapshotPublisher's reclamation under load: readers on several threads run `withCurrent` on
// every iteration while the control thread publishes a new snapshot every millisecond for
// longer than the grace period, so retired snapshots are freed while readers read newer ones.
// Each reader checks the snapshot it sees is whole (its two fields agree). Runs ~6 s; under
// ThreadSanitizer (tools/sanitize) it is the test that covers the free path.
import Foundation
import Synchronization
import Testing
@testable import Handlers

final class StopFlag: Sendable {
    let value = Atomic<Bool>(false)
}

final class Pair: Sendable {
    let a: Int, b: Int
    init(_ n: Int) { a = n; b = ~n }
}

@Suite struct SnapshotPublisherTests {
    @Test func readersNeverSeeAFreedOrHalfBuiltSnapshot() async {
        let publisher = SnapshotPublisher(Pair(0))
        let stop = StopFlag()
        let seconds = Double(SnapshotPublisher<Pair>.gracePeriodNanoseconds) / 1e9 + 1
        let writer = Thread {
            var n = 1
            let end = Date().addingTimeInterval(seconds)
            while Date() < end { publisher.publish(Pair(n)); n += 1; usleep(1000) }
            stop.value.store(true, ordering: .releasing)
        }
        writer.start()
        let torn = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    var torn = 0, last = 0
                    while !stop.value.load(ordering: .acquiring) {
                        let (a, b) = publisher.withCurrent { ($0.a, $0.b) }
                        if b != ~a || a < last { torn += 1 }
                        last = a
                    }
                    return torn
                }
            }
            return await group.reduce(0, +)
        }
        #expect(torn == 0)
        #expect(publisher.snapshot.a > 1000)
    }
}
