// VM ports inside the real engine (io_uring workers do the framing): second connection refused
// by the supervisor, a hostile length prefix disconnects the VM, and a new VM gets back in.
import Datapath
import Foundation
import Frames
import Testing
@testable import VMBackend

@Suite struct VMPortEngineTests {
    func waitUntil(_ seconds: Double = 5, _ cond: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end { if cond() { return true }; usleep(10_000) }
        return cond()
    }
    func sawEOF(_ fd: Int32) -> Bool {
        try? VMSockets.setNonblocking(fd, path: "client")
        var b = [UInt8](repeating: 0, count: 4096)
        return waitUntil { let n = read(fd, &b, b.count); return n == 0 || (n < 0 && errno == ECONNRESET) }
    }

    @Test func serverPortRefusesSecondAndRecoversFromHostilePeer() throws {
        var c = EngineConfiguration(workers: 1)
        c.buffersPerWorker = 64
        let engine = Engine(configuration: c)
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]), offloads: [])
        let path = tempPath("engine")
        var logs: [String] = []
        let lock = NSLock()
        let port = try VMStreamServerPort(name: "vm0", path: path, log: { l in lock.withLock { logs.append(l) } })
        let id = try bridge.attach(port)
        try engine.start()
        let supervisor = VMPortSupervisor(engine: engine)
        defer { supervisor.stop(); engine.stop() }
        supervisor.watch(port, id: id, in: bridge)

        let c1 = try VMSockets.connectStream(to: path)
        #expect(waitUntil { port.isConnected }, "the supervisor attaches the first VM")
        let c2 = try VMSockets.connectStream(to: path)
        #expect(sawEOF(c2), "a second connection is closed")
        #expect(port.refusedConnections == 1)
        #expect(lock.withLock { logs.contains { $0.contains("refused a second connection") } })
        close(c2)

        writeAll(c1, prefixLength(0) + ethFrame(60))   // hostile: zero length
        #expect(sawEOF(c1), "the engine closes a peer sending a zero length prefix")
        #expect(waitUntil { !port.isConnected })
        close(c1)

        let c3 = try VMSockets.connectStream(to: path)
        defer { close(c3) }
        #expect(waitUntil { port.isConnected }, "a new VM is attached again without restarting anything")
    }
}
