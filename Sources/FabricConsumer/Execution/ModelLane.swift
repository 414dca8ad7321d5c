import FabricSession
import FabricSystem
import Synchronization

/// One model's lane through the daemon: its queue (one FIFO per priority
/// level), its batcher and its instances. The poll thread owns the queues
/// and slots; the instance threads only run what they are handed.
final class ModelLane: @unchecked Sendable {
    // @unchecked: everything but the instances is poll-thread only; instances hand over through their mailboxes
    /// This lane's position in the daemon's list of lanes.
    let number: Int
    let modelID: UInt32
    let handler: any BatchHandler
    let configuration: ModelConfiguration
    private let levels: UnsafeMutablePointer<CommandQueue>
    /// Live commands queued, all levels together (mirrored in the
    /// telemetry's queue-depth gauge: one relaxed store per change).
    @exclusivity(unchecked) private(set) var queued = 0 {
        // Relaxed: a gauge for readers of telemetry; nothing is ordered by it.
        didSet { telemetry.queueDepth.store(queued, ordering: .relaxed) }
    }
    /// No queued deadline is earlier than this (`.max`: none; it may be
    /// earlier than every deadline still queued, never later).
    @exclusivity(unchecked) private var earliestDeadline = UInt64.max
    /// When ``expire(now:_:)`` last swept the queue.
    @exclusivity(unchecked) private var lastSweep: UInt64 = 0
    let slots: [BatchSlot]
    /// Indices of idle slots (a stack; capacity = instances).
    @exclusivity(unchecked) private var idle: [Int]
    private let threads: [InstanceThread]
    private let counters: DaemonCounters
    /// This model's telemetry (the poll thread writes it).
    let telemetry: ModelCounters
    /// What its typed inputs must be (nil: any well-formed header).
    let tensorRequirement: TensorRequirement?

    init(
        number: Int, modelID: UInt32, model: ServedModel, waker: PollWaker, counters: DaemonCounters,
        telemetry: ModelCounters, onHandlerError: @escaping @Sendable (any Error) -> Void
    ) {
        self.number = number
        self.modelID = modelID
        self.counters = counters
        self.telemetry = telemetry
        tensorRequirement = TensorRequirement(model.handler.inputSpecification)
        handler = model.handler
        configuration = model.configuration
        let levelCount = configuration.priorityLevels
        levels = .allocate(capacity: levelCount)
        for level in 0..<levelCount { (levels + level).initialize(to: CommandQueue(capacity: configuration.queueCapacity)) }
        slots = (0..<configuration.instances).map {
            BatchSlot(
                instance: $0, capacity: model.configuration.batching.maximumBatchSize, waker: waker, counters: counters,
                onHandlerError: onHandlerError)
        }
        idle = Array((0..<configuration.instances).reversed())
        threads = configuration.execution == .threads ? (0..<configuration.instances).map { _ in InstanceThread() } : []
    }

    deinit {
        levels.deinitialize(count: configuration.priorityLevels)
        levels.deallocate()
    }

    /// Starts the instance threads (``ModelExecution/threads``).
    func startInstances(spin: UInt64, onPlacementError: @escaping @Sendable (any Error) -> Void) throws(SystemCallError) {
        for thread in threads {
            try thread.start(
                handler: handler, placement: configuration.placement, spin: spin, onPlacementError: onPlacementError)
        }
    }

    /// Stops the instance threads once their current calls return.
    func stopInstances() {
        for thread in threads { thread.stopAndJoin() }
    }

    // MARK: Queueing (poll thread)

    /// Queues `command` at `priority` (clamped to the model's levels); false
    /// when the model's queue is full.
    func enqueue(_ command: QueuedCommand, priority: UInt8) -> Bool {
        let level = min(Int(priority), configuration.priorityLevels - 1)
        guard queued < configuration.queueCapacity else { return false }
        // Cancelled commands leave dead entries until they reach the head;
        // they never count against the live commands' room.
        if levels[level].isFull
            && levels[level].compact(moved: { command, position in index(command, level: level, position: position) }) == 0
        {
            return false
        }
        index(command, level: level, position: levels[level].append(command))
        queued += 1
        earliestDeadline = min(earliestDeadline, command.deadline)
        return true
    }

    /// Records where `command` waits, in its session's index.
    private func index(_ command: QueuedCommand, level: Int, position: Int) {
        command.session._withUnsafeGuaranteedRef {
            $0.queuedCommands.set(
                command.descriptor.commandID,
                at: QueuedCommandIndex.Location(lane: number, level: level, position: position))
        }
    }

    /// Forgets `command` in its session's index (it left the queue from
    /// `level`, slot `position`).
    private func unindex(_ command: QueuedCommand, level: Int, position: Int) {
        command.session._withUnsafeGuaranteedRef {
            $0.queuedCommands.remove(
                command.descriptor.commandID,
                at: QueuedCommandIndex.Location(lane: number, level: level, position: position))
        }
    }

    /// Takes command `commandID` of `session` out of the queue if it is still
    /// at `location` (found in the session's index); `done` gets it (to
    /// complete it `cancelled`). O(1).
    func cancel(
        _ commandID: UInt64, of session: DaemonSession, at location: QueuedCommandIndex.Location,
        done: (QueuedCommand) -> Void
    ) {
        guard location.level >= 0, location.level < configuration.priorityLevels else { return }
        let target = Unmanaged.passUnretained(session).toOpaque()
        guard
            let command = levels[location.level].kill(
                at: location.position,
                where: { $0.descriptor.commandID == commandID && $0.session.toOpaque() == target })
        else { return }
        queued -= 1
        unindex(command, level: location.level, position: location.position)
        done(command)
    }

    /// Completes every queued command whose deadline has passed (`expired`
    /// gets each), also while every instance is busy. Sweeps at most every
    /// ``sweepInterval`` (a sweep walks the queue); returns when to look
    /// again, if any deadline is queued.
    func expire(now: UInt64, _ expired: (QueuedCommand) -> Void) -> UInt64? {
        guard earliestDeadline != .max else { return nil }
        let sweepAllowed = lastSweep &+ Self.sweepInterval
        guard earliestDeadline <= now, now >= sweepAllowed else { return max(earliestDeadline, sweepAllowed) }
        lastSweep = now
        var next = UInt64.max
        var dropped = 0
        for level in 0..<configuration.priorityLevels {
            levels[level].kill(
                where: { command in
                    if command.deadline <= now { return true }
                    next = min(next, command.deadline)
                    return false
                },
                then: { command, position in
                    dropped += 1
                    unindex(command, level: level, position: position)
                    expired(command)
                })
        }
        queued -= dropped
        earliestDeadline = next
        return next == .max ? nil : next
    }

    /// The least time between two sweeps for expired commands (100 µs): a
    /// command may complete `expired` that much after its deadline, and a
    /// stream of commands with staggered deadlines costs one walk of the
    /// queue per interval at most. Dispatch checks each deadline exactly.
    static var sweepInterval: UInt64 { 100_000 }

    /// Drops every queued command of `session` (it is being retired).
    func purge(_ session: DaemonSession) {
        guard queued > 0 else { return }
        let target = Unmanaged.passUnretained(session).toOpaque()
        var dropped = 0
        for level in 0..<configuration.priorityLevels {
            levels[level].kill(where: { $0.session.toOpaque() == target }, then: { _, _ in dropped += 1 })
        }
        queued -= dropped
        telemetry.dropped.advance(by: UInt64(dropped))
    }

    /// When the oldest live command was picked up (nil when none is queued).
    private func oldestPickup() -> UInt64? {
        var oldest: UInt64?
        for level in 0..<configuration.priorityLevels {
            levels[level].dropDeadHead()
            if let pickup = levels[level].firstPickup { oldest = min(oldest ?? .max, pickup) }
        }
        return oldest
    }

    // MARK: Dispatch (poll thread)

    /// Whether one of the model's instance threads is running a batch (the
    /// poll thread then spins politely: see `runPollLoop`).
    var isRunningOnInstanceThread: Bool { !threads.isEmpty && idle.count < slots.count }

    /// Whether a command is queued (live or not yet swept).
    var hasQueued: Bool { queued > 0 }

    /// Whether a batch may go out now.
    var canDispatch: Bool { queued > 0 && !idle.isEmpty }

    /// Completes queued commands past their deadline (`expired` gets them,
    /// see ``expire(now:_:)``), then hands batches to idle instances while
    /// the batcher says so. Returns how many commands started, and when the
    /// lane wants to look again (a queued batch waiting for its delay, the
    /// next queued deadline), if it does.
    func dispatch(now: UInt64, expired: (QueuedCommand) -> Void) -> (started: Int, due: UInt64?) {
        var started = 0
        let deadlineDue = expire(now: now, expired)
        while !idle.isEmpty, queued > 0 {
            guard let oldest = oldestPickup() else { break }
            let waited = now >= oldest ? now - oldest : 0
            let size = configuration.batching.batchSize(queued: queued, oldestWaited: waited)
            guard size > 0 else {
                let (due, overflow) = oldest.addingReportingOverflow(
                    configuration.batching.maximumQueueDelay.saturatingNanoseconds)
                return (started, min(overflow ? .max : due, deadlineDue ?? .max))
            }
            let slot = slots[idle[idle.count - 1]]
            var taken = 0
            var level = configuration.priorityLevels - 1
            while taken < size && level >= 0 {
                levels[level].dropDeadHead()
                guard levels[level].occupied > 0 else {
                    level -= 1
                    continue
                }
                let position = levels[level].headPosition
                let command = levels[level].removeFirst()
                queued -= 1
                unindex(command, level: level, position: position)
                if command.deadline <= now {
                    expired(command)
                    continue
                }
                slot.place(command, at: taken)
                taken += 1
            }
            guard taken > 0 else { continue }
            idle.removeLast()
            launch(slot, count: taken, now: now)
            started += taken
        }
        if queued == 0 { earliestDeadline = .max }
        return (started, queued > 0 ? deadlineDue : nil)
    }

    /// Starts `command` at once, as a batch of one, when that is what the
    /// batcher would do: nothing is queued, an instance is idle, and a lone
    /// command may go without waiting (no queue delay, or batches of one).
    /// Saves the queue's copies on the path of a command that finds its
    /// model idle. False when it must be queued.
    func startAlone(_ command: QueuedCommand, now: UInt64) -> Bool {
        guard queued == 0, let instance = idle.last, configuration.batching.batchSize(queued: 1, oldestWaited: 0) == 1
        else { return false }
        idle.removeLast()
        let slot = slots[instance]
        slot.place(command, at: 0)
        launch(slot, count: 1, now: now)
        return true
    }

    /// Opens `slot`'s next batch of the `count` commands placed in it and
    /// hands it to its instance (or calls `start` here, poll-thread execution).
    private func launch(_ slot: BatchSlot, count: Int, now: UInt64) {
        let batch = slot.open(count: count, now: now)
        counters.batchesStarted.advance()
        counters.commandsStarted.advance(by: UInt64(count))
        telemetry.batches.advance()
        telemetry.started.advance(by: UInt64(count))
        telemetry.batchSize.record(UInt64(count))
        for k in 0..<count { telemetry.queueWait.record(now &- min(slot.pickups[k], now)) }
        if threads.isEmpty { handler.start(batch) } else { threads[slot.instance].hand(batch) }
    }

    /// Marks `slot` idle again once all its completions are posted; the
    /// sessions it retained are released.
    func recycle(_ slot: BatchSlot) {
        for k in 0..<slot.count {
            slot.sessions[k]?.release()
            slot.sessions[k] = nil
        }
        slot.busy = false
        idle.append(slot.instance)
    }
}
