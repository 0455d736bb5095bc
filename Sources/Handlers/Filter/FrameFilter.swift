// FrameFilter: ordered rules, first match wins, a default policy. Matches are pcap-filter
// expressions (compiled once by libpcap) or typed built-ins; actions allow, deny, count,
// mirror, limit. Rules are replaced live: a new set is compiled off the datapath and published
// atomically, so every frame is evaluated against exactly one complete set.
import Atomics
import Frames

public final class FrameFilter: FrameHandler, @unchecked Sendable {
    public let name: String
    private let published: SnapshotPublisher<CompiledRuleSet>
    private var rules: [FilterRule]
    private var policy: FilterPolicy
    private var scope: PortSet?
    private var scopeNames: [String]?
    private var ports = PortTable.empty
    private var generation: UInt64 = 0

    /// - Parameters:
    ///   - ports: names of the ports whose ingress frames the filter judges (nil: all ports);
    ///     frames from other ports pass untouched.
    public init(name: String = "filter", rules: [FilterRule], policy: FilterPolicy = .allow, ports: [String]? = nil) throws {
        self.name = name
        self.rules = rules
        self.policy = policy
        self.scopeNames = ports
        let set = try Self.compile(rules, policy: policy, generation: 0, scope: ports.map { _ in PortSet() },
                                   ports: .empty, counters: RuleCounters(rules: rules.count))
        published = SnapshotPublisher(set)
    }

    // MARK: hot path

    public func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        published.withCurrent { set in
            if let scope = set.scope, !scope.contains(frame.ingress) { return .continue }
            let c = set.counters
            let w = context.worker
            let bytes = UnsafeRawBufferPointer(frame.bytes)
            let hot = set.hot
            var i = 0
            while i < hot.count {
                let rule = hot.baseAddress.unsafelyUnwrapped + i
                let matched: Bool
                if let insns = rule.pointee.instructions {
                    matched = PcapProgram.run(insns, bytes)
                } else {
                    switch BuiltinMatchers.evaluate(rule.pointee.builtin!, frame, assignedMAC: set.assignedMAC[Int(frame.ingress.rawValue) & 255]) {
                    case .match: matched = true
                    case .noMatch: matched = false
                    case .malformed: c.malformed(worker: w); matched = false
                    }
                }
                if matched {
                    c.hit(rule: i, bytes: frame.length, now: context.now, worker: w)
                    switch rule.pointee.action {
                    case .allow: return .continue
                    case .deny: return .drop(.filtered)
                    case .count: break
                    case .mirror: if let p = rule.pointee.mirrorPort { frame.mirror.insert(p) }
                    case .limit:
                        let ok = rule.pointee.bucket!._withUnsafeGuaranteedRef { $0.take(bytes: frame.length, now: context.now) }
                        if !ok { return .drop(.rateLimited) }
                    }
                }
                i += 1
            }
            c.policy(allowed: set.policy == .allow, worker: w)
            return set.policy == .allow ? .continue : .drop(.filtered)
        }
    }

    // MARK: control thread

    /// Compiles `rules` and swaps them in atomically; on error the old set stays in force.
    public func replaceRules(_ rules: [FilterRule], policy: FilterPolicy? = nil) throws {
        let p = policy ?? self.policy
        let set = try Self.compile(rules, policy: p, generation: generation + 1, scope: resolveScope(),
                                   ports: ports, counters: RuleCounters(rules: rules.count))
        generation += 1
        self.rules = rules
        self.policy = p
        published.publish(set)
    }

    /// The rules in force.
    public var currentRules: [FilterRule] { rules }
    public var currentPolicy: FilterPolicy { policy }
    /// Bumped by every successful replaceRules.
    public var currentGeneration: UInt64 { generation }

    public func portsChanged(_ table: PortTable) {
        ports = table
        // Same rules, new port facts: keep the counters.
        let old = published.snapshot
        if let set = try? Self.compile(rules, policy: policy, generation: generation, scope: resolveScope(),
                                       ports: table, counters: old.counters) {
            published.publish(set)
        }
    }

    private func resolveScope() -> PortSet? {
        guard let names = scopeNames else { return nil }
        return PortSet(names.compactMap { ports.port(named: $0)?.id })
    }

    public func counters() -> [HandlerCounter] {
        let set = published.snapshot
        let c = set.counters
        var out: [HandlerCounter] = []
        for (i, r) in rules.enumerated() where i < c.ruleCount {
            let labels = ["filter": name, "rule": String(i), "match": r.match.description]
            out.append(HandlerCounter("filter_rule_packets", c.total(i * 3), labels: labels))
            out.append(HandlerCounter("filter_rule_bytes", c.total(i * 3 + 1), labels: labels))
            out.append(HandlerCounter("filter_rule_last_hit_ns", c.latest(i * 3 + 2), labels: labels))
        }
        out.append(HandlerCounter("filter_policy_allowed", c.total(c.ruleCount * 3), labels: ["filter": name]))
        out.append(HandlerCounter("filter_policy_denied", c.total(c.ruleCount * 3 + 1), labels: ["filter": name]))
        out.append(HandlerCounter("filter_malformed", c.total(c.ruleCount * 3 + 2), labels: ["filter": name]))
        out.append(HandlerCounter("filter_generation", set.generation, labels: ["filter": name]))
        return out
    }

    /// Hits of rule `index` in the rule set in force (packets, bytes).
    public func hits(rule index: Int) -> (packets: UInt64, bytes: UInt64) {
        let c = published.snapshot.counters
        guard index < c.ruleCount else { return (0, 0) }
        return (c.total(index * 3), c.total(index * 3 + 1))
    }

    static func compile(_ rules: [FilterRule], policy: FilterPolicy, generation: UInt64, scope: PortSet?,
                        ports: PortTable, counters: RuleCounters) throws -> CompiledRuleSet {
        var compiled: [CompiledRuleSet.Rule] = []
        for (i, r) in rules.enumerated() {
            let kind: CompiledRuleSet.Kind
            switch r.match {
            case .expression(let e):
                do { kind = .program(try PcapProgram(e)) } catch FilterError.compile(let expr, let message, _) {
                    throw FilterError.compile(expression: expr, message: message, position: i)
                }
            case .builtin(let b):
                kind = .builtin(b)
            }
            var mirror: PortID?
            var bucket: TokenBucket?
            switch r.action {
            case .mirror(let port):
                guard !port.isEmpty else { throw FilterError.invalid(position: i, reason: "mirror needs a port name") }
                mirror = ports.port(named: port)?.id
            case .limit(let rate):
                let v: Double
                switch rate { case .packetsPerSecond(let x), .bitsPerSecond(let x): v = x }
                guard v > 0, v.isFinite else { throw FilterError.invalid(position: i, reason: "limit needs a positive rate") }
                bucket = TokenBucket(rate)
            default: break
            }
            compiled.append(.init(kind: kind, action: r.action, mirrorPort: mirror, bucket: bucket))
        }
        return CompiledRuleSet(rules: compiled, policy: policy, generation: generation, scope: scope,
                               ports: ports, counters: counters)
    }
}
