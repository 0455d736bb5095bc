// DatagramPeerGoneTests: a `socket = "dgram"` VM that exits is noticed by the send that fails
// (nothing else tells a datagram socket): the port goes down at once, frames toward it are
// dropped and counted as port-down (never as transmit errors, never a log line per frame), and
// it comes back up when the VM is back and sends again. It used to stay up, counting every
// frame as a transmit error until the VM's next appearance.
import Datapath
import Foundation
import Frames
import Glibc
import Testing
import TestSupport
import UnixSocketFiles
@testable import VMBackend

/// Log lines collected from any thread.
final class CollectedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}

@Suite struct DatagramPeerGoneTests {
    func waitUntil(_ seconds: Double = 30, _ cond: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end { if cond() { return true }; usleep(10_000) }
        return cond()
    }
    func dgram(boundAt path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        precondition(fd >= 0 && (try? UnixAddress.with(path) { bind(fd, $0, $1) }) == 0, "bind \(path)")
        return fd
    }
    func connectTo(_ fd: Int32, _ path: String) -> Bool { (try? UnixAddress.with(path) { connect(fd, $0, $1) }) == 0 }
    func sendFrame(_ fd: Int32, fill: UInt8) -> Bool { ethFrame(60, fill: fill).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) == 60 } }
    /// The next frame arriving on `fd` within the deadline (its last byte tells which it is).
    func receiveFrame(_ fd: Int32) -> UInt8? {
        var b = [UInt8](repeating: 0, count: 2048)
        var got: UInt8?
        _ = waitUntil { let n = recv(fd, &b, b.count, Int32(MSG_DONTWAIT)); if n == 60 { got = b[59] }; return got != nil }
        return got
    }

    @Test func aVMThatLeavesTakesThePortDownUntilItSendsAgain() throws {
        let ours = tempPath("gone-tb"), vmPath = tempPath("gone-vm")
        let otherOurs = tempPath("gone-tb2"), otherPath = tempPath("gone-other")
        defer { for p in [ours, vmPath, otherOurs, otherPath] { unlink(p) } }
        let logs = CollectedLines()
        var c = EngineConfiguration(workers: 1)
        c.buffersPerWorker = 64
        c.log = { _, line in logs.append(line) }
        let engine = Engine(configuration: c)
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]), offloads: [])
        // The VM under test, and another datagram "VM" whose broadcasts flood to it.
        var vm = dgram(boundAt: vmPath)
        let other = dgram(boundAt: otherPath)
        defer { close(vm); close(other) }
        let port = VMDatagramPort(name: "vm0", localPath: ours, remotePath: vmPath)
        let otherPort = VMDatagramPort(name: "vm1", localPath: otherOurs, remotePath: otherPath)
        let id = try bridge.attach(port)
        _ = try bridge.attach(otherPort)
        try engine.start()
        let supervisor = VMPortSupervisor(engine: engine, log: { logs.append($0) })
        defer { supervisor.stop(); engine.stop() }
        supervisor.watch(port, id: id, in: bridge)
        #expect(port.isConnected && otherPort.isConnected)
        #expect(connectTo(vm, ours) && connectTo(other, otherOurs))
        func vmStats() -> PortStatistics? { engine.snapshot().bridge("br")?.port(id) }

        #expect(sendFrame(other, fill: 1))
        #expect(receiveFrame(vm) == 1, "frames reach the VM")

        // The VM exits (its socket file stays behind, as QEMU's does).
        close(vm); vm = -1
        // Gone once no process holds it (a child another test is spawning may, until it execs):
        // only then is every frame toward it port-down.
        #expect(waitUnixSocketGone(vmPath))
        for i in 0..<20 { #expect(sendFrame(other, fill: UInt8(10 + i))) }
        #expect(waitUntil { vmStats().map { !$0.connected && $0.drops(.portDown) == 20 } ?? false },
                "the port goes down and every frame toward it counts as port-down: \(String(describing: vmStats()))")
        #expect(vmStats()?.txErrors == 0)
        #expect(!port.isConnected && port.isWaitingForVM)
        // Still down, still quiet, while only the dead socket file is there.
        for i in 0..<20 { #expect(sendFrame(other, fill: UInt8(40 + i))) }
        #expect(waitUntil { vmStats()?.drops(.portDown) == 40 })
        #expect(!port.isConnected && vmStats()?.connected == false && vmStats()?.txErrors == 0)

        // The VM comes back (a new socket at its path) and sends: the port is up again, that
        // frame goes through, and frames reach the VM again.
        unlink(vmPath)
        vm = dgram(boundAt: vmPath)
        #expect(connectTo(vm, ours), "the VM's socket connects to our path (our socket stayed bound)")
        #expect(sendFrame(vm, fill: 99))
        #expect(receiveFrame(other) == 99, "the returning VM's first frame is forwarded")
        #expect(waitUntil { port.isConnected && vmStats()?.connected == true })
        #expect(sendFrame(other, fill: 2))
        #expect(receiveFrame(vm) == 2, "frames reach the VM again")
        #expect(vmStats()?.txErrors == 0)

        let lines = logs.all
        #expect(lines.filter { $0.contains("'vm0' disconnected") }.count == 1, "\(lines)")
        #expect(lines.filter { $0.contains("'vm0' reconnected") }.count == 1, "\(lines)")
        #expect(!lines.contains { $0.contains("failed") }, "\(lines)")
    }

    /// The VM exits under a flow toward it (one worker, or two): no frame is a transmit error
    /// and every one is accounted for: sent, or dropped (port-down once it left: the refused
    /// send, the sends cancelled in flight, the ones queued and every later one).
    @Test(arguments: [1, 2]) func aVMLeavingUnderAFlowCountsPortDownNotTransmitErrors(workers: Int) throws {
        let ours = tempPath("flow-tb"), vmPath = tempPath("flow-vm")
        defer { unlink(ours); unlink(vmPath) }
        let logs = CollectedLines()
        var c = EngineConfiguration(workers: workers)
        c.buffersPerWorker = 128
        c.log = { _, line in logs.append(line) }
        let engine = Engine(configuration: c)
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]), offloads: [])
        var vm = dgram(boundAt: vmPath)
        defer { if vm >= 0 { close(vm) } }
        var sv: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &sv) == 0)
        let source = sv[1]
        defer { close(source) }
        let port = VMDatagramPort(name: "vm0", localPath: ours, remotePath: vmPath)
        let id = try bridge.attach(port)
        let sourceID = try bridge.attach(DescriptorPort(name: "src", descriptor: sv[0]))
        try engine.start()
        let supervisor = VMPortSupervisor(engine: engine, log: { logs.append($0) })
        defer { supervisor.stop(); engine.stop() }
        supervisor.watch(port, id: id, in: bridge)
        #expect(port.isConnected)
        func stats(_ p: PortID) -> PortStatistics? { engine.snapshot().bridge("br")?.port(p) }

        let frame = ethFrame(60, fill: 5)
        let flow = FrameFlow { _ = frame.withUnsafeBytes { send(source, $0.baseAddress, $0.count, 0) } }
        var b = [UInt8](repeating: 0, count: 2048)
        var got = 0
        // (read as fast as it comes: a datagram socket queues only a few for its reader)
        let end = Date().addingTimeInterval(30)
        while got < 100 && Date() < end { if recv(vm, &b, b.count, Int32(MSG_DONTWAIT)) == 60 { got += 1 } }
        #expect(got == 100, "the VM receives frames before it leaves")
        close(vm); vm = -1   // the VM exits mid-flow (its socket file stays behind)
        let total = flow.finish(after: 20_000)
        #expect(waitUntil { stats(sourceID)?.rxFrames == UInt64(total) }, "\(String(describing: stats(sourceID)))")
        #expect(waitUntil { stats(id).map { !$0.connected && $0.txFrames + $0.totalDrops == UInt64(total) } ?? false },
                "every frame toward the VM is sent or dropped: \(String(describing: stats(id)))")
        let s = try #require(stats(id))
        #expect(s.txErrors == 0 && s.drops(.portDown) > 0, "\(s)")
        #expect(logs.all.filter { $0.contains("'vm0' disconnected") }.count == 1, "\(logs.all)")
        print("DatagramPeerGoneTests: a VM leaving under a flow of \(total) frames, \(workers) worker(s): \(s)")
    }

    /// A VM that left before the daemon started: its dead socket file is not a reason to fail
    /// or to log, the port waits down and comes up when the VM is back.
    @Test func aDeadSocketFileAtStartIsAWait() throws {
        let ours = tempPath("stale-tb"), vmPath = tempPath("stale-vm")
        defer { unlink(ours); unlink(vmPath) }
        close(dgram(boundAt: vmPath))   // what an exited QEMU leaves
        #expect(waitUnixSocketGone(vmPath))
        let port = VMDatagramPort(name: "vm0", localPath: ours, remotePath: vmPath)
        #expect(try port.openQueue(0) == nil)
        #expect(port.isWaitingForVM && !port.wantsReconnect())
        unlink(vmPath)
        let vm = dgram(boundAt: vmPath)
        defer { close(vm) }
        #expect(connectTo(vm, ours) && sendFrame(vm, fill: 7))
        #expect(port.wantsReconnect())
        let fd = try #require(try port.openQueue(0))
        defer { close(fd) }
        #expect(!port.isWaitingForVM && !port.wantsReconnect())
        var b = [UInt8](repeating: 0, count: 128)
        #expect(recv(fd, &b, b.count, Int32(MSG_DONTWAIT)) == 60 && b[59] == 7, "the VM's frame waited in our socket")
    }
}
