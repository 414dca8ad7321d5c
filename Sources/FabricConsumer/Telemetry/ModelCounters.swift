import FabricQueue
import Synchronization

/// One model's telemetry, written by the poll thread alone (single-writer
/// counters: see `Atomic.advance(by:)`) and read by anyone who asks for a
/// ``DaemonTelemetry``. Nothing here adds a lock, an allocation or a
/// system call to serving.
final class ModelCounters: @unchecked Sendable {
    // @unchecked: the status counters are atomics behind a pointer, one writer
    /// Descriptors for this model taken off the rings.
    let received = Atomic<UInt64>(0)
    /// Commands handed to instances, and the batches they went in.
    let started = Atomic<UInt64>(0)
    let batches = Atomic<UInt64>(0)
    /// Commands whose completion from an instance was collected.
    let finished = Atomic<UInt64>(0)
    /// Queued commands dropped without a completion because their session
    /// ended first.
    let dropped = Atomic<UInt64>(0)
    /// Live commands queued now (a gauge: stored, not added).
    let queueDepth = Atomic<Int>(0)
    /// Completions answered, by status code (`statusSlots - 1` gathers every
    /// code above the known ones).
    private let statuses: UnsafeMutablePointer<Atomic<UInt64>>
    static let statusSlots = 8

    /// From pickup to the start of the command's batch.
    let queueWait = TelemetryHistogram(.nanoseconds)
    /// From the start of the batch to the handler's report of the command.
    let handler = TelemetryHistogram(.nanoseconds)
    /// From the handler's report to the completion on the ring.
    let posting = TelemetryHistogram(.nanoseconds)
    /// Commands per executed batch.
    let batchSize = TelemetryHistogram(.batchSize)

    init() {
        statuses = .allocate(capacity: Self.statusSlots)
        for i in 0..<Self.statusSlots { (statuses + i).initialize(to: Atomic<UInt64>(0)) }
    }

    deinit {
        statuses.deinitialize(count: Self.statusSlots)
        statuses.deallocate()
    }

    /// Poll thread: one command was answered with `statusCode`.
    @inline(__always)
    func completed(statusCode: UInt32) {
        statuses[Int(min(statusCode, UInt32(Self.statusSlots - 1)))].advance()
    }

    /// Completions by status so far.
    var completions: DaemonTelemetry.StatusCounts {
        // Relaxed: a monitoring snapshot.
        func load(_ status: Int) -> UInt64 { statuses[status].load(ordering: .relaxed) }
        return DaemonTelemetry.StatusCounts(
            succeeded: load(Int(CompletionStatus.succeeded.rawValue)),
            invalidDescriptor: load(Int(CompletionStatus.invalidDescriptor.rawValue)),
            unknownModel: load(Int(CompletionStatus.unknownModel.rawValue)),
            handlerFailed: load(Int(CompletionStatus.handlerFailed.rawValue)),
            cancelled: load(Int(CompletionStatus.cancelled.rawValue)),
            expired: load(Int(CompletionStatus.expired.rawValue)),
            modelQueueFull: load(Int(CompletionStatus.modelQueueFull.rawValue)),
            other: load(Self.statusSlots - 1))
    }
}

/// One session's telemetry, written by the poll thread alone (see
/// ``ModelCounters``).
final class SessionCounters: Sendable {
    /// Descriptors taken off the session's submission ring (cancels excluded).
    let received = Atomic<UInt64>(0)
    /// Its commands answered with success, and without (counted when the
    /// answer is made, whether or not the session still reads it).
    let succeeded = Atomic<UInt64>(0)
    let failed = Atomic<UInt64>(0)
    /// Wake-up system calls made to its controller.
    let doorbellRings = Atomic<UInt64>(0)
}
