// Handoff: a bounded one-way ring between two workers (Snabb-style link) for frames whose
// destination is a single-descriptor port another worker owns (a VM stream socket: only its
// owner may write, or framing would interleave). A full ring drops and counts.
import Frames
import VirtioNet
import Synchronization

struct HandoffEntry {
    var bridge: Int32 = 0
    var port = PortID(0)
    var vlan: UInt16 = 0
    var asIs = false
    var length: Int32 = 0
    var vnet = VirtioNetHeader()
}

final class HandoffRing: @unchecked Sendable {
    let capacity: Int
    let slotSize: Int
    let slab: UnsafeMutableRawPointer
    let entries: UnsafeMutablePointer<HandoffEntry>
    /// Next entry the consumer reads / the producer writes (monotonic; index = value % capacity).
    let head = Atomic<Int>(0)
    let tail = Atomic<Int>(0)

    init(capacity: Int, slotSize: Int) {
        self.capacity = capacity; self.slotSize = slotSize
        slab = .allocate(byteCount: capacity * slotSize, alignment: 64)
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: HandoffEntry(), count: capacity)
    }

    deinit { slab.deallocate(); entries.deallocate() }

    /// Producer: copies the frame in; false when the ring is full or the frame too big.
    @inline(__always)
    func push(_ frame: Frame, bridge: Int32, port: PortID, asIs: Bool) -> Bool {
        let t = tail.load(ordering: .relaxed)
        guard t - head.load(ordering: .acquiring) < capacity, frame.length <= slotSize else { return false }
        let i = t % capacity
        (slab + i * slotSize).copyMemory(from: UnsafeRawPointer(frame.bytes.baseAddress!), byteCount: frame.length)
        entries[i] = HandoffEntry(bridge: bridge, port: port, vlan: frame.vlan, asIs: asIs,
                                  length: Int32(frame.length), vnet: frame.vnet)
        tail.store(t + 1, ordering: .releasing)
        return true
    }

    /// Consumer: calls `body` for each waiting entry with its bytes, then frees them.
    @inline(__always)
    func drain(_ body: (HandoffEntry, UnsafeMutableRawPointer) -> Void) {
        var h = head.load(ordering: .relaxed)
        let t = tail.load(ordering: .acquiring)
        while h < t {
            let i = h % capacity
            body(entries[i], slab + i * slotSize)
            h += 1
        }
        head.store(h, ordering: .releasing)
    }
}
