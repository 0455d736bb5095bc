// FDBEvents: what happens to the learning switch's FDB and ports, as it happens (learn, move,
// age, flush, evict; a port blocked or unblocked by a guard), for `tapbridge fdb monitor`.
//
// Workers and the control thread are producers; the control side is the one consumer. The
// queue is a bounded multi-producer ring of preallocated slots (each a sequence word and two
// payload words, in the manner of Vyukov's bounded queue): a producer claims a position with
// one CAS, writes its two words and publishes the slot by storing its sequence. A full ring
// drops the event and counts it; no producer ever waits or allocates. Events are only
// recorded while someone watches (`watchers > 0`): with nobody draining, the ring stays empty
// and nothing is counted as dropped.
import Atomics
import Frames

/// One FDB or port event.
public struct FDBEvent: Equatable, Sendable {
    public enum Kind: UInt8, Sendable, CaseIterable {
        case learned = 1, moved, aged, flushed, evicted, blocked, unblocked, limited
        public var name: String {
            switch self {
            case .learned: "learn"
            case .moved: "move"
            case .aged: "age"
            case .flushed: "flush"
            case .evicted: "evict"
            case .blocked: "block"
            case .unblocked: "unblock"
            case .limited: "limit"
            }
        }
    }
    public var kind: Kind
    public var mac: MACAddress
    public var vlan: UInt16
    public var port: PortID
    /// A move's previous port; for block/unblock the reason code (`PortGuardReason`).
    public var detail: UInt16
    /// CLOCK_MONOTONIC milliseconds (low 32 bits) when it happened.
    public var milliseconds: UInt32

    public init(kind: Kind, mac: MACAddress = .zero, vlan: UInt16 = 0, port: PortID, detail: UInt16 = 0, milliseconds: UInt32) {
        self.kind = kind; self.mac = mac; self.vlan = vlan; self.port = port; self.detail = detail; self.milliseconds = milliseconds
    }

    @inline(__always) var words: (UInt64, UInt64) {
        (mac.rawValue | UInt64(vlan & 0x0FFF) << 48 | UInt64(kind.rawValue & 0x0F) << 60,
         UInt64(port.rawValue) | UInt64(detail) << 16 | UInt64(milliseconds) << 32)
    }

    init?(words w0: UInt64, _ w1: UInt64) {
        guard let k = Kind(rawValue: UInt8(truncatingIfNeeded: w0 >> 60)) else { return nil }
        self.init(kind: k, mac: MACAddress(rawValue: w0 & 0xFFFF_FFFF_FFFF), vlan: UInt16(truncatingIfNeeded: w0 >> 48) & 0x0FFF,
                  port: PortID(UInt16(truncatingIfNeeded: w1)), detail: UInt16(truncatingIfNeeded: w1 >> 16),
                  milliseconds: UInt32(truncatingIfNeeded: w1 >> 32))
    }
}

/// The bounded one-way event ring (many producers, one consumer at a time).
public final class FDBEventRing: @unchecked Sendable {
    public let capacity: Int
    private let mask: Int
    /// Per slot: sequence, word 0, word 1.
    private let slots: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    private let enqueuePosition = UnsafeAtomic<Int>.create(0)
    private var dequeuePosition = 0
    private let droppedStorage = UnsafeAtomic<UInt64>.create(0)
    private let watchersStorage = UnsafeAtomic<Int>.create(0)

    /// `capacity` is rounded up to a power of two (at least 16).
    public init(capacity: Int = 4096) {
        var n = 16
        while n < capacity { n <<= 1 }
        self.capacity = n
        mask = n - 1
        slots = .allocate(capacity: n * 3)
        slots.initialize(repeating: .init(0), count: n * 3)
        for i in 0..<n { UnsafeAtomic<UInt64>(at: slots + i * 3).store(UInt64(i), ordering: .relaxed) }
    }

    deinit {
        slots.deallocate()
        enqueuePosition.destroy(); droppedStorage.destroy(); watchersStorage.destroy()
    }

    /// Events lost because the ring was full (since it was made).
    public var dropped: UInt64 { droppedStorage.load(ordering: .relaxed) }

    /// Whether anyone is watching (producers skip recording otherwise).
    @inline(__always) public var isWatched: Bool { watchersStorage.load(ordering: .relaxed) > 0 }
    public func addWatcher() { watchersStorage.wrappingIncrement(ordering: .relaxed) }
    public func removeWatcher() { watchersStorage.wrappingDecrement(ordering: .relaxed) }

    @inline(__always) private func sequence(_ i: Int) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: slots + i * 3) }
    @inline(__always) private func word(_ i: Int, _ w: Int) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: slots + i * 3 + 1 + w) }

    /// Records `event` if anyone watches; never blocks, never allocates. Returns false if dropped.
    @discardableResult @inline(__always)
    public func record(_ event: FDBEvent) -> Bool {
        guard isWatched else { return true }
        return push(event)
    }

    /// Appends `event` whether or not anyone watches (tests, the control thread's own events).
    @discardableResult
    public func push(_ event: FDBEvent) -> Bool {
        var pos = enqueuePosition.load(ordering: .relaxed)
        while true {
            let i = pos & mask
            let seq = sequence(i).load(ordering: .acquiring)
            let diff = Int(truncatingIfNeeded: seq) &- pos
            if diff == 0 {
                let (ok, seen) = enqueuePosition.weakCompareExchange(expected: pos, desired: pos &+ 1, ordering: .relaxed)
                if ok {
                    let (w0, w1) = event.words
                    word(i, 0).store(w0, ordering: .relaxed)
                    word(i, 1).store(w1, ordering: .relaxed)
                    sequence(i).store(UInt64(truncatingIfNeeded: pos &+ 1), ordering: .releasing)
                    return true
                }
                pos = seen
            } else if diff < 0 {
                droppedStorage.wrappingIncrement(ordering: .relaxed)   // full
                return false
            } else {
                pos = enqueuePosition.load(ordering: .relaxed)
            }
        }
    }

    /// Takes up to `limit` events in order. One consumer at a time (callers serialise).
    public func drain(limit: Int = .max, _ body: (FDBEvent) -> Void) {
        var taken = 0
        while taken < limit {
            let i = dequeuePosition & mask
            let seq = sequence(i).load(ordering: .acquiring)
            // Not yet published (empty, or a producer between its claim and its store): stop here.
            guard Int(truncatingIfNeeded: seq) == dequeuePosition &+ 1 else { return }
            let w0 = word(i, 0).load(ordering: .relaxed), w1 = word(i, 1).load(ordering: .relaxed)
            sequence(i).store(UInt64(truncatingIfNeeded: dequeuePosition &+ capacity), ordering: .releasing)
            dequeuePosition &+= 1
            taken += 1
            if let e = FDBEvent(words: w0, w1) { body(e) }
        }
    }
}
