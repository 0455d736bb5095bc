// StreamPeerGoneTests: a `socket = "stream"` VM that goes away while frames flow toward it.
// Its socket's writes may see that first (EPIPE, ECONNRESET) before the read sees the close:
// that is no transmit error. The port goes down once (one log line), every frame toward it
// counts as port-down until a VM is back, and the next VM gets the port again. It used to
// count each frame of the failed write (up to a batch of 64) as a transmit error.
import Datapath
import Foundation
import Frames
import Glibc
import Testing
import UnixSocketFiles
@testable import VMBackend

@Suite struct StreamPeerGoneTests {
    func waitUntil(_ seconds: Double = 30, _ cond: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end { if cond() { return true }; usleep(10_000) }
        return cond()
    }
    /// Reads `count` length-prefixed 60-byte frames from a stream VM's socket (within the deadline).
    func readFrames(_ fd: Int32, _ count: Int) -> Int {
        var b = [UInt8](repeating: 0, count: 64 * count)
        var have = 0
        _ = waitUntil {
            let n = recv(fd, &b[have], b.count - have, Int32(MSG_DONTWAIT))
            if n > 0 { have += n }
            return have == b.count
        }
        return have / 64
    }

    /// An engine (one worker, or two: the source's frames then reach the VM port's owner
    /// through a handoff ring) with a stream-server VM port (supervised) and a datagram source
    /// whose frames (broadcasts, a hub bridge) all go to the VM.
    struct Rig: Sendable {
        let engine: Engine, supervisor: VMPortSupervisor, port: VMStreamServerPort
        let vmID: PortID, sourceID: PortID, source: Int32, path: String, logs: CollectedLines
        func vm() -> PortStatistics? { engine.snapshot().bridge("br")?.port(vmID) }
        func sourceStats() -> PortStatistics? { engine.snapshot().bridge("br")?.port(sourceID) }
        func send(_ fill: UInt8) -> Bool { ethFrame(60, fill: fill).withUnsafeBytes { Glibc.send(source, $0.baseAddress, $0.count, 0) == 60 } }
        func stop() { supervisor.stop(); engine.stop(); close(source); unlink(path) }
    }
    func rig(_ tag: String, workers: Int = 1) throws -> Rig {
        signal(SIGPIPE, SIG_IGN)   // (as the daemon does)
        let path = tempPath(tag)
        let logs = CollectedLines()
        var c = EngineConfiguration(workers: workers)
        c.buffersPerWorker = 128
        c.log = { _, line in logs.append(line) }
        let engine = Engine(configuration: c)
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]), offloads: [])
        let port = try VMStreamServerPort(name: "vm0", path: path)
        var sv: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &sv) == 0)
        let vmID = try bridge.attach(port)
        let sourceID = try bridge.attach(DescriptorPort(name: "src", descriptor: sv[0]))
        try engine.start()
        let supervisor = VMPortSupervisor(engine: engine, log: { logs.append($0) })
        supervisor.watch(port, id: vmID, in: bridge)
        return Rig(engine: engine, supervisor: supervisor, port: port, vmID: vmID, sourceID: sourceID,
                   source: sv[1], path: path, logs: logs)
    }

    /// The VM stops reading (shut down for reading: its socket refuses our writes, EPIPE,
    /// while nothing tells our read): the failed write takes the port down.
    @Test func aWriteToAGoneVMTakesThePortDownWithoutTransmitErrors() throws {
        let r = try rig("gone-write")
        defer { r.stop() }
        let vm = try UnixSocketFile.connectStream(to: r.path)
        #expect(waitUntil { r.port.isConnected && r.vm()?.connected == true })
        for i in 0..<10 { #expect(r.send(UInt8(i))) }
        #expect(readFrames(vm.rawValue, 10) == 10, "frames reach the VM")
        #expect(shutdown(vm.rawValue, Int32(SHUT_RD)) == 0)
        for i in 0..<20 { #expect(r.send(UInt8(20 + i))) }
        #expect(waitUntil { r.vm().map { !$0.connected && $0.drops(.portDown) == 20 } ?? false },
                "the port goes down and every frame toward it counts as port-down: \(String(describing: r.vm()))")
        let s = try #require(r.vm())
        #expect(s.txErrors == 0 && s.txFrames == 10, "\(s)")
        _ = consume vm

        // The next VM gets the port.
        let next = try UnixSocketFile.connectStream(to: r.path)
        #expect(waitUntil { r.port.isConnected && r.vm()?.connected == true }, "the next VM is attached")
        #expect(r.send(99))
        #expect(readFrames(next.rawValue, 1) == 1, "frames reach the next VM")
        #expect(r.vm()?.txErrors == 0)
        let lines = r.logs.all
        #expect(lines.filter { $0.contains("'vm0' disconnected") }.count == 1, "\(lines)")
        #expect(lines.filter { $0.contains("'vm0' reconnected") }.count == 2, "the first VM's and the next one's: \(lines)")
    }

    /// The VM closes its socket under a flow toward it: whichever of our read and our write
    /// sees it first, no frame is a transmit error and every one is accounted for: sent, or
    /// dropped (port-down for the ones after the VM left).
    @Test(arguments: [1, 2]) func aVMClosingUnderAFlowCountsPortDownNotTransmitErrors(workers: Int) throws {
        let r = try rig("gone-flow", workers: workers)
        defer { r.stop() }
        let vm = try UnixSocketFile.connectStream(to: r.path)
        #expect(waitUntil { r.port.isConnected && r.vm()?.connected == true })
        let flow = FrameFlow { _ = r.send(5) }
        #expect(readFrames(vm.rawValue, 100) == 100, "the VM receives frames before it leaves")
        _ = consume vm   // closed with the flow still running
        // (20,000 more, 1.3 MB: more than the VM's socket buffers could have taken)
        let total = flow.finish(after: 20_000)
        #expect(waitUntil { r.sourceStats()?.rxFrames == UInt64(total) }, "the source's frames all arrive: \(String(describing: r.sourceStats()))")
        #expect(waitUntil { r.vm().map { !$0.connected && $0.txFrames + $0.totalDrops == UInt64(total) } ?? false },
                "every frame toward the VM is sent or dropped: \(String(describing: r.vm()))")
        let s = try #require(r.vm())
        #expect(s.txErrors == 0, "\(s)")
        #expect(s.drops(.portDown) > 0, "\(s)")
        print("StreamPeerGoneTests: a VM closing under a flow of \(total) frames, \(workers) worker(s): \(s)")
        let lines = r.logs.all
        #expect(lines.filter { $0.contains("'vm0' disconnected") }.count == 1, "\(lines)")

        let next = try UnixSocketFile.connectStream(to: r.path)
        #expect(waitUntil { r.port.isConnected && r.vm()?.connected == true }, "the next VM is attached")
        #expect(r.send(7))
        #expect(readFrames(next.rawValue, 1) == 1)
    }
}
