// The spanning tree: BPDU decoding of hostile bytes, the 802.1D state machine on simulated
// bridges (a triangle converges to exactly one blocked port and heals when a link goes), and
// the learning switch's gate (BPDUs to the mailbox, blocked ports neither learn nor forward).
import Testing
@testable import Frames
@testable import Handlers
import TapbridgeTesting

/// Bridges joined by point-to-point links; BPDUs go through encode/decode on the way.
struct SimulatedLAN {
    var bridges: [SpanningTreeProtocol] = []
    /// (bridge, port) -> (bridge, port)
    var links: [Int: [PortID: (Int, PortID)]] = [:]
    var down: Set<String> = []
    var now: UInt64 = 0
    var delivered = 0

    mutating func add(priority: UInt16, mac: UInt64, ports: Int, settings base: SpanningTreeSettings) {
        var s = base
        s.priority = priority
        var p = SpanningTreeProtocol(bridgeMAC: MACAddress(rawValue: mac), settings: s, now: now)
        for i in 0..<ports { p.addPort(PortID(i), enabled: true, now: now) }
        bridges.append(p)
    }

    mutating func connect(_ a: Int, _ pa: Int, _ b: Int, _ pb: Int) {
        links[a, default: [:]][PortID(pa)] = (b, PortID(pb))
        links[b, default: [:]][PortID(pb)] = (a, PortID(pa))
    }

    /// Runs the network for `ms` milliseconds in 50 ms steps.
    mutating func run(_ ms: UInt64) {
        let end = now + ms
        while now < end {
            now += 50
            var pending: [(Int, PortID, [UInt8])] = []
            for i in bridges.indices {
                bridges[i].tick(now: now)
                for o in bridges[i].takeOutputs() {
                    if case .transmit(let port, let b) = o { pending.append((i, port, b.encode(source: MACAddress(rawValue: UInt64(i + 1))))) }
                }
            }
            // Deliver until quiet (replies within the same instant).
            var rounds = 0
            while !pending.isEmpty && rounds < 50 {
                rounds += 1
                var next: [(Int, PortID, [UInt8])] = []
                for (from, port, bytes) in pending {
                    guard let (to, toPort) = links[from]?[port], !down.contains("\(from).\(port.rawValue)") else { continue }
                    let b = try! BPDU.decode(frame: bytes)
                    delivered += 1
                    bridges[to].receive(b, on: toPort, now: now)
                    for o in bridges[to].takeOutputs() {
                        if case .transmit(let p, let b) = o { next.append((to, p, b.encode(source: MACAddress(rawValue: UInt64(to + 1))))) }
                    }
                }
                pending = next
            }
        }
    }

    func states() -> [[SpanningTreePortState]] {
        bridges.map { b in b.portIDs.map { b.state(of: $0)! } }
    }

    var blockedCount: Int { states().joined().filter { $0 == .blocking }.count }
}

@Suite struct SpanningTreeTests {
    static let fast: SpanningTreeSettings = {
        var s = SpanningTreeSettings()
        s.helloTime = 1; s.forwardDelay = 4; s.maxAge = 6
        return s
    }()

    /// A, B, C in a triangle: A (lowest priority) is root, C's port towards B blocks.
    func triangle() -> SimulatedLAN {
        var lan = SimulatedLAN()
        lan.add(priority: 4096, mac: 0x02_00_00_00_00_0A, ports: 2, settings: Self.fast)
        lan.add(priority: 32768, mac: 0x02_00_00_00_00_0B, ports: 2, settings: Self.fast)
        lan.add(priority: 36864, mac: 0x02_00_00_00_00_0C, ports: 2, settings: Self.fast)
        lan.connect(0, 0, 1, 0)   // A0 - B0
        lan.connect(0, 1, 2, 0)   // A1 - C0
        lan.connect(1, 1, 2, 1)   // B1 - C1
        return lan
    }

    @Test func triangleConvergesToOneBlockedPort() {
        var lan = triangle()
        lan.run(20_000)
        let a = lan.bridges[0], b = lan.bridges[1], c = lan.bridges[2]
        #expect(a.isRootBridge)
        #expect(!b.isRootBridge && !c.isRootBridge)
        #expect(b.designatedRoot == a.bridgeID && c.designatedRoot == a.bridgeID)
        #expect(b.rootPort == PortID(0) && c.rootPort == PortID(0))
        #expect(lan.blockedCount == 1, "\(lan.states())")
        #expect(c.state(of: PortID(1)) == .blocking && c.role(of: PortID(1)) == .alternate)
        #expect(b.role(of: PortID(1)) == .designated && b.state(of: PortID(1)) == .forwarding)
        #expect(a.role(of: PortID(0)) == .designated && a.role(of: PortID(1)) == .designated)
        #expect(b.rootPathCost == 100 && c.rootPathCost == 100)
    }

    @Test func portsPassListeningAndLearningBeforeForwarding() {
        var lan = triangle()
        lan.run(3_000)
        #expect(!lan.states().joined().contains(.forwarding), "nothing forwards before one forward delay")
        lan.run(2_000)
        #expect(lan.states().joined().contains(.learning))
        lan.run(4_500)
        #expect(lan.bridges[0].state(of: PortID(0)) == .forwarding)
    }

    @Test func triangleHealsWhenALinkGoes() {
        var lan = triangle()
        lan.run(20_000)
        // The A-B link fails silently (frames stop; links stay up): B learns it only by its
        // root information aging out (max age), as 802.1D bridges do through a dumb medium.
        lan.down = ["0.0", "1.0"]
        let before = lan.now
        var healed: UInt64?
        for _ in 0..<60 {
            lan.run(500)
            let b = lan.bridges[1], c = lan.bridges[2]
            if b.rootPort == PortID(1), c.state(of: PortID(1)) == .forwarding, b.state(of: PortID(1)) == .forwarding {
                healed = lan.now - before
                break
            }
        }
        let t = try! #require(healed)
        // max age + 2 x forward delay (+ a hello of slack).
        #expect(t <= 6_000 + 8_000 + 1_000, "healed after \(t) ms")
        #expect(lan.bridges[1].designatedRoot == lan.bridges[0].bridgeID)
        #expect(lan.bridges[1].rootPathCost == 200)
    }

    @Test func disabledPortHealsFaster() {
        var lan = triangle()
        lan.run(20_000)
        lan.bridges[1].setPortEnabled(PortID(0), false, now: lan.now)
        lan.bridges[0].setPortEnabled(PortID(0), false, now: lan.now)
        lan.down = ["0.0", "1.0"]
        lan.run(15_000)
        #expect(lan.bridges[1].rootPort == PortID(1))
        #expect(lan.bridges[2].state(of: PortID(1)) == .forwarding)
        #expect(lan.bridges[1].state(of: PortID(0)) == .disabled)
        #expect(lan.bridges[0].topologyChange || lan.bridges[0].topologyChanges > 0)
    }

    @Test func twoPortsOnOneSegmentBlockOne() {
        // One bridge, two ports looped to each other (a hub between them): its own BPDU on
        // the other port makes that one a backup and blocks it.
        var lan = SimulatedLAN()
        lan.add(priority: 32768, mac: 0x02_00_00_00_00_01, ports: 2, settings: Self.fast)
        lan.connect(0, 0, 0, 1)
        lan.run(12_000)
        #expect(lan.blockedCount == 1, "\(lan.states())")
        #expect(lan.bridges[0].state(of: PortID(0)) == .forwarding)
    }

    @Test func topologyChangeReachesTheRoot() {
        var lan = triangle()
        lan.run(20_000)
        let tcBefore = lan.bridges[0].topologyChanges
        lan.bridges[2].setPortEnabled(PortID(0), false, now: lan.now)   // C loses its root port
        lan.run(2_000)
        #expect(lan.bridges[0].topologyChanges > tcBefore, "the TCN reached the root")
        #expect(lan.bridges[1].topologyChange, "the root's TC flag reached B")
    }

    // MARK: BPDU bytes

    /// A configuration BPDU as the Linux bridge sends it (root 8000.02000000000a, cost 0).
    static let linuxConfig: [UInt8] = [
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x26,
        0x42, 0x42, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x80, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00,
        0x80, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x80, 0x01,
        0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x0f, 0x00,
    ] + [UInt8](repeating: 0, count: 8)

    @Test func decodesALinuxConfigurationBPDU() throws {
        let b = try BPDU.decode(frame: Self.linuxConfig)
        #expect(b.kind == .configuration)
        #expect(b.rootID == BridgeID(priority: 0x8000, mac: MACAddress(rawValue: 0x02_00_00_00_00_0A)))
        #expect(b.bridgeID == b.rootID && b.portID == 0x8001 && b.rootPathCost == 0)
        #expect(b.maxAge == 20 * 256 && b.helloTime == 2 * 256 && b.forwardDelay == 15 * 256)
        #expect(b.encode(source: MACAddress(rawValue: 0x02_00_00_00_00_0A)) == Self.linuxConfig)
        #expect(b.rootID.description == "8000.02000000000a")
    }

    @Test func roundTripsTopologyChangeNotification() throws {
        let f = BPDU(kind: .topologyChangeNotification).encode(source: MACAddress(rawValue: 2 << 40 | 1))
        #expect(f.count == 60 && f[12] == 0 && f[13] == 7)
        #expect(try BPDU.decode(frame: f).kind == .topologyChangeNotification)
    }

    @Test func refusesMalformedBPDUs() {
        func refuses(_ bytes: [UInt8], _ error: BPDU.DecodeError) {
            #expect(throws: error) { try BPDU.decode(frame: bytes) }
        }
        let good = Self.linuxConfig
        refuses(Array(good.prefix(20)), .tooShort)
        var typed = good; typed[12] = 0x08; typed[13] = 0x00   // an EtherType, not a length
        refuses(typed, .notLLC)
        var long = good; long[13] = 0xFF   // length past the frame
        refuses(long, .notLLC)
        var llc = good; llc[14] = 0xAA
        refuses(llc, .notLLC)
        var proto = good; proto[18] = 1
        refuses(proto, .badProtocol)
        var type = good; type[20] = 0x55
        refuses(type, .unknownType(0x55))
        var short = good; short[13] = 0x20   // length 32: a config BPDU cut short
        refuses(short, .tooShort)
        var aged = good; aged[44] = 0x14   // message age 20 s = max age
        refuses(aged, .badTimers)
        var hello = good; hello[48] = 0; hello[49] = 0
        refuses(hello, .badTimers)
    }

    @Test func ignoresItsOwnBPDUOnTheSamePort() {
        var p = SpanningTreeProtocol(bridgeMAC: MACAddress(rawValue: 0x02_00_00_00_00_01), settings: Self.fast, now: 0)
        p.addPort(PortID(0), enabled: true, now: 0)
        p.tick(now: 0)
        let sent = p.takeOutputs().compactMap { if case .transmit(_, let b) = $0 { return b } else { return nil } }
        #expect(sent.count == 1)
        p.receive(sent[0], on: PortID(0), now: 10)
        #expect(p.role(of: PortID(0)) == .designated)
        #expect(p.takeOutputs().isEmpty)
    }

    // MARK: the learning switch's gate

    @Test func gateHoldsBlockedPortsAndTakesBPDUs() throws {
        let sw = LearningSwitch()
        sw.portsChanged(testPortTable(["a", "b", "c"]))
        let fb = FrameBuilder()
        let host = MACAddress(rawValue: 0x02_00_00_00_00_99)
        sw.spanningTree.enable(settings: Self.fast, bridgeMAC: MACAddress(rawValue: 0x02_00_00_00_00_01), nowMs: 0)
        let ctx = HandlerContext(now: 1_000_000)
        // Every port starts blocking: nothing is learned or forwarded.
        var f = fb.frame(from: host, to: .broadcast, port: 0)
        #expect(sw.handle(&f, context: ctx) == .drop(SpanningTreeGate.blockedReason))
        #expect(sw.entries(now: 1_000_000).isEmpty)
        // A BPDU goes to the mailbox.
        var bpdu = Self.linuxConfig
        bpdu.withUnsafeMutableBytes { buf in
            var f = Frame(bytes: buf, ingress: PortID(1))
            #expect(sw.handle(&f, context: ctx) == .drop(SpanningTreeGate.bpduReason))
        }
        #expect(sw.stpGate.mailboxCounts.received == 1)
        var sent: [PortID] = []
        sw.spanningTree.poll(nowMs: 100) { port, bytes in sent.append(port); #expect(bytes.count == 60); return true }
        // The BPDU's root (8000.02000000000a) is worse than this bridge (8000.020000000001): it
        // stays root, replies on port b and sends hellos on the others.
        #expect(Set(sent) == Set([PortID(0), PortID(1), PortID(2)]))
        #expect(sw.counters().contains { $0.name == "stp_bpdus_received" && $0.value == 1 })
        // After listening and learning (2 x 4 s) every port forwards.
        sw.spanningTree.poll(nowMs: 4_200) { _, _ in true }
        f = fb.frame(from: host, to: .broadcast, port: 0)
        #expect(sw.handle(&f, context: ctx) == .drop(SpanningTreeGate.blockedReason), "learning: learns, does not forward")
        #expect(sw.entries(now: 1_000_000).count == 1)
        sw.spanningTree.poll(nowMs: 8_400) { _, _ in true }
        f = fb.frame(from: host, to: .broadcast, port: 0)
        #expect(sw.handle(&f, context: ctx) == .forwardSet(PortSet([PortID(1), PortID(2)])))
        let status = try #require(sw.spanningTree.status())
        #expect(status.ports.allSatisfy { $0.state == .forwarding && $0.role == .designated })
        // A port leaving forwarding has its learned entries flushed, and nothing goes to it.
        #expect(sw.entries(now: 1_000_000).count == 1)
        sw.spanningTree.setPortLink("a", up: false, nowMs: 8_500)
        sw.spanningTree.poll(nowMs: 8_500) { _, _ in true }
        #expect(sw.entries(now: 1_000_000).isEmpty, "port a's entries flushed")
        f = fb.frame(from: MACAddress(rawValue: 0x02_00_00_00_00_77), to: .broadcast, port: 1)
        #expect(sw.handle(&f, context: ctx) == .forwardSet(PortSet([PortID(2)])))
        #expect(sw.spanningTree.status()?.ports.first?.state == .disabled)
    }

    @Test func portLeftOutForwardsAtOnceAndSendsNoBPDU() throws {
        let sw = LearningSwitch()
        sw.spanningTree.setParticipation("vm", false)
        sw.portsChanged(testPortTable(["up0", "up1", "vm"]))
        sw.spanningTree.enable(settings: Self.fast, bridgeMAC: MACAddress(rawValue: 0x02_00_00_00_00_01), nowMs: 0)
        var sent: [PortID] = []
        sw.spanningTree.poll(nowMs: 100) { port, _ in sent.append(port); return true }
        #expect(Set(sent) == [PortID(0), PortID(1)], "no BPDU on the port left out")
        let fb = FrameBuilder()
        // From the left-out port: learned at once; forwarded only to ports that forward (the
        // tree's ports are still listening, so nowhere yet).
        var f = fb.frame(from: MACAddress(rawValue: 0x02_00_00_00_00_55), to: .broadcast, port: 2)
        #expect(sw.handle(&f, context: HandlerContext(now: 1)) == .drop(.noDestination))
        #expect(sw.entries(now: 1).count == 1)
        sw.spanningTree.poll(nowMs: 4_100) { _, _ in true }
        sw.spanningTree.poll(nowMs: 8_200) { _, _ in true }
        f = fb.frame(from: MACAddress(rawValue: 0x02_00_00_00_00_55), to: .broadcast, port: 2)
        #expect(sw.handle(&f, context: HandlerContext(now: 2)) == .forwardSet(PortSet([PortID(0), PortID(1)])))
        #expect(try #require(sw.spanningTree.status()).ports.map(\.name) == ["up0", "up1"])
        // Added later, still left out: forwards at once.
        sw.spanningTree.setParticipation("vm2", false)
        sw.portsChanged(testPortTable(["up0", "up1", "vm", "vm2"]))
        f = fb.frame(from: MACAddress(rawValue: 0x02_00_00_00_00_56), to: .broadcast, port: 3)
        #expect(sw.handle(&f, context: HandlerContext(now: 3)) == .forwardSet(PortSet([PortID(0), PortID(1), PortID(2)])))
    }

    @Test func topologyChangeAgesTheFDBFast() throws {
        let sw = LearningSwitch()
        sw.portsChanged(testPortTable(["a", "b"]))
        sw.spanningTree.enable(settings: Self.fast, bridgeMAC: MACAddress(rawValue: 0x02_00_00_00_00_01), nowMs: 0)
        sw.spanningTree.poll(nowMs: 4_100) { _, _ in true }
        sw.spanningTree.poll(nowMs: 8_200) { _, _ in true }   // both forwarding; this root detected a change
        let fb = FrameBuilder()
        let now = MonotonicClock.nanoseconds()
        var f = fb.frame(from: MACAddress(rawValue: 0x02_00_00_00_00_99), to: .broadcast, port: 0)
        _ = sw.handle(&f, context: HandlerContext(now: now - 10_000_000_000))   // learned 10 s ago
        f = fb.frame(from: MACAddress(rawValue: 0x02_00_00_00_00_98), to: .broadcast, port: 0)
        _ = sw.handle(&f, context: HandlerContext(now: now))                    // just now
        #expect(sw.entries(now: now).count == 2)
        #expect(try #require(sw.spanningTree.status()).topologyChange)
        sw.spanningTree.poll(nowMs: 9_500) { _, _ in true }
        // Older than the forward delay (4 s): gone while the topology change lasts.
        #expect(sw.entries(now: now).map(\.mac) == [MACAddress(rawValue: 0x02_00_00_00_00_98)])
    }
}
