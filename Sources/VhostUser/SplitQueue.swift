// SplitQueue: one virtio 1.x split virtqueue in guest memory, as the device side sees it. Owns
// locating the descriptor table, available and used rings (user addresses from SET_VRING_ADDR
// translated, size a power of two ≤ 32768, alignment checked, each ring inside one region),
// popping available heads, walking a descriptor chain into a fixed-capacity iovec buffer
// (bounded: chain length ≤ queue size, which also ends loops; one level of INDIRECT_DESC at
// most, its table inside one region; every buffer translated with its length; device-readable
// descriptors before device-writable ones), writing used elements and publishing them with
// release ordering, and notification suppression both ways (NO_INTERRUPT/NO_NOTIFY flags, or
// EVENT_IDX's used_event/avail_event with a full fence between the store and the load).
// A ring the driver broke raises `VirtqueueError`; the owner marks the device broken.
import CVhostUserShim
import Glibc

/// What can be wrong with a ring or a chain (all the driver's fault).
public enum VirtqueueError: Error, Equatable, CustomStringConvertible, Sendable {
    case badSize(UInt32)
    case ringOutsideMemory(String, UInt64)
    case misaligned(String, UInt64)
    case availableIndexJump(available: UInt16, next: UInt16, size: UInt16)
    case headOutOfRange(UInt16)
    case descriptorOutOfRange(UInt16)
    case chainTooLong(Int)
    case nestedIndirect
    case indirectWithNext
    case badIndirectLength(UInt32)
    case indirectOutsideMemory(UInt64)
    case bufferOutsideMemory(address: UInt64, length: UInt32)
    case readableAfterWritable
    case tooManySegments(Int)
    case receiveChainNotWritable(UInt16)

    public var description: String {
        func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        switch self {
        case .badSize(let n): return "queue size \(n) (a power of two, 1...\(VhostUserLimits.maxQueueSize))"
        case .ringOutsideMemory(let what, let a): return "\(what) at \(hex(a)) is not inside one memory region"
        case .misaligned(let what, let a): return "\(what) at \(hex(a)) is misaligned"
        case .availableIndexJump(let a, let n, let s): return "available index \(a) is more than \(s) ahead of \(n)"
        case .headOutOfRange(let h): return "available ring names descriptor \(h), beyond the table"
        case .descriptorOutOfRange(let i): return "descriptor chain links to \(i), beyond the table"
        case .chainTooLong(let n): return "descriptor chain longer than \(n) (a loop?)"
        case .nestedIndirect: return "indirect descriptor inside an indirect table"
        case .indirectWithNext: return "indirect descriptor with NEXT set"
        case .badIndirectLength(let l): return "indirect table of \(l) bytes (a nonzero multiple of 16, at most the queue size)"
        case .indirectOutsideMemory(let a): return "indirect table at \(hex(a)) is not inside one memory region"
        case .bufferOutsideMemory(let a, let l): return "buffer \(hex(a)) + \(l) lies outside guest memory"
        case .readableAfterWritable: return "device-readable descriptor after a device-writable one"
        case .tooManySegments(let n): return "chain needs more than \(n) segments"
        case .receiveChainNotWritable(let h): return "receive chain \(h) has no device-writable buffer"
        }
    }
}

/// A walked descriptor chain: iovecs into guest memory, readable ones first. Fixed capacity,
/// allocated once per queue user; reused for every chain (no allocation per chain).
public struct DescriptorChain: @unchecked Sendable {
    public static let defaultCapacity = 256
    public let iovecs: UnsafeMutablePointer<iovec>
    public let capacity: Int
    /// The chain's head (what goes back in the used ring).
    public internal(set) var head: UInt16 = 0
    public internal(set) var count = 0
    /// iovecs[0..<readableCount] are device-readable, the rest device-writable.
    public internal(set) var readableCount = 0
    public internal(set) var readableBytes = 0
    public internal(set) var writableBytes = 0
    /// Descriptors the chain had (direct + indirect entries).
    public internal(set) var descriptors = 0

    public init(capacity: Int = DescriptorChain.defaultCapacity) {
        self.capacity = capacity
        iovecs = .allocate(capacity: capacity)
        iovecs.initialize(repeating: iovec(), count: capacity)
    }
    /// Frees the iovec storage (the owner calls it once).
    public func deallocate() { iovecs.deallocate() }

    @inlinable public var writableCount: Int { count - readableCount }
    @inlinable public subscript(i: Int) -> iovec { iovecs[i] }

    mutating func reset(head: UInt16) {
        self.head = head; count = 0; readableCount = 0; readableBytes = 0; writableBytes = 0; descriptors = 0
    }

    @inline(__always)
    mutating func append(_ base: UnsafeMutableRawPointer, _ length: Int, writable: Bool) throws(VirtqueueError) {
        guard count < capacity else { throw .tooManySegments(capacity) }
        iovecs[count] = iovec(iov_base: base, iov_len: length)
        count += 1
        if writable { writableBytes += length } else { readableCount += 1; readableBytes += length }
    }
}

/// The device side of one split virtqueue. Plain values and pointers into guest memory: no
/// ARC, copy-free to use from a worker. Valid while the memory table it was made with is mapped.
public struct SplitQueue: @unchecked Sendable {
    public static let descriptorNext: UInt16 = 1
    public static let descriptorWrite: UInt16 = 2
    public static let descriptorIndirect: UInt16 = 4
    public static let availableNoInterrupt: UInt16 = 1
    public static let usedNoNotify: UInt16 = 1

    public let size: UInt16
    let mask: UInt16
    let descriptorTable: UnsafeMutableRawPointer
    let available: UnsafeMutableRawPointer
    let used: UnsafeMutableRawPointer
    public let memory: GuestMemoryTable
    public let eventIndex: Bool
    public let indirectAllowed: Bool

    /// Next available-ring slot to take.
    public internal(set) var nextAvailable: UInt16
    /// Next used-ring slot to fill (published by `publishUsed`).
    public internal(set) var nextUsed: UInt16
    /// used.idx as last published.
    public internal(set) var publishedUsed: UInt16
    /// used.idx when the driver was last signalled (EVENT_IDX bookkeeping).
    var signalledUsed: UInt16
    var signalledValid = false

    /// Locates and checks the rings. `base` is SET_VRING_BASE's value (the next available
    /// index); the used index continues from what the used ring holds.
    public init(memory: GuestMemoryTable, address: VringAddress, size rawSize: UInt32, base: UInt16,
                eventIndex: Bool, indirectAllowed: Bool) throws(VirtqueueError) {
        guard rawSize > 0, rawSize <= UInt32(VhostUserLimits.maxQueueSize), rawSize & (rawSize - 1) == 0 else {
            throw .badSize(rawSize)
        }
        let n = UInt64(rawSize)
        if address.descriptorTable % 16 != 0 { throw .misaligned("descriptor table", address.descriptorTable) }
        if address.availableRing % 2 != 0 { throw .misaligned("available ring", address.availableRing) }
        if address.usedRing % 4 != 0 { throw .misaligned("used ring", address.usedRing) }
        guard let d = memory.userAddress(address.descriptorTable, length: 16 * n) else {
            throw .ringOutsideMemory("descriptor table", address.descriptorTable)
        }
        // flags, idx, ring[n], used_event (always counted: the driver lays it out either way).
        guard let a = memory.userAddress(address.availableRing, length: 6 + 2 * n) else {
            throw .ringOutsideMemory("available ring", address.availableRing)
        }
        guard let u = memory.userAddress(address.usedRing, length: 6 + 8 * n) else {
            throw .ringOutsideMemory("used ring", address.usedRing)
        }
        size = UInt16(rawSize)
        mask = UInt16(rawSize - 1)
        descriptorTable = d; available = a; used = u
        self.memory = memory
        self.eventIndex = eventIndex
        self.indirectAllowed = indirectAllowed
        nextAvailable = base
        let usedIndex = tb_vu_load_acquire_u16(u + 2)
        nextUsed = usedIndex
        publishedUsed = usedIndex
        signalledUsed = usedIndex
    }

    // MARK: available side

    /// Available heads not yet taken. Throws if the driver's index ran more than a ring ahead.
    public func pending() throws(VirtqueueError) -> UInt16 {
        let idx = tb_vu_load_acquire_u16(available + 2)
        let n = idx &- nextAvailable
        if n > size { throw .availableIndexJump(available: idx, next: nextAvailable, size: size) }
        return n
    }

    /// Takes the next available head (nil: none).
    public mutating func popHead() throws(VirtqueueError) -> UInt16? {
        guard try pending() > 0 else { return nil }
        let slot = Int(nextAvailable & mask)
        let head = UInt16(littleEndian: available.loadUnaligned(fromByteOffset: 4 + 2 * slot, as: UInt16.self))
        if head >= size { throw .headOutOfRange(head) }
        nextAvailable &+= 1
        return head
    }

    /// Gives back the last `n` heads taken (a receive that found too few buffers).
    public mutating func unpop(_ n: UInt16) { nextAvailable &-= n }

    /// Walks the chain at `head` into `chain`.
    public func walk(head: UInt16, into chain: inout DescriptorChain) throws(VirtqueueError) {
        chain.reset(head: head)
        var table = descriptorTable
        var tableSize = size
        var index = head
        var indirect = false
        var seenWritable = false
        // A chain (an indirect table's entries included) is at most `size` descriptors; an
        // indirect table at most its own entry count. Any loop runs into one of the two.
        var total = 0
        var inTable = 0
        while true {
            if index >= tableSize { throw .descriptorOutOfRange(index) }
            total += 1; inTable += 1
            if total > Int(size) || inTable > Int(tableSize) { throw .chainTooLong(Int(size)) }
            let d = table + 16 * Int(index)
            let addr = UInt64(littleEndian: d.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            let len = UInt32(littleEndian: d.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            let flags = UInt16(littleEndian: d.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
            let next = UInt16(littleEndian: d.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
            if flags & Self.descriptorIndirect != 0 {
                if indirect || !indirectAllowed { throw .nestedIndirect }
                if flags & Self.descriptorNext != 0 { throw .indirectWithNext }
                if len == 0 || len % 16 != 0 || len / 16 > UInt32(size) { throw .badIndirectLength(len) }
                guard let t = memory.guestPhysical(addr, length: UInt64(len)) else { throw .indirectOutsideMemory(addr) }
                if UInt(bitPattern: t) % 2 != 0 { throw .indirectOutsideMemory(addr) }
                table = t
                tableSize = UInt16(len / 16)
                index = 0
                indirect = true
                inTable = 0
                total -= 1   // the indirect descriptor itself carries no buffer
                continue
            }
            let writable = flags & Self.descriptorWrite != 0
            if writable { seenWritable = true } else if seenWritable { throw .readableAfterWritable }
            chain.descriptors += 1
            // Translate, piecewise across adjacent regions.
            var a = addr
            var left = UInt64(len)
            if a.addingReportingOverflow(left).overflow { throw .bufferOutsideMemory(address: addr, length: len) }
            while left > 0 {
                guard let (p, piece) = memory.guestPhysicalPiece(a, length: left) else {
                    throw .bufferOutsideMemory(address: addr, length: len)
                }
                try chain.append(p, Int(piece), writable: writable)
                a += piece; left -= piece
            }
            if flags & Self.descriptorNext == 0 { break }
            index = next
        }
    }

    // MARK: used side

    /// Writes a used element (not yet visible to the driver).
    public mutating func putUsed(head: UInt16, length: UInt32) {
        let slot = Int(nextUsed & mask)
        let e = used + 4 + 8 * slot
        e.storeBytes(of: UInt32(head).littleEndian, toByteOffset: 0, as: UInt32.self)
        e.storeBytes(of: length.littleEndian, toByteOffset: 4, as: UInt32.self)
        nextUsed &+= 1
    }

    /// Makes the used elements written so far visible (release store of used.idx).
    public mutating func publishUsed() {
        guard nextUsed != publishedUsed else { return }
        tb_vu_store_release_u16(used + 2, nextUsed.littleEndian)
        publishedUsed = nextUsed
    }

    /// After `publishUsed`: does the driver want an interrupt (call eventfd)?
    public mutating func needsInterrupt() -> Bool {
        // The used.idx store must be visible before used_event / flags are read.
        tb_vu_fence_full()
        if eventIndex {
            let event = UInt16(littleEndian: tb_vu_load_relaxed_u16(available + 4 + 2 * Int(size)))
            let new = publishedUsed
            let old = signalledUsed
            let valid = signalledValid
            signalledUsed = new
            signalledValid = true
            if !valid { return true }
            // vring_need_event: the driver asked to hear once used.idx passes `event`.
            return new &- event &- 1 < new &- old
        }
        let flags = UInt16(littleEndian: tb_vu_load_relaxed_u16(available))
        return flags & Self.availableNoInterrupt == 0
    }

    /// Asks the driver for kicks again (after draining): EVENT_IDX sets avail_event to the next
    /// index we will look at, else clears NO_NOTIFY. Returns true if more became available
    /// meanwhile (the caller drains again rather than sleeping).
    public mutating func enableKicks() throws(VirtqueueError) -> Bool {
        if eventIndex {
            tb_vu_store_relaxed_u16(used + 4 + 8 * Int(size), nextAvailable.littleEndian)
        } else {
            tb_vu_store_relaxed_u16(used, 0)
        }
        tb_vu_fence_full()
        return try pending() > 0
    }

    /// Tells the driver not to kick (while we poll the ring anyway). With EVENT_IDX this is a
    /// no-op: avail_event is simply left behind.
    public mutating func disableKicks() {
        if !eventIndex { tb_vu_store_relaxed_u16(used, Self.usedNoNotify.littleEndian) }
    }

    /// The avail flags' NO_INTERRUPT bit / used_event as the driver left them (tests).
    public var usedIndexInMemory: UInt16 { UInt16(littleEndian: tb_vu_load_acquire_u16(used + 2)) }
}
