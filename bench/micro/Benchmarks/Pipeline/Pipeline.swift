// Handler pipeline costs per frame: the learning switch (known unicast; multicast to a group
// IGMP snooping registered), a 20-rule filter in front of it, FDB
// learn/lookup at 8192 entries, a VM attachment's source guard (MAC + IPv4 source check), the
// capture tap and the egress VLAN decision; the learning switch again with the spanning tree
// on. Every benchmark asserts 0 mallocs per frame.
import Benchmark
import Tapbridge

/// One preallocated frame buffer per benchmark, rewritten in place.
final class Frames {
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 128, alignment: 8)
    init(src: MACAddress, dst: MACAddress, udp: Bool = true) {
        buf.initializeMemory(as: UInt8.self, repeating: 0)
        dst.write(to: buf.baseAddress!)
        src.write(to: buf.baseAddress! + 6)
        buf[12] = 0x08; buf[13] = 0x00
        let ip: [UInt8] = [0x45, 0, 0, 50, 0, 1, 0, 0, 64, udp ? 17 : 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
                           0x13, 0x88, 0x13, 0x89, 0, 30, 0, 0]
        for (i, b) in ip.enumerated() { buf[14 + i] = b }
    }
    var frame: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: buf[0..<64]) }
}

let a = MACAddress("52:54:00:00:00:01")!, b = MACAddress("52:54:00:00:00:02")!
let twoPorts = PortTable([PortInfo(id: PortID(0), name: "a"), PortInfo(id: PortID(1), name: "b")])

func learnedSwitch(capacity: Int = 8192, guards: Bool = false) -> LearningSwitch {
    var c = LearningSwitch.Configuration(capacity: capacity)
    if guards {   // every guard on: loop guard, MAC limits, storm control (known unicast skips the last)
        c.loopGuard = .init(enabled: true)
        var p = LearningSwitch.PortPolicy()
        p.maxMACs = 16; p.stormBroadcast = 100; p.stormMulticast = 1000
        c.portPolicies = ["a": p, "b": p]
    }
    let sw = LearningSwitch(configuration: c)
    sw.portsChanged(twoPorts)
    let f = Frames(src: b, dst: a)
    var fr = Frame(bytes: f.frame, ingress: PortID(1))
    _ = sw.handle(&fr, context: .init(now: 1))
    return sw
}

/// Runs the benchmark's scaled iterations of one unicast frame through `pipeline`.
func measurePipeline(_ benchmark: Benchmark, _ pipeline: HandlerPipeline) {
    let f = Frames(src: a, dst: b)
    var now: UInt64 = 2
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
        var fr = Frame(bytes: f.frame, ingress: PortID(0))
        now &+= 100
        blackHole(pipeline.run(&fr, context: .init(now: now)))
    }
}

/// Like `measurePipeline`, plus the egress judges for port b (what a worker does per
/// destination when the pipeline has one: the impair handler always is one).
func measurePipelineAndEgress(_ benchmark: Benchmark, _ pipeline: HandlerPipeline) {
    let f = Frames(src: a, dst: b)
    var now: UInt64 = 2
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
        var fr = Frame(bytes: f.frame, ingress: PortID(0))
        now &+= 100
        blackHole(pipeline.run(&fr, context: .init(now: now)))
        blackHole(pipeline.runEgress(&fr, to: PortID(1), context: .init(now: now)))
        blackHole(fr.hold.until)
    }
}

/// The impair handler (port b set to `spec`) in front of a learned switch.
func impairPipeline(_ spec: String) -> HandlerPipeline {
    let impair = FrameImpairer(ports: ["b": try! ImpairSpec(parsing: spec)])
    let p = HandlerPipeline([impair, learnedSwitch()])
    p.portsChanged(twoPorts)
    return p
}

/// Offers one 64-byte UDP frame per iteration to `tap`, draining its ring every 1024 frames.
func measureTap(_ benchmark: Benchmark, _ tap: CaptureTap) {
    let f = Frames(src: a, dst: b)
    let bytes = UnsafeRawBufferPointer(f.frame)
    var n = 0
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
        tap.offer(bytes, interface: 0, direction: .ingress)
        n &+= 1
        if n & 1023 == 0 { tap.ring.drain { _, _, _, _, data in blackHole(data.count) } }
    }
    blackHole(tap.ring.dropped)
}

let config = Benchmark.Configuration(metrics: [.wallClock, .mallocCountTotal, .retainCount, .releaseCount],
                                     scalingFactor: .mega, maxDuration: .seconds(3), maxIterations: 20,
                                     thresholds: [.mallocCountTotal: .init(absolute: [.p100: 0])])

let benchmarks: @Sendable () -> Void = {
    Benchmark("LearningSwitch unicast (pipeline)", configuration: config) { benchmark in
        measurePipeline(benchmark, HandlerPipeline([learnedSwitch()]))
    }

    Benchmark("LearningSwitch unicast, spanning tree on (pipeline)", configuration: config) { benchmark in
        // Both ports forwarding: the frame also passes the spanning tree's gate (port sets).
        let sw = learnedSwitch()
        var st = SpanningTreeSettings()
        st.helloTime = 1; st.forwardDelay = 4; st.maxAge = 6
        sw.spanningTree.enable(settings: st, bridgeMAC: MACAddress(rawValue: 0x02_00_00_00_00_01), nowMs: 0)
        sw.spanningTree.poll(nowMs: 4_100) { _, _ in true }
        sw.spanningTree.poll(nowMs: 8_200) { _, _ in true }
        // enable() emptied the FDB: learn b again on port 1.
        let fb = Frames(src: b, dst: a)
        var fr = Frame(bytes: fb.frame, ingress: PortID(1))
        _ = sw.handle(&fr, context: .init(now: 1))
        measurePipeline(benchmark, HandlerPipeline([sw]))
    }

    Benchmark("LearningSwitch unicast, guards on (loop guard, MAC limit, storm control)", configuration: config) { benchmark in
        measurePipeline(benchmark, HandlerPipeline([learnedSwitch(guards: true)]))
    }

    Benchmark("LearningSwitch multicast, registered group (snooping)", configuration: config) { benchmark in
        // Port 1 reported 239.1.2.3 (an IGMPv2 report through the switch, then the sweep that
        // registers it); port 0 sends UDP to the group: parse, table lookup, member set.
        let sw = learnedSwitch()
        let report = Frames(src: b, dst: MACAddress("01:00:5e:01:02:03")!)
        let igmp: [UInt8] = [0x45, 0xC0, 0, 28, 0, 0, 0, 0, 1, 2, 0, 0, 198, 18, 0, 2, 239, 1, 2, 3,
                             0x16, 0, 0, 0, 239, 1, 2, 3]
        for (i, byte) in igmp.enumerated() { report.buf[14 + i] = byte }
        func fold(_ r: Range<Int>) -> UInt16 {
            var sum: UInt32 = 0
            for i in stride(from: r.lowerBound, to: r.upperBound, by: 2) { sum += UInt32(report.buf[i]) << 8 | UInt32(report.buf[i + 1]) }
            while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
            return ~UInt16(sum)
        }
        let ipSum = fold(14..<34); report.buf[24] = UInt8(ipSum >> 8); report.buf[25] = UInt8(ipSum & 0xFF)
        let igmpSum = fold(34..<42); report.buf[36] = UInt8(igmpSum >> 8); report.buf[37] = UInt8(igmpSum & 0xFF)
        var r = Frame(bytes: report.frame, ingress: PortID(1))
        _ = sw.handle(&r, context: .init(now: 1))
        sw.expire(now: 1)
        let data = Frames(src: a, dst: MACAddress("01:00:5e:01:02:03")!)
        data.buf[30] = 239; data.buf[31] = 1; data.buf[32] = 2; data.buf[33] = 3
        let p = HandlerPipeline([sw])
        var now: UInt64 = 2
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var fr = Frame(bytes: data.frame, ingress: PortID(0))
            now &+= 100
            blackHole(p.run(&fr, context: .init(now: now)))
        }
    }

    Benchmark("Filter 20 rules + LearningSwitch", configuration: config) { benchmark in
        var rules: [FilterRule] = (0..<18).map { .expression("tcp dst port \(1000 + $0)", .deny) }
        rules.append(.builtin(.dhcpServerGuard))
        rules.append(.builtin(.routerAdvertisementGuard))
        let filter = try! FrameFilter(rules: rules)
        let p = HandlerPipeline([filter, learnedSwitch()])
        p.portsChanged(twoPorts)
        measurePipeline(benchmark, p)
    }

    // Pipelines with an egress judge are built here, at registration: building one inside a
    // benchmark body (a TypedEgressStage's metadata made while the retain hooks are active)
    // crashes the Swift 6.3 runtime hooks (ordo-one/benchmark#349), even for an egress filter.
    let idleImpair = impairPipeline("direction ingress delay 50ms")
    Benchmark("Impair, frame's ports not impaired + LearningSwitch", configuration: config) { benchmark in
        // Port b impaired on ingress only: a frame from a to b meets no impairment either way.
        measurePipelineAndEgress(benchmark, idleImpair)
    }

    let busyImpair = impairPipeline("delay 50ms jitter 10ms distribution normal loss 1% seed 1")
    Benchmark("Impair delay+jitter+loss on egress port + LearningSwitch", configuration: config) { benchmark in
        measurePipelineAndEgress(benchmark, busyImpair)
    }

    Benchmark("SourceGuard MAC+IPv4 (VM attachment, hub)", configuration: config) { benchmark in
        var addresses = SourceAddresses()
        _ = addresses.add("198.18.0.1")
        let guarded = SourceGuard(policies: ["a": .init(mac: a, addresses: addresses)])
        let p = HandlerPipeline([guarded])
        p.portsChanged(twoPorts)
        measurePipeline(benchmark, p)
    }

    // Capture tap (what a worker calls for a captured port): a frame the capture expression
    // rejects, and a 64-byte frame copied into the ring (drained every 1024 frames, as the
    // capture thread would). Expressions longer than 15 bytes: the benchmark's retain hook
    // crashes on some small (inline) strings under Swift 6.3 (ordo-one/benchmark#349).
    Benchmark("Capture tap, frame filtered out", configuration: config) { benchmark in
        let tap = CaptureTap(ring: CaptureRing(bytes: 1 << 20), filter: try! PcapProgram("tcp dst port 22 and host 198.18.0.9"), snaplen: 65535)
        measureTap(benchmark, tap)
    }

    Benchmark("Capture tap, 64 B frame captured", configuration: config) { benchmark in
        let tap = CaptureTap(ring: CaptureRing(bytes: 1 << 20), filter: try! PcapProgram("udp and dst port 5001"), snaplen: 65535)
        measureTap(benchmark, tap)
    }

    Benchmark("FDB learn+lookup, 8192 entries", configuration: config) { benchmark in
        let sw = LearningSwitch(configuration: .init(capacity: 8192))
        sw.portsChanged(twoPorts)
        let f = Frames(src: a, dst: b)
        var i: UInt64 = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            // 8192 distinct sources cycle through the table: every frame learns or refreshes
            // one entry and looks up another.
            i &+= 1
            MACAddress(rawValue: 0x0200_0000_0000 | (i & 8191)).write(to: f.buf.baseAddress! + 6)
            MACAddress(rawValue: 0x0200_0000_0000 | ((i &+ 4096) & 8191)).write(to: f.buf.baseAddress!)
            var fr = Frame(bytes: f.frame, ingress: PortID(Int(i & 1)))
            blackHole(sw.handle(&fr, context: .init(now: i &* 1000)))
        }
    }

    // The worker's egress VLAN decision for a trunk port, in the form it uses (plain values:
    // a flattened bitmap word, no VLANSet copy), so a regression to per-frame ARC shows here.
    Benchmark("Egress VLAN decision, trunk port", configuration: config) { benchmark in
        let f = Frames(src: a, dst: b)
        let allowed = UnsafeMutablePointer<UInt64>.allocate(capacity: 64)
        allowed.initialize(repeating: 0, count: 64)
        allowed[0] = 1 << 10
        defer { allowed.deallocate() }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var fr = Frame(bytes: f.frame, ingress: PortID(0))
            fr.vlan = 10
            let v = Int(fr.vlan & 0x0FFF)
            blackHole(fr.egressTagging(trunkNative: 0, carries: allowed[v >> 6] & (1 << UInt64(v & 63)) != 0))
        }
    }
}
