import CFabricShims  // clang may attribute `timespec` to this module; @inlinable code must import it
import Glibc

/// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds: the same clock in every
/// process on a machine, so timestamps taken by a producer and a consumer can
/// be subtracted. Served by the vDSO: no system call.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary fixed point (boot).
    @inlinable
    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
