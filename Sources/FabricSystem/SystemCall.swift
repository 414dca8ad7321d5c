import Glibc
import SystemPackage

// The package's one funnel into the kernel, in the spirit of swift-system's
// `valueOrErrno(retryOnInterrupt:)` and swift-nio's `syscall(blocking:)`:
// every system call the libraries make that can fail goes through
// `systemCall` (or `valueOrErrno`), and nothing else in the package reads
// `errno`.
//
// EINTR policy, decided here once:
// - Calls that complete (open, ftruncate, fcntl, mmap, read/write on an
//   eventfd, sendmsg/recvmsg, connect, accept4, …) are retried: a signal
//   that arrives during them is no reason to fail.
// - Waits with a timeout (futex FUTEX_WAIT, ppoll) are not retried here:
//   retrying would restart the whole timeout. They pass
//   `retryOnInterrupt: false` and treat `.interrupted` as an early wake-up;
//   their callers re-check and wait again with what is left of their own
//   deadline (`DoorbellLine.wait`, `UnixSocket.waitReadable(until:)`, the
//   daemon's loops).
// - `close(2)` is never retried (on Linux the descriptor is gone even when it
//   reports EINTR); swift-system's `FileDescriptor.close()` already does that.

/// Calls `body` until it returns something other than -1 or fails with an
/// error other than `EINTR` (when `retryOnInterrupt`), and returns its value
/// or the `errno` it left. The only place the package reads `errno`.
@inlinable
package func valueOrErrno<I: FixedWidthInteger>(
    retryOnInterrupt: Bool = true, _ body: () -> I
) -> Result<I, Errno> {
    while true {
        let result = body()
        if result != -1 { return .success(result) }
        let error = Errno(rawValue: errno)
        if retryOnInterrupt && error == .interrupted { continue }
        return .failure(error)
    }
}

/// Calls `body` (a system call that returns -1 and sets `errno` on failure)
/// through `valueOrErrno(retryOnInterrupt:_:)` and throws a
/// ``SystemCallError`` naming `operation` when it fails.
@inlinable
package func systemCall<I: FixedWidthInteger>(
    _ operation: String, retryOnInterrupt: Bool = true, _ body: () -> I
) throws(SystemCallError) -> I {
    switch valueOrErrno(retryOnInterrupt: retryOnInterrupt, body) {
    case .success(let value): return value
    case .failure(let error): throw SystemCallError(operation, error)
    }
}

/// For the calls that return an error number instead of setting `errno`
/// (`pthread_create`, `pthread_setaffinity_np`, …): throws a
/// ``SystemCallError`` when `body` returns non-zero. `EINTR` is retried.
@inlinable
package func systemCallReturningErrno(_ operation: String, _ body: () -> Int32) throws(SystemCallError) {
    while true {
        let code = body()
        if code == 0 { return }
        if code == EINTR { continue }
        throw SystemCallError(operation, Errno(rawValue: code))
    }
}

/// For the calls that return a pointer or `sentinel` on failure (`mmap`
/// returns `MAP_FAILED`): the pointer, or a ``SystemCallError``.
@inlinable
package func systemCall(
    _ operation: String, failingWith sentinel: UnsafeMutableRawPointer?, _ body: () -> UnsafeMutableRawPointer?
) throws(SystemCallError) -> UnsafeMutableRawPointer {
    while true {
        if let pointer = body(), pointer != sentinel { return pointer }
        let error = Errno(rawValue: errno)
        if error == .interrupted { continue }
        throw SystemCallError(operation, error)
    }
}
