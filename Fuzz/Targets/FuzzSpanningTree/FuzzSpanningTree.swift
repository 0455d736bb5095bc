// FuzzSpanningTree: BPDUs from a hostile peer on any of four ports of a spanning-tree bridge
// (802.1D or RSTP, chosen by the first byte), interleaved with time passing and links going
// down and up. Each BPDU frame goes through the
// learning switch (the gate copies it into the mailbox, bounded to 64 bytes) and the controller
// (BPDU.decode, then the 802.1D or RSTP state machine); the same bytes are also decoded
// directly. Checks: a decoded configuration, TCN or RST BPDU encodes back to bytes that decode to
// the same BPDU; every BPDU the bridge sends decodes (its timers within bounds, message age below max
// age); the bridge is root exactly when it has no root port, and then its root path cost is 0;
// a root port is never disabled or designated; only learning/forwarding ports are in the gate's
// learning set and only forwarding ports in its forwarding set; (RSTP) an alternate or backup
// port neither learns nor forwards, an edge port is never the root port.
// Input: 1 byte (priority 0-15, +16: RSTP, port 3 an edge port), then a sequence of events: 1 byte op, then per op: BPDU (1 byte port, 1 byte length, bytes),
// time (2 bytes ms), link (1 byte port+up).
import Frames
import FuzzSupport
@testable import Handlers

let portCount = 4
let table = PortTable((0..<portCount).map { PortInfo(id: PortID($0), name: "p\($0)") })
let frameBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 8)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let sw = LearningSwitch(configuration: .init(capacity: 16))
    sw.portsChanged(table)
    var settings = SpanningTreeSettings()
    settings.helloTime = 1; settings.forwardDelay = 4; settings.maxAge = 6
    let setup = input.u8()
    settings.priority = UInt16(Int(setup & 0x0F) * 4096)
    settings.rapid = setup & 0x10 != 0
    var edge = SpanningTreePortOptions(); edge.adminEdge = true
    sw.spanningTree.setPortOptions("p3", edge)
    var now: UInt64 = 1000
    sw.spanningTree.enable(settings: settings, bridgeMAC: MACAddress(rawValue: 0x02_00_00_00_00_42), nowMs: now)
    var events = 0
    while !input.isEmpty && events < 200 {
        events += 1
        switch input.u8() % 3 {
        case 0:
            let port = PortID(Int(input.u8()) % portCount)
            let bytes = input.take(Int(input.u8()))
            // Straight decode of the raw bytes.
            if let b = try? BPDU.decode(frame: bytes) {
                let again = b.encode(source: MACAddress(rawValue: 0x02_00_00_00_00_01))
                fuzzCheck(again.count == BPDU.frameLength, "encoded \(again.count) bytes")
                let back = try? BPDU.decode(frame: again)
                var expected = b
                if b.kind == .topologyChangeNotification { expected = BPDU(kind: .topologyChangeNotification); expected.version = b.version }
                fuzzCheck(back == expected, "round trip changed \(b) into \(String(describing: back))")
            }
            // Through the switch's gate (a frame has at least an Ethernet header).
            guard bytes.count >= Frame.minimumLength else { continue }
            frameBuffer.copyMemory(from: bytes)
            var frame = Frame(bytes: UnsafeMutableRawBufferPointer(rebasing: frameBuffer[0..<bytes.count]), ingress: port)
            _ = sw.handle(&frame, context: HandlerContext(now: now * 1_000_000))
        case 1:
            now += UInt64(input.u16())
        default:
            let v = input.u8()
            sw.spanningTree.setPortLink("p\(Int(v >> 1) % portCount)", up: v & 1 != 0, nowMs: now)
        }
        sw.spanningTree.poll(nowMs: now) { _, frame in
            let b = try? BPDU.decode(frame: frame)
            fuzzCheck(b != nil, "the bridge sent a BPDU it would refuse: \(frame)")
            return true
        }
        check(sw)
    }
    return 0
}

func check(_ sw: LearningSwitch) {
    guard let s = sw.spanningTree.status() else { fuzzCheck(false, "spanning tree off"); return }
    let isRoot = s.rootID == s.bridgeID
    fuzzCheck(isRoot == (s.rootPort == nil), "root bridge \(isRoot) but root port \(String(describing: s.rootPort))")
    if isRoot { fuzzCheck(s.rootPathCost == 0, "root bridge with cost \(s.rootPathCost)") }
    fuzzCheck(s.rootID <= s.bridgeID, "root \(s.rootID) worse than this bridge \(s.bridgeID)")
    for p in s.ports where p.name == s.rootPort {
        fuzzCheck(p.state != .disabled && p.role == .root, "root port \(p)")
    }
    let (learning, forwarding) = sw.stpGate.current()
    for p in s.ports {
        fuzzCheck(learning.contains(p.id) == p.state.learns, "learning set disagrees for \(p)")
        fuzzCheck(forwarding.contains(p.id) == (p.state == .forwarding), "forwarding set disagrees for \(p)")
        if s.mode == "rstp" && (p.role == .alternate || p.role == .backup) {
            fuzzCheck(p.state == .discarding || p.state == .blocking, "\(p.role) port \(p.name) is \(p.state)")
        }
        if p.edge { fuzzCheck(p.role != .root, "edge port \(p.name) is the root port") }
    }
}
