// QueuePair: one virtio-net queue pair (receiveq 2N, transmitq 2N+1) as the datapath serves it:
// the two rings, their call eventfds, what the negotiated features mean per frame, and the
// pair's frame counters. Pairs live at stable addresses (`VirtioNetQueuePairBox`: one array of
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
    /// Call eventfds (-1: none); read with `callFD(_:)`, replaced with `setCallFD`.
    var receiveCall: Int32 = -1
    var transmitCall: Int32 = -1
    /// Kick eventfd of the transmit queue (the descriptor the worker reads).
    public var transmitKick: Int32 = -1
    public var headerSize = 12
    public var mergeable = true
    /// Set by the worker when a ring broke (it then stops using the pair).
    public var failure: VirtqueueError?
    /// Both rings run and a worker may use the pair (set by the port while no worker holds
    /// it). A pair the driver never enabled stays inactive: the worker skips it.
    public var active = false
    /// The pair's number on the device (receiveq 2N, transmitq 2N+1), for log lines.
    public var number: Int32 = 0
    /// Frames taken from the transmit ring / written into the receive ring, ever (per pair:
    /// `tapbridge ports` and tests show which pairs carry traffic). Written only by the worker
    /// serving the pair (`count`), read anywhere (`frames`).
    var framesFromGuest: UInt64 = 0
    var framesToGuest: UInt64 = 0

    public init() {}

    /// Counts one frame taken from (`fromGuest`) or written to the guest.
    @inline(__always)
    public mutating func count(fromGuest: Bool) {
        if fromGuest { tb_vu_count_u64(&framesFromGuest, 1) } else { tb_vu_count_u64(&framesToGuest, 1) }
    }

    /// The pair's frame counters (any thread).
    public mutating func frames() -> (fromGuest: UInt64, toGuest: UInt64) {
        (tb_vu_load_relaxed_u64(&framesFromGuest), tb_vu_load_relaxed_u64(&framesToGuest))
    }

    /// The current call eventfd of the receive (true) or transmit (false) ring.
    @inline(__always)
    public mutating func callFD(receive: Bool) -> Int32 {
        receive ? tb_vu_load_acquire_i32(&receiveCall) : tb_vu_load_acquire_i32(&transmitCall)
    }

    /// Signals the driver: 1 on the ring's call eventfd (a full counter is harmless: the driver
    /// has an interrupt pending anyway).
    @inline(__always)
    public mutating func signal(receive: Bool) {
        let fd = callFD(receive: receive)
        guard fd >= 0 else { return }
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }
}

/// Owns the stable storage of a port's queue pairs (`count` of them, contiguous) and the call
/// eventfds they were given.
public final class VirtioNetQueuePairBox: @unchecked Sendable {
    /// The first pair; pair storage slot `k` is `pointer + k`.
    public let pointer: UnsafeMutablePointer<VirtioNetQueuePair>
    public let count: Int
    /// Call eventfds replaced while a worker may still have read the old number: closed at
    /// `retireCalls()` (when the pairs are taken back).
    private var retired: [Int32] = []
    private var owned: [Int32] = []

    public init(count: Int = 1) {
        self.count = max(1, count)
        pointer = .allocate(capacity: self.count)
        pointer.initialize(repeating: VirtioNetQueuePair(), count: self.count)
    }

    deinit {
        retireCalls()
        for fd in owned { Glibc.close(fd) }
        pointer.deinitialize(count: count)
        pointer.deallocate()
    }

    /// Sets a ring's call eventfd in storage slot `slot` (a dup of `fd` is kept; the caller
    /// keeps its own).
    public func setCallFD(slot: Int = 0, receive: Bool, _ fd: Int32) {
        precondition(slot >= 0 && slot < count)
        let pair = pointer + slot
        let mine = fd >= 0 ? dup(fd) : -1
        let old: Int32
        if receive {
            old = pair.pointee.receiveCall
            tb_vu_store_release_i32(&pair.pointee.receiveCall, mine)
        } else {
            old = pair.pointee.transmitCall
            tb_vu_store_release_i32(&pair.pointee.transmitCall, mine)
        }
        if mine >= 0 { owned.append(mine) }
        if old >= 0 { owned.removeAll { $0 == old }; retired.append(old) }
    }

    /// Closes call eventfds replaced earlier (no worker holds the pairs now).
    public func retireCalls() {
        for fd in retired { Glibc.close(fd) }
        retired = []
    }
}

/// An epoll set watching the kick eventfds `fds` (a worker serving several queue pairs of one
/// port polls it in place of each kick eventfd). Returns the new descriptor (the caller owns
/// it) or -errno.
public func makeKickSet(_ fds: [Int32]) -> Int32 {
    fds.withUnsafeBufferPointer { tb_vu_epoll_set($0.baseAddress, Int32($0.count)) }
}
