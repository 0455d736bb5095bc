// FuzzEntryPoints: the fuzz targets' entry functions for the untrusted inputs this module reads
// (vhost-user messages, one at a time and as a session against a multi-queue device, memory
// tables, descriptor rings in guest memory). Each takes arbitrary
// bytes and must return without crashing, trapping or touching memory outside what it was
// given; a libFuzzer harness (`LLVMFuzzerTestOneInput`) only forwards to one of them, and the
// unit tests run them over random and hand-made inputs.
import CVhostUserShim
import VirtioNet
import Glibc

public enum VhostUserFuzz {
    /// Target "vhost-user-message": bytes = 1 byte of descriptor count (low 4 bits), then a
    /// message (header + payload). Descriptors are -1 (closing them is harmless), so fd-count
    /// checks run without real files.
    public static func message(_ data: UnsafeRawBufferPointer) {
        guard data.count >= 1 + VhostUserHeader.size else { return }
        let fdCount = Int(data[0] & 0x0F)
        let header = VhostUserHeader(bytes: data.baseAddress! + 1)
        let payload = UnsafeRawBufferPointer(rebasing: data[(1 + VhostUserHeader.size)...])
        // The socket reader never hands over more payload than the header announces.
        let announced = Int(header.size)
        let used = payload.count < announced ? payload : UnsafeRawBufferPointer(rebasing: payload.prefix(announced))
        let fds = [Int32](repeating: -1, count: fdCount)
        guard let message = try? VhostUserMessage.decode(header: header, payload: used, fds: fds) else { return }
        // Apply it to a back-end with no real memory (SET_MEM_TABLE's -1 fds fail fstat).
        let backend = VhostUserBackend(config: VhostUserDeviceConfig(
            name: "fuzz", deviceFeatures: VirtioNetFeatures.device(offloads: .all, queuePairs: 2), queuePairs: 2))
        _ = try? backend.process(message)
    }

    /// Target "vhost-user-session": a front-end's conversation with a two-pair (MQ) device that
    /// has 64 KiB of real guest memory (a memfd at guest-physical 0, user address 0x10000): up
    /// to 32 messages, each 1 byte of descriptor count (low 2 bits; descriptors are -1) then a
    /// header and as much payload as it announces (what is left, if less). Rings can really
    /// start, run, be enabled and disabled, stopped and reset; a checking host asserts the
    /// back-end hands it only rings 0...3, never one twice, and stops only what it started.
    /// Returns the rings handed to the host, in order (tests check a seed gets that far).
    @discardableResult
    public static func session(_ data: UnsafeRawBufferPointer) -> [Int] {
        let pairs = 2
        let host = SessionCheckingHost(queues: 2 * pairs)
        let backend = VhostUserBackend(config: VhostUserDeviceConfig(
            name: "fuzz", deviceFeatures: VirtioNetFeatures.device(offloads: .all, queuePairs: pairs), queuePairs: pairs), host: host)
        let memorySize = 1 << 16
        let fd = tb_vu_memfd("tb-fuzz-guest")
        if fd >= 0 && ftruncate(fd, off_t(memorySize)) == 0 {
            let region = MemoryRegionDescriptor(guestPhysicalAddress: 0, size: UInt64(memorySize), userAddress: 0x10000, mmapOffset: 0)
            _ = try? backend.process(.setMemTable([region], fds: [fd]))
        } else if fd >= 0 {
            _ = Glibc.close(fd)
        }
        // Mappings of this session: unmapped at its end (no datapath writes from them, so no
        // grace is needed; other back-ends' retired mappings are left alone).
        var mappings: [GuestMemoryMapping] = []
        func note() { if let m = backend.memory, !mappings.contains(where: { $0 === m }) { mappings.append(m) } }
        note()
        var at = 0
        var messages = 0
        while messages < 32, let base = data.baseAddress, at + 1 + VhostUserHeader.size <= data.count {
            let fdCount = Int(data[at] & 0x3)
            let header = VhostUserHeader(bytes: base + at + 1)
            let start = at + 1 + VhostUserHeader.size
            let length = min(Int(header.size), data.count - start)
            at = start + length
            messages += 1
            let fds = [Int32](repeating: -1, count: fdCount)
            guard let message = try? VhostUserMessage.decode(header: header, payload: UnsafeRawBufferPointer(rebasing: data[start..<(start + length)]), fds: fds) else { continue }
            _ = try? backend.process(message)
            note()
            // Every ring the back-end holds itself or gave the host is one it may hand out.
            precondition(backend.vrings.count == 2 * pairs)
            for i in backend.vrings.indices where backend.vrings[i].running {
                precondition(host.running[i], "ring \(i) marked running but not handed to the host")
            }
        }
        backend.disconnect()
        precondition(!host.running.contains(true), "a ring still with the host after the front-end went")
        for m in mappings { m.unmap() }
        return host.started
    }

    /// Target "vhost-user-memory-table": bytes = region count (1 byte), then per region four
    /// little-endian u64 (guest address, size, user address, mmap offset) and a u64 file size.
    /// A table that validates must translate only inside its regions.
    public static func memoryTable(_ data: UnsafeRawBufferPointer) {
        guard data.count >= 1 else { return }
        let count = Int(data[0] % 10)
        var regions: [MemoryRegionDescriptor] = []
        var sizes: [UInt64] = []
        var at = 1
        func u64() -> UInt64 {
            guard at + 8 <= data.count else { at = data.count; return 0 }
            defer { at += 8 }
            return UInt64(littleEndian: data.loadUnaligned(fromByteOffset: at, as: UInt64.self))
        }
        for _ in 0..<count {
            regions.append(MemoryRegionDescriptor(guestPhysicalAddress: u64(), size: u64(), userAddress: u64(), mmapOffset: u64()))
            sizes.append(u64())
        }
        guard (try? GuestMemoryLayout.validate(regions, fileSizes: sizes)) != nil else { return }
        // Fake host addresses (never dereferenced): region i at i << 48.
        let mapped = UnsafeMutablePointer<MappedRegion>.allocate(capacity: regions.count)
        defer { mapped.deallocate() }
        for (i, r) in regions.enumerated() {
            mapped[i] = MappedRegion(guestPhysicalAddress: r.guestPhysicalAddress, userAddress: r.userAddress, size: r.size,
                                     host: UInt(i + 1) << 44, mappingBase: 0, mappingLength: 0)
        }
        let table = GuestMemoryTable(regions: mapped, count: regions.count)
        let probe = u64(), length = u64() & 0xFFFF_FFFF
        // An independent check: the translation must be region j's host base + offset, with the
        // whole range inside region j (regions do not overlap, so j is unique).
        if let p = table.guestPhysical(probe, length: length) {
            let inside = regions.enumerated().contains { j, r in
                probe >= r.guestPhysicalAddress && probe - r.guestPhysicalAddress < r.size
                    && length <= r.size - (probe - r.guestPhysicalAddress)
                    && UInt(bitPattern: p) == mapped[j].host &+ UInt(probe - r.guestPhysicalAddress)
            }
            precondition(inside, "translation outside its region")
        }
        for r in regions {
            if let (_, piece) = table.guestPhysicalPiece(r.guestPhysicalAddress &+ probe % r.size, length: length) {
                precondition(piece <= length && piece <= r.size)
            }
            _ = table.userAddress(probe, length: length)
        }
    }

    /// Target "virtqueue-chains": bytes = queue size exponent (1 byte), features (1 byte:
    /// bit 0 EVENT_IDX, bit 1 INDIRECT, bit 2 MRG_RXBUF), then the contents of a 64 KiB
    /// guest memory (available ring at 0 so short inputs reach it, descriptor table at 0x400,
    /// used ring at 0x1400, the rest buffers and indirect tables). Every available chain is walked, transmitted and
    /// received into; nothing may touch memory outside the 64 KiB.
    public static func descriptorChains(_ data: UnsafeRawBufferPointer) {
        guard data.count >= 2 else { return }
        let memorySize = 1 << 16
        let memory = UnsafeMutableRawPointer.allocate(byteCount: memorySize, alignment: 4096)
        defer { memory.deallocate() }
        memset(memory, 0, memorySize)
        let contents = UnsafeRawBufferPointer(rebasing: data[2...])
        memory.copyMemory(from: contents.baseAddress ?? UnsafeRawPointer(memory), byteCount: min(contents.count, memorySize))
        let gpa: UInt64 = 0x1_0000_0000
        let region = UnsafeMutablePointer<MappedRegion>.allocate(capacity: 1)
        defer { region.deallocate() }
        region.initialize(to: MappedRegion(guestPhysicalAddress: gpa, userAddress: gpa, size: UInt64(memorySize),
                                           host: UInt(bitPattern: memory), mappingBase: 0, mappingLength: 0))
        let table = GuestMemoryTable(regions: region, count: 1)
        let size = UInt32(1) << UInt32(data[0] % 9)   // 1...256: the rings fit their slots
        let flags = data[1]
        let address = VringAddress(index: 0, descriptorTable: gpa + 0x400, usedRing: gpa + 0x1400, availableRing: gpa)
        guard var queue = try? SplitQueue(memory: table, address: address, size: size, base: 0,
                                          eventIndex: flags & 1 != 0, indirectAllowed: flags & 2 != 0) else { return }
        var chain = DescriptorChain(capacity: 64)
        defer { chain.deallocate() }
        var frame = [UInt8](repeating: 0xEE, count: 1600)
        frame[0] = 0xFF
        for round in 0..<Int(size) * 2 {
            do {
                if round % 2 == 0 {
                    guard let f = try queue.nextTransmit(headerSize: 12, chain: &chain) else { break }
                    var sum = 0
                    for i in 0..<f.iovecCount { sum += f.iovecs[i].iov_len; if let b = f.iovecs[i].iov_base, f.iovecs[i].iov_len > 0 { _ = b.load(as: UInt8.self) } }
                    precondition(sum == f.length)
                    queue.completeTransmit(head: f.head)
                } else {
                    let r = try frame.withUnsafeBytes {
                        try queue.receive(frame: $0, header: VirtioNetHeader(), headerSize: 12, mergeable: flags & 4 != 0, chain: &chain)
                    }
                    if case .delivered(let n) = r { precondition(n >= 1 && n <= Int(size)) }
                }
                queue.publishUsed()
                _ = queue.needsInterrupt()
                _ = try queue.enableKicks()
            } catch {
                break
            }
        }
    }
}

/// The fuzzed session's queue host: records which rings it was handed and checks the back-end
/// hands out only rings that exist, each once, and takes back only rings it handed out.
final class SessionCheckingHost: VhostUserQueueHost {
    var running: [Bool]
    /// Every ring handed out, in order.
    var started: [Int] = []
    init(queues: Int) { running = Array(repeating: false, count: queues) }
    func queueStarted(_ index: Int, queue: SplitQueue, kickFD: Int32, callFD: Int32) {
        precondition(index >= 0 && index < running.count, "ring \(index) beyond the device's \(running.count)")
        precondition(!running[index], "ring \(index) handed out twice")
        running[index] = true
        started.append(index)
    }
    func queueStopped(_ index: Int) -> UInt16 {
        precondition(index >= 0 && index < running.count && running[index], "ring \(index) taken back but not running")
        running[index] = false
        return 0
    }
    func callChanged(_ index: Int, callFD: Int32) {
        precondition(index >= 0 && index < running.count && running[index], "call eventfd of ring \(index) changed while not running")
    }
}
