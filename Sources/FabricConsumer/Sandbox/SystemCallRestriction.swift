import FabricSandbox
import Glibc

/// What ``FabricDaemon/restrictSystemCalls(_:alsoAllowing:)`` does with a
/// system call that is not on its list.
public enum SystemCallViolation: Sendable, Equatable {
    /// The call fails with `EPERM`, and the daemon goes on serving.
    case refuse
    /// The call goes through and the kernel logs it (`SCMP_ACT_LOG`: the
    /// audit log, `dmesg`): for finding what a handler needs.
    case log
}

extension FabricDaemon {
    /// The system calls a running daemon makes while it serves, as measured
    /// with `strace -f` over sessions opening and closing, every execution
    /// kind, telemetry queries, Prometheus scrapes, systemd notifications
    /// and a stop. Not on it, among others: `execve`, `ptrace`, `bind`,
    /// `listen`, `connect`, `mount`, `bpf`, `process_vm_readv`, and
    /// `socket` for anything but `AF_UNIX` (systemd's notification socket).
    /// `openat` stays: sessions reopen their memfds through `/proc/self/fd`
    /// to take their ownership locks.
    public static let servingSystemCalls: [String] = [
        // Descriptors and files
        "read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "close", "dup", "dup3", "fcntl",
        "openat", "newfstatat", "fstat", "statx", "readlink", "readlinkat", "ftruncate", "memfd_create", "flock",
        "unlink", "unlinkat", "ioctl",
        // Memory
        "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "mbind", "set_mempolicy", "get_mempolicy",
        "membarrier",
        // Waiting and waking
        "futex", "ppoll", "poll", "epoll_wait", "epoll_pwait", "epoll_ctl", "epoll_create1", "eventfd2",
        "timerfd_create", "timerfd_settime", "pipe2", "signalfd4", "signalfd",
        // Sockets already open
        "sendmsg", "recvmsg", "sendto", "recvfrom", "accept4", "accept", "getsockopt", "setsockopt", "getsockname",
        "getpeername", "shutdown",
        // Time, scheduling, identity
        "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "sched_yield",
        "sched_getaffinity", "sched_setaffinity", "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid",
        "getrandom", "uname", "sysinfo", "getrusage", "prlimit64",
        // Threads and signals
        "clone", "clone3", "set_robust_list", "rseq", "prctl", "sigaltstack", "rt_sigprocmask", "rt_sigaction",
        "rt_sigreturn", "tgkill", "restart_syscall", "exit", "exit_group",
    ]

    /// Installs a seccomp filter on every thread of the process (and every
    /// thread started later) that allows only ``servingSystemCalls``, plus
    /// `socket(AF_UNIX, …)`, `socketpair(AF_UNIX, …)` and `extra`: call it once the daemon serves
    /// (after ``start()``, or from `run`'s `onServing`), when every socket,
    /// thread pool and file it needs is open. A handler that needs more
    /// names it in `extra`; run with ``SystemCallViolation/log`` to find out.
    /// The filter stays for the life of the process.
    ///
    /// - Throws: ``DaemonError/notRunning`` before ``start()``;
    ///   ``DaemonError/systemCallFilter(_:)`` when libseccomp refuses (an
    ///   unknown name in `extra`, a kernel without seccomp).
    public func restrictSystemCalls(
        _ violation: SystemCallViolation = .refuse, alsoAllowing extra: [String] = []
    ) throws(DaemonError) {
        guard isRunning else { throw .notRunning }
        var rules = (Self.servingSystemCalls + extra).map { SystemCallFilter.Rule($0) }
        // Unix sockets only: sd_notify's datagram, `connectInProcess()`'s pair.
        rules.append(SystemCallFilter.Rule("socket", firstArgument: UInt64(AF_UNIX)))
        rules.append(SystemCallFilter.Rule("socketpair", firstArgument: UInt64(AF_UNIX)))
        let filter = SystemCallFilter(rules: rules, violation: violation == .refuse ? .refuse : .log)
        do { try filter.install() } catch { throw .systemCallFilter("\(error)") }
        core.logger.info(
            "system calls restricted", metadata: ["allowed": "\(rules.count)", "violation": "\(violation)"])
    }

    /// Whether this process runs under a seccomp filter.
    public static var isSystemCallFilterActive: Bool { SystemCallFilter.isActive }
}
