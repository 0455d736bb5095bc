// Rapid spanning tree (802.1w): RST BPDU encoding and the parser's bounds, and the clause-17
// state machine on simulated bridges run by a manual clock: proposal/agreement (forwarding in
// well under a forward delay), one alternate port per loop, failover to the alternate, edge
// ports (admin and automatic, lost on a BPDU), topology change flushes (every other port, not
// the one the change came in on), migration to 802.1D towards an STP bridge, rapid aging.
import Testing
@testable import Frames
@testable import Handlers

/// Bridges (RSTP or STP) joined by point-to-point links; BPDUs go through encode/decode.
struct MixedLAN {
    var bridges: [any SpanningTreeMachine] = []
    var links: [Int: [PortID: (Int, PortID)]] = [:]
    /// "bridge.port" whose BPDUs are lost (a silent failure: the link stays up).
    var mute: Set<String> = []
    var now: UInt64 = 0
    /// Every output seen, per bridge.
    var flushes: [[PortID]] = []
    var sent: [[(PortID, BPDU)]] = []

    mutating func add(rapid: Bool, priority: UInt16, mac: UInt64, ports: Int, settings base: SpanningTreeSettings = RapidSpanningTreeTests.fast,
                      options: [Int: SpanningTreePortOptions] = [:]) {
        var s = base
        s.priority = priority
        s.rapid = rapid
        var p: any SpanningTreeMachine = rapid
            ? RapidSpanningTreeProtocol(bridgeMAC: MACAddress(rawValue: mac), settings: s, now: now)
            : SpanningTreeProtocol(bridgeMAC: MACAddress(rawValue: mac), settings: s, now: now)
        for i in 0..<ports { p.addPort(PortID(i), enabled: true, options: options[i] ?? .init(), now: now) }
        bridges.append(p)
        flushes.append([]); sent.append([])
    }

    mutating func connect(_ a: Int, _ pa: Int, _ b: Int, _ pb: Int) {
        links[a, default: [:]][PortID(pa)] = (b, PortID(pb))
        links[b, default: [:]][PortID(pb)] = (a, PortID(pa))
    }

    mutating func collect(_ i: Int) -> [(Int, PortID, [UInt8])] {
        var out: [(Int, PortID, [UInt8])] = []
        for o in bridges[i].takeOutputs() {
            switch o {
            case .transmit(let port, let b):
                sent[i].append((port, b))
                out.append((i, port, b.encode(source: MACAddress(rawValue: UInt64(i + 1)))))
            case .flushPort(let port): flushes[i].append(port)
            case .state: break
            }
        }
        return out
    }

    /// Runs the network for `ms` milliseconds in 10 ms steps.
    mutating func run(_ ms: UInt64) {
        let end = now + ms
        while now < end {
            now += 10
            var pending: [(Int, PortID, [UInt8])] = []
            for i in bridges.indices {
                bridges[i].tick(now: now)
                pending += collect(i)
            }
            var rounds = 0
            while !pending.isEmpty && rounds < 50 {
                rounds += 1
                var next: [(Int, PortID, [UInt8])] = []
                for (from, port, bytes) in pending {
                    guard let (to, toPort) = links[from]?[port], !mute.contains("\(from).\(port.rawValue)") else { continue }
                    let b = try! BPDU.decode(frame: bytes)
                    // An 802.1D bridge drops RST BPDUs, as the Linux bridge does (it reads version 0 only).
                    if b.kind == .rapid && bridges[to].mode == "stp" { continue }
                    bridges[to].receive(b, on: toPort, now: now)
                    next += collect(to)
                }
                pending = next
            }
        }
    }

    /// Runs until `condition` holds (checked every 10 ms) or `limit` ms pass; the ms it took.
    mutating func run(until limit: UInt64, _ condition: (MixedLAN) -> Bool) -> UInt64? {
        let start = now
        while now - start < limit {
            if condition(self) { return now - start }
            run(10)
        }
        return condition(self) ? now - start : nil
    }

    func state(_ b: Int, _ p: Int) -> SpanningTreePortState? { bridges[b].state(of: PortID(p)) }
    func role(_ b: Int, _ p: Int) -> SpanningTreePortRole? { bridges[b].role(of: PortID(p)) }
    func all() -> [(SpanningTreePortRole, SpanningTreePortState)] {
        bridges.flatMap { b in b.portIDs.map { (b.role(of: $0)!, b.state(of: $0)!) } }
    }
}

@Suite struct RapidSpanningTreeTests {
    /// The defaults' forward delay (15 s): what RSTP must not wait for.
    static let fast: SpanningTreeSettings = {
        var s = SpanningTreeSettings()
        s.helloTime = 1; s.forwardDelay = 15; s.maxAge = 20
        return s
    }()

    /// A (root) and B joined by two links: a loop.
    func pair() -> MixedLAN {
        var lan = MixedLAN()
        lan.add(rapid: true, priority: 4096, mac: 0x02_00_00_00_00_0A, ports: 2)
        lan.add(rapid: true, priority: 32768, mac: 0x02_00_00_00_00_0B, ports: 2)
        lan.connect(0, 0, 1, 0)
        lan.connect(0, 1, 1, 1)
        return lan
    }

    // MARK: BPDU format

    @Test func encodesAnRSTBPDU() throws {
        var b = BPDU(kind: .rapid)
        b.version = 2
        b.portRole = .designated; b.proposal = true; b.learning = true; b.topologyChange = true
        b.rootID = BridgeID(priority: 0x1000, mac: MACAddress(rawValue: 0x02_00_00_00_00_0A))
        b.bridgeID = b.rootID; b.portID = 0x8001
        b.maxAge = 20 * 256; b.helloTime = 2 * 256; b.forwardDelay = 15 * 256
        let f = b.encode(source: MACAddress(rawValue: 0x02_00_00_00_00_0A))
        #expect(f.count == 60)
        #expect(f[12] == 0 && f[13] == 39, "802.3 length: LLC 3 + RST BPDU 36")
        #expect(f[19] == 2 && f[20] == 0x02, "version 2, type RST")
        #expect(f[21] == 0x01 | 0x02 | 0x0C | 0x10, "TC, proposal, role designated, learning")
        #expect(f[52] == 0, "version 1 length")
        #expect(try BPDU.decode(frame: f) == b)
        var a = BPDU(kind: .rapid)
        a.version = 2; a.portRole = .root; a.agreement = true; a.forwarding = true
        a.maxAge = 20 * 256; a.helloTime = 256
        let g = a.encode(source: MACAddress(rawValue: 2 << 40))
        #expect(g[21] == 0x08 | 0x20 | 0x40)
        #expect(try BPDU.decode(frame: g) == a)
    }

    @Test func parserRefusesBadRSTBPDUs() throws {
        var b = BPDU(kind: .rapid)
        b.version = 2; b.maxAge = 20 * 256; b.helloTime = 512
        let good = b.encode(source: MACAddress(rawValue: 2 << 40))
        #expect(throws: Never.self) { try BPDU.decode(frame: good) }
        var v0 = good; v0[19] = 0
        #expect(throws: BPDU.DecodeError.badVersion(0)) { try BPDU.decode(frame: v0) }
        var v1 = good; v1[19] = 1
        #expect(throws: BPDU.DecodeError.badVersion(1)) { try BPDU.decode(frame: v1) }
        var mstp = good; mstp[19] = 3   // MSTP: read as RSTP
        #expect(try BPDU.decode(frame: mstp).kind == .rapid)
        var short = good; short[13] = 38   // 35 BPDU bytes: a configuration BPDU's length, not an RST's
        #expect(throws: BPDU.DecodeError.tooShort) { try BPDU.decode(frame: short) }
        var past = good; past[13] = 47   // past the 60-byte frame
        #expect(throws: BPDU.DecodeError.notLLC) { try BPDU.decode(frame: past) }
        #expect(throws: BPDU.DecodeError.notLLC) { try BPDU.decode(frame: Array(good.prefix(14 + 3 + 30))) }
        #expect(throws: BPDU.DecodeError.tooShort) { try BPDU.decode(frame: Array(good.prefix(19))) }
        var aged = good; aged[44] = 20   // message age = max age
        #expect(throws: BPDU.DecodeError.badTimers) { try BPDU.decode(frame: aged) }
        // Every truncation of a valid RST BPDU is refused without a read past the end.
        for n in 0..<53 { #expect(throws: (any Error).self) { try BPDU.decode(frame: Array(good.prefix(n))) } }
    }

    // MARK: the state machine

    @Test func proposalAgreementForwardsWellUnderAForwardDelay() throws {
        var lan = pair()
        let t = try #require(lan.run(until: 5_000) { l in
            l.state(0, 0) == .forwarding && l.state(0, 1) == .forwarding && l.state(1, 0) == .forwarding
                && l.role(1, 1) == .alternate
        }, "\(lan.all())")
        #expect(t < 1_000, "converged after \(t) ms (forward delay 15 s)")
        #expect(lan.state(1, 1) == .discarding)
        #expect(lan.bridges[1].rootPort == PortID(0) && lan.bridges[0].isRootBridge)
        // The agreement travelled: B's root port said so in an RST BPDU.
        #expect(lan.sent[1].contains { $0.0 == PortID(0) && $0.1.kind == .rapid && $0.1.agreement && $0.1.portRole == .root })
        #expect(lan.sent[0].contains { $0.1.proposal && $0.1.portRole == .designated })
        lan.run(10_000)
        #expect(lan.all().filter { $0.0 == .alternate }.count == 1, "\(lan.all())")
        #expect(lan.bridges.allSatisfy { b in b.portIDs.allSatisfy { b.portProtocol(of: $0) == "rstp" } })
    }

    @Test func alternateTakesOverAtOnceWhenTheRootPortFails() throws {
        var lan = pair()
        lan.run(3_000)
        lan.bridges[1].setPortEnabled(PortID(0), false, now: lan.now)
        lan.bridges[0].setPortEnabled(PortID(0), false, now: lan.now)
        let t = try #require(lan.run(until: 5_000) { $0.state(1, 1) == .forwarding && $0.role(1, 1) == .root }, "\(lan.all())")
        #expect(t <= 50, "alternate forwarding after \(t) ms")
        #expect(lan.role(1, 0) == .disabled)
    }

    @Test func rapidAgingDropsSilentInformationIn3Hellos() throws {
        var lan = pair()
        lan.run(3_000)
        // A's BPDUs on link 0 are lost but both links stay up: B notices by aging alone.
        lan.mute = ["0.0"]
        let t = try #require(lan.run(until: 10_000) { $0.role(1, 1) == .root && $0.state(1, 1) == .forwarding }, "\(lan.all())")
        #expect(t >= 2_000 && t <= 3_500, "aged after \(t) ms (3 x hello 1 s)")
    }

    @Test func edgePortForwardsAtOnceAndLosesEdgeOnABPDU() throws {
        var lan = MixedLAN()
        var edge = SpanningTreePortOptions(); edge.adminEdge = true
        lan.add(rapid: true, priority: 4096, mac: 0x02_00_00_00_00_0A, ports: 2, options: [1: edge])
        lan.run(10)
        #expect(lan.state(0, 1) == .forwarding && lan.bridges[0].isEdge(PortID(1)))
        // Port 0 hears nothing: it proposes, and after the edge delay (migrate time 3 s) it is an
        // edge port too (auto-edge).
        #expect(lan.state(0, 0) == .discarding)
        let t = try #require(lan.run(until: 6_000) { $0.state(0, 0) == .forwarding })
        #expect(t >= 2_900 && t <= 3_200, "auto-edge after \(t) ms")
        #expect(lan.bridges[0].isEdge(PortID(0)))
        // An edge port going forwarding is no topology change: nothing flushed.
        #expect(lan.flushes[0].isEmpty && !lan.bridges[0].topologyChange)
        // A bridge appears on port 1: a BPDU takes its edge status.
        var other = BPDU(kind: .rapid)
        other.version = 2; other.portRole = .designated
        other.rootID = BridgeID(priority: 32768, mac: MACAddress(rawValue: 0x02_00_00_00_00_0C))
        other.bridgeID = other.rootID; other.portID = 0x8001
        other.maxAge = 20 * 256; other.helloTime = 256; other.forwardDelay = 15 * 256
        lan.bridges[0].receive(other, on: PortID(1), now: lan.now)
        #expect(!lan.bridges[0].isEdge(PortID(1)))
        #expect(lan.role(0, 1) == .designated)
    }

    @Test func autoEdgeOffWaitsForwardDelays() throws {
        var lan = MixedLAN()
        var o = SpanningTreePortOptions(); o.autoEdge = false
        lan.add(rapid: true, priority: 4096, mac: 0x02_00_00_00_00_0A, ports: 1, options: [0: o])
        lan.run(14_000)
        #expect(lan.state(0, 0) == .discarding)
        lan.run(2_000)
        #expect(lan.state(0, 0) == .learning)
        lan.run(15_000)
        #expect(lan.state(0, 0) == .forwarding && !lan.bridges[0].isEdge(PortID(0)))
    }

    @Test func topologyChangeFlushesEveryOtherPortNotTheReceivingOne() throws {
        // A (root, 3 ports: B on 0, edge hosts on 1, a third bridge C on 2) and B.
        var lan = MixedLAN()
        var edge = SpanningTreePortOptions(); edge.adminEdge = true
        lan.add(rapid: true, priority: 4096, mac: 0x02_00_00_00_00_0A, ports: 3, options: [1: edge])
        lan.add(rapid: true, priority: 32768, mac: 0x02_00_00_00_00_0B, ports: 2, options: [1: edge])
        lan.add(rapid: true, priority: 36864, mac: 0x02_00_00_00_00_0C, ports: 1)
        lan.connect(0, 0, 1, 0)
        lan.connect(0, 2, 2, 0)
        lan.run(5_000)
        #expect(lan.state(0, 0) == .forwarding && lan.state(0, 2) == .forwarding && lan.state(1, 0) == .forwarding)
        lan.flushes = lan.flushes.map { _ in [] }
        // B's link to A goes down and comes back: B's root port goes forwarding again, a
        // topology change. A hears TC on port 0: it flushes port 2 (a bridge) — not port 0 where
        // the TC came in, nor its edge port 1.
        lan.bridges[1].setPortEnabled(PortID(0), false, now: lan.now)
        lan.bridges[0].setPortEnabled(PortID(0), false, now: lan.now)
        lan.run(100)
        lan.flushes = lan.flushes.map { _ in [] }
        lan.bridges[1].setPortEnabled(PortID(0), true, now: lan.now)
        lan.bridges[0].setPortEnabled(PortID(0), true, now: lan.now)
        _ = lan.run(until: 2_000) { $0.state(1, 0) == .forwarding && $0.state(0, 0) == .forwarding }
        lan.run(200)
        #expect(lan.flushes[0].contains(PortID(2)), "A flushed \(lan.flushes[0])")
        #expect(!lan.flushes[0].contains(PortID(1)), "edge port flushed: \(lan.flushes[0])")
        // The TC A announces in turn reaches C on its root port: C's other ports (none) flush,
        // and A's port 0 — where the change came from — is never flushed by the TC from B.
        #expect(lan.sent[1].contains { $0.0 == PortID(0) && $0.1.topologyChange }, "B announced TC")
        #expect(lan.sent[0].contains { $0.0 == PortID(2) && $0.1.topologyChange }, "A relayed TC to C")
        #expect(!lan.flushes[1].contains(PortID(1)), "B's edge port flushed")
        #expect(lan.bridges[0].topologyChanges >= 1)
    }

    @Test func tcReceivedFlushesOnlyTheOtherPorts() throws {
        // A root with 3 bridge-facing ports (peers B, C, D); a TC BPDU from B: ports 1 and 2 flush, 0 does not.
        var lan = MixedLAN()
        lan.add(rapid: true, priority: 4096, mac: 0x02_00_00_00_00_0A, ports: 3)
        for i in 0..<3 {
            lan.add(rapid: true, priority: 32768, mac: 0x02_00_00_00_00_0B + UInt64(i), ports: 1)
            lan.connect(0, i, i + 1, 0)
        }
        lan.run(15_000)   // every TC from the start is over (2 x hello)
        #expect(!lan.bridges[0].topologyChange, "\(lan.all())")
        lan.flushes = lan.flushes.map { _ in [] }
        var tc = BPDU(kind: .rapid)
        tc.version = 2; tc.portRole = .root; tc.topologyChange = true; tc.forwarding = true; tc.learning = true
        tc.rootID = lan.bridges[0].bridgeID; tc.rootPathCost = 100
        tc.bridgeID = lan.bridges[1].bridgeID; tc.portID = 0x8001
        tc.maxAge = 20 * 256; tc.helloTime = 256; tc.forwardDelay = 15 * 256; tc.messageAge = 256
        lan.bridges[0].receive(tc, on: PortID(0), now: lan.now)
        _ = lan.collect(0)
        #expect(Set(lan.flushes[0]) == [PortID(1), PortID(2)], "flushed \(lan.flushes[0])")
        #expect(lan.bridges[0].topologyChange)
        // TC flagged for 2 x hello, then it ends.
        lan.run(2_100)
        #expect(!lan.bridges[0].topologyChange)
    }

    @Test func portFacingAn8021DBridgeMigratesToSTP() throws {
        // A: an 802.1D bridge (root); B: RSTP, two ports to A (a loop).
        var lan = MixedLAN()
        var stp = RapidSpanningTreeTests.fast
        stp.forwardDelay = 4; stp.maxAge = 6
        lan.add(rapid: false, priority: 4096, mac: 0x02_00_00_00_00_0A, ports: 2, settings: stp)
        // B's port 2 leads nowhere (auto-edge off): it forwards after 2 x forward delay, a
        // topology change B must tell the 802.1D root of.
        var noEdge = SpanningTreePortOptions(); noEdge.autoEdge = false
        lan.add(rapid: true, priority: 32768, mac: 0x02_00_00_00_00_0B, ports: 3, settings: stp, options: [2: noEdge])
        lan.connect(0, 0, 1, 0)
        lan.connect(0, 1, 1, 1)
        let t = try #require(lan.run(until: 10_000) { l in
            (0..<2).allSatisfy { l.bridges[1].portProtocol(of: PortID($0)) == "stp" }
        })
        #expect(t >= 2_900, "switched after \(t) ms: not before the migrate time")
        // From then on B sends only 802.1D BPDUs, and the tree converges the 802.1D way.
        let before = lan.sent[1].count
        _ = lan.run(until: 20_000) { l in
            l.state(0, 0) == .forwarding && l.state(0, 1) == .forwarding && l.state(1, 0) == .forwarding
                && l.role(1, 1) == .alternate
        }
        #expect(lan.state(0, 0) == .forwarding && lan.state(1, 0) == .forwarding && lan.role(1, 1) == .alternate, "\(lan.all())")
        #expect(lan.state(1, 1) == .discarding)
        _ = lan.run(until: 20_000) { $0.state(1, 2) == .forwarding }
        lan.run(2_000)
        #expect(lan.sent[1].dropFirst(before).allSatisfy { $0.1.kind != .rapid || $0.0 == PortID(2) })
        // A topology change from B reaches the 802.1D root as a TCN, and is acknowledged.
        #expect(lan.sent[1].dropFirst(before).contains { $0.1.kind == .topologyChangeNotification })
        #expect(lan.sent[0].contains { $0.0 == PortID(0) && $0.1.topologyChangeAcknowledgment }, "the root acknowledged")
        // Acknowledged: B stops sending TCNs.
        let tcns = lan.sent[1].filter { $0.1.kind == .topologyChangeNotification }.count
        lan.run(5_000)
        #expect(lan.sent[1].filter { $0.1.kind == .topologyChangeNotification }.count == tcns)
        // The 802.1D side sees the RSTP bridge as one of its own.
        #expect(lan.bridges[0].isRootBridge && lan.bridges[1].designatedRoot == lan.bridges[0].bridgeID)
    }

    @Test func stpBridgeWithRapidNeighbourStaysLoopFree() throws {
        // A triangle: RSTP root A, RSTP B, 802.1D C; one port blocks, everything else forwards.
        var lan = MixedLAN()
        var s = RapidSpanningTreeTests.fast
        s.forwardDelay = 4; s.maxAge = 6
        lan.add(rapid: true, priority: 4096, mac: 0x02_00_00_00_00_0A, ports: 2, settings: s)
        lan.add(rapid: true, priority: 32768, mac: 0x02_00_00_00_00_0B, ports: 2, settings: s)
        lan.add(rapid: false, priority: 36864, mac: 0x02_00_00_00_00_0C, ports: 2, settings: s)
        lan.connect(0, 0, 1, 0)
        lan.connect(0, 1, 2, 0)
        lan.connect(1, 1, 2, 1)
        lan.run(30_000)
        let states = lan.all()
        #expect(states.filter { $0.1 == .forwarding }.count == 5, "\(states)")
        #expect(lan.bridges[2].state(of: PortID(1)) == .blocking, "\(states)")
        #expect(lan.bridges[1].portProtocol(of: PortID(1)) == "stp" && lan.bridges[1].portProtocol(of: PortID(0)) == "rstp")
    }

    @Test func twoPortsOnOneSegmentMakeABackupPort() throws {
        // A VM bridging two of its interfaces: ports 0 and 1 of one bridge see each other.
        var lan = MixedLAN()
        lan.add(rapid: true, priority: 32768, mac: 0x02_00_00_00_00_0A, ports: 2)
        lan.connect(0, 0, 0, 1)
        lan.run(20_000)
        #expect(lan.role(0, 0) == .designated && lan.state(0, 0) == .forwarding, "\(lan.all())")
        #expect(lan.role(0, 1) == .backup && lan.state(0, 1) == .discarding, "\(lan.all())")
        #expect(lan.bridges[0].isRootBridge)
    }

    @Test func triangleNeverLoopsWhileConvergingOrHealing() throws {
        // A triangle of RSTP bridges: a loop exists exactly when all six ports forward. Checked
        // every 10 ms from power-on, through a link failure and its return.
        var lan = MixedLAN()
        lan.add(rapid: true, priority: 4096, mac: 0x02_00_00_00_00_0A, ports: 2)
        lan.add(rapid: true, priority: 32768, mac: 0x02_00_00_00_00_0B, ports: 2)
        lan.add(rapid: true, priority: 36864, mac: 0x02_00_00_00_00_0C, ports: 2)
        lan.connect(0, 0, 1, 0)
        lan.connect(0, 1, 2, 0)
        lan.connect(1, 1, 2, 1)
        func loops(_ l: MixedLAN) -> Bool { l.all().allSatisfy { $0.1 == .forwarding } }
        var converged: UInt64?
        for step in 0..<500 {
            lan.run(10)
            #expect(!loops(lan), "a loop at \(lan.now) ms: \(lan.all())")
            if converged == nil && lan.all().filter({ $0.1 == .forwarding }).count == 5 { converged = UInt64(step + 1) * 10 }
        }
        let c = try #require(converged)
        #expect(c < 1_000, "converged after \(c) ms")
        #expect(lan.role(2, 1) == .alternate, "\(lan.all())")
        // A-B fails: B's way to the root is through C now; C's alternate takes over.
        lan.bridges[0].setPortEnabled(PortID(0), false, now: lan.now)
        lan.bridges[1].setPortEnabled(PortID(0), false, now: lan.now)
        var healed: UInt64?
        for step in 0..<300 {
            lan.run(10)
            #expect(!loops(lan))
            if healed == nil && lan.state(1, 1) == .forwarding && lan.state(2, 1) == .forwarding && lan.role(1, 1) == .root {
                healed = UInt64(step + 1) * 10
            }
        }
        let h = try #require(healed, "\(lan.all())")
        #expect(h < 1_000, "healed after \(h) ms")
        // A-B returns: the tree goes back, never through a loop.
        lan.bridges[0].setPortEnabled(PortID(0), true, now: lan.now)
        lan.bridges[1].setPortEnabled(PortID(0), true, now: lan.now)
        for _ in 0..<500 {
            lan.run(10)
            #expect(!loops(lan), "a loop at \(lan.now) ms: \(lan.all())")
        }
        #expect(lan.role(1, 0) == .root && lan.state(1, 0) == .forwarding && lan.role(2, 1) == .alternate, "\(lan.all())")
    }

    @Test func inferiorForwardingDesignatedDisputesOurPort() throws {
        // A forwarding designated port hears a worse bridge claim to be designated and
        // forwarding on the same segment: our BPDUs do not reach it (a one-way link), so ours
        // stops forwarding rather than make a loop (17.21.10 dispute).
        var lan = MixedLAN()
        lan.add(rapid: true, priority: 4096, mac: 0x02_00_00_00_00_0A, ports: 1)
        _ = lan.run(until: 6_000) { $0.state(0, 0) == .forwarding }
        #expect(lan.state(0, 0) == .forwarding)
        var worse = BPDU(kind: .rapid)
        worse.version = 2; worse.portRole = .designated; worse.learning = true; worse.forwarding = true
        worse.rootID = BridgeID(priority: 32768, mac: MACAddress(rawValue: 0x02_00_00_00_00_0C))
        worse.bridgeID = worse.rootID; worse.portID = 0x8001
        worse.maxAge = 20 * 256; worse.helloTime = 256; worse.forwardDelay = 15 * 256
        lan.bridges[0].receive(worse, on: PortID(0), now: lan.now)
        #expect(lan.state(0, 0) == .discarding && lan.role(0, 0) == .designated)
        #expect(!lan.bridges[0].isEdge(PortID(0)))
    }

    @Test func transmitHoldCountLimitsBPDUsPerSecond() {
        var s = RapidSpanningTreeTests.fast
        s.txHoldCount = 2
        var p = RapidSpanningTreeProtocol(bridgeMAC: MACAddress(rawValue: 0x02_00_00_00_00_0A), settings: s, now: 0)
        p.addPort(PortID(0), enabled: true, now: 0)
        var sent = 0
        // Superior information from a stream of different roots: each would make a new BPDU.
        for i in 0..<20 {
            var b = BPDU(kind: .rapid)
            b.version = 2; b.portRole = .designated
            b.rootID = BridgeID(priority: 0, mac: MACAddress(rawValue: 0x02_00_00_00_01_00 - UInt64(i)))
            b.bridgeID = b.rootID; b.portID = 0x8001
            b.maxAge = 20 * 256; b.helloTime = 256; b.forwardDelay = 15 * 256
            p.receive(b, on: PortID(0), now: UInt64(i))
            sent += p.takeOutputs().filter { if case .transmit = $0 { true } else { false } }.count
        }
        #expect(sent <= 2, "sent \(sent) within one second")
    }
}
