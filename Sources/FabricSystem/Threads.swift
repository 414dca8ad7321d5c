import CFabricSystem
import Glibc

/// The calling thread: pinning and where it runs.
@usableFromInline
package enum CurrentThread {
    /// Pins the calling thread to `cpu` (`pthread_setaffinity_np`).
    package static func pin(toCPU cpu: Int) throws(SystemCallError) {
        try systemCallReturningErrno("pthread_setaffinity_np") { cfq_pin_current_thread(Int32(clamping: cpu)) }
    }

    /// The CPU the calling thread runs on now (`sched_getcpu(3)`), or -1.
    package static var cpu: Int { Int(cfq_sched_getcpu()) }

    /// CPUs configured on this machine (`sysconf(_SC_NPROCESSORS_CONF)`).
    package static var configuredCPUCount: Int { Int(sysconf(Int32(_SC_NPROCESSORS_CONF))) }

    /// `sched_yield(2)`: lets another runnable thread on this CPU run.
    @inlinable
    package static func yield() { sched_yield() }
}

/// A wait that spins with the CPU's pause hint for a few passes, then gives
/// the CPU away (`sched_yield(2)`) on every pass. For a thread that waits on
/// another thread of this machine which may be queued behind it: where
/// runnable threads outnumber CPUs a pure spin would hold that thread off
/// for a whole scheduler slice (milliseconds); with a CPU to spare the yield
/// returns at once. Measured on 2 vCPUs (Docs/Benchmarks.md, issue 14):
/// yielding after 4 pure spins beats 64 (busy-polled round trip through an
/// instance thread p50 ≈ 4 µs against 13 µs).
package struct PoliteSpin {
    /// Pure spins before the first yield.
    package static let pureSpins = 4
    private var passes = 0

    package init() {}

    /// One pass of the wait.
    package mutating func pause() {
        passes &+= 1
        if passes > Self.pureSpins { CurrentThread.yield() } else { cpuRelax() }
    }

    /// Starts over with pure spins (work arrived).
    package mutating func reset() { passes = 0 }
}
