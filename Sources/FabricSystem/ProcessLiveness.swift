import Glibc

/// Whether a process with this pid exists (`kill(pid, 0)`): alive unless the
/// kernel says there is no such process (`EPERM` means it exists and belongs
/// to someone else). A pid can be reused after its owner dies, so a `true`
/// is a hint, not proof.
package func processExists(_ pid: Int32) -> Bool {
    guard pid > 0 else { return false }
    switch valueOrErrno(retryOnInterrupt: true, { kill(pid, 0) }) {
    case .success, .failure(.notPermitted): return true
    case .failure: return false
    }
}

/// This process's id (`getpid(2)`).
package var currentProcessID: Int32 { getpid() }
