import CFabricSystem
import Glibc

/// `futex(2)` on a 32-bit word in memory shared between processes (the
/// operations are not `FUTEX_PRIVATE_FLAG`).
@usableFromInline
package enum Futex {
    /// How a ``wait(on:expecting:timeoutNanoseconds:)`` ended.
    @usableFromInline
    package enum WaitOutcome: Equatable, Sendable {
        /// `FUTEX_WAKE` woke it (or a spurious kernel wake-up: re-check).
        case woken
        /// The word no longer held the expected value (`EAGAIN`): someone
        /// changed it before we slept.
        case valueChanged
        /// The timeout passed (`ETIMEDOUT`).
        case timedOut
        /// A signal arrived (`EINTR`, not retried: the caller re-checks and
        /// waits again with what is left of its own deadline).
        case interrupted
    }

    /// `FUTEX_WAIT`: sleeps while `*word == expected`, at most
    /// `timeoutNanoseconds` (negative: forever).
    @usableFromInline
    package static func wait(
        on word: UnsafeMutablePointer<UInt32>, expecting expected: UInt32, timeoutNanoseconds: Int64
    ) throws(SystemCallError) -> WaitOutcome {
        var timeout = timespec(nanoseconds: timeoutNanoseconds)
        let result = valueOrErrno(retryOnInterrupt: false) {
            timeoutNanoseconds < 0
                ? cfq_futex(word, CFQ_FUTEX_WAIT, expected, nil)
                : cfq_futex(word, CFQ_FUTEX_WAIT, expected, &timeout)
        }
        switch result {
        case .success: return .woken
        case .failure(.resourceTemporarilyUnavailable): return .valueChanged
        case .failure(.timedOut): return .timedOut
        case .failure(.interrupted): return .interrupted
        case .failure(let error): throw SystemCallError("futex(FUTEX_WAIT)", error)
        }
    }

    /// `FUTEX_WAKE`: wakes up to `count` sleepers; returns how many woke.
    @usableFromInline @discardableResult
    package static func wake(_ word: UnsafeMutablePointer<UInt32>, count: Int32) throws(SystemCallError) -> Int {
        Int(try systemCall("futex(FUTEX_WAKE)") { cfq_futex(word, CFQ_FUTEX_WAKE, UInt32(bitPattern: count), nil) })
    }
}

extension timespec {
    /// A relative timeout of `nanoseconds` (clamped at zero).
    package init(nanoseconds: Int64) {
        let value = max(nanoseconds, 0)
        self.init(tv_sec: Int(value / 1_000_000_000), tv_nsec: Int(value % 1_000_000_000))
    }
}
