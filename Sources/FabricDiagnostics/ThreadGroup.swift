import FabricQueue
import FabricSystem

/// Runs each body on its own POSIX thread and joins them all: explicit threads,
/// as ThreadSanitizer and the ring protocols want (no thread pool in between).
/// The bodies must bound their own waits; joining waits for all of them.
public func runOnThreads(_ bodies: [@Sendable () -> Void]) {
    var threads: [ServiceThread] = []
    for body in bodies {
        do { threads.append(try ServiceThread(body)) } catch { preconditionFailure("pthread_create failed: \(error)") }
    }
    for thread in threads { thread.join() }
}
