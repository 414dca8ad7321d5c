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
