// Ring: one io_uring (liburing) owned by one thread: setup with the best task-run mode the
// kernel has, opcode probe, SQE preparation, batched completion iteration, registered files.
import CLiburing
import CTapbridgeShim

public struct RingError: Error, CustomStringConvertible {
    public var operation: String
    public var errno: Int32
    public init(_ operation: String, errno: Int32) { self.operation = operation; self.errno = errno }
    public var description: String { "io_uring \(operation) failed: \(String(cString: strerror(errno)))" }
}

/// Which optional io_uring features this kernel has (probed once per ring).
public struct RingFeatures: Sendable, CustomStringConvertible {
    /// "single-issuer+defer-taskrun", "coop-taskrun" or "plain".
    public var setupMode: String
    public var readMultishot: Bool
    public var providedBufferRings: Bool
    public var writev: Bool
    public var description: String {
        "setup=\(setupMode) read-multishot=\(readMultishot) buffer-rings=\(providedBufferRings)"
    }
}

/// A completion: result, flags and the packed user data.
public struct Completion {
    public var result: Int32
    @inlinable public init(result: Int32, flags: UInt32, userData: UInt64) { self.result = result; self.flags = flags; self.userData = userData }
    public var flags: UInt32
    public var userData: UInt64
    @inlinable public var hasMore: Bool { flags & IORING_CQE_F_MORE != 0 }
    @inlinable public var bufferID: UInt16? {
        flags & IORING_CQE_F_BUFFER != 0 ? UInt16(truncatingIfNeeded: flags >> 16) : nil
    }
}

public final class Ring {
    /// The liburing ring, at a fixed address: the hot path passes it to liburing's inline
    /// helpers as a plain pointer (an `inout` to a class property would cost a dynamic
    /// exclusivity check per SQE and per completion batch).
    public let raw: UnsafeMutablePointer<io_uring>
    public let features: RingFeatures
    public let sqEntries: UInt32
    private var cqeBatch: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>
    private let cqeBatchSize = 256

    /// Creates a ring: SINGLE_ISSUER|DEFER_TASKRUN, falling back to COOP_TASKRUN, then to no
    /// flags. `disabled`: created with IORING_SETUP_R_DISABLED, so another thread may set it up
    /// (register files and buffers) and the thread that calls `enable()` becomes its only
    /// submitter.
    public init(entries: UInt32 = 1024, completionEntries: UInt32 = 8192, disabled: Bool = false) throws {
        sqEntries = entries
        raw = .allocate(capacity: 1)
        raw.initialize(to: io_uring())
        cqeBatch = .allocate(capacity: cqeBatchSize)
        let attempts: [(UInt32, String)] = [
            (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL, "single-issuer+defer-taskrun"),
            (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, "coop-taskrun"),
            (0, "plain"),
        ]
        var mode = ""
        var lastError: Int32 = 0
        for (flags, name) in attempts {
            var p = io_uring_params()
            p.flags = flags | IORING_SETUP_CQSIZE | (disabled ? IORING_SETUP_R_DISABLED : 0)
            p.cq_entries = completionEntries
            let r = io_uring_queue_init_params(entries, raw, &p)
            if r == 0 { mode = name; break }
            lastError = -r
        }
        guard !mode.isEmpty else {
            cqeBatch.deallocate()
            raw.deallocate()
            throw RingError("setup", errno: lastError)
        }
        var multishot = false, bufRings = false, writev = true
        if let probe = io_uring_get_probe_ring(raw) {
            multishot = io_uring_opcode_supported(probe, Int32(tb_IORING_OP_READ_MULTISHOT())) != 0
            writev = io_uring_opcode_supported(probe, Int32(IORING_OP_WRITEV.rawValue)) != 0
            // Provided-buffer rings came with kernel 5.19, together with IORING_OP_SOCKET (45).
            bufRings = io_uring_opcode_supported(probe, Int32(IORING_OP_SOCKET.rawValue)) != 0
            io_uring_free_probe(probe)
        }
        features = RingFeatures(setupMode: mode, readMultishot: multishot && bufRings,
                                providedBufferRings: bufRings, writev: writev)
        if !disabled { registerRingDescriptor() }
    }

    /// Enables a ring created `disabled`; the calling thread becomes its submitter.
    public func enable() throws {
        let r = tb_enable_rings(raw)
        if r < 0 { throw RingError("enable", errno: -r) }
        registerRingDescriptor()
    }

    /// Registers the ring's fd with the calling task (saves an fd lookup per io_uring_enter).
    /// Per task: only the thread that submits may do it.
    private func registerRingDescriptor() {
        _ = io_uring_register_ring_fd(raw)   // an optimisation only; fine if refused
    }

    deinit {
        io_uring_queue_exit(raw)
        raw.deallocate()
        cqeBatch.deallocate()
    }

    /// A free SQE, submitting what is queued first if the SQ is full. Nil only if the kernel
    /// refuses the submission.
    @inlinable
    public func sqe() -> UnsafeMutablePointer<io_uring_sqe>? {
        if let s = io_uring_get_sqe(raw) { return s }
        _ = submit()
        return io_uring_get_sqe(raw)
    }

    /// The io_uring file descriptor.
    public var descriptor: Int32 { raw.pointee.ring_fd }

    /// SQEs prepared but not yet submitted.
    @inlinable public var pendingSubmissions: UInt32 { io_uring_sq_ready(raw) }

    /// Submits queued SQEs without waiting.
    @discardableResult
    public func submit() -> Int32 {
        io_uring_submit(raw)
    }

    /// Submits queued SQEs and waits for at least `waitFor` completions (one io_uring_enter).
    /// Returns the number submitted or -errno (-EINTR/-ETIME are normal).
    @discardableResult
    public func submitAndWait(_ waitFor: UInt32 = 1) -> Int32 {
        io_uring_submit_and_wait(raw, waitFor)
    }

    /// Submits queued SQEs and waits for `waitFor` completions or `nanoseconds`, whichever
    /// comes first (one io_uring_enter with IORING_ENTER_EXT_ARG: the kernel's own timer, no
    /// timeout SQE to cancel or re-arm when an earlier deadline turns up). Returns 0, or -ETIME
    /// when the time ran out, or another -errno; the submitted count is not reported.
    @discardableResult
    public func submitAndWait(_ waitFor: UInt32, timeoutNanoseconds nanoseconds: UInt64) -> Int32 {
        var ts = __kernel_timespec(tv_sec: Int64(nanoseconds / 1_000_000_000), tv_nsec: Int64(nanoseconds % 1_000_000_000))
        var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
        return io_uring_submit_and_wait_timeout(raw, &cqe, waitFor, &ts, nil)
    }

    /// Submits queued SQEs and collects completions the kernel holds back for this thread
    /// (DEFER_TASKRUN), without waiting (one io_uring_enter). For a loop that polls.
    @discardableResult
    public func submitAndGetEvents() -> Int32 {
        io_uring_submit_and_get_events(raw)
    }

    /// Calls `body` for each ready completion (up to `limit`, at most 256 per call) and marks
    /// them seen. Returns how many there were.
    @inlinable
    @discardableResult
    public func forEachCompletion(limit: Int = 256, _ body: (Completion) -> Void) -> Int {
        let n = Int(io_uring_peek_batch_cqe(raw, cqeBatchPointer, UInt32(Swift.min(limit, cqeBatchCapacity))))
        for i in 0..<n {
            let c = cqeBatchPointer[i]!.pointee
            body(Completion(result: c.res, flags: c.flags, userData: c.user_data))
        }
        if n > 0 { io_uring_cq_advance(raw, UInt32(n)) }
        return n
    }

    /// The completion queue's tail: a mark for `takeCompletions(postedSince:replacingWith:_:)`.
    @inlinable public var completionMark: UInt32 { tb_cq_tail(raw) }

    /// Hands `body` the completions posted since `mark` that are still unconsumed, ahead of the
    /// older ones before them, e.g. the writes a `submit()` just completed inline, which would
    /// otherwise wait behind hundreds of read completions. Each one `body` takes (returns true
    /// for) has its user_data overwritten with `replacement` in place, so the in-order pass
    /// (`forEachCompletion`) sees it as already handled. Returns how many were taken.
    @inlinable
    @discardableResult
    public func takeCompletions(postedSince mark: UInt32, replacingWith replacement: UInt64,
                                _ body: (Completion) -> Bool) -> Int {
        let tail = tb_cq_tail(raw)
        let head = tb_cq_head(raw)
        // Positions wrap: start at whichever of mark and head is later in ring order.
        var pos = (mark &- head) <= (tail &- head) ? mark : head
        var taken = 0
        while pos != tail {
            let e = tb_cq_entry(raw, pos)!
            if e.pointee.user_data != replacement,
               body(Completion(result: e.pointee.res, flags: e.pointee.flags, userData: e.pointee.user_data)) {
                e.pointee.user_data = replacement
                taken += 1
            }
            pos &+= 1
        }
        return taken
    }

    @usableFromInline var cqeBatchPointer: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?> { cqeBatch }
    @usableFromInline var cqeBatchCapacity: Int { cqeBatchSize }

    // MARK: registered files

    /// Registers a sparse table of `count` fixed-file slots.
    public func registerFileTable(count: Int) throws {
        let r = io_uring_register_files_sparse(raw, UInt32(count))
        if r < 0 { throw RingError("register sparse file table (\(count))", errno: -r) }
    }

    /// Puts `fd` (or -1 to clear) into fixed-file slot `slot`.
    public func setFile(_ fd: Int32, at slot: Int) throws {
        var f = fd
        let r = io_uring_register_files_update(raw, UInt32(slot), &f, 1)
        if r < 0 { throw RingError("update fixed file \(slot)", errno: -r) }
    }
}

// MARK: SQE preparation

extension UnsafeMutablePointer where Pointee == io_uring_sqe {
    /// Marks the SQE's fd as an index into the registered file table.
    @inlinable public func useFixedFile() { pointee.flags |= tb_IOSQE_FIXED_FILE() }
    @inlinable public func setUserData(_ ud: UserData) { io_uring_sqe_set_data64(self, ud.rawValue) }
    @inlinable public func setUserData(_ raw: UInt64) { io_uring_sqe_set_data64(self, raw) }

    @inlinable public func prepareReadMultishot(fd: Int32, bufferGroup: UInt16) {
        tb_prep_read_multishot(self, fd, bufferGroup)
    }
    @inlinable public func prepareReadSelect(fd: Int32, bufferGroup: UInt16, length: UInt32) {
        tb_prep_read_select(self, fd, bufferGroup, length)
    }
    @inlinable public func prepareRead(fd: Int32, into buffer: UnsafeMutableRawPointer, length: UInt32) {
        io_uring_prep_read(self, fd, buffer, length, 0)
    }
    @inlinable public func prepareWritev(fd: Int32, iovecs: UnsafePointer<iovec>, count: Int) {
        io_uring_prep_writev(self, fd, iovecs, UInt32(count), 0)
    }
    @inlinable public func prepareCancelFixedFile(_ slot: Int32) {
        io_uring_prep_cancel_fd(self, slot, UInt32(IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED))
    }
    @inlinable public func prepareNop() { io_uring_prep_nop(self) }
    /// A multishot POLLIN: one completion per wake-up of `fd` (an eventfd write), until cancelled.
    @inlinable public func preparePollMultishot(fd: Int32) {
        io_uring_prep_poll_multishot(self, fd, 0x001 /* POLLIN */)
    }
}
