// CompiledRuleSet: an immutable, ready-to-run rule set: compiled BPF programs, resolved mirror
// ports and assigned MACs, token buckets, and per-worker counter rows. FrameFilter publishes
// a new one on every rule or port change; workers read the current one without locks.
import Atomics
import Frames
import PacketFilter

final class CompiledRuleSet: @unchecked Sendable {
    enum Kind { case program(PcapProgram), builtin(BuiltinRule) }

    struct Rule {
        let kind: Kind
        let action: FilterAction
        /// Resolved `mirror` target (nil: port not attached; the copy is skipped).
        let mirrorPort: PortID?
        let bucket: TokenBucket?
    }

    let rules: [Rule]
    /// The hot path's copy of `rules`: plain values only (raw BPF instructions, action codes,
    /// unmanaged token buckets) so that evaluating a frame involves no reference counting;
    /// `rules` keeps everything they point to alive.
    let hot: UnsafeMutableBufferPointer<HotRule>
    let policy: FilterPolicy
    let generation: UInt64
    /// Ingress ports the filter applies to (nil: every port).
    let scope: PortSet?
    /// Assigned MAC per PortID (0: none), for anti-spoofing.
    let assignedMAC: UnsafeMutablePointer<UInt64>
    let counters: RuleCounters

    init(rules: [Rule], policy: FilterPolicy, generation: UInt64, scope: PortSet?, ports: PortTable, counters: RuleCounters) {
        self.rules = rules; self.policy = policy; self.generation = generation; self.scope = scope
        self.counters = counters
        hot = .allocate(capacity: rules.count)
        for (i, r) in rules.enumerated() {
            var h = HotRule()
            switch r.kind {
            case .program(let p): h.instructions = p.instructions
            case .builtin(let b): h.builtin = b
            }
            switch r.action {
            case .allow: h.action = .allow
            case .deny: h.action = .deny
            case .count: h.action = .count
            case .mirror: h.action = .mirror; h.mirrorPort = r.mirrorPort
            case .limit: h.action = .limit; h.bucket = r.bucket.map { Unmanaged.passUnretained($0) }
            }
            (hot.baseAddress! + i).initialize(to: h)
        }
        assignedMAC = .allocate(capacity: PortSet.capacity)
        assignedMAC.initialize(repeating: 0, count: PortSet.capacity)
        for p in ports.ports where Int(p.id.rawValue) < PortSet.capacity {
            assignedMAC[Int(p.id.rawValue)] = p.assignedMAC?.rawValue ?? 0
        }
    }

    deinit {
        hot.deallocate()
        assignedMAC.deallocate()
    }
}

/// One rule as the hot path reads it: trivially copyable, nothing reference-counted.
struct HotRule {
    enum Action: UInt8 { case allow, deny, count, mirror, limit }
    var instructions: PcapInstructions?
    var builtin: BuiltinRule?
    var action: Action = .allow
    var mirrorPort: PortID?
    var bucket: Unmanaged<TokenBucket>?
}

/// Per-rule packets/bytes/last-hit and per-filter malformed counts: one row per worker (no
/// shared cache lines between workers), summed when read.
final class RuleCounters: @unchecked Sendable {
    static let workers = 64
    let ruleCount: Int
    /// Columns per row: 3 per rule (packets, bytes, last hit ns) + policy allow/deny + malformed.
    let stride: Int
    let storage: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>

    init(rules: Int) {
        ruleCount = rules
        stride = ((rules * 3 + 3) + 7) & ~7
        storage = .allocate(capacity: Self.workers * stride)
        storage.initialize(repeating: .init(0), count: Self.workers * stride)
    }
    deinit { storage.deallocate() }

    @inline(__always) private func cell(_ worker: Int, _ column: Int) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: storage + (worker & (Self.workers - 1)) * stride + column)
    }

    @inline(__always) func hit(rule: Int, bytes: Int, now: UInt64, worker: Int) {
        cell(worker, rule * 3).wrappingIncrement(ordering: .relaxed)
        cell(worker, rule * 3 + 1).wrappingIncrement(by: UInt64(bytes), ordering: .relaxed)
        cell(worker, rule * 3 + 2).store(now, ordering: .relaxed)
    }
    @inline(__always) func policy(allowed: Bool, worker: Int) {
        cell(worker, ruleCount * 3 + (allowed ? 0 : 1)).wrappingIncrement(ordering: .relaxed)
    }
    @inline(__always) func malformed(worker: Int) { cell(worker, ruleCount * 3 + 2).wrappingIncrement(ordering: .relaxed) }

    func total(_ column: Int) -> UInt64 {
        (0..<Self.workers).reduce(0) { $0 &+ cell($1, column).load(ordering: .relaxed) }
    }
    func latest(_ column: Int) -> UInt64 {
        (0..<Self.workers).reduce(0) { max($0, cell($1, column).load(ordering: .relaxed)) }
    }
}

/// A token bucket shared by all workers: tokens in millionths, refilled from the clock on use.
final class TokenBucket: @unchecked Sendable {
    let ratePerSecond: Double     // tokens (packets or bits) per second
    let burst: UInt64             // in millionths of a token
    let perPacket: Bool
    private let tokens = UnsafeAtomic<UInt64>.create(0)
    private let lastRefill = UnsafeAtomic<UInt64>.create(0)

    init(_ rate: FilterRate) {
        switch rate {
        case .packetsPerSecond(let r): ratePerSecond = r; perPacket = true
        case .bitsPerSecond(let r): ratePerSecond = r; perPacket = false
        }
        // One second's worth, at least one full-size frame; at most a quarter of UInt64's range
        // (so `tokens + refill` cannot wrap) whatever rate the text asked for.
        burst = UInt64(min(max(ratePerSecond, perPacket ? 1 : 65536 * 8) * 1_000_000, TokenBucket.maximumBurst))
        tokens.store(burst, ordering: .relaxed)
    }
    deinit { tokens.destroy(); lastRefill.destroy() }

    static let maximumBurst = Double(UInt64.max / 4)

    /// Takes the frame's cost if available.
    @inline(__always)
    func take(bytes: Int, now: UInt64) -> Bool {
        let last = lastRefill.load(ordering: .relaxed)
        if now > last, lastRefill.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged {
            // ns -> millionths of a token, capped at the burst before it becomes an integer: a
            // long idle period at a high rate (100gbit after 3 minutes) overflowed UInt64 and trapped.
            let refill = Double(now - last) * ratePerSecond / 1000
            let add = last == 0 || !(refill < Double(burst)) ? burst : UInt64(refill)
            var t = tokens.load(ordering: .relaxed)
            while true {
                let n = min(burst, t &+ add)
                let (ok, seen) = tokens.compareExchange(expected: t, desired: n, ordering: .relaxed)
                if ok { break }
                t = seen
            }
        }
        let cost = UInt64(perPacket ? 1 : bytes * 8) * 1_000_000
        var t = tokens.load(ordering: .relaxed)
        while t >= cost {
            let (ok, seen) = tokens.compareExchange(expected: t, desired: t - cost, ordering: .relaxed)
            if ok { return true }
            t = seen
        }
        return false
    }
}
