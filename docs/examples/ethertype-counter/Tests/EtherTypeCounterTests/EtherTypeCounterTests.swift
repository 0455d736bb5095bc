// The example handler on synthetic frames, alone and in a pipeline with the learning switch.
import Testing
import Tapbridge
@testable import EtherTypeCounter

func withFrame<T>(etherType: UInt16, tagged: Bool = false, port: Int = 0, _ body: (inout Frame) -> T) -> T {
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    defer { buf.deallocate() }
    buf.initializeMemory(as: UInt8.self, repeating: 0)
    MACAddress.broadcast.write(to: buf.baseAddress!)
    MACAddress("52:54:00:00:00:01")!.write(to: buf.baseAddress! + 6)
    var o = 12
    if tagged { buf[12] = 0x81; buf[13] = 0x00; buf[15] = 10; o = 16 }
    buf[o] = UInt8(etherType >> 8); buf[o + 1] = UInt8(etherType & 0xFF)
    var f = Frame(bytes: buf, ingress: PortID(port))
    return body(&f)
}

@Test func countsPerEtherTypeAndDropsTheBlockedOne() {
    let h = EtherTypeCounter(blocking: EtherType.ipv6)
    let ctx = HandlerContext(now: 0, worker: 1)
    for _ in 0..<3 { #expect(withFrame(etherType: EtherType.ipv4) { h.handle(&$0, context: ctx) } == .continue) }
    #expect(withFrame(etherType: EtherType.arp, tagged: true) { h.handle(&$0, context: ctx) } == .continue)
    #expect(withFrame(etherType: EtherType.ipv6) { h.handle(&$0, context: ctx) } == .drop(EtherTypeCounter.blockedReason))
    #expect(withFrame(etherType: 0x88CC) { h.handle(&$0, context: .init(now: 0, worker: 2)) } == .continue)
    #expect(h.counts() == ["0x0800": 3, "0x0806": 1, "0x86dd": 1, "other": 1])
    #expect(EtherTypeCounter.blockedReason.name == "ethertype-blocked")
}

@Test func composesWithTheLearningSwitch() {
    let counter = EtherTypeCounter(blocking: 0x88CC)
    let sw = LearningSwitch()
    let pipeline = HandlerPipeline([counter, sw])
    pipeline.portsChanged(PortTable([PortInfo(id: PortID(0), name: "a"), PortInfo(id: PortID(1), name: "b")]))
    let v = withFrame(etherType: EtherType.ipv4) { pipeline.run(&$0, context: .init(now: 1)) }
    #expect(v == .forwardSet(PortSet([PortID(1)])))
    #expect(withFrame(etherType: 0x88CC) { pipeline.run(&$0, context: .init(now: 1)) } == .drop(EtherTypeCounter.blockedReason))
}
