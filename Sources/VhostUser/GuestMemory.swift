// GuestMemory: the guest's memory as SET_MEM_TABLE hands it over. Owns checking a table
// (`GuestMemoryLayout.validate`: region count, nonzero sizes, no overflow of guest address +
// size, user address + size or mmap offset + size, every region inside its file per fstat —
// mmap accepts a mapping past the end and the first touch raises SIGBUS — and no overlaps), the
// mmaps (MAP_SHARED, from offset 0 of each fd, unmapped when the table is replaced or the
// front-end goes), and translating a guest-physical or front-end user address + length into a
// host pointer only when the whole range lies inside mapped regions.
import Glibc

/// One mapped region. Plain values: the datapath reads these without ARC.
public struct MappedRegion: Sendable {
    public var guestPhysicalAddress: UInt64
    public var userAddress: UInt64
    public var size: UInt64
    /// Host address of the region's first byte (mapping base + mmap offset).
    public var host: UInt
    /// The whole mapping (for munmap).
    public var mappingBase: UInt
    public var mappingLength: Int
}

/// Address translation over a fixed table of regions (at most 8): no allocation, no ARC; copy
/// freely. Valid while the `GuestMemoryMapping` that made it is alive and not unmapped.
public struct GuestMemoryTable: @unchecked Sendable {
    @usableFromInline let regions: UnsafePointer<MappedRegion>?
    @usableFromInline let count: Int

    public init() { regions = nil; count = 0 }
    init(regions: UnsafePointer<MappedRegion>, count: Int) { self.regions = regions; self.count = count }

    public var isEmpty: Bool { count == 0 }
    public var regionCount: Int { count }

    /// Host pointer for guest-physical [address, address+length) if it lies inside ONE region.
    @inlinable
    public func guestPhysical(_ address: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        guard let regions else { return nil }
        for i in 0..<count {
            let r = regions[i]
            if address >= r.guestPhysicalAddress {
                let offset = address &- r.guestPhysicalAddress
                if offset < r.size && length <= r.size &- offset {
                    return UnsafeMutableRawPointer(bitPattern: r.host &+ UInt(offset))
                }
            }
        }
        return nil
    }

    /// Like `guestPhysical`, but a range may continue into a region adjacent in guest-physical
    /// space: returns the piece inside the region holding `address` (pointer, bytes available
    /// there, at most `length`). nil: `address` is in no region.
    @inlinable
    public func guestPhysicalPiece(_ address: UInt64, length: UInt64) -> (UnsafeMutableRawPointer, UInt64)? {
        guard let regions else { return nil }
        for i in 0..<count {
            let r = regions[i]
            if address >= r.guestPhysicalAddress {
                let offset = address &- r.guestPhysicalAddress
                if offset < r.size {
                    let piece = min(length, r.size &- offset)
                    return (UnsafeMutableRawPointer(bitPattern: r.host &+ UInt(offset))!, piece)
                }
            }
        }
        return nil
    }

    /// Host pointer for the front-end's user address range [address, address+length) if it lies
    /// inside one region (ring addresses in SET_VRING_ADDR are user addresses).
    public func userAddress(_ address: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        guard let regions else { return nil }
        for i in 0..<count {
            let r = regions[i]
            if address >= r.userAddress {
                let offset = address &- r.userAddress
                if offset < r.size && length <= r.size &- offset {
                    return UnsafeMutableRawPointer(bitPattern: r.host &+ UInt(offset))
                }
            }
        }
        return nil
    }
}

/// The checks on a memory table, apart from mmap (pure: the fuzz target runs it).
public enum GuestMemoryLayout {
    /// `fileSizes[i]`: fstat size of region i's file. Throws a `.refused` naming the region.
    public static func validate(_ regions: [MemoryRegionDescriptor], fileSizes: [UInt64]) throws(VhostUserError) {
        guard !regions.isEmpty, regions.count <= VhostUserLimits.maxRegions else {
            throw .refused("memory table: \(regions.count) regions (1...\(VhostUserLimits.maxRegions))")
        }
        guard fileSizes.count == regions.count else {
            throw .refused("memory table: \(regions.count) regions but \(fileSizes.count) files")
        }
        for (i, r) in regions.enumerated() {
            func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
            if r.size == 0 { throw .refused("memory region \(i): size 0") }
            if r.guestPhysicalAddress.addingReportingOverflow(r.size).overflow {
                throw .refused("memory region \(i): guest address \(hex(r.guestPhysicalAddress)) + size \(hex(r.size)) overflows")
            }
            if r.userAddress.addingReportingOverflow(r.size).overflow {
                throw .refused("memory region \(i): user address \(hex(r.userAddress)) + size \(hex(r.size)) overflows")
            }
            let (end, overflow) = r.mmapOffset.addingReportingOverflow(r.size)
            if overflow || end > UInt64(Int.max) {
                throw .refused("memory region \(i): mmap offset \(hex(r.mmapOffset)) + size \(hex(r.size)) overflows")
            }
            if end > fileSizes[i] {
                throw .refused("memory region \(i): mmap offset \(hex(r.mmapOffset)) + size \(hex(r.size)) lies past the end of its file (\(fileSizes[i]) bytes)")
            }
            for j in 0..<i {
                let o = regions[j]
                if r.guestPhysicalAddress < o.guestPhysicalAddress + o.size && o.guestPhysicalAddress < r.guestPhysicalAddress + r.size {
                    throw .refused("memory regions \(j) and \(i) overlap in guest-physical space")
                }
                if r.userAddress < o.userAddress + o.size && o.userAddress < r.userAddress + r.size {
                    throw .refused("memory regions \(j) and \(i) overlap in user address space")
                }
            }
        }
    }
}

/// The mmaps of one memory table. Control-thread object; the datapath uses its `table`.
public final class GuestMemoryMapping: @unchecked Sendable {
    private let storage: UnsafeMutablePointer<MappedRegion>
    public let count: Int
    private var mapped: Bool

    public var table: GuestMemoryTable { mapped && !retiredTable ? GuestMemoryTable(regions: storage, count: count) : GuestMemoryTable() }
    public var regions: [MappedRegion] { (0..<count).map { storage[$0] } }

    /// Validates `regions` against their files and maps them. Always consumes (closes) `fds`:
    /// a mapping keeps its file alive by itself.
    public static func map(_ regions: [MemoryRegionDescriptor], fds: [Int32]) throws(VhostUserError) -> GuestMemoryMapping {
        defer { for fd in fds { _ = Glibc.close(fd) } }
        guard fds.count == regions.count else {
            throw .refused("memory table: \(regions.count) regions but \(fds.count) file descriptors")
        }
        var sizes: [UInt64] = []
        var blockSizes: [Int] = []
        for (i, fd) in fds.enumerated() {
            var st = stat()
            if fstat(fd, &st) != 0 { throw .socket("fstat of memory region \(i)'s descriptor", errno: errno) }
            if st.st_mode & S_IFMT != S_IFREG {
                throw .refused("memory region \(i): descriptor is not a regular file (memfd, hugetlbfs or shm file expected)")
            }
            sizes.append(UInt64(max(st.st_size, 0)))
            blockSizes.append(Int(st.st_blksize))
        }
        try GuestMemoryLayout.validate(regions, fileSizes: sizes)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let storage = UnsafeMutablePointer<MappedRegion>.allocate(capacity: regions.count)
        var done = 0
        do {
            for (i, r) in regions.enumerated() {
                // hugetlbfs wants lengths in whole huge pages (its st_blksize); the extra tail is
                // never translated to.
                let align = max(page, blockSizes[i])
                let wanted = Int(r.mmapOffset + r.size)
                let length = (wanted + align - 1) / align * align
                let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0)
                if p == MAP_FAILED || p == nil {
                    throw VhostUserError.socket("mmap of memory region \(i) (\(length) bytes)", errno: errno)
                }
                let base = UInt(bitPattern: p)
                storage.advanced(by: i).initialize(to: MappedRegion(
                    guestPhysicalAddress: r.guestPhysicalAddress, userAddress: r.userAddress, size: r.size,
                    host: base + UInt(r.mmapOffset), mappingBase: base, mappingLength: length))
                done += 1
            }
        } catch let e as VhostUserError {
            for i in 0..<done { _ = munmap(UnsafeMutableRawPointer(bitPattern: storage[i].mappingBase), storage[i].mappingLength) }
            storage.deallocate()
            throw e
        } catch {
            storage.deallocate()
            throw .refused("\(error)")
        }
        return GuestMemoryMapping(storage: storage, count: regions.count)
    }

    private init(storage: UnsafeMutablePointer<MappedRegion>, count: Int) {
        self.storage = storage; self.count = count; self.mapped = true
    }

    /// Unmaps the regions after a grace period (`retireGrace`): a datapath may have handed a
    /// write pointing into guest memory to the kernel just before its ring was stopped; unmapped
    /// at once, that address range could be mapped again by something else before the write
    /// reads it. The table stops translating now; the mapping goes at a later `retire` or
    /// `reapRetired` call once its grace has passed.
    public func retire() {
        guard mapped else { return }
        retiredTable = true
        GuestMemoryMapping.graveyard.withLock { list in list.append((self, GuestMemoryMapping.now() + GuestMemoryMapping.retireGrace)) }
        GuestMemoryMapping.reapRetired()
    }

    /// Unmaps retired mappings whose grace has passed (`force`: all of them).
    public static func reapRetired(force: Bool = false) {
        let now = Self.now()
        let due = graveyard.withLock { list -> [GuestMemoryMapping] in
            let due = list.filter { force || $0.1 <= now }.map(\.0)
            list.removeAll { force || $0.1 <= now }
            return due
        }
        for m in due { m.unmap() }
    }

    /// Seconds a retired mapping stays mapped.
    public static let retireGrace: Double = 1
    private var retiredTable = false
    private static let graveyard = GraveyardLock()
    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Unmaps every region. Any `GuestMemoryTable` copy becomes dangling: callers stop the rings
    /// that use it first (`retire` when a datapath may still be writing from it).
    public func unmap() {
        guard mapped else { return }
        mapped = false
        for i in 0..<count {
            _ = munmap(UnsafeMutableRawPointer(bitPattern: storage[i].mappingBase), storage[i].mappingLength)
        }
    }

    deinit {
        unmap()
        storage.deallocate()
    }
}

/// The retired-mapping list's lock (a pthread mutex; Foundation is not used here).
final class GraveyardLock: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    private var list: [(GuestMemoryMapping, Double)] = []
    init() { m = .allocate(capacity: 1); pthread_mutex_init(m, nil) }
    func withLock<R>(_ body: (inout [(GuestMemoryMapping, Double)]) -> R) -> R {
        pthread_mutex_lock(m); defer { pthread_mutex_unlock(m) }
        return body(&list)
    }
}
