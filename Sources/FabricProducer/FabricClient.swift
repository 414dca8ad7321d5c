import FabricSession
import FabricSystem
import Synchronization
import SystemPackage

/// What an `async` submission returns.
public struct CommandResult: Sendable, Equatable {
    /// The command's id.
    public var commandID: UInt64
    /// How it ended; nil for a status code this build does not know.
    public var status: CompletionStatus?
    /// The raw status code.
    public var statusCode: UInt32
    /// Status detail (see ``CommandCompletion/detail``).
    public var detail: UInt32
    /// The output the daemon wrote (copied out of the shared slot, which is
    /// already back in the pool).
    public var output: [UInt8]
    /// The request's user data.
    public var userData: UInt64
    /// When each stage happened.
    public var timings: StageTimestamps

    /// Why the command failed, decoded from ``statusCode`` and ``detail``
    /// (nil when it succeeded).
    public var failure: CommandFailure? { CommandFailure(statusCode: statusCode, detail: detail) }

    /// Whether the command succeeded.
    public var succeeded: Bool { status == .succeeded }
}

/// A controller session for Swift concurrency: any number of tasks submit
/// concurrently and `await` their completions, with a deadline and
/// cancellation; requests can be gathered into batches (``ControllerOptions/batching``).
///
/// ```swift
/// let client = try FabricClient.connect(to: "/run/fabricqueue/daemon.sock")
/// let result = try await client.submit(modelID: 1, outputCapacity: 4096, timeout: .milliseconds(50)) { input in
///     preprocess(image, into: input)          // writes straight into the shared slot
/// }
/// ```
///
/// A reaper thread takes completions off the ring, copies each output out,
/// returns the slots to the pool and resumes the waiting task; it also posts
/// gathered batches when they are due, expires deadlines, and notices a dead
/// daemon (every pending submission then fails with ``SubmitError/peerGone``).
/// A cancelled or expired submission's command may still run: its slots are
/// reclaimed when its completion arrives. For a polling thread that wants no
/// allocation and no locks, use ``ControllerSession``.
public final class FabricClient: Sendable {
    private let connection: SessionConnection
    private let options: ControllerOptions
    private let submitSide: LockedBox<SubmitSide>
    private let pending = LockedBox<[UInt64: PendingCommand]>([:])
    private let recorder = LockedBox(LatencyRecorder())
    private let counters = LockedBox(ControllerStatistics())
    private let metrics: ControllerMetrics
    private let stopping = Atomic<Bool>(false)
    private let reaper = LockedBox<ServiceThread?>(nil)

    /// Connects to the daemon at `path` and starts the reaper thread.
    public static func connect(
        to path: FilePath, options: ControllerOptions = ControllerOptions()
    ) throws(SessionError) -> FabricClient {
        try start(FabricClient(connection: SessionConnection(path: path, options: options), options: options))
    }

    /// Connects to `endpoint` (a Unix socket, or a remote daemon at
    /// `ucx://HOST:PORT`: see ``ControllerSession/connect(to:options:)-(DaemonEndpoint,_)``)
    /// and starts the reaper thread.
    public static func connect(
        to endpoint: DaemonEndpoint, options: ControllerOptions = ControllerOptions()
    ) throws(SessionError) -> FabricClient {
        try start(FabricClient(connection: SessionConnection.connect(to: endpoint, options: options), options: options))
    }

    /// Opens a session with a daemon hosted in this process (see
    /// `FabricDaemon.connectInProcess()`) and starts the reaper thread: the
    /// same handshake, rings and API as a daemon in another process.
    public static func connect(
        to connection: consuming InProcessConnection, options: ControllerOptions = ControllerOptions()
    ) throws(SessionError) -> FabricClient {
        try start(FabricClient(connection: SessionConnection(inProcess: connection, options: options), options: options))
    }

    private static func start(_ client: FabricClient) throws(SessionError) -> FabricClient {
        do throws(SystemCallError) {
            let thread = try ServiceThread { [client] in client.runReaper() }
            client.reaper.withLock { $0 = thread }
        } catch { throw .malformed("cannot start the reaper thread: \(error)") }
        return client
    }

    private init(connection: SessionConnection, options: ControllerOptions) throws(SessionError) {
        let producer: SPSCProducer<Descriptor>
        do { producer = try SPSCProducer(region: connection.submissionRegion) } catch {
            throw .malformed("granted submission ring: \(error)")
        }
        self.connection = connection
        self.options = options
        submitSide = LockedBox(
            SubmitSide(
                producer: producer, pool: BufferPool(region: connection.data),
                batching: options.batching,
                producerID: options.producerID ?? UInt32(truncatingIfNeeded: currentProcessID)))
        metrics = ControllerMetrics(factory: options.metricsFactory)
    }

    /// The models the daemon serves: id, name, input element types and
    /// shape, output size, batch limits (a models query on the daemon's
    /// socket, within `timeout`; for a daemon in this process, what it said
    /// at connect).
    public func models(timeout: Duration = .seconds(2)) throws(SessionError) -> [ModelDescription] {
        try connection.models(timeout: timeout)
    }

    /// Stops the reaper; pending submissions fail with ``SubmitError/cancelled``. Idempotent.
    public func close() {
        // Relaxed: the reaper re-reads it on every pass; the eventfd wakes it.
        stopping.store(true, ordering: .relaxed)
        try? connection.sessionDoorbellFD.signal()
        reaper.withLock { thread in
            thread?.join()
            thread = nil
        }
        failAll(.cancelled)
    }

    deinit { close() }

    /// The daemon's id for this session.
    public var sessionID: UInt64 { connection.sessionID }
    /// Whether the daemon is known to be gone.
    public var isPeerGone: Bool { connection.isGone }
    /// Per-stage latency percentiles of the commands completed so far.
    public var latency: LatencySnapshot { recorder.withLock { $0.snapshot } }
    /// Counters since the session opened.
    public var statistics: ControllerStatistics { counters.withLock { $0 } }
    /// Free buffer slots.
    public var availableBuffers: Int { submitSide.withLock { $0.pool.availableCount } }

    /// Submits one command and awaits its completion.
    ///
    /// A request takes session buffer slots from submission until its
    /// completion is read: one for the input and one for the output, or a
    /// run of contiguous slots for each when `inputCapacity` or
    /// `outputCapacity` is larger than a slot. With the defaults,
    /// `SessionLimits.slotCount / 2` requests can be in flight at once; a
    /// submission that finds too few free slots waits (within `timeout`, in
    /// line behind earlier ones) instead of failing.
    ///
    /// The timeout travels in the descriptor as the command's deadline: a
    /// command still queued in the daemon when it passes completes
    /// `CompletionStatus.expired` without running. Cancelling the task sends
    /// the daemon a cancellation: a command still queued there is dropped.
    ///
    /// - Parameters:
    ///   - modelID: the model to run.
    ///   - inputCapacity: the most bytes `fill` may write (nil: one slot).
    ///   - outputCapacity: bytes the output may take.
    ///   - flags: passed through to the handler (the descriptor's `flags`).
    ///   - userData: passed through to the handler and back in the result.
    ///   - priority: higher is served first (0, the default, is the lowest).
    ///   - timeout: the deadline for the completion.
    ///   - fill: writes the input straight into the shared buffer (at least
    ///     `inputCapacity` bytes) and returns how many bytes it wrote.
    /// - Throws: ``SubmitError``: `.queueFull` (the submission ring is full),
    ///   `.timedOut` (also while waiting for buffer slots), `.cancelled`,
    ///   `.peerGone`, `.invalidRequest` (also for capacities the session's
    ///   slots cannot hold together).
    public func submit(
        modelID: UInt32, inputCapacity: Int? = nil, outputCapacity: Int, flags: UInt16 = 0, userData: UInt64 = 0,
        priority: UInt8 = 0, timeout: Duration, fill: (UnsafeMutableRawBufferPointer) throws -> Int
    ) async throws(SubmitError) -> CommandResult {
        if connection.isGone { throw .peerGone }
        let end = deadline(after: timeout)
        let need = try slotsNeeded(input: inputCapacity ?? Int(connection.data.geometry.slotSize), output: outputCapacity)
        let (input, output, memory) = try await acquireBuffers(need, until: end)
        let size: Int
        do { size = try fill(memory) } catch {
            releaseBuffers(input, output)
            throw .invalidRequest("fill threw: \(error)")
        }
        let request = CommandRequest(
            modelID: modelID, input: input, inputSize: size, output: output,
            outputCapacity: outputCapacity, flags: flags, userData: userData, priority: priority, deadline: timeout)
        do { try request.check() } catch {
            releaseBuffers(input, output)
            throw error
        }
        let token = CancellationToken()
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<CommandResult, SubmitError>, Never>) in
                // Registered before it is posted, so its completion always finds it.
                let posted: Result<UInt64, SubmitError> = pending.withLock { table in
                    let staged = submitSide.withLock { side in
                        side.stage(request, ring: connection.submissionRing, reaper: connection.sessionDoorbellFD)
                    }
                    if case .success(let id) = staged {
                        table[id] = PendingCommand(
                            continuation: continuation, input: input, output: output, deadline: end, modelID: modelID)
                    }
                    return staged
                }
                switch posted {
                case .failure(let error):
                    releaseBuffers(input, output)
                    continuation.resume(returning: .failure(error))
                case .success(let id):
                    counters.withLock { $0.submitted &+= 1 }
                    if token.assign(id) { cancel(id, model: modelID) }
                }
            }
        } onCancel: {
            if let id = token.cancel() { cancel(id, model: modelID) }
        }
        return try result.get()
    }

    /// The slots a request of these capacities takes, or `.invalidRequest`
    /// when the session's data region could never hold both at once.
    private func slotsNeeded(input: Int, output: Int) throws(SubmitError) -> BufferNeed {
        let geometry = connection.data.geometry
        let slotSize = Int(geometry.slotSize), total = Int(geometry.slotCount)
        guard input >= 0, output >= 0, input <= Int(UInt32.max), output <= Int(UInt32.max) else {
            throw .invalidRequest("capacities must be 0...\(UInt32.max) bytes (a descriptor's 32-bit fields)")
        }
        guard let inputSlots = geometry.slotsNeeded(forBytes: input),
            let outputSlots = geometry.slotsNeeded(forBytes: output), outputSlots <= total - inputSlots
        else {
            throw .invalidRequest(
                "\(input)-byte input and \(output)-byte output do not fit the session's \(total) slots of \(slotSize) bytes together"
            )
        }
        return BufferNeed(inputSlots: inputSlots, outputSlots: outputSlots)
    }

    /// Takes an input and an output buffer. When the pool is short it
    /// waits, in line behind earlier waiters, for completions to hand it
    /// one (until `end`).
    private func acquireBuffers(
        _ need: BufferNeed, until end: UInt64
    ) async throws(SubmitError) -> (
        BufferSlot, BufferSlot, UnsafeMutableRawBufferPointer
    ) {
        if Task.isCancelled { throw .cancelled }
        if connection.isGone { throw .peerGone }
        if let pair = submitSide.withLock({ $0.acquirePairIfNoneWaiting(need) }) {
            return (pair.input, pair.output, pair.memory)
        }
        let waiter = CancellationToken()
        let granted: Result<BufferPair, SubmitError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<BufferPair, SubmitError>, Never>) in
                let queued = submitSide.withLock {
                    side -> (id: UInt64?, now: Result<BufferPair, SubmitError>?, wakeReaper: Bool) in
                    // Decided under the lock releases take: a pair freed
                    // after this check is handed to this waiter.
                    if let error = side.buffersFailure { return (nil, .failure(error), false) }
                    if let pair = side.acquirePairIfNoneWaiting(need) { return (nil, .success(pair), false) }
                    return (side.addBufferWaiter(continuation, need: need, deadline: end), nil, side.reaperSleeping)
                }
                if let now = queued.now { return continuation.resume(returning: now) }
                guard let id = queued.id else { return }
                if waiter.assign(id) { resumeBufferWaiter(id, with: .cancelled) }
                // A sleeping reaper must wake to expire this wait on time
                // (an awake one looks at the waiters' deadlines before it sleeps).
                if queued.wakeReaper { try? connection.sessionDoorbellFD.signal() }
            }
        } onCancel: {
            if let id = waiter.cancel() { resumeBufferWaiter(id, with: .cancelled) }
        }
        let pair = try granted.get()
        return (pair.input, pair.output, pair.memory)
    }

    /// Gives a command's slots back, handing them to the oldest submissions
    /// waiting for buffers where they now fit.
    private func releaseBuffers(_ input: BufferSlot, _ output: BufferSlot) {
        let handOffs = submitSide.withLock { $0.release(input, output) }
        for (waiter, pair) in handOffs { waiter.resume(returning: .success(pair)) }
    }

    /// Ends `id`'s wait with `error`; the waiters behind it may fit now.
    private func resumeBufferWaiter(_ id: UInt64, with error: SubmitError) {
        let (removed, handOffs) = submitSide.withLock { side in (side.removeBufferWaiter(id), side.serveWaiters()) }
        removed?.resume(returning: .failure(error))
        for (waiter, pair) in handOffs { waiter.resume(returning: .success(pair)) }
    }

    /// Stops the task waiting for `id` (``SubmitError/cancelled``) and asks
    /// the daemon to drop the command if it is still queued; its slots stay
    /// out until its completion arrives.
    private func cancel(_ id: UInt64, model: UInt32) {
        abandon(id, .cancelled)
        let outcome = submitSide.withLock { side in
            side.postCancellation(of: id, modelID: model, ring: connection.submissionRing)
        }
        switch outcome {
        case .posted: break
        case .ringFull: counters.withLock { $0.ringFull &+= 1 }
        case .withdrawn:
            // Never posted, so no completion will come: its slots are free now.
            if let entry = pending.withLock({ $0.removeValue(forKey: id) }) { releaseBuffers(entry.input, entry.output) }
        }
    }

    /// Resumes the task waiting for `id` with `error`; the command's slots
    /// stay out until its completion arrives.
    private func abandon(_ id: UInt64, _ error: SubmitError) {
        let continuation = pending.withLock { table -> CheckedContinuation<Result<CommandResult, SubmitError>, Never>? in
            defer { table[id]?.continuation = nil }
            return table[id]?.continuation
        }
        continuation?.resume(returning: .failure(error))
    }

    /// Fails every waiting task with `error`.
    private func failAll(_ error: SubmitError) {
        let waiting = pending.withLock { table in
            defer { for id in table.keys { table[id]?.continuation = nil } }
            return table.values.compactMap(\.continuation)
        }
        for continuation in waiting { continuation.resume(returning: .failure(error)) }
        let buffers = submitSide.withLock { $0.failBufferWaiters(error) }
        for waiter in buffers { waiter.resume(returning: .failure(error)) }
    }

    // MARK: Reaper

    private func runReaper() {
        let consumer: SPSCConsumer<Completion>
        do { consumer = try SPSCConsumer(region: connection.completionRegion) } catch {
            failAll(.protocolViolation("completion ring: \(error)"))
            return
        }
        var completions = consumer
        let slice = max(options.livenessCheckInterval.saturatingNanoseconds, 1_000_000)
        let spin: UInt64 =
            switch options.wait {
            case .busyPoll: .max
            case .adaptive(let d, _): d.saturatingNanoseconds
            case .futex, .eventFD: 0
            }
        var lastWork = MonotonicClock.now()
        var lastPeerCheck = lastWork
        // Relaxed: a stop request; close() also signals the eventfd.
        while !stopping.load(ordering: .relaxed) {
            var got = 0
            do {
                while let completion = try completions.dequeue() {
                    deliver(completion, seen: MonotonicClock.now())
                    got += 1
                }
            } catch {
                failAll(.ring(error))
                return
            }
            if got > 0 { _ = try? completions.ringProducers(connection.completionRing) }
            let now = MonotonicClock.now()
            let due = submitSide.withLock { side in side.flushIfDue(now: now, ring: connection.submissionRing) }
            let nearestDeadline = min(expireDeadlines(now: now) ?? .max, expireBufferWaiters(now: now) ?? .max)
            if got > 0 {
                lastWork = now
                continue
            }
            if now &- lastPeerCheck >= slice || spin == 0 {
                lastPeerCheck = now
                if !connection.checkPeer() {
                    failAll(.peerGone)
                    return
                }
            }
            if now &- lastWork < spin {
                SpinWait.pause()
                continue
            }

            // Sleep on the session eventfd until a completion, a batch due,
            // a deadline, or the next liveness check.
            var wake = min(now &+ slice, due ?? .max, nearestDeadline)
            completions.announceEventFDSleeper()
            // Under the lock a submitter opening a batch checks `reaperSleeping`
            // and signals the eventfd, so the batch's due time is never missed.
            // A buffer waiter that queues after this sees `reaperSleeping`
            // and signals, so its deadline is never overslept either.
            submitSide.withLock { side in
                if let dueAt = side.gathered.dueTime, dueAt > now { wake = min(wake, dueAt) }
                if let waitEnd = side.nearestBufferWaiterDeadline { wake = min(wake, max(waitEnd, now)) }
                side.reaperSleeping = true
            }
            // F1 of the doorbell protocol: announcement before the re-check.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            if !completions.hasElements() && wake > now {
                if (try? connection.sessionDoorbellFD.wait(timeoutNanoseconds: Int64(clamping: wake - now))) == true {
                    _ = try? connection.sessionDoorbellFD.consume()
                }
                counters.withLock { $0.sleeps &+= 1 }
            }
            submitSide.withLock { $0.reaperSleeping = false }
            completions.withdrawEventFDSleeper()
            metrics.publish(statistics)
        }
    }

    private func deliver(_ completion: Completion, seen: UInt64) {
        guard let entry = pending.withLock({ $0.removeValue(forKey: completion.commandID) }) else {
            counters.withLock { $0.failed &+= 1 }
            return  // not ours (a broken daemon): nothing to resume, no slot to free
        }
        let timings = StageTimestamps(
            submitted: completion.submitTimestamp, pickedUp: completion.pickupTimestamp,
            handlerStarted: completion.handlerStartTimestamp,
            handlerFinished: completion.handlerEndTimestamp, seen: seen)
        let (bytes, handOff) = submitSide.withLock { side in
            let size = min(Int(completion.outputSize), entry.output.size)
            let out = [UInt8](UnsafeRawBufferPointer(rebasing: side.pool.buffer(entry.output)[0..<size]))
            return (out, side.release(entry.input, entry.output))
        }
        for (waiter, pair) in handOff { waiter.resume(returning: .success(pair)) }
        recorder.withLock { $0.record(timings) }
        counters.withLock { stats in
            stats.completed &+= 1
            if completion.status != .succeeded { stats.failed &+= 1 }
        }
        entry.continuation?.resume(
            returning: .success(
                CommandResult(
                    commandID: completion.commandID, status: completion.status, statusCode: completion.statusCode,
                    detail: completion.detail, output: bytes, userData: completion.userData, timings: timings)))
    }

    /// Fails buffer waits whose deadline passed; returns the nearest one left.
    private func expireBufferWaiters(now: UInt64) -> UInt64? {
        let (expired, nearest, handOffs) = submitSide.withLock { side in
            let (expired, nearest) = side.expireBufferWaiters(now: now)
            // A larger request that timed out may have held back smaller ones.
            return (expired, nearest, expired.isEmpty ? [] : side.serveWaiters())
        }
        for waiter in expired { waiter.resume(returning: .failure(.timedOut)) }
        for (waiter, pair) in handOffs { waiter.resume(returning: .success(pair)) }
        return nearest
    }

    /// Fails waiting tasks whose deadline passed; returns the nearest deadline left.
    private func expireDeadlines(now: UInt64) -> UInt64? {
        var expired: [CheckedContinuation<Result<CommandResult, SubmitError>, Never>] = []
        let nearest = pending.withLock { table -> UInt64? in
            var nearest: UInt64?
            for (id, entry) in table where entry.continuation != nil {
                if entry.deadline <= now {
                    expired.append(entry.continuation!)
                    table[id]?.continuation = nil
                } else {
                    nearest = min(nearest ?? .max, entry.deadline)
                }
            }
            return nearest
        }
        for continuation in expired { continuation.resume(returning: .failure(.timedOut)) }
        return nearest
    }
}

/// A submission waiting for its completion.
struct PendingCommand {
    /// nil once the task stopped waiting (cancelled, timed out, peer gone).
    var continuation: CheckedContinuation<Result<CommandResult, SubmitError>, Never>?
    var input: BufferSlot
    var output: BufferSlot
    var deadline: UInt64
    var modelID: UInt32
}

/// Links a task's cancellation to the command id it gets once posted,
/// whichever happens first.
final class CancellationToken: Sendable {
    private let state = LockedBox<(id: UInt64?, cancelled: Bool)>((nil, false))

    /// Records the id; returns true if the task was already cancelled.
    func assign(_ id: UInt64) -> Bool {
        state.withLock {
            $0.id = id
            return $0.cancelled
        }
    }

    /// Records the cancellation; returns the id if it was already assigned.
    func cancel() -> UInt64? {
        state.withLock {
            $0.cancelled = true
            return $0.id
        }
    }
}

/// How many slots a request's input and output take.
struct BufferNeed: Equatable {
    var inputSlots: Int
    var outputSlots: Int
}

/// An input and an output buffer for one request, and the input's memory.
struct BufferPair: @unchecked Sendable {
    // @unchecked: `memory` points into the session's shared data region, which outlives every request
    var input: BufferSlot
    var output: BufferSlot
    var memory: UnsafeMutableRawBufferPointer
}

/// A submission waiting for a ``BufferPair``.
struct BufferWaiter {
    typealias Continuation = CheckedContinuation<Result<BufferPair, SubmitError>, Never>
    var id: UInt64
    var continuation: Continuation
    var need: BufferNeed
    var deadline: UInt64
}

/// The submitting half of a ``FabricClient``, behind its mutex.
struct SubmitSide: ~Copyable {
    var producer: SPSCProducer<Descriptor>
    var pool: BufferPool
    /// Gathered requests (the same accumulator ``ControllerSession`` uses).
    var gathered: BatchAccumulator
    let producerID: UInt32
    var nextCommandID: UInt64 = 1
    var reaperSleeping = false

    init(producer: consuming SPSCProducer<Descriptor>, pool: consuming BufferPool, batching: BatchingPolicy, producerID: UInt32) {
        self.producer = producer
        self.pool = pool
        self.producerID = producerID
        gathered = BatchAccumulator(policy: batching, ringCapacity: self.producer.capacity)
    }

    /// Submissions waiting for buffer slots, oldest first: released slots go
    /// to the first while they fit it (``release(_:_:)``); an error ends a wait.
    private var bufferWaiters: [BufferWaiter] = []
    private var nextWaiterID: UInt64 = 1

    /// An input and an output buffer of `need`'s sizes, unless earlier
    /// submissions are waiting for theirs or the pool has no room.
    mutating func acquirePairIfNoneWaiting(_ need: BufferNeed) -> BufferPair? {
        guard bufferWaiters.isEmpty else { return nil }
        return acquirePair(need)
    }

    /// An input and an output buffer of `need`'s sizes, or nil (and nothing
    /// taken) when the pool cannot give both. The larger is placed first;
    /// when the smaller then finds no gap, the other order is tried (free
    /// gaps of 3 and 2 slots hold a 2-slot input and a 3-slot output only
    /// if the output goes first).
    private mutating func acquirePair(_ need: BufferNeed) -> BufferPair? {
        guard pool.availableCount >= need.inputSlots + need.outputSlots else { return nil }
        let outputFirst = need.outputSlots > need.inputSlots
        for attempt in 0..<2 {
            let order = attempt == 0 ? outputFirst : !outputFirst
            let firstSlots = order ? need.outputSlots : need.inputSlots
            let secondSlots = order ? need.inputSlots : need.outputSlots
            guard let first = pool.acquire(slots: firstSlots) else { continue }
            guard let second = pool.acquire(slots: secondSlots) else {
                pool.release(first)
                if firstSlots == secondSlots { return nil }  // the other order is the same
                continue
            }
            let (input, output) = order ? (second, first) : (first, second)
            return BufferPair(input: input, output: output, memory: pool.buffer(input))
        }
        return nil
    }

    mutating func addBufferWaiter(_ continuation: BufferWaiter.Continuation, need: BufferNeed, deadline: UInt64) -> UInt64 {
        let id = nextWaiterID
        nextWaiterID &+= 1
        bufferWaiters.append(BufferWaiter(id: id, continuation: continuation, need: need, deadline: deadline))
        return id
    }

    mutating func removeBufferWaiter(_ id: UInt64) -> BufferWaiter.Continuation? {
        guard let i = bufferWaiters.firstIndex(where: { $0.id == id }) else { return nil }
        return bufferWaiters.remove(at: i).continuation
    }

    /// Set once the client can no longer complete anything (closed, daemon
    /// gone): a submission that would wait for buffers fails with it instead.
    private(set) var buffersFailure: SubmitError?

    /// Records `error` for later waiters and returns every current one, to
    /// be failed with it (outside the lock).
    mutating func failBufferWaiters(_ error: SubmitError) -> [BufferWaiter.Continuation] {
        if buffersFailure == nil { buffersFailure = error }
        defer { bufferWaiters.removeAll() }
        return bufferWaiters.map(\.continuation)
    }

    /// Takes the waiters whose deadline passed; returns them and the nearest deadline left.
    mutating func expireBufferWaiters(now: UInt64) -> ([BufferWaiter.Continuation], UInt64?) {
        guard !bufferWaiters.isEmpty else { return ([], nil) }
        var expired: [BufferWaiter.Continuation] = []
        var nearest: UInt64?
        bufferWaiters.removeAll { waiter in
            if waiter.deadline <= now {
                expired.append(waiter.continuation)
                return true
            }
            nearest = min(nearest ?? .max, waiter.deadline)
            return false
        }
        return (expired, nearest)
    }

    /// The earliest deadline among the buffer waiters.
    var nearestBufferWaiterDeadline: UInt64? { bufferWaiters.lazy.map(\.deadline).min() }

    /// Returns a command's slots to the pool; while the oldest waiting
    /// submission's buffers now fit, takes them straight back out for it and
    /// returns each waiter with its buffers, to be resumed outside the lock.
    /// Waiters are served strictly in order (none overtakes a larger one
    /// ahead of it) and only as many as the freed slots satisfy: no
    /// thundering herd. Without waiters this allocates nothing.
    mutating func release(_ input: BufferSlot, _ output: BufferSlot) -> [(BufferWaiter.Continuation, BufferPair)] {
        pool.release(input)
        pool.release(output)
        return serveWaiters()
    }

    /// Hands buffers to the oldest waiters while theirs fit (after a
    /// release, or after a waiter ahead of them left).
    mutating func serveWaiters() -> [(BufferWaiter.Continuation, BufferPair)] {
        var handOffs: [(BufferWaiter.Continuation, BufferPair)] = []
        while let first = bufferWaiters.first, let pair = acquirePair(first.need) {
            bufferWaiters.removeFirst()
            handOffs.append((first.continuation, pair))
        }
        return handOffs
    }

    /// What ``postCancellation(of:modelID:ring:)`` did.
    enum CancellationOutcome {
        /// The cancellation is on the ring, behind its command.
        case posted
        /// The command was still gathered (the ring had no room for its
        /// batch): it was taken back and will never be posted.
        case withdrawn
        /// The command is on the ring but the cancellation found no room.
        case ringFull
    }

    /// Cancels command `id`: posts the gathered batch first; if that does
    /// not fit and the command is in it, takes the command back instead of
    /// letting the cancellation overtake it.
    mutating func postCancellation(of id: UInt64, modelID: UInt32, ring: Doorbell) -> CancellationOutcome {
        if !gathered.isEmpty { _ = post(ring: ring) }
        if gathered.remove(commandID: id) { return .withdrawn }
        guard producer.enqueue(Descriptor.cancellation(of: id, modelID: modelID, producerID: producerID)) else {
            return .ringFull
        }
        _ = try? producer.ringConsumer(ring)
        return .posted
    }

    /// Gathers one request under the batching policy and posts the batch
    /// when the policy says so; returns the request's id. With a policy that
    /// posts every request at once, a full ring refuses the request
    /// (``SubmitError/queueFull``), as an unbatched submit does. Otherwise an
    /// accepted request stays gathered when the ring is full (the reaper
    /// posts it once a completion shows the daemon has made room), and a
    /// request is refused only when a full batch is still waiting for space.
    mutating func stage(_ request: CommandRequest, ring: Doorbell, reaper: EventFD) -> Result<UInt64, SubmitError> {
        if gathered.isFull && post(ring: ring) == 0 { return .failure(.queueFull) }
        let id = nextCommandID
        let now = MonotonicClock.now()
        // A sleeping reaper must wake to post a new partial batch when it is due.
        if gathered.isEmpty && reaperSleeping && !gathered.policy.postsImmediately { try? reaper.signal() }
        if gathered.append(request.descriptor(commandID: id, producerID: producerID, now: now), now: now),
            post(ring: ring) == 0, gathered.policy.postsImmediately
        {
            gathered.removeLast()
            return .failure(.queueFull)
        }
        nextCommandID &+= 1
        return .success(id)
    }

    /// Posts the gathered batch if it is due. Returns when the reaper must
    /// look again: the due time of a batch not yet due; nil when nothing is
    /// gathered, or when a due batch found the ring full (then the next
    /// completion, which means the daemon has taken commands off the ring,
    /// is what wakes the reaper to retry; sleeping until a due time already
    /// past would spin).
    mutating func flushIfDue(now: UInt64, ring: Doorbell) -> UInt64? {
        if gathered.isDue(now: now) {
            _ = post(ring: ring)
            return nil
        }
        return gathered.dueTime
    }

    /// Publishes the gathered batch all or nothing and rings the daemon;
    /// returns how many went out (0: the ring is full, the batch stays).
    private mutating func post(ring: Doorbell) -> Int {
        let posted = gathered.post(to: &producer)
        if posted > 0 { _ = try? producer.ringConsumer(ring) }
        return posted
    }
}
