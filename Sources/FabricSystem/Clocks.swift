import CFabricSystem  // clang may attribute `timespec` to this module; @inlinable code must import it
import Glibc

/// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds: the same clock in every
/// process on a machine (served by the vDSO: no system call). FabricQueue's
/// public `MonotonicClock` is this.
@inlinable
package func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// `clock_gettime(CLOCK_REALTIME)` in nanoseconds since the Unix epoch: wall
/// time, for timestamps a person reads (a region's creation time).
package func realtimeNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// The CPU's spin-wait hint (x86 `PAUSE`, Arm `YIELD`, RISC-V `pause`).
@inlinable @inline(__always)
package func cpuRelax() { cfq_cpu_relax() }
