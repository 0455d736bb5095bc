// PortGuards: the learning switch's per-port guard settings (MAC limit, flood switches, storm
// control) and loop guard settings, the snapshot of them the hot path reads (`PortGuardFacts`,
// plain pointers and bitsets inside SwitchPorts), and the dynamic state the guards share
// between workers (`PortGuardState`: blocked ports, MAC counts, move rates, echo table,
// counters). The checks themselves live in PortSecurity.swift, FloodControl.swift and
// LoopGuard.swift. A switch with no guard configured tests one flag per frame.
import Atomics
import Frames

extension LearningSwitch {
    /// Per-port guard settings (`[[bridges.ports]]` keys `max-macs`, `flood`, ...; docs/switch.md).
    public struct PortPolicy: Sendable, Equatable {
        public enum LimitAction: String, Sendable, CaseIterable { case drop, block }
        /// Most MACs learned on the port; 0: no limit.
        public var maxMACs = 0
        /// Past `maxMACs`: drop frames from new MACs (and count), or block the port for the back-off.
        public var limitAction = LimitAction.drop
        /// Unknown unicast, multicast and broadcast floods go out of this port (Linux bridge
        /// `flood`, `mcast_flood`, `bcast_flood`).
        public var flood = true, multicastFlood = true, broadcastFlood = true
        /// Storm control: most broadcast / multicast frames per second accepted from the port (0: no limit).
        public var stormBroadcast: Double = 0, stormMulticast: Double = 0
        public init() {}
        public var isDefault: Bool { self == PortPolicy() }
    }

    /// The loop guard (independent of STP): a MAC moving onto a port more than `movesPerSecond`
    /// times in a second, or a broadcast/multicast frame the switch flooded coming back in
    /// through another port, blocks that port for the back-off.
    public struct LoopGuardSettings: Sendable, Equatable {
        public var enabled = false
        public var movesPerSecond = 10
        /// Whether flooded frames seen again on another port within `echoMilliseconds` count as a loop.
        public var echo = true
        public var echoMilliseconds = 500
        public init(enabled: Bool = false, movesPerSecond: Int = 10, echo: Bool = true) {
            self.enabled = enabled; self.movesPerSecond = movesPerSecond; self.echo = echo
        }
    }
}

/// Why a guard blocked a port (the `detail` of block/unblock events).
public enum PortGuardReason: UInt16, Sendable {
    case none = 0, macMoves = 1, echo = 2, macLimit = 3
    public var name: String {
        switch self {
        case .none: "none"
        case .macMoves: "loop guard: MAC moving between ports"
        case .echo: "loop guard: flooded frame came back"
        case .macLimit: "MAC limit"
        }
    }
}

extension DropReason {
    /// Ingress or egress port blocked by the loop guard or a MAC limit.
    public static let portBlocked = DropReason.register("port-blocked")
    /// A new source MAC past its port's `max-macs`.
    public static let macLimit = DropReason.register("mac-limit")
}

/// Owner of one snapshot's guard arrays (kept alive by the SwitchPorts that holds its facts).
final class PortGuardStorage {
    let facts: PortGuardFacts
    private let buckets: [TokenBucket]

    init(_ table: PortTable, policies: [String: LearningSwitch.PortPolicy], loopGuard: LearningSwitch.LoopGuardSettings) {
        var f = PortGuardFacts()
        var buckets: [TokenBucket] = []
        f.maxMACs = .allocate(capacity: PortSet.capacity)
        f.maxMACs.initialize(repeating: 0, count: PortSet.capacity)
        f.storm = .allocate(capacity: PortSet.capacity * 2)
        f.storm.initialize(repeating: nil, count: PortSet.capacity * 2)
        f.loopGuard = loopGuard.enabled
        f.movesPerSecond = UInt32(clamping: max(1, loopGuard.movesPerSecond))
        f.echo = loopGuard.enabled && loopGuard.echo
        f.echoMilliseconds = UInt32(clamping: max(1, loopGuard.echoMilliseconds))
        var any = loopGuard.enabled
        for p in table.ports where Int(p.id.rawValue) < PortSet.capacity {
            guard let pol = policies[p.name], !pol.isDefault else { continue }
            any = true
            let i = Int(p.id.rawValue)
            f.maxMACs[i] = UInt32(clamping: max(0, pol.maxMACs))
            if pol.maxMACs > 0 { f.anyMACLimit = true }
            if pol.limitAction == .block { f.blockOnLimit.insert(p.id) }
            if !pol.flood { f.noFlood.insert(p.id) }
            if !pol.multicastFlood { f.noMulticastFlood.insert(p.id) }
            if !pol.broadcastFlood { f.noBroadcastFlood.insert(p.id) }
            for (j, rate) in [pol.stormBroadcast, pol.stormMulticast].enumerated() where rate > 0 {
                let b = TokenBucket(.packetsPerSecond(rate))
                buckets.append(b)
                f.storm[j * PortSet.capacity + i] = Unmanaged.passUnretained(b)
                f.stormPorts.insert(p.id)
            }
        }
        f.active = any
        facts = f
        self.buckets = buckets
    }

    deinit {
        facts.maxMACs.deallocate()
        facts.storm.deallocate()
    }
}

/// What the hot path reads about the guards: plain values and pointers (no reference counting).
struct PortGuardFacts {
    /// Any guard configured: when false the switch skips every guard check.
    var active = false
    var maxMACs: UnsafeMutablePointer<UInt32> = UnsafeMutablePointer(bitPattern: 8)!
    /// Some port has `max-macs` (the sweep recounts MACs per port only then).
    var anyMACLimit = false
    var blockOnLimit = PortSet()
    var noFlood = PortSet(), noMulticastFlood = PortSet(), noBroadcastFlood = PortSet()
    /// Broadcast buckets at [port], multicast at [capacity + port]; nil: unlimited.
    var storm: UnsafeMutablePointer<Unmanaged<TokenBucket>?> = UnsafeMutablePointer(bitPattern: 8)!
    var stormPorts = PortSet()
    var loopGuard = false
    var movesPerSecond: UInt32 = 10
    var echo = false
    var echoMilliseconds: UInt32 = 500
}

/// The guards' shared dynamic state: written by workers (blocking, counting) and the control
/// thread (unblocking, recounting). Atomics in preallocated storage; nothing allocates.
final class PortGuardState: @unchecked Sendable {
    static let ports = PortSet.capacity
    static let echoSlots = 1024

    /// Blocked ports as four 64-bit words.
    private let blockedWords: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// Per port: when blocked (ns; 0: not), why (PortGuardReason), the MAC that gave it away.
    let blockedAt: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    let blockReason: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    let blockMAC: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// Per port: learned MACs (an upper bound between recounts; see PortSecurity.swift).
    let macCount: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// Per port: moves onto it in the current one-second window (window start ms << 32 | count).
    let moves: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// Recently flooded frames: hash high bits << 32 | ingress port << 24 | ms (24 bits).
    let echoTable: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// When the loop guard last blocked a port (ns; 0: never).
    let lastLoopBlock: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    let counters = GuardCounters()
    let events = FDBEventRing()

    init() {
        func atomics(_ n: Int) -> UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage> {
            let p = UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>.allocate(capacity: n)
            p.initialize(repeating: .init(0), count: n)
            return p
        }
        // Register the drop reasons now, not on a worker's first drop (registering allocates).
        _ = DropReason.portBlocked
        _ = DropReason.macLimit
        blockedWords = atomics(4)
        blockedAt = atomics(Self.ports)
        blockReason = atomics(Self.ports)
        blockMAC = atomics(Self.ports)
        moves = atomics(Self.ports)
        echoTable = atomics(Self.echoSlots)
        lastLoopBlock = atomics(1)
        macCount = atomics(Self.ports)
    }

    deinit {
        blockedWords.deallocate(); blockedAt.deallocate(); blockReason.deallocate(); blockMAC.deallocate()
        moves.deallocate(); echoTable.deallocate(); macCount.deallocate(); lastLoopBlock.deallocate()
    }

    @inline(__always) func word(_ i: Int) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: blockedWords + i) }
    @inline(__always) func at(_ p: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>, _ port: PortID) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: p + Int(port.rawValue & 0xFF))
    }

    @inline(__always) func isBlocked(_ port: PortID) -> Bool {
        word(Int(port.rawValue >> 6) & 3).load(ordering: .relaxed) & (1 << UInt64(port.rawValue & 63)) != 0
    }

    /// Blocked ports as a set (four loads).
    @inline(__always) var blocked: PortSet {
        var s = PortSet()
        for w in 0..<4 {
            var bits = word(w).load(ordering: .relaxed)
            while bits != 0 {
                s.insert(PortID(UInt16(w * 64 + bits.trailingZeroBitCount)))
                bits &= bits - 1
            }
        }
        return s
    }

    /// Blocks `port` (datapath or control thread); returns whether it was not blocked before.
    @discardableResult
    func block(_ port: PortID, reason: PortGuardReason, mac: MACAddress, vlan: UInt16, now: UInt64) -> Bool {
        let bit: UInt64 = 1 << UInt64(port.rawValue & 63)
        let before = word(Int(port.rawValue >> 6) & 3).loadThenBitwiseOr(with: bit, ordering: .acquiringAndReleasing)
        guard before & bit == 0 else { return false }
        at(blockReason, port).store(UInt64(reason.rawValue), ordering: .relaxed)
        at(blockMAC, port).store(mac.rawValue | UInt64(vlan) << 48, ordering: .relaxed)
        at(blockedAt, port).store(max(1, now), ordering: .releasing)
        events.record(FDBEvent(kind: .blocked, mac: mac, vlan: vlan, port: port, detail: reason.rawValue,
                               milliseconds: ForwardingDatabase.milliseconds(now)))
        return true
    }

    /// Unblocks `port` (control thread); returns whether it was blocked.
    @discardableResult
    func unblock(_ port: PortID, now: UInt64) -> Bool {
        let bit: UInt64 = 1 << UInt64(port.rawValue & 63)
        let reason = at(blockReason, port).load(ordering: .relaxed)
        at(blockedAt, port).store(0, ordering: .relaxed)
        at(moves, port).store(0, ordering: .relaxed)
        let before = word(Int(port.rawValue >> 6) & 3).loadThenBitwiseAnd(with: ~bit, ordering: .acquiringAndReleasing)
        guard before & bit != 0 else { return false }
        events.record(FDBEvent(kind: .unblocked, port: port, detail: UInt16(truncatingIfNeeded: reason),
                               milliseconds: ForwardingDatabase.milliseconds(now)))
        return true
    }
}

/// The guards' counters, one cache-line-padded row per worker (CounterRows, like SwitchCounters).
typealias GuardCounters = CounterRows<GuardCounterEvent>

enum GuardCounterEvent: Int, CounterRowEvent {
    /// Eight events: a row is one cache line.
    static var rowStride: Int { 8 }
    case blockedDrops, macLimitDrops, stormBroadcastDrops, stormMulticastDrops
    case loopMoveBlocks, loopEchoBlocks, macLimitBlocks, unblocks
    var name: String {
        switch self {
        case .blockedDrops: "guard_blocked_port_drops"
        case .macLimitDrops: "guard_mac_limit_drops"
        case .stormBroadcastDrops: "guard_storm_broadcast_drops"
        case .stormMulticastDrops: "guard_storm_multicast_drops"
        case .loopMoveBlocks: "guard_loop_move_blocks"
        case .loopEchoBlocks: "guard_loop_echo_blocks"
        case .macLimitBlocks: "guard_mac_limit_blocks"
        case .unblocks: "guard_unblocks"
        }
    }
}
