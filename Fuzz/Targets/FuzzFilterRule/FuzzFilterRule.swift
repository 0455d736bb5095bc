// FuzzFilterRule: a filter rule's text as the configuration file and `filter replace` over the
// control socket deliver it: FilterRule(parsing:) (actions, mirror ports, limit rates,
// built-ins) and FrameFilter's compilation (libpcap for expressions), then the compiled rule
// run on frames at clock readings the input picks, minutes apart, so rate limits refill after
// long idle periods. Any outcome is fine except a crash; a refused rule says why.
// Input: the rule's text, a NUL byte, then (4 bytes clock step in microseconds, 1 byte frame
// choice) pairs.
import Frames
import FuzzSupport
import Handlers

let frames: [[UInt8]] = [
    // UDP 198.18.0.1:5000 -> 198.18.0.2:53
    [0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x00,
     0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
     0x13, 0x88, 0, 53, 0, 16, 0, 0] + [UInt8](repeating: 0x61, count: 8),
    // TCP SYN to port 22, 1514 bytes
    [0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x00,
     0x45, 0, 0x05, 0xDC, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
     0x9C, 0x40, 0, 22, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xFF, 0xFF, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 1460),
    // ARP request
    [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x06,
     0, 1, 0x08, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0, 0, 1, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2],
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFilterRule(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    let all = UnsafeRawBufferPointer(start: data, count: count)
    let end = all.firstIndex(of: 0) ?? count
    let text = String(decoding: all[..<end], as: UTF8.self)
    let rule: FilterRule
    do {
        rule = try FilterRule(parsing: text)
    } catch {
        fuzzCheck(!"\(error)".isEmpty, "a refused rule says nothing")
        return 0
    }
    let filter: FrameFilter
    do {
        filter = try FrameFilter(rules: [rule], ports: nil, direction: .both)
    } catch {
        fuzzCheck(!"\(error)".isEmpty, "a rule that does not compile says nothing")
        return 0
    }
    filter.portsChanged(PortTable([PortInfo(id: PortID(0), name: "a"), PortInfo(id: PortID(1), name: "b")]))
    var input = FuzzInput(data + min(end + 1, count), count - min(end + 1, count))
    var now: UInt64 = 1_000_000_000
    var steps = 0
    while !input.isEmpty && steps < 64 {
        now &+= UInt64(input.u32()) &* 1000
        var bytes = frames[Int(input.u8()) % frames.count]
        bytes.withUnsafeMutableBytes { b in
            var frame = Frame(bytes: b, ingress: PortID(0))
            _ = filter.handle(&frame, context: HandlerContext(now: now))
            _ = filter.handleEgress(&frame, to: PortID(1), context: HandlerContext(now: now))
        }
        steps += 1
    }
    _ = filter.counters()
    return 0
}
