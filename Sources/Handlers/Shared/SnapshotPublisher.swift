// SnapshotPublisher: hands an immutable object (port facts, a compiled rule set) from the
// control thread to datapath workers that read it on every frame, without locks or reference
// counting on the read side.
//
// The current snapshot sits behind an atomic pointer. A replaced snapshot is freed only after
// a grace period of several seconds: a worker holds a snapshot for the duration of one frame
// (microseconds), so it cannot still be reading one that old. Readers therefore never see a
// half-built or freed object, and publishing never waits for the datapath.
#if canImport(Glibc)
import Glibc
#endif
import Atomics
import Frames

final class SnapshotPublisher<T: AnyObject>: @unchecked Sendable {
    static var gracePeriodNanoseconds: UInt64 { 5_000_000_000 }
    private let current: UnsafeAtomic<UnsafeMutableRawPointer>
    private var retired: [(object: T, at: UInt64)] = []
    private let publishing = UnsafeAtomic<Bool>.create(false)

    init(_ initial: T) {
        current = .create(Unmanaged.passRetained(initial).toOpaque())
    }

    deinit {
        Unmanaged<T>.fromOpaque(current.load(ordering: .acquiring)).release()
        current.destroy()
        publishing.destroy()
    }

    /// Runs `body` with the current snapshot, without retaining it.
    @inline(__always)
    func withCurrent<R>(_ body: (T) -> R) -> R {
        Unmanaged<T>.fromOpaque(current.load(ordering: .acquiring))._withUnsafeGuaranteedRef(body)
    }

    /// The current snapshot, retained (control thread).
    var snapshot: T { withCurrent { $0 } }

    /// Control thread: installs `object`, retires the previous snapshot, frees old retired ones.
    func publish(_ object: T) {
        while !publishing.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {}
        defer { publishing.store(false, ordering: .releasing) }
        let now = MonotonicClock.nanoseconds()
        let old = current.exchange(Unmanaged.passRetained(object).toOpaque(), ordering: .acquiringAndReleasing)
        retired.append((Unmanaged<T>.fromOpaque(old).takeRetainedValue(), now))
        retired.removeAll { now &- $0.at > Self.gracePeriodNanoseconds }
    }
}
