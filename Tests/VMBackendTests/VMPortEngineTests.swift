// VM ports inside the real engine (io_uring workers do the framing): second connection refused
// by the supervisor, a hostile length prefix disconnects the VM, a runt is only dropped, a new
// VM gets back in, and the supervisor's probe is immune to descriptor-number reuse.
import Datapath
import Foundation
import Frames
import SystemCalls
import Testing
import UnixSocketFiles
@testable import VMBackend

@Suite struct VMPortEngineTests {
    func waitUntil(_ seconds: Double = 30, _ cond: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end { if cond() { return true }; usleep(10_000) }
        return cond()
    }
    func sawEOF(_ fd: Int32) -> Bool {
        try? UnixSocketFile.setNonblocking(fd, path: "client")
        var b = [UInt8](repeating: 0, count: 4096)
        return waitUntil { let n = read(fd, &b, b.count); return n == 0 || (n < 0 && errno == ECONNRESET) }
    }

    /// A one-worker engine with `port` alone on a hub bridge, supervised.
    func running(_ port: VMStreamServerPort) throws -> (Engine, VMPortSupervisor, PortID) {
        var c = EngineConfiguration(workers: 1)
        c.buffersPerWorker = 64
        let engine = Engine(configuration: c)
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]), offloads: [])
        let id = try bridge.attach(port)
        try engine.start()
        let supervisor = VMPortSupervisor(engine: engine)
        supervisor.watch(port, id: id, in: bridge)
        return (engine, supervisor, id)
    }

    @Test func serverPortRefusesSecondAndRecoversFromHostilePeer() throws {
        let path = tempPath("engine")
        var logs: [String] = []
        let lock = NSLock()
        let port = try VMStreamServerPort(name: "vm0", path: path, log: { l in lock.withLock { logs.append(l) } })
        let (engine, supervisor, _) = try running(port)
        defer { supervisor.stop(); engine.stop() }

        let c1 = try UnixSocketFile.connectStream(to: path)
        #expect(waitUntil { port.isConnected }, "the supervisor attaches the first VM")
        let c2 = try UnixSocketFile.connectStream(to: path)
        #expect(sawEOF(c2.rawValue), "a second connection is closed")
        #expect(port.refusedConnections == 1)
        #expect(lock.withLock { logs.contains { $0.contains("refused a second connection") } })
        _ = consume c2

        writeAll(c1.rawValue, prefixLength(0) + ethFrame(60))   // hostile: zero length
        #expect(sawEOF(c1.rawValue), "the engine closes a peer sending a zero length prefix")
        #expect(waitUntil { !port.isConnected })
        _ = consume c1

        let c3 = try UnixSocketFile.connectStream(to: path)
        #expect(waitUntil { port.isConnected }, "a new VM is attached again without restarting anything")
        _ = consume c3
    }

    /// One decoder's rules in the engine: a runt is dropped and counted and the connection
    /// stays (the next frame still arrives); a prefix above the port's max frame size closes it.
    @Test func engineDropsRuntsAndClosesOnOversizedPrefix() throws {
        let path = tempPath("runt")
        let port = try VMStreamServerPort(name: "vm0", path: path, limits: FrameLimits(maxFrame: 600))
        let (engine, supervisor, id) = try running(port)
        defer { supervisor.stop(); engine.stop() }
        let c1 = try UnixSocketFile.connectStream(to: path)
        #expect(waitUntil { port.isConnected })
        writeAll(c1.rawValue, prefixed([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) + prefixed(ethFrame(60)))
        #expect(waitUntil { engine.snapshot().bridge("br")?.port(id)?.rxFrames == 1 }, "the frame after the runt arrives")
        let s = try #require(engine.snapshot().bridge("br")?.port(id))
        #expect(s.drops(.malformed) == 1 && s.connected, "\(s)")
        writeAll(c1.rawValue, prefixLength(601) + ethFrame(601))
        #expect(sawEOF(c1.rawValue), "a prefix above max-frame (600) closes the connection")
    }

    /// The supervisor's liveness probe must judge the VM's connection, not whatever now has the
    /// descriptor number the engine just closed (it is told `descriptorsClosed` only after).
    @Test func probeIgnoresAReusedDescriptorNumber() throws {
        let path = tempPath("probe")
        let port = try VMStreamServerPort(name: "vm0", path: path)
        let c1 = try UnixSocketFile.connectStream(to: path)
        #expect(port.wantsReconnect(), "a pending VM with none attached")
        let fd = try #require(try port.openQueue(0))
        // The VM goes away; the engine closes its descriptor, and before it reports
        // descriptorsClosed the number is taken by a live, unrelated socket.
        _ = consume c1
        close(fd)   // (the engine's close of the number it was handed)
        let (x, y) = streamPair()
        defer { close(x); close(y) }
        let c2 = try UnixSocketFile.connectStream(to: path)
        usleep(20_000)
        #expect(port.wantsReconnect(), "the new VM replaces the gone one (x=\(x), old fd=\(fd))")
        #expect(port.refusedConnections == 0)
        port.descriptorsClosed()
        _ = c2
    }
}
