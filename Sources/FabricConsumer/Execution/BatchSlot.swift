import FabricSession
import FabricSystem
import Glibc
import Synchronization

/// Wakes the poll thread when a handler completes a command while it sleeps.
///
/// The lost-wake-up argument is the doorbells' (see `SleeperAnnouncement`
/// in the core): the poll thread announces (``sleeping`` = true), issues a
/// sequentially consistent fence, then re-checks every in-flight batch
/// before it sleeps; a completer publishes its command's state, issues the
/// same fence, then reads ``sleeping``. One of the two sees the other's write.
final class PollWaker: Sendable {
    let sleeping = Atomic<Bool>(false)
    let doorbell: EventFD
    /// The poll thread's `pthread_t`, once it runs (0 before).
    private let pollThread = Atomic<UInt>(0)

    init(doorbell: EventFD) { self.doorbell = doorbell }

    /// Poll thread: records itself, so completions it reports itself (a
    /// ``ModelExecution/pollThread`` handler completing inside `start`) skip
    /// the fence: it is awake by definition.
    func adoptPollThread() {
        // Relaxed: read only by `completionPublished` on this same thread
        // (any other thread's read can only miss, and then takes the fence).
        pollThread.store(UInt(pthread_self()), ordering: .relaxed)
    }

    /// Called by a completer after it published a completion.
    func completionPublished() {
        // Relaxed: see `adoptPollThread`.
        if pollThread.load(ordering: .relaxed) == UInt(pthread_self()) { return }
        // F2: orders the completion's publication before the read below.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        // Relaxed: the fence above carries the ordering.
        if sleeping.load(ordering: .relaxed) { try? doorbell.signal() }
    }
}

/// What a completer reported for one command; read by the poll thread once
/// the command's state says done.
struct CommandReport {
    var statusCode: UInt32 = 0
    var outputSize: UInt32 = 0
    var detail: UInt32 = 0
    var finished: UInt64 = 0
}

/// The daemon-owned storage of one in-flight batch of one model instance:
/// the commands' descriptors and buffers, the sessions they came from, and
/// one state word per command. Allocated once per instance; reused for every
/// batch that instance runs, under a new generation each time.
///
/// Each command's state word is `generation << 2 | state`, state 0 pending,
/// 1 being reported, 2 reported. A completer claims a command with one
/// compare-and-swap from `generation << 2` (so a second report, or one for
/// a generation long gone, fails and is counted), writes its report, then
/// publishes state 2 with release. The poll thread reads the states with
/// acquire and posts what it finds on the sessions' completion rings: it is
/// the rings' only writer.
final class BatchSlot: @unchecked Sendable {
    // @unchecked: fields below marked "poll thread" are touched by it alone; completers write only `reports[k]` after claiming command k, and the atomics
    let instance: Int
    let capacity: Int
    let descriptors: UnsafeMutablePointer<Descriptor>
    let inputs: UnsafeMutablePointer<UnsafeMutableRawBufferPointer>
    let outputs: UnsafeMutablePointer<UnsafeMutableRawBufferPointer>
    /// Scratch for a synchronous ``CommandHandler``'s reports (its instance thread only).
    let results: UnsafeMutablePointer<CommandOutcome>
    let states: UnsafeMutablePointer<Atomic<UInt64>>
    let reports: UnsafeMutablePointer<CommandReport>
    /// Commands reported in the current generation (incremented after each
    /// publication, so the poll thread scans only batches with news). The
    /// poll thread posts no more commands than this count says, so it never
    /// recycles a slot (and resets the count) before every completer's
    /// increment has landed.
    let reported = Atomic<Int>(0)
    let waker: PollWaker
    /// Where refused completions are counted.
    let counters: DaemonCounters
    let onHandlerError: @Sendable (any Error) -> Void

    /// Poll thread: the sessions the commands came from, retained while
    /// the batch is in flight so their memory stays mapped.
    let sessions: UnsafeMutablePointer<Unmanaged<DaemonSession>?>
    /// Poll thread: when each command was taken off its ring.
    let pickups: UnsafeMutablePointer<UInt64>
    /// Each command's checked tensor header (nil: untyped input); written by
    /// the poll thread before the batch is handed over, read by the handler.
    let tensors: UnsafeMutablePointer<TensorHeader?>
    /// Poll thread: which commands' completions are posted.
    let posted: UnsafeMutablePointer<Bool>
    /// Poll thread.
    @exclusivity(unchecked) var count = 0
    /// Poll thread (completers get their copy in `InFlightBatch`).
    @exclusivity(unchecked) var generation: UInt64 = 0
    /// Poll thread: completions posted in this generation.
    @exclusivity(unchecked) var postedCount = 0
    /// Poll thread: when the batch was handed to its instance.
    @exclusivity(unchecked) var started: UInt64 = 0
    /// Poll thread: whether a batch is in flight.
    @exclusivity(unchecked) var busy = false

    init(
        instance: Int, capacity: Int, waker: PollWaker, counters: DaemonCounters,
        onHandlerError: @escaping @Sendable (any Error) -> Void
    ) {
        self.instance = instance
        self.counters = counters
        self.capacity = capacity
        self.waker = waker
        self.onHandlerError = onHandlerError
        descriptors = .allocate(capacity: capacity)
        descriptors.initialize(repeating: Descriptor(), count: capacity)
        inputs = .allocate(capacity: capacity)
        inputs.initialize(repeating: UnsafeMutableRawBufferPointer(start: nil, count: 0), count: capacity)
        outputs = .allocate(capacity: capacity)
        outputs.initialize(repeating: UnsafeMutableRawBufferPointer(start: nil, count: 0), count: capacity)
        results = .allocate(capacity: capacity)
        results.initialize(repeating: .unreported, count: capacity)
        states = .allocate(capacity: capacity)
        for k in 0..<capacity { (states + k).initialize(to: Atomic<UInt64>(0)) }
        reports = .allocate(capacity: capacity)
        reports.initialize(repeating: CommandReport(), count: capacity)
        sessions = .allocate(capacity: capacity)
        sessions.initialize(repeating: nil, count: capacity)
        pickups = .allocate(capacity: capacity)
        pickups.initialize(repeating: 0, count: capacity)
        posted = .allocate(capacity: capacity)
        posted.initialize(repeating: false, count: capacity)
        tensors = .allocate(capacity: capacity)
        tensors.initialize(repeating: nil, count: capacity)
    }

    deinit {
        for k in 0..<capacity { sessions[k]?.release() }
        descriptors.deallocate()
        inputs.deallocate()
        outputs.deallocate()
        results.deallocate()
        states.deinitialize(count: capacity)
        states.deallocate()
        reports.deallocate()
        sessions.deallocate()
        pickups.deallocate()
        posted.deallocate()
        tensors.deallocate()
    }

    /// Poll thread: writes `command` as the batch's `index`th, retaining
    /// its session for as long as the batch is in flight.
    func place(_ command: QueuedCommand, at index: Int) {
        descriptors[index] = command.descriptor
        inputs[index] = command.input
        outputs[index] = command.output
        pickups[index] = command.pickup
        tensors[index] = command.tensor
        sessions[index] = command.session.retain()
    }

    /// Poll thread: opens generation `generation + 1` for `count` commands
    /// already written to ``descriptors``, ``inputs``, ``outputs``,
    /// ``sessions`` and ``pickups``; returns the handle for the handler.
    func open(count: Int, now: UInt64) -> InFlightBatch {
        generation &+= 1
        let pending = generation << 2
        for k in 0..<count {
            // Relaxed: published to the instance by its mailbox (release) or
            // by the call itself on the poll thread.
            states[k].store(pending, ordering: .relaxed)
            posted[k] = false
        }
        reported.store(0, ordering: .relaxed)
        self.count = count
        postedCount = 0
        started = now
        busy = true
        return InFlightBatch(slot: self, generation: generation, count: count)
    }

    /// Any thread: claims command `index` of `generation` and publishes its
    /// report. False when it was reported already or the generation is gone.
    @discardableResult
    func finish(_ index: Int, generation: UInt64, status: CompletionStatus, outputSize: UInt32, detail: UInt32) -> Bool {
        let pending = generation << 2
        // Relaxed: the exchange only decides who reports; the report is
        // published by the release store below.
        guard states[index].compareExchange(expected: pending, desired: pending | 1, ordering: .relaxed).exchanged else {
            DaemonCounters.bump(counters.rejectedCompletions)
            return false
        }
        reports[index] = CommandReport(
            statusCode: status.rawValue, outputSize: outputSize, detail: detail, finished: MonotonicClock.now())
        // Release: the report above is visible to the poll thread's acquire load of the state.
        states[index].store(pending | 2, ordering: .releasing)
        // Release: pairs with the poll thread's acquire load of the count, so it
        // finds this command's state once it sees the count move.
        reported.add(1, ordering: .releasing)
        waker.completionPublished()
        return true
    }

    /// Whether command `index` of `generation` has been reported.
    func isFinished(_ index: Int, generation: UInt64) -> Bool {
        // Acquire: pairs with the release in `finish`.
        states[index].load(ordering: .acquiring) == (generation << 2) | 2
    }

    /// Poll thread: how many commands were reported and not yet posted.
    var newReports: Int {
        guard busy else { return 0 }
        // Acquire: pairs with the release increment in `finish`, so every
        // command counted here has its state and report visible.
        return reported.load(ordering: .acquiring) - postedCount
    }

    /// Logs a synchronous handler's error (rate-limited by the daemon).
    func reportHandlerError(_ error: any Error) { onHandlerError(error) }
}
