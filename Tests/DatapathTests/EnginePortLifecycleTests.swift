// Ports coming and going while the engine runs, bounded transmit queues, and clean stop.
import Foundation
import Testing
@testable import Datapath
import Frames
import Tap
import TestSupport

@Suite(.serialized)
struct EnginePortLifecycleTests {
    @Test func portWhoseLinkIsDeletedIsRemovedAndOthersKeepForwarding() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2), c = try addHost(t, 3)
            let events = EventLog()
            let engine = makeEngine(events: events)
            let bridge = try hub(engine, [a, b, c])
            try engine.start()
            defer { engine.stop() }
            #expect(try ping(a, c))
            let cid = bridge.port(named: c.macvtap)!
            try run(["ip", "link", "del", c.macvtap])
            let removed = events.wait { if case .portRemoved(_, let id, _, _) = $0 { return id == cid }; return false }
            #expect(removed, "port removed after its link was deleted; log: \(events.logLines)")
            #expect(bridge.port(named: c.macvtap) == nil)
            #expect(engine.snapshot().portsRemoved == 1)
            #expect(try ping(a, b))
        }
    }

    @Test func portAddedWhileRunningForwards() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2), c = try addHost(t, 3)
            let engine = makeEngine()
            let bridge = try hub(engine, [a, b])
            try engine.start()
            defer { engine.stop() }
            #expect(try ping(a, b))
            let id = try bridge.attach(MacvtapPort(name: c.macvtap))
            #expect(bridge.portTable[id]?.name == c.macvtap)
            #expect(try ping(c, a))
            #expect(try ping(b, c))
            bridge.detach(id)
            #expect(bridge.port(named: c.macvtap) == nil)
            #expect(try !ping(a, c, count: 1))
            #expect(try ping(a, b))
        }
    }

    @Test func fullTransmitQueueDropsAndCounts() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            // A datagram socket whose peer never reads: its queue fills, then the engine's.
            var sv: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &sv) == 0)
            defer { close(sv[1]) }
            let engine = makeEngine { $0.transmitQueueDepth = 8 }
            let bridge = try hub(engine, [a, b])
            let stuck = try bridge.attach(DescriptorPort(name: "stuck", descriptor: sv[0]))
            try engine.start()
            defer { engine.stop() }
            _ = try t.exec(a.namespace, ["ping", "-c", "200", "-i", "0.002", "-W", "1", b.address], check: false, timeout: 30)
            let s = try engine.snapshot().bridgeStats("br")
            let st = try s.stats(stuck)
            #expect(st.drops(.queueFull) > 0, "\(st)")
            #expect(st.txFrames > 0)
            #expect(try ping(a, b), "a stuck port does not stall the others")
        }
    }

    /// Three stream ports whose peers never read, fed more frames than the worker has buffers:
    /// once half the buffers are out, none of them takes more than a fair share, so reads go
    /// on and a fourth port still gets its frames.
    @Test func stuckPortsCannotHoldEveryBuffer() throws {
        let engine = makeEngine { $0.buffersPerWorker = 64; $0.transmitQueueDepth = 32 }
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([RouteByByte()]))
        func pair(_ type: Int32) throws -> [Int32] {
            var p: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, type, 0, &p) == 0 else { throw MissingStatistics(what: "socketpair") }
            return p
        }
        let input = try pair(Int32(SOCK_DGRAM.rawValue)), out = try pair(Int32(SOCK_DGRAM.rawValue))
        let stuck = try (0..<3).map { _ in try pair(Int32(SOCK_STREAM.rawValue)) }
        defer { close(input[1]); close(out[1]); stuck.forEach { close($0[1]) } }
        var small: Int32 = 4096
        for p in stuck { setsockopt(p[0], SOL_SOCKET, SO_SNDBUF, &small, 4); setsockopt(p[1], SOL_SOCKET, SO_RCVBUF, &small, 4) }
        try bridge.attach(DescriptorPort(name: "in", descriptor: input[0]))
        let outID = try bridge.attach(DescriptorPort(name: "out", descriptor: out[0]))
        let stuckIDs = try stuck.enumerated().map { i, p in
            try bridge.attach(DescriptorPort(name: "stuck\(i)", descriptor: p[0], framing: .lengthPrefixed))
        }
        try engine.start()
        defer { engine.stop() }

        /// Sends a 60-byte frame for port `id` (its number in byte 14); false if the engine
        /// stopped reading (the datagram queue stays full for 2 s).
        func send(to id: PortID) -> Bool {
            var f = [UInt8](repeating: 0xff, count: 6) + [2, 0, 0, 0, 0, 1, 0x88, 0xb5, UInt8(id.rawValue)]
            f += [UInt8](repeating: 0, count: 60 - f.count)
            for _ in 0..<2000 {
                if Glibc.send(input[1], &f, f.count, Int32(MSG_DONTWAIT)) == f.count { return true }
                usleep(1000)
            }
            return false
        }
        var fed = 0
        for i in 0..<1500 {
            guard send(to: stuckIDs[i % 3]) else { break }   // bounded: 2 s of a full queue ends it
            fed += 1
        }
        // The live port is read as it goes, like a real peer; frames are paced a little.
        let reader = out[1]
        let received = Locked(0), done = DispatchSemaphore(value: 0)
        Thread { received.set(readAvailable(reader, timeout: 2).count / 60); done.signal() }.start()
        var sent = 0
        for _ in 0..<20 {
            guard fed == 1500, send(to: outID) else { break }
            sent += 1
            usleep(2000)
        }
        done.wait()
        let got = received.get()
        let st = try engine.snapshot().bridgeStats("br")
        print("stuck ports: fed \(fed) of 1500, then \(got) of \(sent) frames reached the live port; " +
              "queue-full drops \(st.ports.map { "\($0.name)=\($0.drops(.queueFull))" })")
        #expect(fed == 1500 && sent == 20, "the engine stopped reading")
        #expect(got == 20)
    }

    @Test func portSetDownDropsAndCounts() throws {
        try withRunningHub { _, engine, bridge, a, b in
            let pb = bridge.port(named: b.macvtap)!
            engine.setPortUp(pb, in: bridge, false)
            #expect(try !ping(a, b, count: 2))
            #expect(try engine.snapshot().bridgeStats("br").stats(pb).drops(.portDown) > 0)
            engine.setPortUp(pb, in: bridge, true)
            #expect(try ping(a, b))
            // The macvtap link itself going down: the kernel swallows what we write.
            try run(["ip", "link", "set", b.macvtap, "down"])
            let before = try engine.snapshot().bridgeStats("br").stats(pb)
            _ = try ping(a, b, count: 2)
            let after = try engine.snapshot().bridgeStats("br").stats(pb)
            print("macvtap link down: tx \(after.txFrames - before.txFrames) errors \(after.txErrors - before.txErrors) drops \(after.drops)")
            try run(["ip", "link", "set", b.macvtap, "up"])
            #expect(try ping(a, b))
        }
    }

    @Test func manyAttachDetachCyclesReuseSlots() throws {
        try withRunningHub { _, engine, bridge, a, b in
            // More cycles than a worker has port slots (512) and PortIDs (256).
            for _ in 0..<600 {
                var sv: [Int32] = [0, 0]
                #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &sv) == 0)
                let id = try bridge.attach(DescriptorPort(name: "cycle", descriptor: sv[0]))
                bridge.detach(id)
                close(sv[1])
            }
            #expect(bridge.portTable.ports.count == 2)
            #expect(try ping(a, b))
        }
    }

    @Test func stopClosesEveryDescriptor() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            var queues: [(fd: Int32, dev: UInt64, ino: UInt64)] = []
            var workers: [Weak<Worker>] = []
            do {
                let engine = makeEngine(workers: 2)
                let bridge = try hub(engine, [a, b])
                try engine.start()
                #expect(try ping(a, b))
                // The macvtap queues (each open file has its own inode: the private node's).
                var fds: [Int32] = []
                engine.control.withLock { for r in bridge.records.values { fds += r.fds } }
                #expect(fds.count == 2 * 2)
                queues = fds.map { fd in var st = stat(); fstat(fd, &st); return (fd, UInt64(st.st_dev), UInt64(st.st_ino)) }
                workers = engine.workers.map { Weak($0) }
                engine.stop()
            }
            // Each queue is closed now (or its number was reused by something else in this process).
            for u in queues {
                var st = stat()
                let stillOpen = fstat(u.fd, &st) == 0 && UInt64(st.st_dev) == u.dev && UInt64(st.st_ino) == u.ino
                #expect(!stillOpen, "macvtap queue descriptor \(u.fd) still open after stop")
            }
            // Workers are gone: their rings are closed when the thread ends, their eventfds on deinit.
            // A worker thread drops its last reference as it exits, after stop() has seen it
            // finish: wait for that (bounded), not a fixed 50 ms (too short on a loaded machine).
            #expect(pollUntil(30) { workers.allSatisfy { $0.value == nil } })
        }
    }
}

final class Weak<T: AnyObject> {
    weak var value: T?
    init(_ v: T) { value = v }
}

/// Sends each frame to the port whose number is in byte 14 (tests only).
final class RouteByByte: FrameHandler, @unchecked Sendable {
    let name = "route-by-byte"
    func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        guard frame.bytes.count > 14 else { return .drop(.malformed) }
        return .forward(PortID(Int(frame.bytes[14])))
    }
}
