// SpanningTreeGate: what the learning switch's hot path needs of the spanning tree, and
// nothing more. (1) Which ports may learn and which may forward: two PortSets in an immutable
// object published through a SnapshotPublisher (read with one atomic load per frame, no lock,
// no ARC), replaced by the control side when a port changes state. (2) The BPDU mailbox: a
// frame for the spanning tree's group address is copied (at most `slotBytes`) into a bounded
// ring of preallocated slots and dropped from the datapath; the control side drains the ring
// (SpanningTreeController). The ring takes a try-lock: a worker never waits — a busy or full
// mailbox drops the BPDU and counts it (the protocol tolerates lost BPDUs: the next hello
// repeats them). While the spanning tree is off (`isActive` false) the gate costs the switch one
// relaxed atomic load per frame.
import Atomics
import Frames

final class SpanningTreePortSets {
    let learning: PortSet
    let forwarding: PortSet
    init(learning: PortSet, forwarding: PortSet) { self.learning = learning; self.forwarding = forwarding }
}

public final class SpanningTreeGate: @unchecked Sendable {
    /// BPDUs the mailbox holds until the control side drains it (a few seconds of hellos from
    /// every port of a large bridge; past it BPDUs are dropped and counted).
    public static let mailboxSlots = 128
    /// Bytes kept of each BPDU frame: the Ethernet header + LLC + the longest BPDU (RST, 36).
    public static let slotBytes = 64

    /// Frames dropped because the spanning tree holds their port out of forwarding.
    public static let blockedReason = DropReason.register("stp-blocked")
    /// BPDUs taken off the datapath for the protocol (counted as drops of their ingress port).
    public static let bpduReason = DropReason.register("bpdu")

    private let active = UnsafeAtomic<Bool>.create(false)
    let sets = SnapshotPublisher(SpanningTreePortSets(learning: PortSet(), forwarding: PortSet()))

    // Mailbox: `lock` guards head/tail and the slots; producers only try it.
    private let lock = UnsafeAtomic<Bool>.create(false)
    private var head = 0, tail = 0
    private let slab: UnsafeMutableRawPointer
    private let slotPort: UnsafeMutablePointer<PortID>
    private let slotLength: UnsafeMutablePointer<Int>
    private let receivedCount = UnsafeAtomic<UInt64>.create(0)
    private let droppedCount = UnsafeAtomic<UInt64>.create(0)

    init() {
        slab = .allocate(byteCount: Self.mailboxSlots * Self.slotBytes, alignment: 64)
        slotPort = .allocate(capacity: Self.mailboxSlots)
        slotPort.initialize(repeating: PortID(0), count: Self.mailboxSlots)
        slotLength = .allocate(capacity: Self.mailboxSlots)
        slotLength.initialize(repeating: 0, count: Self.mailboxSlots)
    }

    deinit {
        slab.deallocate(); slotPort.deallocate(); slotLength.deallocate()
        active.destroy(); lock.destroy(); receivedCount.destroy(); droppedCount.destroy()
    }

    // MARK: hot path

    @inline(__always) var isActive: Bool { active.load(ordering: .relaxed) }

    /// The ports allowed to learn and to forward now.
    @inline(__always) func current() -> (learning: PortSet, forwarding: PortSet) {
        sets.withCurrent { ($0.learning, $0.forwarding) }
    }

    /// Whether `frame` is a BPDU (destination 01:80:C2:00:00:00).
    @inline(__always) static func isBPDU(_ frame: Frame) -> Bool { frame.destination == BPDU.groupAddress }

    /// Copies a BPDU into the mailbox (or drops and counts it). Never waits.
    @inline(__always)
    func post(_ frame: Frame) {
        guard lock.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            droppedCount.wrappingIncrement(ordering: .relaxed)
            return
        }
        if tail - head < Self.mailboxSlots {
            let i = tail % Self.mailboxSlots
            let n = min(frame.length, Self.slotBytes)
            (slab + i * Self.slotBytes).copyMemory(from: UnsafeRawPointer(frame.bytes.baseAddress!), byteCount: n)
            slotPort[i] = frame.ingress
            slotLength[i] = n
            tail += 1
            receivedCount.wrappingIncrement(ordering: .relaxed)
        } else {
            droppedCount.wrappingIncrement(ordering: .relaxed)
        }
        lock.store(false, ordering: .releasing)
    }

    // MARK: control side

    func setActive(_ on: Bool) { active.store(on, ordering: .relaxed) }

    func publish(learning: PortSet, forwarding: PortSet) {
        sets.publish(SpanningTreePortSets(learning: learning, forwarding: forwarding))
    }

    /// Hands every waiting BPDU to `body` (its ingress port and bytes), oldest first.
    func drain(_ body: (PortID, UnsafeRawBufferPointer) -> Void) {
        while !lock.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {}
        // Copy out under the lock (a few KiB at most), decode outside it.
        var waiting: [(PortID, [UInt8])] = []
        while head < tail {
            let i = head % Self.mailboxSlots
            waiting.append((slotPort[i], Array(UnsafeRawBufferPointer(start: slab + i * Self.slotBytes, count: slotLength[i]))))
            head += 1
        }
        lock.store(false, ordering: .releasing)
        for (port, bytes) in waiting { bytes.withUnsafeBytes { body(port, $0) } }
    }

    /// BPDUs taken into the mailbox, and those dropped because it was full or busy.
    public var mailboxCounts: (received: UInt64, dropped: UInt64) {
        (receivedCount.load(ordering: .relaxed), droppedCount.load(ordering: .relaxed))
    }
}
