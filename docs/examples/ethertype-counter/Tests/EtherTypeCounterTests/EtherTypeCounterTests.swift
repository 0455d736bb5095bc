// The example handler on frames from the test kit (TapbridgeTesting): alone, and in a pipeline
// after which another handler decides.
import Testing
import TapbridgeHandlers
import TapbridgeTesting
@testable import EtherTypeCounter

let hostA = MACAddress("52:54:00:00:00:01")!

@Test func countsPerEtherTypeAndDropsTheBlockedOne() {
    let h = EtherTypeCounter(blocking: EtherType.ipv6)
    let frames = FrameBuilder()
    let clock = ManualClock()
    func send(_ type: UInt16, tag: UInt16? = nil, worker: Int = 1) -> Verdict {
        var f = frames.frame(from: hostA, to: .broadcast, port: 0, tag: tag, etherType: type)
        return h.handle(&f, context: clock.context(worker: worker))
    }
    for _ in 0..<3 { #expect(send(EtherType.ipv4) == .continue) }
    #expect(send(EtherType.arp, tag: 10) == .continue)
    #expect(send(EtherType.ipv6) == .drop(EtherTypeCounter.blockedReason))
    #expect(send(0x88CC, worker: 2) == .continue)
    #expect(h.counts() == ["0x0800": 3, "0x0806": 1, "0x86dd": 1, "other": 1])
    #expect(h.counters().first { $0.labels["ethertype"] == "0x0800" }?.value == 3)
    #expect(EtherTypeCounter.blockedReason.name == "ethertype-blocked")
}

/// Sends everything to port 1: stands in for the switch that follows the counter in a pipeline.
final class ToPortOne: FrameHandler {
    let name = "to-port-one"
    func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict { .forward(PortID(1)) }
}

@Test func composesInAPipeline() {
    let pipeline = HandlerPipeline([EtherTypeCounter(blocking: 0x88CC), ToPortOne()])
    pipeline.portsChanged(testPortTable(["a", "b"]))
    let frames = FrameBuilder()
    let clock = ManualClock()
    var ip = frames.frame(from: hostA, to: .broadcast, port: 0)
    #expect(pipeline.run(&ip, context: clock.context()) == .forward(PortID(1)))
    clock.advance(seconds: 1)
    var lldp = frames.frame(from: hostA, to: .broadcast, port: 0, etherType: 0x88CC)
    #expect(pipeline.run(&lldp, context: clock.context()) == .drop(EtherTypeCounter.blockedReason))
}
