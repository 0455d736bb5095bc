// MulticastEventRing: the one-way, bounded path from datapath workers (which read IGMP/MLD
// messages) to the control thread (which keeps group memberships). A preallocated ring of
// fixed cells, many producers and one consumer, lock-free (D. Vyukov's bounded queue: each
// cell's sequence number says whose turn it is). A full ring refuses the event and the caller
// counts the drop: a guest flooding reports loses its own reports, nothing grows. A struct of
// raw pointers, so the datapath touches no reference count; `MulticastSnooping` owns and frees
// the memory.
import Atomics
import Frames

/// An event as it crosses the ring: what the parser said, plus where and when.
struct SnoopedEvent: Equatable {
    var event: MulticastEvent
    var port: PortID
    var vlan: UInt16
    /// CLOCK_MONOTONIC ns when the frame was handled.
    var at: UInt64
}

struct MulticastEventRing {
    /// Words per cell: sequence, then the event in five words; padded to a cache line.
    static let cellWords = 8
    let capacity: Int
    private let mask: Int
    private let cells: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// [0]: next enqueue position (producers), [8]: next dequeue position (the consumer):
    /// separate cache lines.
    private let positions: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>

    /// `capacity` is rounded up to a power of two (at least 2).
    init(capacity: Int) {
        var n = 2
        while n < capacity { n <<= 1 }
        self.capacity = n
        mask = n - 1
        cells = .allocate(capacity: n * Self.cellWords)
        cells.initialize(repeating: .init(0), count: n * Self.cellWords)
        for i in 0..<n { UnsafeAtomic<UInt64>(at: cells + i * Self.cellWords).store(UInt64(i), ordering: .relaxed) }
        positions = .allocate(capacity: 16)
        positions.initialize(repeating: .init(0), count: 16)
    }

    /// Frees the memory; no thread may use the ring afterwards.
    func deallocate() {
        cells.deallocate()
        positions.deallocate()
    }

    @inline(__always) private func word(_ cell: Int, _ i: Int) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic<UInt64>(at: cells + cell * Self.cellWords + i)
    }

    /// Any worker: queues `e`; false when the ring is full (the event is dropped).
    @inline(__always)
    func push(_ e: SnoopedEvent) -> Bool {
        let enqueue = UnsafeAtomic<UInt64>(at: positions)
        var pos = enqueue.load(ordering: .relaxed)
        var cell = 0
        while true {
            cell = Int(truncatingIfNeeded: pos) & mask
            let seq = word(cell, 0).load(ordering: .acquiring)
            let diff = Int64(bitPattern: seq &- pos)
            if diff == 0 {
                let (done, current) = enqueue.weakCompareExchange(expected: pos, desired: pos &+ 1, ordering: .relaxed)
                if done { break }
                pos = current
            } else if diff < 0 {
                return false
            } else {
                pos = enqueue.load(ordering: .relaxed)
            }
        }
        let g = e.event.group
        word(cell, 1).store(UInt64(e.event.kind.rawValue) | UInt64(e.port.rawValue) << 8 | UInt64(e.vlan & 0x0FFF) << 24
                            | (g.isIPv6 ? 1 << 40 : 0), ordering: .relaxed)
        word(cell, 2).store(g.high, ordering: .relaxed)
        word(cell, 3).store(g.low, ordering: .relaxed)
        word(cell, 4).store(UInt64(e.event.maxResponseMs), ordering: .relaxed)
        word(cell, 5).store(e.at, ordering: .relaxed)
        word(cell, 0).store(pos &+ 1, ordering: .releasing)
        return true
    }

    /// The consumer (one thread at a time): the oldest event, or nil when empty.
    func pop() -> SnoopedEvent? {
        let dequeue = UnsafeAtomic<UInt64>(at: positions + 8)
        let pos = dequeue.load(ordering: .relaxed)
        let cell = Int(truncatingIfNeeded: pos) & mask
        let seq = word(cell, 0).load(ordering: .acquiring)
        guard seq == pos &+ 1 else { return nil }
        let w1 = word(cell, 1).load(ordering: .relaxed)
        let high = word(cell, 2).load(ordering: .relaxed), low = word(cell, 3).load(ordering: .relaxed)
        let maxResponse = word(cell, 4).load(ordering: .relaxed), at = word(cell, 5).load(ordering: .relaxed)
        word(cell, 0).store(pos &+ UInt64(capacity), ordering: .releasing)
        dequeue.store(pos &+ 1, ordering: .relaxed)
        let group = w1 >> 40 & 1 != 0 ? MulticastGroup(ipv6High: high, low: low) : MulticastGroup(ipv4: UInt32(truncatingIfNeeded: low))
        let kind = MulticastEvent.Kind(rawValue: UInt8(truncatingIfNeeded: w1)) ?? .join
        return SnoopedEvent(event: MulticastEvent(kind, group, maxResponseMs: UInt32(truncatingIfNeeded: maxResponse)),
                            port: PortID(UInt16(truncatingIfNeeded: w1 >> 8)), vlan: UInt16(truncatingIfNeeded: w1 >> 24) & 0x0FFF,
                            at: at)
    }
}
