import CoreMetrics
import FabricSystem
import Synchronization

/// Counts of what a ``FabricDaemon`` has done since it started.
public struct DaemonStatistics: Sendable, Equatable, Codable {
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
    /// Of those, the sleeps a doorbell ended (the rest timed out or were due).
    public var pollWakeups: UInt64 = 0
    /// Commands whose deadline passed before they could run.
    public var commandsExpired: UInt64 = 0
    /// Commands cancelled by their controller while queued.
    public var commandsCancelled: UInt64 = 0
    /// Commands refused because their model's queue was full.
    public var commandsRejectedQueueFull: UInt64 = 0
    /// Batches handed to model instances (commands started / batches is the
    /// mean executed batch size).
    public var batchesStarted: UInt64 = 0
    /// Commands handed to model instances.
    public var commandsStarted: UInt64 = 0
    /// Completions a handler reported twice, or for a batch already recycled:
    /// refused and never posted.
    public var rejectedCompletions: UInt64 = 0
}

/// The daemon's counters: those the poll thread alone writes (commands,
/// batches, doorbells, sleeps) with single-writer relaxed load/store pairs
/// (`Atomic.advance(by:)`), the control thread's (sessions, refusals) and
/// the completers' (`rejectedCompletions`) with relaxed atomic adds
/// (counters, not synchronization); read by ``FabricDaemon/statistics``, and
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
    let pollWakeups = Atomic<UInt64>(0)
    let commandsExpired = Atomic<UInt64>(0)
    let commandsCancelled = Atomic<UInt64>(0)
    let commandsRejectedQueueFull = Atomic<UInt64>(0)
    let batchesStarted = Atomic<UInt64>(0)
    let commandsStarted = Atomic<UInt64>(0)
    let rejectedCompletions = Atomic<UInt64>(0)

    private let metrics: [Counter]
    private let published = LockedBox(DaemonStatistics())

    init(factory: (any MetricsFactory)?) {
        let labels = [
            "sessions_opened", "sessions_closed", "connections_refused", "commands_received",
            "commands_succeeded", "commands_failed", "invalid_descriptors", "doorbell_rings", "sleeps",
            "commands_expired", "commands_cancelled", "commands_rejected_queue_full", "batches_started",
            "commands_started", "rejected_completions", "poll_wakeups",
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
            sleeps: sleeps.load(ordering: .relaxed),
            pollWakeups: pollWakeups.load(ordering: .relaxed),
            commandsExpired: commandsExpired.load(ordering: .relaxed),
            commandsCancelled: commandsCancelled.load(ordering: .relaxed),
            commandsRejectedQueueFull: commandsRejectedQueueFull.load(ordering: .relaxed),
            batchesStarted: batchesStarted.load(ordering: .relaxed),
            commandsStarted: commandsStarted.load(ordering: .relaxed),
            rejectedCompletions: rejectedCompletions.load(ordering: .relaxed))
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
            push(9, now.commandsExpired, last.commandsExpired)
            push(10, now.commandsCancelled, last.commandsCancelled)
            push(11, now.commandsRejectedQueueFull, last.commandsRejectedQueueFull)
            push(12, now.batchesStarted, last.batchesStarted)
            push(13, now.commandsStarted, last.commandsStarted)
            push(14, now.rejectedCompletions, last.rejectedCompletions)
            push(15, now.pollWakeups, last.pollWakeups)
            last = now
        }
    }
}
