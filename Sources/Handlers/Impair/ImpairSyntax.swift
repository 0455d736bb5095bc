// ImpairSyntax: reads an impairment from words (`delay 80ms jitter 10ms loss 1%`), the one
// parser behind `tapbridge impair PORT ...`, the control socket's `impair.set` and the TOML
// keys of `[[bridges.impair.ports]]` (each key and its value become words here). The text is
// untrusted: every number is checked for range and finiteness, every error names the word.

public struct ImpairSyntaxError: Error, Sendable, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension ImpairSpec {
    /// Every keyword, in the order `description` prints them.
    public static let keywords = ["direction", "delay", "jitter", "distribution", "correlation", "loss",
                                  "duplicate", "reorder", "corrupt", "rate", "overhead", "limit", "seed"]
    static let maxWords = 64

    /// Parses `text` split on whitespace.
    public init(parsing text: String) throws {
        try self.init(words: text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init))
    }

    /// Parses keyword/value words; a keyword given twice, an unknown one or a bad value throws.
    public init(words: [String]) throws {
        self.init()
        guard words.count <= Self.maxWords else { throw ImpairSyntaxError("too many words (\(words.count), at most \(Self.maxWords))") }
        var seen: Set<String> = []
        var i = 0
        func next(_ what: String, after key: String) throws -> String {
            guard i < words.count else { throw ImpairSyntaxError("'\(key)' needs \(what)") }
            defer { i += 1 }
            return words[i]
        }
        /// An optional trailing percentage (a correlation) if the next word is one.
        func optionalPercent() throws -> Double? {
            guard i < words.count, words[i].hasSuffix("%") else { return nil }
            defer { i += 1 }
            return try Self.percent(words[i], for: "correlation")
        }
        while i < words.count {
            let key = words[i].lowercased()
            i += 1
            guard Self.keywords.contains(key) else {
                throw ImpairSyntaxError("unknown word '\(Self.shown(words[i - 1]))' (expected one of: \(Self.keywords.joined(separator: ", ")))")
            }
            guard seen.insert(key).inserted else { throw ImpairSyntaxError("'\(key)' given twice") }
            switch key {
            case "direction":
                let v = try next("ingress, egress or both", after: key)
                guard let d = ImpairDirection(rawValue: v) else {
                    throw ImpairSyntaxError("direction must be ingress, egress or both, not '\(Self.shown(v))'")
                }
                direction = d
            case "delay":
                delay = try Self.time(try next("a time (80ms)", after: key), for: key)
                // netem's positional form: delay TIME [JITTER [CORRELATION]]
                if i < words.count, !words[i].hasSuffix("%"), let first = words[i].first, first.isNumber {
                    guard seen.insert("jitter").inserted else { throw ImpairSyntaxError("'jitter' given twice") }
                    jitter = try Self.time(words[i], for: "jitter"); i += 1
                    if let c = try optionalPercent() { seen.insert("correlation"); delayCorrelation = c }
                }
            case "jitter":
                jitter = try Self.time(try next("a time (10ms)", after: key), for: key)
            case "correlation":
                delayCorrelation = try Self.percent(try next("a percentage", after: key), for: key)
            case "distribution":
                let v = try next("uniform, normal or pareto", after: key)
                guard let d = DelayDistribution(rawValue: v) else {
                    throw ImpairSyntaxError("distribution must be uniform, normal or pareto, not '\(Self.shown(v))'")
                }
                distribution = d
            case "loss":
                var v = try next("a percentage or 'gemodel P [R [1-H [1-K]]]'", after: key)
                if v == "random" { v = try next("a percentage", after: "loss random") }
                if v == "gemodel" {
                    let p = try Self.percent(try next("p, a percentage", after: "loss gemodel"), for: "loss gemodel p")
                    let r = try optionalPercent() ?? 1
                    let bad = try optionalPercent() ?? 1
                    let good = try optionalPercent() ?? 0
                    loss = .gilbertElliott(p: p, r: r, lossBad: bad, lossGood: good)
                } else {
                    let p = try Self.percent(v, for: key)
                    let c = try optionalPercent() ?? 0
                    loss = p > 0 ? .random(ImpairChance(p, correlation: c)) : nil
                }
            case "duplicate", "reorder", "corrupt":
                let p = try Self.percent(try next("a percentage", after: key), for: key)
                let c = ImpairChance(p, correlation: try optionalPercent() ?? 0)
                let value = p > 0 ? c : nil
                if key == "duplicate" { duplicate = value } else if key == "reorder" { reorder = value } else { corrupt = value }
            case "rate":
                rate = try Self.rate(try next("a rate (20mbit)", after: key))
                if i < words.count, let n = Int(words[i]) {
                    guard seen.insert("overhead").inserted else { throw ImpairSyntaxError("'overhead' given twice") }
                    overhead = try Self.overhead(n); i += 1
                }
            case "overhead":
                let v = try next("a byte count", after: key)
                guard let n = Int(v) else { throw ImpairSyntaxError("overhead must be a whole number of bytes, not '\(Self.shown(v))'") }
                overhead = try Self.overhead(n)
            case "limit":
                let v = try next("a frame count", after: key)
                guard let n = UInt32(v), n >= 1, n <= Self.maxLimit else {
                    throw ImpairSyntaxError("limit must be a frame count 1...\(Self.maxLimit), not '\(Self.shown(v))'")
                }
                limit = n
            case "seed":
                let v = try next("a number", after: key)
                guard let n = UInt64(v) else { throw ImpairSyntaxError("seed must be a whole number 0...\(UInt64.max), not '\(Self.shown(v))'") }
                seed = n
            default: break
            }
        }
        if reorder != nil && delay == 0 {
            throw ImpairSyntaxError("reorder needs a delay (reordered frames are sent ahead of delayed ones)")
        }
        if overhead != 0 && rate == 0 { throw ImpairSyntaxError("overhead needs a rate") }
    }

    /// A word as an error may quote it (bounded, no control characters).
    static func shown(_ w: String) -> String {
        let clean = String(w.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(40))
        return w.unicodeScalars.count > 40 ? clean + "..." : clean
    }

    static func number(_ s: Substring) -> Double? {
        guard !s.isEmpty, s.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), let v = Double(s), v.isFinite else { return nil }
        return v
    }

    /// `10us`, `80ms`, `1.5s`, `500ns`.
    static func time(_ w: String, for key: String) throws -> UInt64 {
        let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("ms", 1e6), ("s", 1e9)]
        for (u, scale) in units where w.hasSuffix(u) {
            let head = w.dropLast(u.count)
            // "ms" also ends in "s": take the longest unit that leaves a number.
            guard let v = number(head) else { continue }
            let ns = v * scale
            guard ns <= Double(ImpairSpec.maxDelay) else {
                throw ImpairSyntaxError("\(key) '\(shown(w))' is longer than \(ImpairSpec.time(ImpairSpec.maxDelay))")
            }
            return UInt64(ns.rounded())
        }
        throw ImpairSyntaxError("\(key) must be a time with a unit (ns, us, ms, s), like 80ms, not '\(shown(w))'")
    }

    /// `1%`, `0.25%` (0...100%), returned as 0...1.
    static func percent(_ w: String, for key: String) throws -> Double {
        guard w.hasSuffix("%"), let v = number(w.dropLast()), v <= 100 else {
            throw ImpairSyntaxError("\(key) must be a percentage 0%...100%, like 1%, not '\(shown(w))'")
        }
        return v / 100
    }

    /// tc's rate units: bit, kbit, mbit, gbit (bits/s) and bps, kbps, mbps, gbps (bytes/s).
    static func rate(_ w: String) throws -> UInt64 {
        let units: [(String, Double)] = [("kbit", 1e3), ("mbit", 1e6), ("gbit", 1e9), ("bit", 1),
                                         ("kbps", 8e3), ("mbps", 8e6), ("gbps", 8e9), ("bps", 8)]
        let lower = w.lowercased()
        for (u, scale) in units where lower.hasSuffix(u) {
            guard let v = number(lower.dropLast(u.count)) else { continue }
            let bps = v * scale
            guard bps >= 8_000, bps <= 1e12 else {
                throw ImpairSyntaxError("rate '\(shown(w))' is outside 8kbit...1000gbit")
            }
            return UInt64(bps.rounded())
        }
        throw ImpairSyntaxError("rate must be a number with a unit (bit, kbit, mbit, gbit, bps, kbps, mbps, gbps), like 20mbit, not '\(shown(w))'")
    }

    static func overhead(_ n: Int) throws -> Int {
        guard (-64...1024).contains(n) else { throw ImpairSyntaxError("overhead must be -64...1024 bytes, not \(n)") }
        return n
    }
}
