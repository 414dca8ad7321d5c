import CoreMetrics
import FabricSystem

/// Counts of what a controller has done.
public struct ControllerStatistics: Sendable, Equatable {
    /// Commands posted to the ring.
    public var submitted: UInt64 = 0
    /// Completions received (any status).
    public var completed: UInt64 = 0
    /// Completions with a status other than success.
    public var failed: UInt64 = 0
    /// Submissions refused because the ring was full.
    public var ringFull: UInt64 = 0
    /// Wake-up system calls made to the daemon (rings that found it asleep).
    public var doorbellRings: UInt64 = 0
    /// Times a wait went to sleep in the kernel.
    public var sleeps: UInt64 = 0
    /// Doorbell rings that failed after their commands were posted (the
    /// daemon still finds them on its next pass).
    public var doorbellFailures: UInt64 = 0
}

/// The swift-metrics counters a controller publishes to: deltas of
/// ``ControllerStatistics``, pushed when a wait goes to sleep, every few
/// thousand completions, and on request, so the hot path only bumps plain
/// integers.
final class ControllerMetrics: @unchecked Sendable {
    // @unchecked: `published` is touched by one thread at a time (the session's owner, or FabricClient's reaper)
    private let counters: [Counter]
    private var published = ControllerStatistics()

    init(factory: (any MetricsFactory)?) {
        counters = ["submitted", "completed", "failed", "ring_full", "doorbell_rings", "sleeps", "doorbell_failures"].map {
            name in
            let label = "fabricqueue_controller_\(name)_total"
            if let factory { return Counter(label: label, dimensions: [], factory: factory) }
            return Counter(label: label)
        }
    }

    /// Publishes what changed since the last call. Call from one thread at a
    /// time. Allocates nothing (it runs on the polling path).
    func publish(_ now: ControllerStatistics) {
        func push(_ i: Int, _ current: UInt64, _ last: UInt64) {
            if current > last { counters[i].increment(by: Int64(clamping: current - last)) }
        }
        push(0, now.submitted, published.submitted)
        push(1, now.completed, published.completed)
        push(2, now.failed, published.failed)
        push(3, now.ringFull, published.ringFull)
        push(4, now.doorbellRings, published.doorbellRings)
        push(5, now.sleeps, published.sleeps)
        push(6, now.doorbellFailures, published.doorbellFailures)
        published = now
    }
}
