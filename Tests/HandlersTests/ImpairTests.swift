// The impair handler's parts without an engine: the syntax (values, ranges, errors), the
// random models (distributions, Gilbert-Elliott, correlation), the rate arithmetic, and the
// handler's verdicts and holds on frames (fixed seeds: every expectation is deterministic;
// the statistical bounds are many standard deviations wide).
import Testing
@testable import Frames
@testable import Handlers
import TapbridgeTesting

@Suite struct ImpairSyntaxTests {
    @Test func netemWordsParse() throws {
        let s = try ImpairSpec(parsing: "delay 80ms jitter 10ms loss 1% rate 20mbit limit 50 seed 7")
        #expect(s.delay == 80_000_000 && s.jitter == 10_000_000)
        #expect(s.loss == .random(ImpairChance(0.01)))
        #expect(s.rate == 20_000_000 && s.limit == 50 && s.seed == 7 && s.direction == .egress)
        let p = try ImpairSpec(parsing: "direction both delay 100ms 20ms 25% distribution pareto reorder 25% 50% duplicate 1% corrupt 0.1%")
        #expect(p.jitter == 20_000_000 && p.delayCorrelation == 0.25 && p.distribution == .pareto)
        #expect(p.reorder == ImpairChance(0.25, correlation: 0.5))
        #expect(p.duplicate == ImpairChance(0.01) && p.corrupt == ImpairChance(0.001) && p.direction == .both)
        let ge = try ImpairSpec(parsing: "loss gemodel 1% 30%")
        #expect(ge.loss == .gilbertElliott(p: 0.01, r: 0.3, lossBad: 1, lossGood: 0))
        let r = try ImpairSpec(parsing: "rate 1.5mbps 24")
        #expect(r.rate == 12_000_000 && r.overhead == 24)
    }

    @Test func descriptionRoundTrips() throws {
        for text in ["delay 80ms jitter 10ms loss 1%", "direction ingress loss gemodel 2% 25% 90% 0.5% seed 3",
                     "delay 50ms reorder 30% 10% duplicate 5%", "rate 20mbit overhead -4 limit 100", "corrupt 0.25%"] {
            let s = try ImpairSpec(parsing: text)
            #expect(try ImpairSpec(parsing: s.description) == s, "\(text) -> \(s.description)")
        }
    }

    @Test func badValuesAreNamed() {
        let cases: [(String, String)] = [
            ("delay 80", "delay must be a time with a unit"),
            ("delay 61s", "longer than 60s"),
            ("loss 101%", "loss must be a percentage"),
            ("loss nan%", "loss must be a percentage"),
            ("loss -1%", "loss must be a percentage"),
            ("rate 20", "rate must be a number with a unit"),
            ("rate 1bit", "outside 8kbit"),
            ("limit 0", "limit must be a frame count"),
            ("seed -1", "seed must be a whole number"),
            ("delay", "'delay' needs a time"),
            ("dleay 5ms", "unknown word 'dleay'"),
            ("loss 1% loss 2%", "'loss' given twice"),
            ("reorder 10%", "reorder needs a delay"),
            ("overhead 4", "overhead needs a rate"),
            ("direction up", "direction must be ingress, egress or both"),
            ("distribution cauchy", "distribution must be uniform, normal or pareto"),
            ("delay 1e400ms", "delay must be a time"),
        ]
        for (text, expected) in cases {
            do {
                _ = try ImpairSpec(parsing: text)
                Issue.record("'\(text)' was accepted")
            } catch {
                #expect("\(error)".contains(expected), "'\(text)': \(error)")
            }
        }
        #expect(throws: ImpairSyntaxError.self) { try ImpairSpec(words: Array(repeating: "x", count: 65)) }
    }

    /// Random word salads never crash the parser, and whatever it accepts prints back to itself.
    @Test func randomWordsParseOrFailCleanly() {
        var rng = ImpairRandom(seed: 11)
        let pool = ImpairSpec.keywords + ["gemodel", "random", "80ms", "0ms", "1%", "100%", "0.001%", "999%", "-5",
                                          "20mbit", "1e308", "nan%", "inf", "", "%", "ms", "60.0001s", "18446744073709551616",
                                          "egress", "pareto", "1.5.5ms", "０ms", "\u{0}"]
        for _ in 0..<20_000 {
            let words = (0..<rng.below(10)).map { _ in pool[rng.below(pool.count)] }
            if let s = try? ImpairSpec(words: words) {
                #expect((try? ImpairSpec(parsing: s.description)) == s, "\(words) -> \(s.description)")
            }
        }
    }
}

@Suite struct ImpairModelTests {
    @Test func sameSeedSameStream() {
        var a = ImpairRandom(seed: 42), b = ImpairRandom(seed: 42), c = ImpairRandom(seed: 43)
        let sa = (0..<100).map { _ in a.next() }, sb = (0..<100).map { _ in b.next() }, sc = (0..<100).map { _ in c.next() }
        #expect(sa == sb && sa != sc)
    }

    /// Mean and deviation of each distribution over 200k draws (bounds: > 10 standard errors).
    @Test func distributionsHaveMeanZeroAndUnitSpread() {
        var rng = ImpairRandom(seed: 1)
        for d in DelayDistribution.allCases {
            let n = 200_000
            var sum = 0.0, sq = 0.0, lo = Double.infinity
            for _ in 0..<n {
                let x = d.variate(rng.unit(), rng.unit())
                sum += x; sq += x * x; lo = min(lo, x)
            }
            let mean = sum / Double(n), sd = (sq / Double(n) - mean * mean).squareRoot()
            #expect(abs(mean) < 0.03, "\(d) mean \(mean)")
            switch d {
            case .uniform: #expect(abs(sd - 1 / 3.0.squareRoot()) < 0.02 && lo >= -1, "\(d) sd \(sd)")
            case .normal: #expect(abs(sd - 1) < 0.03, "\(d) sd \(sd)")
            case .pareto: #expect(sd > 0.7 && sd < 1.3 && lo >= -0.578, "\(d) sd \(sd) min \(lo)")   // heavy tail: loose
            }
        }
    }

    @Test func correlationKeepsDrawsClose() {
        var rng = ImpairRandom(seed: 5)
        var free = CorrelatedDraw(), tied = CorrelatedDraw()
        var stepFree = 0.0, stepTied = 0.0, pf = 0.0, pt = 0.0
        for i in 0..<10_000 {
            let f = free.next(&rng, correlation: 0), t = tied.next(&rng, correlation: 0.9)
            if i > 0 { stepFree += abs(f - pf); stepTied += abs(t - pt) }
            pf = f; pt = t
        }
        #expect(stepTied < stepFree / 4, "correlated steps \(stepTied) vs \(stepFree)")
    }

    /// netem's gemodel with p = 1 %, r = 30 %: 3.2 % lost, in runs averaging 1/r = 3.3 frames.
    @Test func gilbertElliottLosesInBursts() {
        var rng = ImpairRandom(seed: 9)
        var chain = GilbertElliott()
        let n = 200_000
        var lost = 0, runs = 0, inRun = false
        for _ in 0..<n {
            let l = chain.lose(&rng, p: 0.01, r: 0.3, lossBad: 1, lossGood: 0)
            if l { lost += 1; if !inRun { runs += 1 } }
            inRun = l
        }
        let share = Double(lost) / Double(n)
        let expected = GilbertElliott.expectedLoss(p: 0.01, r: 0.3, lossBad: 1, lossGood: 0)
        #expect(abs(share - expected) < 0.006, "loss \(share), expected \(expected)")
        let meanRun = Double(lost) / Double(runs)
        #expect(meanRun > 2.8 && meanRun < 3.9, "mean burst \(meanRun)")
    }

    @Test func rateArithmetic() {
        // 1500 bytes at 20 Mbit/s: 600 µs; +24 bytes of overhead: 609.6 µs.
        #expect(RateLink.transmissionTime(bytes: 1500, overhead: 0, rate: 20_000_000) == 600_000)
        #expect(RateLink.transmissionTime(bytes: 1500, overhead: 24, rate: 20_000_000) == 609_600)
        #expect(RateLink.transmissionTime(bytes: 10, overhead: -64, rate: 8_000) == 1_000_000)   // at least a byte
        // An idle link: leaves after delay + transmission; a busy one: queued behind.
        let idle = RateLink.departure(now: 1_000, delay: 0, busyUntil: 0, transmission: 600)
        #expect(idle.leaves == 1_600 && idle.queued == 0)
        let busy = RateLink.departure(now: 1_000, delay: 100, busyUntil: 5_000, transmission: 600)
        #expect(busy.leaves == 5_600 && busy.queued == 3_900)
        // 1000 frames back to back: the last leaves after 1000 transmission times.
        var until: UInt64 = 0
        for _ in 0..<1000 { until = RateLink.departure(now: 0, delay: 0, busyUntil: until, transmission: 600).leaves }
        #expect(until == 600_000)
    }
}

@Suite struct FrameImpairerTests {
    static let ports = testPortTable(["a", "b", "c"])

    static func withFrame(_ ingress: Int = 0, length: Int = 100, _ body: (inout Frame) -> Void) {
        var bytes = [UInt8](repeating: 0, count: length)
        bytes[6] = 2; bytes[11] = 1
        bytes.withUnsafeMutableBytes { buf in
            var f = Frame(bytes: buf, ingress: PortID(ingress))
            body(&f)
        }
    }

    static func impairer(_ specs: [String: String]) throws -> FrameImpairer {
        let h = FrameImpairer(ports: try specs.mapValues { try ImpairSpec(parsing: $0) })
        h.portsChanged(ports)
        return h
    }

    @Test func portsWithoutImpairmentAreUntouched() throws {
        let h = try Self.impairer(["b": "delay 50ms"])
        Self.withFrame { f in
            #expect(h.handle(&f, context: HandlerContext(now: 1_000)) == .continue)
            #expect(h.handleEgress(&f, to: PortID(2), context: HandlerContext(now: 1_000)) == .continue)
            #expect(f.hold == FrameHold())
            #expect(h.handleEgress(&f, to: PortID(1), context: HandlerContext(now: 1_000)) == .continue)
            #expect(f.hold.until == 1_000 + 50_000_000, "egress of b is delayed")
        }
    }

    @Test func ingressDelayAndEgressAddUp() throws {
        let h = try Self.impairer(["a": "direction ingress delay 10ms", "b": "delay 5ms"])
        Self.withFrame { f in
            #expect(h.handle(&f, context: HandlerContext(now: 0)) == .continue)
            #expect(f.hold.until == 10_000_000)
            _ = h.handleEgress(&f, to: PortID(1), context: HandlerContext(now: 0))
            #expect(f.hold.until == 15_000_000, "b's egress delay starts when a's ingress delay ends")
        }
    }

    /// The same seed gives the same drop pattern; another seed another one.
    @Test func sameSeedSameDrops() throws {
        func pattern(_ seed: Int) throws -> [Bool] {
            let h = try Self.impairer(["b": "loss 30% seed \(seed)"])
            var out: [Bool] = []
            for i in 0..<2_000 {
                Self.withFrame { f in
                    out.append(h.handleEgress(&f, to: PortID(1), context: HandlerContext(now: UInt64(i))) != .continue)
                }
            }
            return out
        }
        let a = try pattern(7), b = try pattern(7), c = try pattern(8)
        #expect(a == b && a != c)
        let share = Double(a.filter { $0 }.count) / 2_000
        #expect(share > 0.25 && share < 0.35, "loss share \(share)")
    }

    @Test func jitterStaysAroundTheDelayAndReorderSkipsIt() throws {
        let h = try Self.impairer(["b": "delay 50ms jitter 10ms distribution normal reorder 20% seed 1"])
        var delays: [UInt64] = []
        var immediate = 0
        for _ in 0..<5_000 {
            Self.withFrame { f in
                _ = h.handleEgress(&f, to: PortID(1), context: HandlerContext(now: 1))
                if f.hold.until <= 1 { immediate += 1 } else { delays.append(f.hold.until - 1) }
            }
        }
        let mean = Double(delays.reduce(0, +)) / Double(delays.count)
        #expect(abs(mean - 50e6) < 1e6, "mean delay \(mean)")
        #expect(immediate > 850 && immediate < 1_150, "reordered \(immediate)")
        let c = h.counters(port: "b")
        #expect(c["reordered"] == UInt64(immediate) && c["delayed"] == UInt64(delays.count))
    }

    @Test func rateSpacesFramesAndBoundsTheQueue() throws {
        let h = try Self.impairer(["b": "rate 8mbit limit 10"])   // 1000-byte frames: 1 ms each
        var untils: [UInt64] = []
        var dropped = 0
        for _ in 0..<15 {
            Self.withFrame(length: 1000) { f in
                if h.handleEgress(&f, to: PortID(1), context: HandlerContext(now: 0)) == .continue {
                    untils.append(f.hold.until)
                } else { dropped += 1 }
            }
        }
        #expect(untils.prefix(3) == [1_000_000, 2_000_000, 3_000_000])
        #expect(untils.count == 11 && dropped == 4, "queue of 10 frames' time past the one on the wire")
        #expect(h.counters(port: "b")["rate_dropped"] == 4)
    }

    @Test func duplicateAndCorrupt() throws {
        let h = try Self.impairer(["b": "duplicate 100% corrupt 100% seed 2"])
        Self.withFrame { f in
            let before = Array(f.bytes)
            _ = h.handleEgress(&f, to: PortID(1), context: HandlerContext(now: 5))
            #expect(f.hold.duplicates == 1 && f.hold.until == 0)
            let diff = zip(before, f.bytes).enumerated().filter { $0.element.0 != $0.element.1 }
            #expect(diff.count == 1 && diff[0].offset >= 14, "one byte past the Ethernet header changed")
        }
    }

    @Test func liveChangesAndClear() throws {
        let h = try Self.impairer([:])
        h.set(port: "b", try ImpairSpec(parsing: "loss 100%"))
        Self.withFrame { f in #expect(h.handleEgress(&f, to: PortID(1), context: HandlerContext(now: 0)) != .continue) }
        #expect(h.clear(port: "b"))
        Self.withFrame { f in #expect(h.handleEgress(&f, to: PortID(1), context: HandlerContext(now: 0)) == .continue) }
        #expect(h.current.isEmpty)
        #expect(h.counters(port: "b")["lost"] == 1, "counters outlive the settings")
    }
}
