// Several workers: each opens its own queue of every macvtap, so flows spread over workers.
import Foundation
import Testing
@testable import Datapath
import Frames
import TestSupport

@Suite(.serialized)
struct EngineMultiWorkerTests {
    @Test func twoWorkersForwardOverMultiQueueMacvtaps() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            let engine = makeEngine(workers: 2)
            try hub(engine, [a, b])
            try engine.start()
            defer { engine.stop() }
            #expect(try ping(a, b))
            let r = try iperf(t, from: a, to: b, seconds: 3)
            #expect(delivered(r), "\(r)")
            let w = engine.snapshot().workers
            print("2 workers: \(String(format: "%.2f", r.gbps)) Gbit/s; frames per worker: \(w.map(\.framesIn))")
            #expect(w.count == 2)
        }
    }
}
