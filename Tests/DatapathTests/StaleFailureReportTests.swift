// StaleFailureReportTests: a worker's report that a port's descriptor failed names the port's
// connection it saw fail. A report that reaches the janitor after the port was disconnected
// for that failure and reconnected (another worker's report of the same failure, a
// multi-queue port's other queue) names the old connection and must leave the new one up; it
// used to disconnect it.
import Foundation
import Testing
@testable import Datapath
import Frames

@Suite struct StaleFailureReportTests {
    /// A stream port that gets a fresh socketpair on every connect; the test keeps the peers.
    final class Peers: @unchecked Sendable {
        private let lock = NSLock()
        private var ends: [Int32] = []
        func connect() -> Int32? {
            var sv: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv) == 0 else { return nil }
            lock.withLock { ends.append(sv[1]) }
            return sv[0]
        }
        /// The peer of the newest connection hangs up.
        func closeLast() { lock.withLock { if let e = ends.popLast() { close(e) } } }
        func closeAll() { lock.withLock { ends.forEach { close($0) }; ends = [] } }
    }
    func waitUntil(_ seconds: Double = 30, _ cond: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end { if cond() { return true }; usleep(10_000) }
        return cond()
    }
    func disconnects(_ events: EventLog, _ id: PortID) -> Int {
        events.all.filter { if case .portDisconnected(_, let p, _, _) = $0 { return p == id }; return false }.count
    }

    @Test func aLateReportAboutTheOldConnectionLeavesTheNewOneUp() throws {
        let events = EventLog()
        let engine = makeEngine(workers: 2, events: events)
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
        let peers = Peers()
        defer { peers.closeAll() }
        let id = try bridge.attach(DescriptorPort(name: "vm", framing: .lengthPrefixed, onFailure: .disconnect) { peers.connect() })
        try engine.start()
        defer { engine.stop() }
        func connected() -> Bool { engine.snapshot().bridge("br")?.port(id)?.connected == true }
        func connection() -> UInt32 { engine.control.withLock { bridge.records[Int(id.rawValue)]!.connection } }
        let first = connection()
        #expect(connected())

        // Two workers saw the first connection fail; the janitor handles the first report, the
        // port reconnects (its VM came back), then the second report arrives.
        engine.reportFailure(bridge: bridge.index, port: id, errno: EPIPE, connection: first)
        #expect(waitUntil { disconnects(events, id) == 1 && !connected() }, "the first report disconnects")
        try engine.reconnect(id, in: bridge)
        let second = connection()
        #expect(second != first && connected())
        engine.reportFailure(bridge: bridge.index, port: id, errno: ECONNRESET, connection: first)
        #expect(waitUntil { engine.staleFailureReports.load(ordering: .relaxed) == 1 }, "the late report is seen and ignored")
        #expect(connected() && disconnects(events, id) == 1, "the new connection stays up: \(events.logLines)")

        // A failure of the new connection, reported by the worker that reads it, still takes it
        // down: the worker names the connection it was given.
        peers.closeLast()
        #expect(waitUntil { disconnects(events, id) == 2 && !connected() }, "the worker's report of the new connection counts")
        #expect(engine.staleFailureReports.load(ordering: .relaxed) == 1)
    }
}
