// FrameFilter: ordered rules, first match wins, a default policy. Matches are pcap-filter
// expressions (compiled once by libpcap) or typed built-ins; actions allow, deny, count,
// mirror, limit. Rules are replaced live: a new set is compiled off the datapath and published
// atomically, so every frame is evaluated against exactly one complete set.
import Atomics
import Frames
import PacketFilter

/// Where a filter judges frames: as they enter from its ports, as they leave by them, or both.
public enum FilterDirection: String, Sendable, CaseIterable {
    case ingress, egress, both
}

public final class FrameFilter: EgressFrameHandler, @unchecked Sendable {
    public let name: String
    public let direction: FilterDirection
    public var judgesEgress: Bool { direction != .ingress }
    private let judgesIngress: Bool
    private let published: SnapshotPublisher<CompiledRuleSet>
    private var rules: [FilterRule]
    private var policy: FilterPolicy
    private var scope: PortSet?
    private var scopeNames: [String]?
    private var ports = PortTable.empty
    private var generation: UInt64 = 0

    /// - Parameters:
    ///   - ports: names of the ports whose frames the filter judges (nil: all ports); frames
    ///     of other ports pass untouched.
    ///   - direction: judge frames entering by those ports (ingress), leaving by them (egress:
    ///     once per destination port, after the pipeline chose the destinations), or both.
    public init(name: String = "filter", rules: [FilterRule], policy: FilterPolicy = .allow, ports: [String]? = nil,
                direction: FilterDirection = .ingress) throws {
        self.name = name
        self.direction = direction
        self.judgesIngress = direction != .egress
        self.rules = rules
        self.policy = policy
        self.scopeNames = ports
        let set = try Self.compile(rules, policy: policy, generation: 0, scope: ports.map { _ in PortSet() },
                                   ports: .empty, counters: RuleCounters(rules: rules.count))
        published = SnapshotPublisher(set)
    }

    // MARK: hot path

    public func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        guard judgesIngress else { return .continue }
        return published.withCurrent { set in
            if let scope = set.scope, !scope.contains(frame.ingress) { return .continue }
            return Self.evaluate(set, &frame, context)
        }
    }

    /// The copy of `frame` about to leave by `port` (egress filters only).
    public func handleEgress(_ frame: inout Frame, to port: PortID, context: HandlerContext) -> Verdict {
        published.withCurrent { set in
            if let scope = set.scope, !scope.contains(port) { return .continue }
            return Self.evaluate(set, &frame, context)
        }
    }

    /// Rules in order, first match wins, then the policy.
    @inline(__always)
    private static func evaluate(_ set: CompiledRuleSet, _ frame: inout Frame, _ context: HandlerContext) -> Verdict {
        let c = set.counters
        let w = context.worker
        let bytes = UnsafeRawBufferPointer(frame.bytes)
        let hot = set.hot
        var i = 0
        while i < hot.count {
            let rule = hot.baseAddress.unsafelyUnwrapped + i
            let matched: Bool
            if let insns = rule.pointee.instructions {
                matched = insns.matches(bytes)
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
                do { kind = .program(try PcapProgram(e)) } catch {
                    throw FilterError.compile(expression: error.expression, message: error.message, position: i)
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
