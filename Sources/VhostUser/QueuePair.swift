// QueuePair: one virtio-net queue pair (receiveq 2N, transmitq 2N+1) as the datapath serves it:
// the two rings, their call eventfds and what the negotiated features mean per frame. It lives
// at a stable address (`VirtioNetQueuePairBox.pointer`) so a worker holds it as a plain pointer
// (no ARC per frame). Ownership moves: the protocol thread fills it while no worker holds it,
// hands it to the worker, and changes nothing but the call eventfds (atomic stores; a replaced
// eventfd is kept open until the pair is taken back) until the worker has let it go.
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

    public init() {}

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

/// Owns the stable storage of one queue pair and the call eventfds it was given.
public final class VirtioNetQueuePairBox: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<VirtioNetQueuePair>
    /// Call eventfds replaced while a worker may still have read the old number: closed at
    /// `retireCalls()` (when the pair is taken back).
    private var retired: [Int32] = []
    private var owned: [Int32] = []

    public init() {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: VirtioNetQueuePair())
    }

    deinit {
        retireCalls()
        for fd in owned { Glibc.close(fd) }
        pointer.deinitialize(count: 1)
        pointer.deallocate()
    }

    /// Sets a ring's call eventfd (a dup of `fd` is kept; the caller keeps its own).
    public func setCallFD(receive: Bool, _ fd: Int32) {
        let mine = fd >= 0 ? dup(fd) : -1
        let old: Int32
        if receive {
            old = pointer.pointee.receiveCall
            tb_vu_store_release_i32(&pointer.pointee.receiveCall, mine)
        } else {
            old = pointer.pointee.transmitCall
            tb_vu_store_release_i32(&pointer.pointee.transmitCall, mine)
        }
        if mine >= 0 { owned.append(mine) }
        if old >= 0 { owned.removeAll { $0 == old }; retired.append(old) }
    }

    /// Closes call eventfds replaced earlier (no worker holds the pair now).
    public func retireCalls() {
        for fd in retired { Glibc.close(fd) }
        retired = []
    }
}
