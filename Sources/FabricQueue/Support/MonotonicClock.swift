import FabricSystem

/// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds: the same clock in every
/// process on a machine, so timestamps taken by a producer and a consumer can
/// be subtracted. Served by the vDSO: no system call.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary fixed point (boot).
    @inlinable
    public static func now() -> UInt64 { monotonicNanoseconds() }
}
