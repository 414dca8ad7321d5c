import CoreMetrics
import FabricSystem
import Synchronization

/// Counts of what a ``FabricDaemon`` has done since it started.
public struct DaemonStatistics: Sendable, Equatable {
    /// Sessions accepted.
    public var sessionsOpened: UInt64 = 0
    /// Sessions ended (controller gone, protocol violation, daemon stopping).
    public var sessionsClosed: UInt64 = 0
    /// Connections refused (peer policy, version, malformed hello, busy).
    public var connectionsRefused: UInt64 = 0
    /// Descriptors taken off submission rings.
    public var commandsReceived: UInt64 = 0
    /// Commands whose handler succeeded.
    public var commandsSucceeded: UInt64 = 0
    /// Commands answered with an error completion (invalid descriptor,
    /// unknown model, handler failure).
    public var commandsFailed: UInt64 = 0
    /// Of those, descriptors that failed validation.
    public var invalidDescriptors: UInt64 = 0
    /// Wake-up system calls made to controllers (rings that found a sleeper).
    public var doorbellRings: UInt64 = 0
    /// Times the poll thread slept.
    public var sleeps: UInt64 = 0
}

/// The daemon's counters: written by its threads with relaxed atomic adds
/// (counters, not synchronization), read by ``FabricDaemon/statistics``, and
/// published to swift-metrics as deltas when the poll thread goes idle or
/// every few thousand commands.
final class DaemonCounters: Sendable {
    let sessionsOpened = Atomic<UInt64>(0)
    let sessionsClosed = Atomic<UInt64>(0)
    let connectionsRefused = Atomic<UInt64>(0)
    let commandsReceived = Atomic<UInt64>(0)
    let commandsSucceeded = Atomic<UInt64>(0)
    let commandsFailed = Atomic<UInt64>(0)
    let invalidDescriptors = Atomic<UInt64>(0)
    let doorbellRings = Atomic<UInt64>(0)
    let sleeps = Atomic<UInt64>(0)

    private let metrics: [Counter]
    private let published = LockedBox(DaemonStatistics())

    init(factory: (any MetricsFactory)?) {
        let labels = [
            "sessions_opened", "sessions_closed", "connections_refused", "commands_received",
            "commands_succeeded", "commands_failed", "invalid_descriptors", "doorbell_rings", "sleeps",
        ]
        metrics = labels.map { name in
            let label = "fabricqueue_daemon_\(name)_total"
            if let factory { return Counter(label: label, dimensions: [], factory: factory) }
            return Counter(label: label)
        }
    }

    @inline(__always)
    static func bump(_ counter: borrowing Atomic<UInt64>, by n: UInt64 = 1) {
        // Relaxed: a statistic; nothing is ordered by it.
        counter.add(n, ordering: .relaxed)
    }

    var snapshot: DaemonStatistics {
        // Relaxed: independent counters, each a snapshot.
        DaemonStatistics(
            sessionsOpened: sessionsOpened.load(ordering: .relaxed),
            sessionsClosed: sessionsClosed.load(ordering: .relaxed),
            connectionsRefused: connectionsRefused.load(ordering: .relaxed),
            commandsReceived: commandsReceived.load(ordering: .relaxed),
            commandsSucceeded: commandsSucceeded.load(ordering: .relaxed),
            commandsFailed: commandsFailed.load(ordering: .relaxed),
            invalidDescriptors: invalidDescriptors.load(ordering: .relaxed),
            doorbellRings: doorbellRings.load(ordering: .relaxed),
            sleeps: sleeps.load(ordering: .relaxed))
    }

    /// Pushes what changed since the last call into the swift-metrics
    /// counters. Allocates nothing (the poll thread calls it).
    func publish() {
        let now = snapshot
        published.withLock { last in
            func push(_ i: Int, _ current: UInt64, _ before: UInt64) {
                if current > before { metrics[i].increment(by: Int64(clamping: current - before)) }
            }
            push(0, now.sessionsOpened, last.sessionsOpened)
            push(1, now.sessionsClosed, last.sessionsClosed)
            push(2, now.connectionsRefused, last.connectionsRefused)
            push(3, now.commandsReceived, last.commandsReceived)
            push(4, now.commandsSucceeded, last.commandsSucceeded)
            push(5, now.commandsFailed, last.commandsFailed)
            push(6, now.invalidDescriptors, last.invalidDescriptors)
            push(7, now.doorbellRings, last.doorbellRings)
            push(8, now.sleeps, last.sleeps)
            last = now
        }
    }
}
