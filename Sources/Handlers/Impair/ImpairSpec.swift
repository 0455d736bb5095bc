// ImpairSpec: one port's impairment as plain values, in netem's vocabulary (tc-netem(8)):
// delay with jitter, distribution and correlation; loss random or Gilbert-Elliott; duplicate;
// reorder; corrupt; rate with frame overhead; limit; seed; and the direction it applies in.
// Read from text by ImpairSyntax.swift (control socket and TOML share that parser), printed
// back in the same syntax by `description`.

/// Where an impairment applies: frames entering by the port (held/dropped for every
/// destination), frames leaving by it (netem's place: a qdisc on the port), or both.
public enum ImpairDirection: String, Sendable, CaseIterable {
    case ingress, egress, both
}

/// How jitter spreads the delay (netem's `distribution`; normalised to mean 0, deviation 1).
public enum DelayDistribution: String, Sendable, CaseIterable {
    case uniform, normal, pareto
}

/// A probability with netem's correlation to the previous draw (both 0...1).
public struct ImpairChance: Equatable, Sendable {
    public var probability: Double
    public var correlation: Double
    public init(_ probability: Double, correlation: Double = 0) {
        self.probability = probability; self.correlation = correlation
    }
}

/// Frame loss: independent (optionally correlated) draws, or the Gilbert-Elliott two-state
/// model (netem `loss gemodel p r 1-h 1-k`): p good→bad, r bad→good, lossBad = 1-h is the
/// loss probability in the bad state, lossGood = 1-k in the good state.
public enum LossModel: Equatable, Sendable {
    case random(ImpairChance)
    case gilbertElliott(p: Double, r: Double, lossBad: Double, lossGood: Double)
}

public struct ImpairSpec: Equatable, Sendable {
    public var direction: ImpairDirection = .egress
    /// Nanoseconds.
    public var delay: UInt64 = 0
    public var jitter: UInt64 = 0
    public var delayCorrelation: Double = 0
    public var distribution: DelayDistribution = .uniform
    public var loss: LossModel? = nil
    public var duplicate: ImpairChance? = nil
    /// Share of frames sent at once, ahead of the delayed ones (needs a delay).
    public var reorder: ImpairChance? = nil
    public var corrupt: ImpairChance? = nil
    /// Bits per second (0: no rate limit).
    public var rate: UInt64 = 0
    /// Bytes added to (or, negative, taken from) each frame's length for the rate.
    public var overhead: Int = 0
    /// Frames held per port at most (netem's default 1000).
    public var limit: UInt32 = 1000
    /// Fixed seed for reproducible runs (nil: seeded from the clock).
    public var seed: UInt64? = nil

    public init() {}

    /// Longest delay or jitter accepted.
    public static let maxDelay: UInt64 = 60_000_000_000
    public static let maxLimit: UInt32 = 1_000_000

    /// Nothing would happen to a frame.
    public var isNoOp: Bool {
        delay == 0 && jitter == 0 && loss == nil && duplicate == nil && corrupt == nil && rate == 0
    }
}

extension ImpairSpec: CustomStringConvertible {
    /// The spec in the syntax `ImpairSpec(parsing:)` reads (round-trips).
    public var description: String {
        var w: [String] = ["direction", direction.rawValue]
        if delay > 0 || jitter > 0 { w += ["delay", Self.time(delay)] }
        if jitter > 0 { w += ["jitter", Self.time(jitter)] }
        if jitter > 0 || distribution != .uniform { w += ["distribution", distribution.rawValue] }
        if delayCorrelation > 0 { w += ["correlation", Self.percent(delayCorrelation)] }
        switch loss {
        case .random(let c)?:
            w += ["loss", Self.percent(c.probability)]
            if c.correlation > 0 { w.append(Self.percent(c.correlation)) }
        case .gilbertElliott(let p, let r, let bad, let good)?:
            w += ["loss", "gemodel", Self.percent(p), Self.percent(r), Self.percent(bad), Self.percent(good)]
        case nil: break
        }
        for (name, c) in [("duplicate", duplicate), ("reorder", reorder), ("corrupt", corrupt)] {
            guard let c else { continue }
            w += [name, Self.percent(c.probability)]
            if c.correlation > 0 { w.append(Self.percent(c.correlation)) }
        }
        if rate > 0 {
            w += ["rate", Self.rateText(rate)]
            if overhead != 0 { w += ["overhead", String(overhead)] }
        }
        w += ["limit", String(limit)]
        if let seed { w += ["seed", String(seed)] }
        return w.joined(separator: " ")
    }

    static func time(_ ns: UInt64) -> String {
        if ns % 1_000_000_000 == 0 { return "\(ns / 1_000_000_000)s" }
        if ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
        if ns % 1_000 == 0 { return "\(ns / 1_000)us" }
        return "\(ns)ns"
    }

    static func percent(_ p: Double) -> String {
        let v = (p * 100 * 10_000).rounded() / 10_000
        return v == v.rounded() ? "\(Int(v))%" : "\(v)%"
    }

    static func rateText(_ bps: UInt64) -> String {
        if bps % 1_000_000_000 == 0 { return "\(bps / 1_000_000_000)gbit" }
        if bps % 1_000_000 == 0 { return "\(bps / 1_000_000)mbit" }
        if bps % 1_000 == 0 { return "\(bps / 1_000)kbit" }
        return "\(bps)bit"
    }
}
