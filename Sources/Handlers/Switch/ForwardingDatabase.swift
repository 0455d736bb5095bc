// ForwardingDatabase: the learning switch's MAC table. A preallocated open-addressing table of
// atomic 64-bit words, shared by every worker thread without locks.
//
// Concurrency argument. Each slot is two words: `key` (valid bit | VLAN << 48 | MAC) and
// `value` (ms timestamp << 32 | flags | port). A slot is claimed by CAS on its key (0 -> key),
// so two writers never own the same slot; the value is then stored. A reader that sees a key
// before its value is complete sees a value without the valid flag and treats the entry as
// absent (the frame floods: correct, only less efficient). Lookups scan a fixed window of
// `window` slots and never stop at an empty one, so deleting is just storing 0 into the key:
// no tombstones, no probe chains to repair. Two workers learning the same new MAC at once may
// claim two slots; lookups take the first, the other ages out. The entry count is kept with
// relaxed atomics and may be off by the number of racing writers, never unbounded: inserting
// past `capacity` always evicts first. Work per frame is bounded by `window`.
//
// Static entries have their own bound (`staticCapacity`) and their own count, kept by the
// control thread (the only writer of static entries). Learned entries are bounded by
// `capacity` whatever the static ones number, so however many static entries the control
// socket asks for, learning keeps its room and the table never holds more than
// `capacity + staticCapacity` (at most half of `capacity` in the configuration: the slots,
// twice `capacity`, then stay at most three-quarters full).
import Atomics
import Frames

/// One row of the table, as the control plane reads it.
public struct FDBEntry: Equatable, Sendable {
    public var mac: MACAddress
    /// 0 on VLAN-unaware ports.
    public var vlan: UInt16
    public var port: PortID
    /// Seconds since the entry was last refreshed (0 for static entries).
    public var age: Double
    public var isStatic: Bool
}

final class ForwardingDatabase: @unchecked Sendable {
    static let window = 8
    static let validKey: UInt64 = 1 << 63
    static let validValue: UInt64 = 1 << 17
    static let staticFlag: UInt64 = 1 << 16

    /// Most learned entries.
    let capacity: Int
    /// Most static entries (counted apart: static entries never take learned entries' room).
    let staticCapacity: Int
    let agingMilliseconds: UInt32
    private let mask: Int
    private let keys: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    private let values: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    private let slots: Int
    /// Learned entries (workers and control thread).
    private let countStorage = UnsafeAtomic<Int>.create(0)
    /// Static entries: written by the control thread only.
    private let staticCountStorage = UnsafeAtomic<Int>.create(0)

    init(capacity: Int, staticCapacity: Int = 0, agingSeconds: Double) {
        precondition(capacity > 0, "FDB capacity must be positive")
        precondition(staticCapacity >= 0, "FDB static capacity must not be negative")
        self.capacity = capacity
        self.staticCapacity = staticCapacity
        agingMilliseconds = UInt32(clamping: Int((agingSeconds * 1000).rounded()))
        var n = ForwardingDatabase.window
        let total = capacity + staticCapacity
        while n < max(capacity * 2, total + total / 3) { n <<= 1 }
        slots = n
        mask = n - 1
        keys = .allocate(capacity: n)
        keys.initialize(repeating: .init(0), count: n)
        values = .allocate(capacity: n)
        values.initialize(repeating: .init(0), count: n)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
        countStorage.destroy()
        staticCountStorage.destroy()
    }

    /// Entries of both kinds.
    var count: Int { learnedCount + staticCount }
    var learnedCount: Int { max(0, countStorage.load(ordering: .relaxed)) }
    var staticCount: Int { max(0, staticCountStorage.load(ordering: .relaxed)) }

    @inline(__always) static func key(_ mac: MACAddress, vlan: UInt16) -> UInt64 {
        validKey | UInt64(vlan & 0x0FFF) << 48 | mac.rawValue
    }

    @inline(__always) static func milliseconds(_ ns: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: ns / 1_000_000) }

    @inline(__always) private func home(_ key: UInt64) -> Int {
        // Fibonacci hashing: spreads MACs that differ only in their last octet.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 40) & mask
    }

    @inline(__always) private func loadKey(_ i: Int) -> UInt64 {
        UnsafeAtomic<UInt64>(at: keys + i).load(ordering: .acquiring)
    }
    @inline(__always) private func loadValue(_ i: Int) -> UInt64 {
        UnsafeAtomic<UInt64>(at: values + i).load(ordering: .acquiring)
    }
    @inline(__always) private func storeValue(_ i: Int, _ v: UInt64) {
        UnsafeAtomic<UInt64>(at: values + i).store(v, ordering: .releasing)
    }
    @inline(__always) private func casKey(_ i: Int, _ expected: UInt64, _ new: UInt64) -> Bool {
        UnsafeAtomic<UInt64>(at: keys + i).compareExchange(expected: expected, desired: new, ordering: .acquiringAndReleasing).exchanged
    }

    @inline(__always) private func isExpired(_ value: UInt64, nowMs: UInt32) -> Bool {
        guard value & Self.staticFlag == 0 else { return false }
        return nowMs &- UInt32(truncatingIfNeeded: value >> 32) > agingMilliseconds
    }

    @inline(__always) private static func value(port: PortID, nowMs: UInt32, isStatic: Bool) -> UInt64 {
        UInt64(nowMs) << 32 | validValue | (isStatic ? staticFlag : 0) | UInt64(port.rawValue)
    }

    /// The port `mac` was last seen on in `vlan`, if known and not aged out.
    @inline(__always)
    func lookup(_ mac: MACAddress, vlan: UInt16, now: UInt64) -> PortID? {
        let k = Self.key(mac, vlan: vlan)
        var i = home(k)
        let nowMs = Self.milliseconds(now)
        for _ in 0..<Self.window {
            if loadKey(i) == k {
                let v = loadValue(i)
                if v & Self.validValue != 0 && !isExpired(v, nowMs: nowMs) {
                    return PortID(UInt16(truncatingIfNeeded: v))
                }
            }
            i = (i + 1) & mask
        }
        return nil
    }

    enum LearnOutcome: Equatable {
        case refreshed, learned, evicted, stuckOnStatic, full
        /// The MAC was on another port (`from`) and now is on this one.
        case moved(from: PortID)
        /// `allowNew` was false and the MAC is not already on this port (a port's MAC limit).
        case refused
    }

    /// Records that `mac` in `vlan` lives behind `port`. Bounded work: one window scan.
    /// `allowNew: false` only refreshes an entry already on `port` (a port at its MAC limit
    /// neither learns a new MAC nor takes one over from another port).
    @inline(__always)
    func learn(_ mac: MACAddress, vlan: UInt16, port: PortID, now: UInt64, allowNew: Bool = true) -> LearnOutcome {
        let k = Self.key(mac, vlan: vlan)
        let start = home(k)
        let nowMs = Self.milliseconds(now)
        var i = start
        var empty = -1
        var oldest = -1
        var oldestAge: UInt32 = 0
        for _ in 0..<Self.window {
            let key = loadKey(i)
            if key == k {
                let v = loadValue(i)
                if v & Self.staticFlag != 0 { return .stuckOnStatic }
                let samePort = UInt16(truncatingIfNeeded: v) == port.rawValue && v & Self.validValue != 0
                // Refresh at most every 250 ms: fewer writes to a line other workers read.
                if samePort && nowMs &- UInt32(truncatingIfNeeded: v >> 32) < 250 { return .refreshed }
                if !samePort && !allowNew { return .refused }
                storeValue(i, Self.value(port: port, nowMs: nowMs, isStatic: false))
                return samePort ? .refreshed : .moved(from: PortID(UInt16(truncatingIfNeeded: v)))
            }
            if key == 0 {
                if empty < 0 { empty = i }
            } else {
                let v = loadValue(i)
                if v & Self.staticFlag == 0 {
                    let age = nowMs &- UInt32(truncatingIfNeeded: v >> 32)
                    if oldest < 0 || age > oldestAge { oldest = i; oldestAge = age }
                }
            }
            i = (i + 1) & mask
        }
        guard allowNew else { return .refused }
        let newValue = Self.value(port: port, nowMs: nowMs, isStatic: false)
        if empty >= 0 && learnedCount < capacity {
            if casKey(empty, 0, k) {
                storeValue(empty, newValue)
                countStorage.wrappingIncrement(ordering: .relaxed)
                return .learned
            }
        }
        // Table (or this window) full: replace the oldest learned entry in the window.
        guard oldest >= 0 else { return empty >= 0 ? .full : .stuckOnStatic }
        let victim = loadKey(oldest)
        guard victim != 0, casKey(oldest, victim, k) else { return .full }
        storeValue(oldest, newValue)
        return oldestAge > agingMilliseconds ? .learned : .evicted
    }

    enum StaticOutcome: Equatable { case installed, limitReached, windowFull }

    /// Pins `mac` in `vlan` to `port`: never aged, never moved by learning. Refused past
    /// `staticCapacity` static entries (replacing an existing entry for the same key is not
    /// an addition), or when every slot of the key's window already holds a static entry.
    /// Control thread only.
    @discardableResult
    func setStatic(_ mac: MACAddress, vlan: UInt16, port: PortID) -> StaticOutcome {
        let k = Self.key(mac, vlan: vlan)
        remove(mac, vlan: vlan)
        guard staticCount < staticCapacity else { return .limitReached }
        var i = home(k)
        var oldest = -1, oldestAge: UInt32 = 0
        let nowMs: UInt32 = 0
        let staticValue = Self.value(port: port, nowMs: nowMs, isStatic: true)
        for _ in 0..<Self.window {
            let key = loadKey(i)
            if key == 0, casKey(i, 0, k) {
                storeValue(i, staticValue)
                staticCountStorage.wrappingIncrement(ordering: .relaxed)
                return .installed
            }
            let v = loadValue(i)
            if key != 0 && v & Self.staticFlag == 0 {
                let age = UInt32.max &- UInt32(truncatingIfNeeded: v >> 32)
                if oldest < 0 || age > oldestAge { oldest = i; oldestAge = age }
            }
            i = (i + 1) & mask
        }
        // Window full: a static entry outranks the oldest learned entry in it.
        if oldest >= 0 {
            let victim = loadKey(oldest)
            if victim != 0, casKey(oldest, victim, k) {
                storeValue(oldest, staticValue)
                countStorage.wrappingDecrement(ordering: .relaxed)
                staticCountStorage.wrappingIncrement(ordering: .relaxed)
                return .installed
            }
        }
        return .windowFull
    }

    /// Removes `mac` in `vlan` (learned or static).
    @discardableResult
    func remove(_ mac: MACAddress, vlan: UInt16) -> Bool {
        let k = Self.key(mac, vlan: vlan)
        var i = home(k)
        var removed = false
        for _ in 0..<Self.window {
            if loadKey(i) == k {
                let wasStatic = loadValue(i) & Self.staticFlag != 0
                if casKey(i, k, 0) {
                    (wasStatic ? staticCountStorage : countStorage).wrappingDecrement(ordering: .relaxed)
                    removed = true
                }
            }
            i = (i + 1) & mask
        }
        return removed
    }

    /// Clears every entry matching `predicate(key, value)`; returns how many, telling
    /// `removed` (if any) about each. Control thread only.
    private func sweep(removed: ((FDBEntry) -> Void)? = nil, _ predicate: (UInt64, UInt64) -> Bool) -> Int {
        var n = 0
        for i in 0..<slots {
            let k = loadKey(i)
            guard k != 0 else { continue }
            let v = loadValue(i)
            if v & Self.validValue != 0 && predicate(k, v) && casKey(i, k, 0) {
                (v & Self.staticFlag != 0 ? staticCountStorage : countStorage).wrappingDecrement(ordering: .relaxed)
                n += 1
                removed?(Self.entry(key: k, value: v, age: 0))
            }
        }
        return n
    }

    private func sweep(_ predicate: (UInt64) -> Bool) -> Int { sweep { _, v in predicate(v) } }

    static func entry(key k: UInt64, value v: UInt64, age: Double) -> FDBEntry {
        FDBEntry(mac: MACAddress(rawValue: k & 0xFFFF_FFFF_FFFF), vlan: UInt16(truncatingIfNeeded: k >> 48) & 0x0FFF,
                 port: PortID(UInt16(truncatingIfNeeded: v)), age: age, isStatic: v & staticFlag != 0)
    }

    /// Drops learned entries older than the aging time (`removed` hears of each).
    func expire(now: UInt64, removed: ((FDBEntry) -> Void)? = nil) -> Int {
        let nowMs = Self.milliseconds(now)
        return sweep(removed: removed) { _, v in self.isExpired(v, nowMs: nowMs) }
    }

    /// Drops the entries on `port` (nil: any) in `vlan` (nil: any); learned ones only when
    /// `dynamicOnly`. `removed` hears of each. Control thread only.
    func flush(port: PortID?, vlan: UInt16?, dynamicOnly: Bool, removed: ((FDBEntry) -> Void)? = nil) -> Int {
        sweep(removed: removed) { k, v in
            (port == nil || UInt16(truncatingIfNeeded: v) == port!.rawValue)
                && (vlan == nil || UInt16(truncatingIfNeeded: k >> 48) & 0x0FFF == vlan!)
                && (!dynamicOnly || v & Self.staticFlag == 0)
        }
    }

    /// Live learned entries per port, written into `counts` (PortSet.capacity long). Control thread.
    func learnedPerPort(into counts: UnsafeMutablePointer<Int>, now: UInt64) {
        counts.update(repeating: 0, count: PortSet.capacity)
        let nowMs = Self.milliseconds(now)
        for i in 0..<slots where loadKey(i) != 0 {
            let v = loadValue(i)
            guard v & Self.validValue != 0, v & Self.staticFlag == 0, !isExpired(v, nowMs: nowMs) else { continue }
            let p = Int(UInt16(truncatingIfNeeded: v))
            if p < PortSet.capacity { counts[p] += 1 }
        }
    }

    /// Drops learned entries pointing at ports not in `members` (a port went away).
    func flush(notIn members: PortSet) -> Int {
        sweep { v in v & Self.staticFlag == 0 && !members.contains(PortID(UInt16(truncatingIfNeeded: v))) }
    }

    /// Drops every static entry.
    /// Drops learned entries of `port` (nil: every port) not refreshed within `olderThanMs`
    /// (nil: all of them): the spanning tree's flushes and fast aging. Control thread only.
    func flushLearned(port: PortID?, olderThanMs: UInt32?, now: UInt64) -> Int {
        let nowMs = Self.milliseconds(now)
        return sweep { v in
            v & Self.staticFlag == 0 && (port.map { UInt16(truncatingIfNeeded: v) == $0.rawValue } ?? true)
                && (olderThanMs.map { nowMs &- UInt32(truncatingIfNeeded: v >> 32) > $0 } ?? true)
        }
    }

    func removeAllStatic() -> Int { sweep { $0 & Self.staticFlag != 0 } }

    func entries(now: UInt64) -> [FDBEntry] {
        let nowMs = Self.milliseconds(now)
        var out: [FDBEntry] = []
        for i in 0..<slots {
            let k = loadKey(i)
            guard k != 0 else { continue }
            let v = loadValue(i)
            guard v & Self.validValue != 0, !isExpired(v, nowMs: nowMs) else { continue }
            let isStatic = v & Self.staticFlag != 0
            out.append(FDBEntry(mac: MACAddress(rawValue: k & 0xFFFF_FFFF_FFFF),
                                vlan: UInt16(truncatingIfNeeded: k >> 48) & 0x0FFF,
                                port: PortID(UInt16(truncatingIfNeeded: v)),
                                age: isStatic ? 0 : Double(nowMs &- UInt32(truncatingIfNeeded: v >> 32)) / 1000,
                                isStatic: isStatic))
        }
        return out.sorted { ($0.vlan, $0.mac) < ($1.vlan, $1.mac) }
    }
}
