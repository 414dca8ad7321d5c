import CFabricSystem
import Glibc
import SystemPackage

/// The `eventfd(2)` calls: create, add to the counter, take the counter.
package enum EventCounter {
    /// `eventfd(2)` with `EFD_NONBLOCK`, plus `EFD_CLOEXEC` unless
    /// `inheritable`, plus `EFD_SEMAPHORE` when `semaphore`.
    package static func create(initialValue: UInt32, semaphore: Bool, inheritable: Bool) throws(SystemCallError) -> FileDescriptor
    {
        var flags = CFQ_EFD_NONBLOCK
        if !inheritable { flags |= CFQ_EFD_CLOEXEC }
        if semaphore { flags |= CFQ_EFD_SEMAPHORE }
        return FileDescriptor(rawValue: try systemCall("eventfd") { cfq_eventfd(initialValue, flags) })
    }

    /// Adds `value` to the counter (`write(2)` of 8 bytes). A counter already
    /// at its maximum (`EAGAIN` on the non-blocking descriptor) is not an
    /// error: a waiter is due to wake anyway.
    package static func add(_ value: UInt64, to fd: FileDescriptor) throws(SystemCallError) {
        var v = value
        switch valueOrErrno(retryOnInterrupt: true, { write(fd.rawValue, &v, 8) }) {
        case .success, .failure(.resourceTemporarilyUnavailable): return
        case .failure(let error): throw SystemCallError("write", error)
        }
    }

    /// Reads the counter (`read(2)` of 8 bytes), resetting it (or taking one,
    /// for a semaphore); 0 when it was zero (`EAGAIN`).
    package static func take(from fd: FileDescriptor) throws(SystemCallError) -> UInt64 {
        var v: UInt64 = 0
        switch valueOrErrno(retryOnInterrupt: true, { read(fd.rawValue, &v, 8) }) {
        case .success: return v
        case .failure(.resourceTemporarilyUnavailable): return 0
        case .failure(let error): throw SystemCallError("read", error)
        }
    }
}
