import Glibc
import SystemPackage

/// A POSIX thread running one body, joined explicitly: the package's daemon
/// and reaper loops run on these (explicit threads, as the ring protocols and
/// ThreadSanitizer want; no thread pool in between).
package struct ServiceThread: Sendable {
    private final class Job {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    private let thread: pthread_t

    /// Starts `body` on a new thread (`pthread_create`).
    package init(_ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        var thread = pthread_t()
        let job = Unmanaged.passRetained(Job(body)).toOpaque()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                guard let raw else { return nil }
                Unmanaged<Job>.fromOpaque(raw).takeRetainedValue().body()
                return nil
            }, job)
        guard rc == 0 else {
            Unmanaged<Job>.fromOpaque(job).release()
            throw SystemCallError("pthread_create", Errno(rawValue: rc))
        }
        self.thread = thread
    }

    /// Waits for the body to return (`pthread_join`).
    package func join() { pthread_join(thread, nil) }
}
