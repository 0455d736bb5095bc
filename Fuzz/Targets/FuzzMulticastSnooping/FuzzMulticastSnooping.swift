// FuzzMulticastSnooping: a frame from a hostile guest through IGMP/MLD snooping — the IPv4
// header and options, IGMPv1/v2/v3, the IPv6 extension-header walk, MLDv1/v2, PIM — first
// through the parser alone (exactly sized copy: AddressSanitizer sees any read past the
// frame), then through a learning switch whose multicast database is small (8 groups, a
// 32-event queue) so both bounds are hit, with the control thread's maintenance run every few
// inputs. Checks: a verdict names only ports of the bridge; one frame yields at most
// maxRecordsPerReport + 2 events; the database never holds more groups than its capacity.
// Input: 1 byte ingress port, 1 byte clock step (bit 7: run maintenance), then the frame.
import Frames
import FuzzSupport
@testable import Handlers

let table = PortTable((0..<4).map { i in
    PortInfo(id: PortID(i), name: "p\(i)", vlan: i == 3 ? .trunk(allowed: VLANSet([10, 20]), native: 10) : .access(pvid: 10))
})
var config = MulticastSnooping.Configuration(capacity: 8, queryInterval: 10, queryResponseInterval: 2)
let learningSwitch: LearningSwitch = {
    config.eventQueue = 32
    let s = LearningSwitch(configuration: .init(capacity: 16, multicastSnooping: config))
    s.portsChanged(table)
    return s
}()
var clock: UInt64 = 1_000_000_000

struct CountingSink: MulticastEventSink {
    var count = 0
    mutating func take(_ event: MulticastEvent) -> Bool {
        count += 1
        fuzzCheck(event.kind == .router || !event.group.alwaysFloods, "an event for an always-flooded group")
        return true
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMulticastSnooping(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let ingress = PortID(Int(input.u8() % 4))
    let step = input.u8()
    clock &+= UInt64(step & 0x7F) * 100_000_000
    let bytes = input.rest()
    guard bytes.count >= Frame.minimumLength, bytes.count <= 65_536 else { return 0 }
    let copy = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 2)
    defer { copy.deallocate() }
    copy.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    let buffer = UnsafeMutableRawBufferPointer(start: copy, count: bytes.count)

    var sink = CountingSink()
    _ = MulticastParser.classify(UnsafeRawBufferPointer(buffer), sink: &sink)
    fuzzCheck(sink.count <= MulticastParser.maxRecordsPerReport + 2, "\(sink.count) events from one frame")

    var frame = Frame(bytes: buffer, ingress: ingress)
    switch learningSwitch.handle(&frame, context: HandlerContext(now: clock, worker: Int(step & 3))) {
    case .forward(let p): fuzzCheck(table[p] != nil, "forwards to unknown \(p)")
    case .forwardSet(let s): fuzzCheck(s.intersection(table.members) == s, "forwards outside the bridge")
    default: break
    }
    if step & 0x80 != 0 {
        learningSwitch.expire(now: clock)
        let snooping = learningSwitch.snooping!
        fuzzCheck(snooping.groupCount <= 8, "\(snooping.groupCount) groups in a database of 8")
        _ = snooping.memberships(now: clock)
        _ = learningSwitch.counters()
    }
    return 0
}
