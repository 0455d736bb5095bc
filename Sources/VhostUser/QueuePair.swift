// QueuePair: one virtio-net queue pair (receiveq 2N, transmitq 2N+1) as the datapath serves it:
// the two rings, what the negotiated features mean per frame, and pointers to what it shares
// with other threads (call eventfds, frame counters, broken-ring reasons: in the box's plain
// memory, never in the struct, which only its worker touches while it holds the pair). Pairs
// live at stable addresses (`VirtioNetQueuePairBox`: one array of
// every pair a port offers) so a worker holds them as plain pointers (no ARC per frame); a
// worker serving several pairs of one port holds a run of neighbours in that array. Ownership
// moves: the protocol thread fills a pair while no worker holds it, hands it to the worker, and
// changes nothing but the call eventfds (atomic stores; a replaced eventfd is kept open until
// the pair is taken back) until the worker has let it go.
import CVhostUserShim
import Glibc

public struct VirtioNetQueuePair {
    public var receive: SplitQueue?
    public var transmit: SplitQueue?
    /// Kick eventfd of the transmit queue (the descriptor the worker reads).
    public var transmitKick: Int32 = -1
    public var headerSize = 12
    public var mergeable = true
    /// Both rings run and a worker may use the pair (set by the port while no worker holds
    /// it). A pair the driver never enabled stays inactive: the worker skips it.
    public var active = false
    /// The pair's number on the device (receiveq 2N, transmitq 2N+1), for log lines.
    public var number: Int32 = 0
    /// What other threads share with the worker lives outside this struct, in the box's plain
    /// memory (a Swift access to the struct from two threads is a race even on distinct
    /// fields): the two call eventfds (receive, transmit; -1: none), the two frame counters
    /// (from the guest, to the guest), and where a broken ring's reason goes. Set once by
    /// the box.
    var calls: UnsafeMutablePointer<Int32>? = nil
    var counts: UnsafeMutablePointer<UInt64>? = nil
    var slot = 0
    var failures: Unmanaged<VirtioNetQueuePairBox>? = nil

    public init() {}

    /// The current call eventfd of the receive (true) or transmit (false) ring.
    @inline(__always)
    public func callFD(receive: Bool) -> Int32 {
        guard let calls else { return -1 }
        return tb_vu_load_acquire_i32(calls + (receive ? 0 : 1))
    }

    /// Signals the driver: 1 on the ring's call eventfd (a full counter is harmless: the driver
    /// has an interrupt pending anyway).
    @inline(__always)
    public func signal(receive: Bool) {
        let fd = callFD(receive: receive)
        guard fd >= 0 else { return }
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }

    /// Counts one frame taken from (`fromGuest`) or written to the guest (its one worker).
    @inline(__always)
    public func count(fromGuest: Bool) {
        guard let counts else { return }
        tb_vu_count_u64(counts + (fromGuest ? 0 : 1), 1)
    }

    /// A ring of this pair broke (its worker, once, before it stops using the pair): the
    /// reason is kept for the port (`VirtioNetQueuePairBox.takeFailures`).
    public func recordFailure(_ e: VirtqueueError) {
        failures?._withUnsafeGuaranteedRef { $0.record(slot: slot, e) }
    }
}

/// Owns the stable storage of a port's queue pairs (`count` of them, contiguous), their call
/// eventfds, frame counters and failure reasons.
public final class VirtioNetQueuePairBox: @unchecked Sendable {
    /// The first pair; pair storage slot `k` is `pointer + k`.
    public let pointer: UnsafeMutablePointer<VirtioNetQueuePair>
    public let count: Int
    /// Per slot: receive and transmit call eventfds; frames from and to the guest.
    private let calls: UnsafeMutablePointer<Int32>
    private let counts: UnsafeMutablePointer<UInt64>
    /// Call eventfds replaced while a worker may still have read the old number: closed at
    /// `retireCalls()` (when the pairs are taken back).
    private var retired: [Int32] = []
    private var owned: [Int32] = []
    private let failureLock: UnsafeMutablePointer<pthread_mutex_t>
    private var failed: [(slot: Int, error: VirtqueueError)] = []

    public init(count: Int = 1) {
        self.count = max(1, count)
        pointer = .allocate(capacity: self.count)
        calls = .allocate(capacity: 2 * self.count)
        calls.initialize(repeating: -1, count: 2 * self.count)
        counts = .allocate(capacity: 2 * self.count)
        counts.initialize(repeating: 0, count: 2 * self.count)
        failureLock = .allocate(capacity: 1)
        pthread_mutex_init(failureLock, nil)
        pointer.initialize(repeating: VirtioNetQueuePair(), count: self.count)
        for k in 0..<self.count {
            pointer[k].calls = calls + 2 * k
            pointer[k].counts = counts + 2 * k
            pointer[k].slot = k
            pointer[k].failures = Unmanaged.passUnretained(self)
        }
    }

    deinit {
        retireCalls()
        for fd in owned { Glibc.close(fd) }
        pointer.deinitialize(count: count)
        pointer.deallocate()
        calls.deallocate()
        counts.deallocate()
        pthread_mutex_destroy(failureLock)
        failureLock.deallocate()
    }

    /// Sets a ring's call eventfd in storage slot `slot` (a dup of `fd` is kept; the caller
    /// keeps its own). Any time: the worker reads it atomically.
    public func setCallFD(slot: Int = 0, receive: Bool, _ fd: Int32) {
        precondition(slot >= 0 && slot < count)
        let at = calls + 2 * slot + (receive ? 0 : 1)
        let mine = fd >= 0 ? dup(fd) : -1
        let old = tb_vu_load_acquire_i32(at)
        tb_vu_store_release_i32(at, mine)
        if mine >= 0 { owned.append(mine) }
        if old >= 0 { owned.removeAll { $0 == old }; retired.append(old) }
    }

    /// Closes call eventfds replaced earlier (no worker holds the pairs now).
    public func retireCalls() {
        for fd in retired { Glibc.close(fd) }
        retired = []
    }

    /// Frames taken from and written to the guest through storage slot `slot`, ever (any thread).
    public func frames(slot: Int) -> (fromGuest: UInt64, toGuest: UInt64) {
        precondition(slot >= 0 && slot < count)
        return (tb_vu_load_relaxed_u64(counts + 2 * slot), tb_vu_load_relaxed_u64(counts + 2 * slot + 1))
    }

    func record(slot: Int, _ e: VirtqueueError) {
        pthread_mutex_lock(failureLock); defer { pthread_mutex_unlock(failureLock) }
        failed.append((slot, e))
    }

    /// The broken rings' reasons recorded since the last call, by storage slot (any thread).
    public func takeFailures() -> [(slot: Int, error: VirtqueueError)] {
        pthread_mutex_lock(failureLock); defer { pthread_mutex_unlock(failureLock) }
        defer { failed = [] }
        return failed
    }
}

/// An epoll set watching the kick eventfds `fds` (a worker serving several queue pairs of one
/// port polls it in place of each kick eventfd). Returns the new descriptor (the caller owns
/// it) or -errno.
public func makeKickSet(_ fds: [Int32]) -> Int32 {
    fds.withUnsafeBufferPointer { tb_vu_epoll_set($0.baseAddress, Int32($0.count)) }
}
