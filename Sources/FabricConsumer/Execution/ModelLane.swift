import FabricSession
import FabricSystem
import Synchronization

/// One model's lane through the daemon: its queue (one FIFO per priority
/// level), its batcher and its instances. The poll thread owns the queues
/// and slots; the instance threads only run what they are handed.
final class ModelLane: @unchecked Sendable {
    // @unchecked: everything but the instances is poll-thread only; instances hand over through their mailboxes
    let modelID: UInt32
    let handler: any BatchHandler
    let configuration: ModelConfiguration
    private let levels: UnsafeMutablePointer<CommandQueue>
    /// Live commands queued, all levels together.
    private(set) var queued = 0
    let slots: [BatchSlot]
    /// Indices of idle slots (a stack; capacity = instances).
    private var idle: [Int]
    private let threads: [InstanceThread]
    private let counters: DaemonCounters

    init(
        modelID: UInt32, model: ServedModel, waker: PollWaker, counters: DaemonCounters,
        onHandlerError: @escaping @Sendable (any Error) -> Void
    ) {
        self.modelID = modelID
        self.counters = counters
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
        guard queued < configuration.queueCapacity, !levels[level].isFull else { return false }
        levels[level].append(command)
        queued += 1
        return true
    }

    /// Takes command `commandID` of `session` out of the queue if it is still
    /// there; `done` gets it (to complete it `cancelled`).
    func cancel(_ commandID: UInt64, of session: DaemonSession, done: (QueuedCommand) -> Void) {
        let target = Unmanaged.passUnretained(session).toOpaque()
        var found = false
        for level in 0..<configuration.priorityLevels where !found {
            levels[level].kill(
                where: { !found && $0.descriptor.commandID == commandID && $0.session.toOpaque() == target },
                then: { command in
                    found = true
                    done(command)
                })
        }
        if found { queued -= 1 }
    }

    /// Drops every queued command of `session` (it is being retired).
    func purge(_ session: DaemonSession) {
        let target = Unmanaged.passUnretained(session).toOpaque()
        var dropped = 0
        for level in 0..<configuration.priorityLevels {
            levels[level].kill(where: { $0.session.toOpaque() == target }, then: { _ in dropped += 1 })
        }
        queued -= dropped
    }

    /// When the oldest live command was picked up (nil when none is queued).
    private func oldestPickup() -> UInt64? {
        var oldest: UInt64?
        for level in 0..<configuration.priorityLevels {
            levels[level].dropDeadHead()
            if let head = levels[level].first { oldest = min(oldest ?? .max, head.pickup) }
        }
        return oldest
    }

    // MARK: Dispatch (poll thread)

    /// Whether one of the model's instance threads is running a batch (the
    /// poll thread then spins politely: see `runPollLoop`).
    var isRunningOnInstanceThread: Bool { !threads.isEmpty && idle.count < slots.count }

    /// Whether a batch may go out now.
    var canDispatch: Bool { queued > 0 && !idle.isEmpty }

    /// Hands batches to idle instances while the batcher says so. Commands
    /// past their deadline go to `expired` instead. Returns how many
    /// commands started, and when the batcher wants to look again (a queued
    /// batch waiting for its delay), if it does.
    func dispatch(now: UInt64, expired: (QueuedCommand) -> Void) -> (started: Int, due: UInt64?) {
        var started = 0
        while !idle.isEmpty, queued > 0 {
            guard let oldest = oldestPickup() else { break }
            let waited = now >= oldest ? now - oldest : 0
            let size = configuration.batching.batchSize(queued: queued, oldestWaited: waited)
            guard size > 0 else {
                let (due, overflow) = oldest.addingReportingOverflow(
                    configuration.batching.maximumQueueDelay.saturatingNanoseconds)
                return (started, overflow ? .max : due)
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
                let command = levels[level].removeFirst()
                queued -= 1
                if command.deadline <= now {
                    expired(command)
                    continue
                }
                slot.descriptors[taken] = command.descriptor
                slot.inputs[taken] = command.input
                slot.outputs[taken] = command.output
                slot.pickups[taken] = command.pickup
                slot.sessions[taken] = command.session.retain()
                taken += 1
            }
            guard taken > 0 else { continue }
            idle.removeLast()
            let batch = slot.open(count: taken, now: MonotonicClock.now())
            DaemonCounters.bump(counters.batchesStarted)
            DaemonCounters.bump(counters.commandsStarted, by: UInt64(taken))
            started += taken
            if threads.isEmpty { handler.start(batch) } else { threads[slot.instance].hand(batch) }
        }
        return (started, nil)
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
