import Glibc
import SystemPackage

/// The service manager's notification protocol (systemd's `sd_notify(3)`),
/// spoken directly: one datagram of newline-separated `KEY=VALUE`
/// assignments to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path,
/// or `@name` for the abstract namespace). Without that variable (not
/// started by a notify-aware manager) every call does nothing.
package enum ServiceManager {
    /// Sends `state` (say `READY=1`, `STOPPING=1`, `WATCHDOG=1`,
    /// `STATUS=…`); false when there is no manager to tell or the datagram
    /// could not be sent (`socket(2)`, `sendto(2)`).
    @discardableResult
    package static func notify(_ state: String) -> Bool {
        guard let variable = getenv("NOTIFY_SOCKET") else { return false }
        let path = String(cString: variable)
        guard path.hasPrefix("/") || (path.hasPrefix("@") && path.utf8.count > 1) else { return false }
        var message = state
        let sent = message.withUTF8 { bytes in
            try? UnixDomainSocket.sendDatagram(to: path, UnsafeRawBufferPointer(bytes))
        }
        return sent == state.utf8.count
    }

    /// The descriptors the manager passed (`sd_listen_fds(3)`: `$LISTEN_FDS`
    /// of them from 3 on, when `$LISTEN_PID` is this process), made
    /// close-on-exec; the variables are removed so that children do not
    /// take them for theirs. Empty when nothing was passed.
    package static func takeListenedDescriptors() -> [FileDescriptor] {
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pid = getenv("LISTEN_PID"), Int32(String(cString: pid)) == getpid(),
            let raw = getenv("LISTEN_FDS"), let count = Int32(String(cString: raw)), count > 0, count <= 1024
        else { return [] }
        return (0..<count).map { offset in
            let fd = 3 + offset
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            return FileDescriptor(rawValue: fd)
        }
    }

    /// How often the manager expects `WATCHDOG=1`, in nanoseconds
    /// (`$WATCHDOG_USEC`, when `$WATCHDOG_PID` is unset or names this
    /// process); nil when no watchdog is set.
    package static var watchdogInterval: UInt64? {
        if let pid = getenv("WATCHDOG_PID"), Int32(String(cString: pid)) != getpid() { return nil }
        guard let raw = getenv("WATCHDOG_USEC"), let usec = UInt64(String(cString: raw)), usec > 0 else { return nil }
        let (ns, overflow) = usec.multipliedReportingOverflow(by: 1000)
        return overflow ? .max : ns
    }
}
