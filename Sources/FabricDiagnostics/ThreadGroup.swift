import Glibc

/// Runs each body on its own POSIX thread and joins them all: explicit threads,
/// as ThreadSanitizer and the ring protocols want (no thread pool in between).
/// The bodies must bound their own waits; joining waits for all of them.
public func runOnThreads(_ bodies: [@Sendable () -> Void]) {
    final class Job {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var threads: [pthread_t] = []
    for body in bodies {
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Job>.fromOpaque(raw).takeRetainedValue().body()
            return nil
        }, Unmanaged.passRetained(Job(body)).toOpaque())
        precondition(rc == 0, "pthread_create failed: \(rc)")
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
}
