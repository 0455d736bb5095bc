// MulticastGroupTable: the datapath's view of the multicast database — for each (VLAN, group)
// the ports with listeners — and the router ports of each family. Preallocated at start
// (`capacity` groups, twice as many slots), never grown: a join past the bound is refused and
// counted by the caller.
//
// Concurrency argument. The control thread is the only writer (it applies the events the
// workers queued); workers only read. A slot is eight atomic words on one cache line: key
// (valid | IPv6 | VLAN << 48 | a 48-bit fold of the address), the address (high, low) and the
// member set (four words, one per 64 ports). The writer fills the address and members first
// and stores the key last (release); deleting stores 0 into the key first. A reader matches
// the key, compares the full address, reads the members and loads the key again: if it
// changed, the slot was deleted or reused meanwhile and the reader treats the group as
// unknown (the frame floods or goes to the router ports: correct, only less narrow). A member
// set changing under a reader gives it either word's old or new value, each a set the group
// had a moment ago. Lookups scan a fixed window of 8 slots and never stop at an empty one, so
// deletion leaves no tombstones. A struct of raw pointers: no reference counting per frame.
import Atomics
import Frames

struct MulticastGroupTable {
    static let window = 8
    static let slotWords = 8
    static let validKey: UInt64 = 1 << 63
    static let ipv6Key: UInt64 = 1 << 62

    /// Most groups (VLAN, group pairs) it holds.
    let capacity: Int
    let slots: Int
    private let mask: Int
    private let words: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// Router ports: IPv4 set in words 0-3, IPv6 set in words 8-11 (separate cache lines).
    private let routerWords: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>

    init(capacity: Int) {
        precondition(capacity > 0, "multicast group table capacity must be positive")
        self.capacity = capacity
        var n = Self.window
        while n < capacity * 2 { n <<= 1 }
        slots = n
        mask = n - 1
        words = .allocate(capacity: n * Self.slotWords)
        words.initialize(repeating: .init(0), count: n * Self.slotWords)
        routerWords = .allocate(capacity: 16)
        routerWords.initialize(repeating: .init(0), count: 16)
    }

    func deallocate() {
        words.deallocate()
        routerWords.deallocate()
    }

    @inline(__always) private func word(_ slot: Int, _ i: Int) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic<UInt64>(at: words + slot * Self.slotWords + i)
    }

    @inline(__always) static func key(_ g: MulticastGroup, vlan: UInt16) -> UInt64 {
        var fold = g.low
        if g.isIPv6 {
            let m = (g.high &* 0x9E37_79B9_7F4A_7C15) ^ g.low
            fold = m ^ (m >> 29)
        }
        return validKey | (g.isIPv6 ? ipv6Key : 0) | UInt64(vlan & 0x0FFF) << 48 | (fold & 0xFFFF_FFFF_FFFF)
    }

    @inline(__always) private func home(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 40) & mask
    }

    // MARK: workers (readers)

    /// The ports with listeners for `group` in `vlan`; nil if the group is not registered.
    @inline(__always)
    func members(_ group: MulticastGroup, vlan: UInt16) -> PortSet? {
        let k = Self.key(group, vlan: vlan)
        var i = home(k)
        for _ in 0..<Self.window {
            if word(i, 0).load(ordering: .acquiring) == k
                && word(i, 1).load(ordering: .relaxed) == group.high && word(i, 2).load(ordering: .relaxed) == group.low {
                let m0 = word(i, 3).load(ordering: .relaxed), m1 = word(i, 4).load(ordering: .relaxed)
                let m2 = word(i, 5).load(ordering: .relaxed), m3 = word(i, 6).load(ordering: .relaxed)
                guard word(i, 0).load(ordering: .acquiring) == k else { return nil }
                return Self.bits(m0, m1, m2, m3)
            }
            i = (i + 1) & mask
        }
        return nil
    }

    /// The router ports of a family.
    @inline(__always)
    func routers(ipv6: Bool) -> PortSet {
        let base = ipv6 ? 8 : 0
        return Self.bits(UnsafeAtomic<UInt64>(at: routerWords + base).load(ordering: .relaxed),
                         UnsafeAtomic<UInt64>(at: routerWords + base + 1).load(ordering: .relaxed),
                         UnsafeAtomic<UInt64>(at: routerWords + base + 2).load(ordering: .relaxed),
                         UnsafeAtomic<UInt64>(at: routerWords + base + 3).load(ordering: .relaxed))
    }

    @inline(__always) static func bits(_ w0: UInt64, _ w1: UInt64, _ w2: UInt64, _ w3: UInt64) -> PortSet {
        var s = PortSet()
        var b = w0
        while b != 0 { s.insert(PortID(UInt16(b.trailingZeroBitCount))); b &= b &- 1 }
        b = w1
        while b != 0 { s.insert(PortID(UInt16(64 + b.trailingZeroBitCount))); b &= b &- 1 }
        b = w2
        while b != 0 { s.insert(PortID(UInt16(128 + b.trailingZeroBitCount))); b &= b &- 1 }
        b = w3
        while b != 0 { s.insert(PortID(UInt16(192 + b.trailingZeroBitCount))); b &= b &- 1 }
        return s
    }

    static func words(_ s: PortSet) -> (UInt64, UInt64, UInt64, UInt64) {
        var w: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        for p in s {
            let bit = UInt64(1) << UInt64(p.rawValue & 63)
            switch p.rawValue >> 6 {
            case 0: w.0 |= bit
            case 1: w.1 |= bit
            case 2: w.2 |= bit
            default: w.3 |= bit
            }
        }
        return w
    }

    // MARK: control thread (the one writer)

    /// Sets the member set of `group` in `vlan`, inserting the group if new. False if there is
    /// no room (every slot of its window taken): the caller counts the refusal.
    func set(_ group: MulticastGroup, vlan: UInt16, members: PortSet) -> Bool {
        let k = Self.key(group, vlan: vlan)
        let w = Self.words(members)
        var i = home(k)
        var empty = -1
        for _ in 0..<Self.window {
            let key = word(i, 0).load(ordering: .relaxed)
            if key == k && word(i, 1).load(ordering: .relaxed) == group.high && word(i, 2).load(ordering: .relaxed) == group.low {
                storeMembers(i, w)
                return true
            }
            if key == 0 && empty < 0 { empty = i }
            i = (i + 1) & mask
        }
        guard empty >= 0 else { return false }
        word(empty, 1).store(group.high, ordering: .relaxed)
        word(empty, 2).store(group.low, ordering: .relaxed)
        storeMembers(empty, w)
        word(empty, 0).store(k, ordering: .releasing)
        return true
    }

    private func storeMembers(_ i: Int, _ w: (UInt64, UInt64, UInt64, UInt64)) {
        word(i, 3).store(w.0, ordering: .releasing)
        word(i, 4).store(w.1, ordering: .releasing)
        word(i, 5).store(w.2, ordering: .releasing)
        word(i, 6).store(w.3, ordering: .releasing)
    }

    /// Removes `group` in `vlan` (it becomes unregistered).
    func remove(_ group: MulticastGroup, vlan: UInt16) {
        let k = Self.key(group, vlan: vlan)
        var i = home(k)
        for _ in 0..<Self.window {
            if word(i, 0).load(ordering: .relaxed) == k && word(i, 1).load(ordering: .relaxed) == group.high
                && word(i, 2).load(ordering: .relaxed) == group.low {
                word(i, 0).store(0, ordering: .releasing)
                storeMembers(i, (0, 0, 0, 0))
            }
            i = (i + 1) & mask
        }
    }

    /// Whether the window of `group` in `vlan` has a free slot or holds it already.
    func hasRoom(_ group: MulticastGroup, vlan: UInt16) -> Bool {
        let k = Self.key(group, vlan: vlan)
        var i = home(k)
        for _ in 0..<Self.window {
            let key = word(i, 0).load(ordering: .relaxed)
            if key == 0 || key == k { return true }
            i = (i + 1) & mask
        }
        return false
    }

    func setRouters(_ s: PortSet, ipv6: Bool) {
        let w = Self.words(s)
        let base = ipv6 ? 8 : 0
        UnsafeAtomic<UInt64>(at: routerWords + base).store(w.0, ordering: .relaxed)
        UnsafeAtomic<UInt64>(at: routerWords + base + 1).store(w.1, ordering: .relaxed)
        UnsafeAtomic<UInt64>(at: routerWords + base + 2).store(w.2, ordering: .relaxed)
        UnsafeAtomic<UInt64>(at: routerWords + base + 3).store(w.3, ordering: .relaxed)
    }
}
