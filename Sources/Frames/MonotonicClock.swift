// MonotonicClock: CLOCK_MONOTONIC, the one clock the engine, handlers (HandlerContext.now), the
// daemon and the VM ports read. One definition, so every timestamp compares with every other.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum MonotonicClock {
    /// CLOCK_MONOTONIC in nanoseconds (the clock `HandlerContext.now` is sampled from).
    @inlinable @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// CLOCK_MONOTONIC in milliseconds.
    @inlinable
    public static func milliseconds() -> UInt64 { nanoseconds() / 1_000_000 }

    /// CLOCK_MONOTONIC in microseconds (sd_notify's MONOTONIC_USEC).
    @inlinable
    public static func microseconds() -> UInt64 { nanoseconds() / 1_000 }
}
