// ImpairModels: the random models behind an impairment, as small value types with no
// allocation, unit-tested on their own (Tests/HandlersTests/ImpairModelTests.swift): a seeded
// generator (xoshiro256**), netem's correlated draw, the delay distributions, the
// Gilbert-Elliott loss chain and the rate's transmission-time arithmetic.
#if canImport(Glibc)
import Glibc
#endif

/// xoshiro256** seeded through splitmix64: fast, 2^256 period, reproducible from one seed.
public struct ImpairRandom: Sendable {
    var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(); s1 = splitmix(); s2 = splitmix(); s3 = splitmix()
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    @inline(__always)
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform in 0..<n (n > 0).
    @inline(__always)
    public mutating func below(_ n: Int) -> Int { Int(truncatingIfNeeded: next() % UInt64(n)) }
}

/// netem's correlated draw: each value is `(1 - ρ)·fresh + ρ·previous` (ρ = the correlation).
/// With ρ = 0 the draws are independent uniforms.
public struct CorrelatedDraw: Sendable {
    public var last: Double = 0
    public init() {}
    @inline(__always)
    public mutating func next(_ rng: inout ImpairRandom, correlation: Double) -> Double {
        let fresh = rng.unit()
        guard correlation > 0 else { return fresh }
        last = (1 - correlation) * fresh + correlation * last
        return last
    }
    /// A draw below `chance.probability` (the event happens).
    @inline(__always)
    public mutating func happens(_ rng: inout ImpairRandom, _ chance: ImpairChance) -> Bool {
        next(&rng, correlation: chance.correlation) < chance.probability
    }
}

extension DelayDistribution {
    /// A variate of mean 0 and standard deviation 1 (uniform: spread ±1 instead, as netem's
    /// jitter without a table), from uniform draws `u` (possibly correlated) and `v` (fresh).
    @inline(__always)
    public func variate(_ u: Double, _ v: Double) -> Double {
        switch self {
        case .uniform:
            return 2 * u - 1
        case .normal:
            // Box-Muller; u in (0, 1] for the logarithm.
            let r = (-2 * log(max(1 - u, 0x1p-53))).squareRoot()
            return r * cos(2 * Double.pi * v)
        case .pareto:
            // Pareto with shape 3 and scale 1 (mean 1.5, deviation √3/2), shifted and scaled to
            // mean 0, deviation 1: a long tail of late frames, none more than 0.58σ early.
            let x = pow(max(1 - u, 0x1p-53), -1.0 / 3.0)
            return (x - 1.5) / (3.0.squareRoot() / 2)
        }
    }
}

/// The Gilbert-Elliott chain as netem runs it: in the good state a frame is lost with
/// `lossGood` and the chain moves to bad with `p`; in the bad state lost with `lossBad` and
/// back to good with `r`. The loss decision uses the state the frame arrived in.
public struct GilbertElliott: Sendable {
    public var bad = false
    public init() {}
    @inline(__always)
    public mutating func lose(_ rng: inout ImpairRandom, p: Double, r: Double, lossBad: Double, lossGood: Double) -> Bool {
        if bad {
            if rng.unit() < r { bad = false }
            return rng.unit() < lossBad
        } else {
            if rng.unit() < p { bad = true }
            return rng.unit() < lossGood
        }
    }

    /// The long-run loss share: π_bad·lossBad + π_good·lossGood with π_bad = p / (p + r).
    public static func expectedLoss(p: Double, r: Double, lossBad: Double, lossGood: Double) -> Double {
        guard p + r > 0 else { return lossGood }
        let bad = p / (p + r)
        return bad * lossBad + (1 - bad) * lossGood
    }
}

/// A serial link of `rate` bits/s: each frame occupies it for its transmission time, frames
/// queue behind each other (netem's `rate`). Times in nanoseconds.
public enum RateLink {
    /// Nanoseconds a frame of `bytes` (+ `overhead`) takes at `rate` bits/s (at least 1 byte).
    @inline(__always)
    public static func transmissionTime(bytes: Int, overhead: Int, rate: UInt64) -> UInt64 {
        let b = UInt64(max(1, bytes + overhead))
        // b·8·10⁹ stays far below 2⁶⁴ for any frame (64 KiB → 5·10¹⁴).
        return (b * 8_000_000_000 + rate - 1) / rate
    }

    /// When a frame arriving at `now`, held `delay` first, finishes crossing a link that is
    /// busy until `busyUntil`: the new `busyUntil`, and how long it queued behind others.
    @inline(__always)
    public static func departure(now: UInt64, delay: UInt64, busyUntil: UInt64, transmission: UInt64) -> (leaves: UInt64, queued: UInt64) {
        let ready = now &+ delay
        let start = max(ready, busyUntil)
        return (start &+ transmission, start &- ready)
    }
}
