// BufferRing: a provided-buffer ring (io_uring_register_buf_ring) over one preallocated,
// pre-faulted slab of equal buffers. The kernel picks a buffer per read; we give it back by id.
import CLiburing
import CTapbridgeShim

public final class BufferRing {
    public let group: UInt16
    public let count: Int
    public let bufferSize: Int
    /// Start of buffer 0; buffer i is at `base + i * bufferSize`.
    public let base: UnsafeMutableRawPointer
    private let ring: UnsafeMutablePointer<io_uring_buf_ring>
    private let mask: UInt32
    private var pendingAdds: UInt32 = 0
    private let owner: Ring   // strong: the ring must outlive its registered buffer ring
    private let slabSize: Int

    /// `count` must be a power of two (<= 32768).
    public init(ring: Ring, group: UInt16, count: Int, bufferSize: Int) throws {
        precondition(count > 0 && count & (count - 1) == 0 && count <= 32768, "buffer count must be a power of two")
        self.group = group; self.count = count; self.bufferSize = bufferSize; self.owner = ring
        slabSize = count * bufferSize
        let mem = mmap(nil, slabSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
        guard let mem, mem != UnsafeMutableRawPointer(bitPattern: -1) else { throw RingError("mmap \(slabSize) bytes of buffers", errno: tb_errno()) }
        base = mem
        var err: Int32 = 0
        guard let br = tb_buf_ring_setup(ring.raw, UInt32(count), group, &err) else {
            munmap(mem, slabSize)
            throw RingError("register provided-buffer ring (group \(group), \(count) buffers)", errno: -err)
        }
        self.ring = br
        mask = UInt32(count - 1)
        for i in 0..<count { give(UInt16(i)) }
        publish()
    }

    deinit {
        tb_buf_ring_free(owner.raw, ring, UInt32(count), group)
        munmap(base, slabSize)
    }

    @inlinable public func address(of id: UInt16) -> UnsafeMutableRawPointer { base + Int(id) * bufferSize }

    /// Queues buffer `id` for return to the kernel; visible after `publish()`.
    @inline(__always)
    public func give(_ id: UInt16) {
        tb_buf_ring_add(ring, base + Int(id) * bufferSize, UInt32(bufferSize), id, mask, pendingAdds)
        pendingAdds &+= 1
    }

    /// Makes every `give` since the last publish visible to the kernel (one release store).
    @inline(__always)
    public func publish() {
        if pendingAdds > 0 { tb_buf_ring_advance(ring, pendingAdds); pendingAdds = 0 }
    }
}
