// The learning switch's guards on synthetic frames: the per-port MAC limit (drop, block and
// back-off), flood switches, storm control, the loop guard (MAC flapping and flooded frames
// coming back), `flush`, and the FDB event ring (order, bounds, drops, several producers).
import Foundation
import Testing
@testable import Frames
@testable import Handlers
import TapbridgeTesting

private func guarded(_ policies: [String: LearningSwitch.PortPolicy] = [:], ports n: Int = 3,
                     loopGuard: LearningSwitch.LoopGuardSettings = .init(), blockSeconds: Double = 30) -> LearningSwitch {
    var c = LearningSwitch.Configuration(agingTime: 10)
    c.portPolicies = policies
    c.loopGuard = loopGuard
    c.blockSeconds = blockSeconds
    let sw = LearningSwitch(configuration: c)
    sw.portsChanged(ports(n))
    return sw
}

private func policy(_ body: (inout LearningSwitch.PortPolicy) -> Void) -> LearningSwitch.PortPolicy {
    var p = LearningSwitch.PortPolicy()
    body(&p)
    return p
}

private func mac(_ i: Int) -> MACAddress { MACAddress(rawValue: 0x5254_0010_0000 | UInt64(i)) }

@Suite struct PortGuardTests {
    let b = FrameBuilder()

    func send(_ sw: LearningSwitch, _ src: MACAddress, _ dst: MACAddress, port: Int, now: UInt64 = second,
              payload: [UInt8] = []) -> Verdict {
        var f = b.frame(from: src, to: dst, port: port, payload: payload)
        return sw.handle(&f, context: HandlerContext(now: now))
    }

    @Test func macLimitDropsNewMACsAndKeepsKnownOnes() {
        let sw = guarded(["p0": policy { $0.maxMACs = 2 }])
        #expect(send(sw, mac(1), .broadcast, port: 0) == .forwardSet(PortSet([PortID(1), PortID(2)])))
        #expect(send(sw, mac(2), .broadcast, port: 0) != .drop(.macLimit))
        #expect(send(sw, mac(3), .broadcast, port: 0) == .drop(.macLimit))
        #expect(send(sw, mac(1), .broadcast, port: 0) != .drop(.macLimit))   // known MACs still pass
        #expect(counter(sw, "guard_mac_limit_drops") == 1)
        #expect(!sw.entries(now: second).contains { $0.mac == mac(3) })
        // Another port is not limited; and a port at its limit cannot take a MAC over from it.
        #expect(send(sw, mac(4), .broadcast, port: 1) != .drop(.macLimit))
        #expect(send(sw, mac(4), .broadcast, port: 0) == .drop(.macLimit))
        #expect(sw.entries(now: second).first { $0.mac == mac(4) }?.port == PortID(1))
        // Once the port's MACs age out (and the sweep recounts), it learns again.
        let later = 12 * second
        sw.expire(now: later)
        sw.sweepGuards(now: later)
        #expect(sw.learnedMACs(onPort: PortID(0)) == 0)
        #expect(send(sw, mac(3), .broadcast, port: 0, now: later) != .drop(.macLimit))
    }

    @Test func macLimitBlockBlocksThePortUntilTheBackOff() {
        let sw = guarded(["p0": policy { $0.maxMACs = 1; $0.limitAction = .block }], blockSeconds: 5)
        let watch = sw.subscribeEvents()
        defer { watch.cancel() }
        _ = send(sw, mac(1), .broadcast, port: 0)
        #expect(send(sw, mac(2), .broadcast, port: 0) == .drop(.macLimit))
        #expect(sw.blockReason(PortID(0)) == .macLimit)
        // Blocked: its frames are dropped, floods and unicast skip it.
        #expect(send(sw, mac(1), .broadcast, port: 0) == .drop(.portBlocked))
        #expect(send(sw, mac(5), .broadcast, port: 1) == .forwardSet(PortSet([PortID(2)])))
        #expect(send(sw, mac(5), mac(1), port: 1) == .drop(.portBlocked))
        var notices = sw.sweepGuards(now: 2 * second)
        #expect(notices.count == 1 && notices[0].blocked && notices[0].reason == .macLimit && notices[0].flushed == 1)
        #expect(sw.sweepGuards(now: 3 * second).isEmpty)
        notices = sw.sweepGuards(now: 7 * second)
        #expect(notices.count == 1 && !notices[0].blocked)
        #expect(sw.blockedPorts.isEmpty)
        #expect(send(sw, mac(1), .broadcast, port: 0, now: 7 * second) == .forwardSet(PortSet([PortID(1), PortID(2)])))
        #expect(counter(sw, "guard_mac_limit_blocks") == 1 && counter(sw, "guard_unblocks") == 1)
        let kinds = watch.poll().map(\.kind)
        #expect(kinds.contains(.blocked) && kinds.contains(.unblocked) && kinds.contains(.flushed))
    }

    @Test func floodSwitchesKeepFloodsOffAPort() {
        let sw = guarded(["p1": policy { $0.flood = false }, "p2": policy { $0.broadcastFlood = false },
                         "p3": policy { $0.multicastFlood = false }], ports: 4)
        #expect(send(sw, hostA, hostB, port: 0) == .forwardSet(PortSet([PortID(2), PortID(3)])))
        #expect(send(sw, hostA, .broadcast, port: 0) == .forwardSet(PortSet([PortID(1), PortID(3)])))
        #expect(send(sw, hostA, MACAddress("01:00:5e:00:00:fb")!, port: 0) == .forwardSet(PortSet([PortID(1), PortID(2)])))
        // Known unicast still reaches a port that takes no unknown-unicast flood.
        _ = send(sw, hostB, .broadcast, port: 1)
        #expect(send(sw, hostA, hostB, port: 0) == .forward(PortID(1)))
    }

    @Test func stormControlCapsBroadcastAndMulticastPerSecond() {
        let sw = guarded(["p0": policy { $0.stormBroadcast = 5; $0.stormMulticast = 2 }])
        let t0 = 10 * second
        var passed = 0
        for i in 0..<20 where send(sw, hostA, .broadcast, port: 0, now: t0 + UInt64(i)) != .drop(.rateLimited) { passed += 1 }
        #expect(passed == 5)
        #expect(counter(sw, "guard_storm_broadcast_drops") == 15)
        var mpassed = 0
        for i in 0..<10 where send(sw, hostA, MACAddress("01:00:5e:00:00:01")!, port: 0, now: t0 + UInt64(i)) != .drop(.rateLimited) { mpassed += 1 }
        #expect(mpassed == 2)
        // Unicast is not limited, nor other ports; a second later the bucket is full again.
        #expect(send(sw, hostA, hostB, port: 0, now: t0 + 100) != .drop(.rateLimited))
        #expect(send(sw, hostB, .broadcast, port: 1, now: t0 + 100) != .drop(.rateLimited))
        #expect(send(sw, hostA, .broadcast, port: 0, now: t0 + 2 * second) != .drop(.rateLimited))
    }

    @Test func loopGuardBlocksAPortAMACKeepsMovingOnto() {
        let sw = guarded(loopGuard: .init(enabled: true, movesPerSecond: 3, echo: false), blockSeconds: 2)
        var blockedAt: Int?
        for i in 0..<20 {
            let v = send(sw, hostA, .broadcast, port: i % 2, now: second + UInt64(i) * 1_000_000)
            if v == .drop(.portBlocked) { blockedAt = i; break }
        }
        #expect(blockedAt != nil && blockedAt! <= 9)
        #expect(sw.blockedPorts.count == 1 && counter(sw, "guard_loop_move_blocks") == 1)
        let port = sw.blockedPorts.first { _ in true }!
        #expect(sw.blockReason(port) == .macMoves)
        _ = sw.sweepGuards(now: 2 * second)
        // The blocked port's learned entries went with it: hostA is learnable on the other port.
        #expect(!sw.entries(now: 2 * second).contains { $0.port == port })
        #expect(!sw.sweepGuards(now: 4 * second + 1).isEmpty && sw.blockedPorts.isEmpty)
        // A single move (a VM migrating) never blocks.
        #expect(send(sw, hostA, .broadcast, port: 2, now: 5 * second) != .drop(.portBlocked))
    }

    @Test func loopGuardBlocksThePortAFloodedFrameComesBackThrough() {
        let sw = guarded(loopGuard: .init(enabled: true, movesPerSecond: 1000, echo: true))
        let arp: [UInt8] = Array(0..<28)
        #expect(send(sw, hostA, .broadcast, port: 0, payload: arp) == .forwardSet(PortSet([PortID(1), PortID(2)])))
        // The same frame again on its own port (a retransmission) is no loop.
        #expect(send(sw, hostA, .broadcast, port: 0, now: second + 1000, payload: arp) != .drop(.portBlocked))
        // A different frame on another port neither.
        #expect(send(sw, hostB, .broadcast, port: 1, now: second + 2000, payload: arp) != .drop(.portBlocked))
        // The first frame back through port 2: a loop.
        #expect(send(sw, hostA, .broadcast, port: 2, now: second + 3000, payload: arp) == .drop(.portBlocked))
        #expect(sw.blockReason(PortID(2)) == .echo && counter(sw, "guard_loop_echo_blocks") == 1)
        // Within a second of a block, another echo (the loop's other end, on another worker) is
        // dropped but blocks nothing: one end blocked is enough, both would cut the LAN off.
        let other: [UInt8] = Array(100..<128)
        _ = send(sw, hostB, .broadcast, port: 0, now: second + 4000, payload: other)
        #expect(send(sw, hostB, .broadcast, port: 1, now: second + 5000, payload: other) == .drop(.portBlocked))
        #expect(sw.blockedPorts == PortSet([PortID(2)]))
        // Long after (past the echo window) the same frame elsewhere is not an echo.
        #expect(send(sw, hostA, .broadcast, port: 1, now: 3 * second, payload: arp) != .drop(.portBlocked))
    }

    @Test func withoutGuardsNothingChanges() {
        let sw = guarded()
        for i in 0..<50 { _ = send(sw, hostA, .broadcast, port: i % 2, now: second + UInt64(i)) }
        #expect(sw.blockedPorts.isEmpty && counter(sw, "guard_blocked_port_drops") == 0)
    }

    @Test func flushByPortVLANAndKind() throws {
        let sw = guarded()
        _ = send(sw, hostA, .broadcast, port: 0)
        _ = send(sw, hostB, .broadcast, port: 1)
        try sw.addStatic(mac: hostC, port: PortID(0))
        #expect(sw.flush(port: PortID(0), dynamicOnly: true, now: second) == 1)
        #expect(Set(sw.entries(now: second).map(\.mac)) == [hostB, hostC])
        #expect(sw.flush(vlan: 5, now: second) == 0)
        #expect(sw.flush(port: PortID(0), now: second) == 1)   // the static entry too
        sw.portsChanged(ports(3))                              // and it does not come back
        #expect(Set(sw.entries(now: second).map(\.mac)) == [hostB])
        #expect(sw.flush(now: second) == 1 && sw.entries(now: second).isEmpty)
    }

    @Test func eventsReportLearnMoveAgeFlushInOrder() {
        let sw = guarded()
        let watch = sw.subscribeEvents()
        defer { watch.cancel() }
        _ = send(sw, hostA, .broadcast, port: 0)
        _ = send(sw, hostA, .broadcast, port: 1, now: 2 * second)
        _ = send(sw, hostB, .broadcast, port: 2, now: 2 * second)
        sw.expire(now: 12 * second + 500_000_000)
        _ = send(sw, hostC, .broadcast, port: 2, now: 13 * second)
        sw.flush(now: 13 * second)
        let events = watch.poll()
        #expect(events.map(\.kind) == [.learned, .moved, .learned, .aged, .aged, .learned, .flushed])
        #expect(events[1].mac == hostA && events[1].port == PortID(1) && events[1].detail == 0)
        #expect(watch.poll().isEmpty)
        // A second watcher sees what happens after it subscribed; the first still sees everything.
        let other = sw.subscribeEvents()
        _ = send(sw, hostA, .broadcast, port: 0, now: 14 * second)
        #expect(other.poll().map(\.kind) == [.learned])
        #expect(watch.poll().map(\.kind) == [.learned])
        other.cancel()
    }

    @Test func nothingIsRecordedWithoutWatchers() {
        let sw = guarded()
        for i in 0..<100 { _ = send(sw, mac(i), .broadcast, port: 0) }
        #expect(sw.droppedEvents == 0)
        let watch = sw.subscribeEvents()
        #expect(watch.poll().isEmpty)
        watch.cancel()
    }
}

@Suite struct FDBEventRingTests {
    @Test func aFullRingDropsAndCounts() {
        let ring = FDBEventRing(capacity: 16)
        for i in 0..<20 { ring.push(FDBEvent(kind: .learned, mac: MACAddress(rawValue: UInt64(i)), port: PortID(1), milliseconds: 7)) }
        #expect(ring.dropped == 4)
        var seen: [UInt64] = []
        ring.drain { seen.append($0.mac.rawValue) }
        #expect(seen == Array(0..<16))
        // Space again after draining, in order.
        ring.push(FDBEvent(kind: .moved, mac: hostA, vlan: 4094, port: PortID(255), detail: 9, milliseconds: .max))
        var last: FDBEvent?
        ring.drain { last = $0 }
        #expect(last == FDBEvent(kind: .moved, mac: hostA, vlan: 4094, port: PortID(255), detail: 9, milliseconds: .max))
    }

    @Test func manyProducersLoseNothingThatIsNotCounted() async {
        let ring = FDBEventRing(capacity: 1024)
        let perThread = 20_000, threads = 4
        let received = Atomic_(0)
        let done = Atomic_(0)
        let consumer = Thread {
            var n = 0
            var lastPerProducer = [Int](repeating: -1, count: threads)
            var ordered = true
            while done.value < threads || n + Int(ring.dropped) < threads * perThread {
                ring.drain { e in
                    n += 1
                    let p = Int(e.port.rawValue), seq = Int(e.mac.rawValue)
                    if seq <= lastPerProducer[p] { ordered = false }
                    lastPerProducer[p] = seq
                }
            }
            received.value = ordered ? n : -1
        }
        consumer.start()
        await withTaskGroup(of: Void.self) { g in
            for t in 0..<threads {
                g.addTask {
                    for i in 0..<perThread {
                        ring.push(FDBEvent(kind: .learned, mac: MACAddress(rawValue: UInt64(i)), port: PortID(t), milliseconds: 0))
                    }
                    done.add(1)
                }
            }
        }
        while received.value == 0 { try? await Task.sleep(nanoseconds: 1_000_000) }
        #expect(received.value > 0)   // -1: a producer's events came out of order
        #expect(received.value + Int(ring.dropped) == threads * perThread)
    }
}

/// A tiny locked counter for the concurrency test.
final class Atomic_: @unchecked Sendable {
    private let lock = NSLock()
    private var v: Int
    init(_ v: Int) { self.v = v }
    var value: Int {
        get { lock.lock(); defer { lock.unlock() }; return v }
        set { lock.lock(); v = newValue; lock.unlock() }
    }
    func add(_ n: Int) { lock.lock(); v += n; lock.unlock() }
}
