import Glibc

/// A value behind a `pthread_mutex_t`, for the package's slow-path shared
/// state (session hand-over, pending async commands, statistics snapshots).
///
/// Why not `Synchronization.Mutex`: on Linux its lock lives in the standard
/// library, which is not built with ThreadSanitizer, so TSan cannot see the
/// happens-before edge it creates and reports false races on everything it
/// protects. TSan intercepts `pthread_mutex_lock`/`unlock`, so with this box
/// the threaded tests under `--sanitize=thread` check the real protocol.
package final class LockedBox<Value: ~Copyable>: @unchecked Sendable {
    // @unchecked: every access to `value` holds the mutex
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    /// A box holding `value`.
    package init(_ value: consuming Value) {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    package func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    /// Runs `body` with exclusive access to the value if the mutex is free
    /// now (`pthread_mutex_trylock`); returns nil, without waiting, if not.
    package func withLockIfAvailable<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
