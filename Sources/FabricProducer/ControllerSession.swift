import FabricSession
import FabricSystem
import SystemPackage

/// A controller's session with the daemon, for one thread that submits and
/// polls: the low-latency path. No locks, no allocation, and no system call
/// unless the daemon sleeps (then one doorbell ring per submit).
///
/// ```swift
/// var session = try ControllerSession.connect(to: "/run/fabricqueue/daemon.sock")
/// guard let input = session.buffers.acquire(), let output = session.buffers.acquire() else { … }
/// let size = preprocess(into: session.buffers.buffer(input))          // zero copy
/// try session.submit(CommandRequest(modelID: 1, input: input, inputSize: size, output: output))
/// let done = try session.waitForCompletion(timeout: .milliseconds(100))
/// let result = session.buffers.buffer(done.output).prefix(done.outputSize)
/// session.buffers.release(done.input); session.buffers.release(done.output)
/// ```
///
/// Completions arrive in any order (match them by ``CommandCompletion/commandID``):
/// the daemon runs models side by side and answers a command it refuses at
/// once. A dead daemon is noticed by the
/// waits (its socket closes) within ``ControllerOptions/livenessCheckInterval``
/// and reported as ``SubmitError/peerGone``; reconnect with a new session.
/// For `async` callers see ``FabricClient``.
public struct ControllerSession: ~Copyable {
    /// The largest micro-batch ``submit(batch:)-(UnsafeBufferPointer<CommandRequest>)`` takes (`BatchingPolicy.largestBatch`).
    public static let maximumBatchSize = BatchingPolicy.largestBatch

    let connection: SessionConnection
    @usableFromInline var submissions: SPSCProducer<Descriptor>
    @usableFromInline var completions: SPSCConsumer<Completion>
    /// The session's buffer slots: acquire, fill in place, name in a request,
    /// release when its completion has been read.
    public var buffers: BufferPool
    private let options: ControllerOptions
    private let producerID: UInt32
    private var nextCommandID: UInt64 = 1
    private var inFlight: InFlightTable
    /// Gathered by ``stage(_:)``, not yet posted.
    private var gathered: BatchAccumulator
    private var recorder = LatencyRecorder()
    private var stats = ControllerStatistics()
    private let metrics: ControllerMetrics
    /// A remote session's proxy, whose turns this thread takes (nil for a local daemon).
    private let remote: RemoteSessionProxy?

    /// Connects to the daemon listening at `path`, runs the handshake and
    /// maps what it grants.
    ///
    /// - Throws: `SessionError`: the socket failed, the daemon refused
    ///   (`SessionError.rejected(_:reason:)`, `SessionError.versionMismatch(daemon:client:)`),
    ///   or granted something that does not validate.
    public static func connect(
        to path: FilePath, options: ControllerOptions = ControllerOptions()
    ) throws(SessionError) -> ControllerSession {
        try ControllerSession(connection: SessionConnection(path: path, options: options), options: options)
    }

    /// Connects to `endpoint`: a daemon's Unix socket, or a remote daemon
    /// (`ucx://HOST:PORT`, see ``DaemonEndpoint``). A remote session has the
    /// same rings, buffers and API: a proxy carries its commands and
    /// completions over UCX, and a remote daemon that is gone (killed, or
    /// its link down: no heartbeat for `RemoteHeartbeat.peerTimeout`) is
    /// reported as ``SubmitError/peerGone`` like a local one. The session's
    /// thread takes the proxy's turns itself: a submit posts its commands
    /// (never waiting for the daemon to take them), and a wait waits on the
    /// network, so neither needs a hand-over between threads. That costs an
    /// uncontended lock and a system call per submit, poll and wait, which
    /// a remote round trip dwarfs.
    ///
    /// - Throws: `SessionError`: as for a socket path, and
    ///   `SessionError.transport(_:)` when the remote daemon cannot be
    ///   reached; a key it does not admit is
    ///   `SessionError.rejected(_:reason:)` with `SessionRejection.notAllowed`.
    public static func connect(
        to endpoint: DaemonEndpoint, options: ControllerOptions = ControllerOptions()
    ) throws(SessionError) -> ControllerSession {
        try ControllerSession(connection: SessionConnection.connect(to: endpoint, options: options), options: options)
    }

    /// Opens a session with a daemon hosted in this process (see
    /// `FabricDaemon.connectInProcess()`): the same handshake, rings and
    /// API as a daemon in another process.
    public static func connect(
        to connection: consuming InProcessConnection, options: ControllerOptions = ControllerOptions()
    ) throws(SessionError) -> ControllerSession {
        try ControllerSession(connection: SessionConnection(inProcess: connection, options: options), options: options)
    }

    /// The models the daemon serves: id, name, input element types and
    /// shape, output size, batch limits (a models query on the daemon's
    /// socket, within `timeout`; for a daemon in this process, what it said
    /// at connect).
    public func models(timeout: Duration = .seconds(2)) throws(SessionError) -> [ModelDescription] {
        try connection.models(timeout: timeout)
    }

    init(connection: SessionConnection, options: ControllerOptions) throws(SessionError) {
        let producer: SPSCProducer<Descriptor>
        do { producer = try SPSCProducer(region: connection.submissionRegion) } catch {
            throw .malformed("granted submission ring: \(error)")
        }
        let consumer: SPSCConsumer<Completion>
        do { consumer = try SPSCConsumer(region: connection.completionRegion) } catch {
            throw .malformed("granted completion ring: \(error)")
        }
        submissions = producer
        completions = consumer
        self.connection = connection
        self.options = options
        buffers = BufferPool(region: connection.data)
        producerID = options.producerID ?? UInt32(truncatingIfNeeded: currentProcessID)
        inFlight = InFlightTable(minimumCapacity: submissions.capacity + completions.capacity)
        gathered = BatchAccumulator(policy: options.batching, ringCapacity: submissions.capacity)
        metrics = ControllerMetrics(factory: options.metricsFactory)
        if case .remote(_, let proxy) = connection.daemon { remote = proxy } else { remote = nil }
    }

    deinit {
        inFlight.deallocate()
    }

    /// A remote session's commands this thread sent, and completions it
    /// fetched, in its own turns (nil for a local daemon): what the tests
    /// check the turn-taking with.
    package var remoteTurns: (sent: Int, received: Int)? { remote?.turnCounts }

    /// The daemon's id for this session.
    public var sessionID: UInt64 { connection.sessionID }
    /// Commands accepted (posted or gathered) and not yet completed.
    public var inFlightCount: Int { inFlight.count }
    /// Whether the daemon is known to be gone.
    public var isPeerGone: Bool { connection.isGone }

    // MARK: Submitting

    /// Posts one command; returns its id.
    ///
    /// - Throws: ``SubmitError/queueFull`` when the ring is full (backpressure:
    ///   reap completions and retry), ``SubmitError/peerGone``,
    ///   ``SubmitError/invalidRequest(_:)``.
    @discardableResult
    public mutating func submit(_ request: CommandRequest) throws(SubmitError) -> UInt64 {
        try withUnsafeTemporaryAllocation(of: CommandRequest.self, capacity: 1) { (one) throws(SubmitError) -> UInt64 in
            one.initialize(repeating: request)
            return try submit(batch: UnsafeBufferPointer(one))
        }
    }

    /// Posts a micro-batch of 1...8 commands all or nothing, with one ring
    /// publication (the daemon sees them in one burst) and at most one
    /// doorbell. Returns the first command's id; the others follow in order.
    /// Requests gathered by ``stage(_:)`` are posted first.
    ///
    /// - Throws: ``SubmitError/queueFull`` when the ring cannot take the
    ///   gathered requests and the whole micro-batch; nothing of the
    ///   micro-batch is registered or posted then, so retrying it is safe.
    @discardableResult
    public mutating func submit(batch requests: UnsafeBufferPointer<CommandRequest>) throws(SubmitError) -> UInt64 {
        guard (1...Self.maximumBatchSize).contains(requests.count) else {
            throw .invalidRequest("a batch holds 1...\(Self.maximumBatchSize) commands, not \(requests.count)")
        }
        for request in requests { try request.check() }
        if connection.isGone { throw .peerGone }
        try flush()
        guard let first = inFlight.firstFreeRun(from: nextCommandID, length: requests.count) else { throw .queueFull }
        let reservation = submissions.reserve(upTo: requests.count)
        guard reservation.count == requests.count else {
            stats.ringFull &+= 1
            throw .queueFull
        }
        let now = MonotonicClock.now()
        for (i, request) in requests.enumerated() {
            reservation.write(request.descriptor(commandID: first &+ UInt64(i), producerID: producerID, now: now), at: i)
            inFlight.add(first &+ UInt64(i), input: request.input, output: request.output, modelID: request.modelID)
        }
        submissions.commit(reservation)
        nextCommandID = first &+ UInt64(requests.count)
        stats.submitted &+= UInt64(requests.count)
        // Posted and registered: from here on nothing throws, so a caller
        // never retries (and duplicates) commands that are on the ring.
        ringDaemon()
        return first
    }

    /// Submits a batch given as an array (see ``submit(batch:)-(UnsafeBufferPointer<CommandRequest>)``).
    @discardableResult
    public mutating func submit(batch requests: [CommandRequest]) throws(SubmitError) -> UInt64 {
        try requests.withUnsafeBufferPointer { (buffer) throws(SubmitError) -> UInt64 in try submit(batch: buffer) }
    }

    /// Dynamic batching: adds `request` to the batch being gathered under
    /// ``ControllerOptions/batching`` and posts the batch when the policy says
    /// so (see `BatchingPolicy`). Call ``flushIfDue()`` from the polling loop
    /// so a partial batch goes out when its first request has waited
    /// `BatchingPolicy.maximumWait`. Returns the command's id.
    ///
    /// A request that returns an id is accepted: it is posted now or by a
    /// later flush (``flushIfDue()``, ``flush()``, the next ``stage(_:)`` or
    /// ``submit(batch:)-(UnsafeBufferPointer<CommandRequest>)``, or a wait,
    /// which posts a due batch before it sleeps), even when this call found
    /// the ring full. A thrown error means the request was not taken.
    ///
    /// - Throws: ``SubmitError/queueFull`` when the policy posts every
    ///   request at once and the ring is full, when a full batch is still
    ///   waiting for ring space, or when as many commands are in flight as the
    ///   rings hold; ``SubmitError/peerGone``; ``SubmitError/invalidRequest(_:)``.
    @discardableResult
    public mutating func stage(_ request: CommandRequest) throws(SubmitError) -> UInt64 {
        try request.check()
        if connection.isGone { throw .peerGone }
        if gathered.isFull && postGathered() == 0 { throw .queueFull }
        guard let id = inFlight.firstFreeRun(from: nextCommandID, length: 1) else { throw .queueFull }
        let now = MonotonicClock.now()
        if gathered.append(request.descriptor(commandID: id, producerID: producerID, now: now), now: now),
            postGathered() == 0, gathered.policy.postsImmediately
        {
            // Posting at once, like submit(_:): a full ring refuses the request.
            gathered.removeLast()
            throw .queueFull
        }
        nextCommandID = id &+ 1
        inFlight.add(id, input: request.input, output: request.output, modelID: request.modelID)
        return id
    }

    /// Asks the daemon to cancel command `commandID`: if it is still queued
    /// there it is dropped and its completion reports
    /// `CompletionStatus.cancelled`; if it already runs, it finishes and
    /// completes as usual. Either way exactly one completion arrives for it,
    /// and its slots are released as that completion is read. Requests
    /// gathered by ``stage(_:)`` are posted first. Returns false when the
    /// command is not in flight.
    ///
    /// - Throws: ``SubmitError/queueFull`` when the submission ring has no
    ///   room for the cancellation (retry once the daemon has taken
    ///   commands); ``SubmitError/peerGone``.
    @discardableResult
    public mutating func cancel(_ commandID: UInt64) throws(SubmitError) -> Bool {
        guard let model = inFlight.model(of: commandID) else { return false }
        if connection.isGone { throw .peerGone }
        if !gathered.isEmpty { try flush() }
        guard submissions.enqueue(Descriptor.cancellation(of: commandID, modelID: model, producerID: producerID)) else {
            stats.ringFull &+= 1
            throw .queueFull
        }
        ringDaemon()
        return true
    }

    /// Requests gathered by ``stage(_:)`` and not yet posted.
    public var gatheredCount: Int { gathered.count }

    /// Posts the gathered batch if the policy says it is due (full, or its
    /// oldest request has waited long enough); returns how many commands went
    /// out (0 also when the ring had no room: the batch stays gathered).
    @discardableResult
    public mutating func flushIfDue() throws(SubmitError) -> Int {
        guard gathered.isDue(now: MonotonicClock.now()) else { return 0 }
        if connection.isGone { throw .peerGone }
        return postGathered()
    }

    /// Posts whatever has been gathered now; returns how many went out.
    ///
    /// - Throws: ``SubmitError/queueFull`` when the ring cannot take the whole
    ///   gathered batch (it stays gathered); ``SubmitError/peerGone``.
    @discardableResult
    public mutating func flush() throws(SubmitError) -> Int {
        guard !gathered.isEmpty else { return 0 }
        if connection.isGone { throw .peerGone }
        let posted = postGathered()
        guard posted > 0 else { throw .queueFull }
        return posted
    }

    /// Publishes the gathered batch all or nothing and rings the daemon (a
    /// syscall only if it sleeps). Returns how many went out.
    private mutating func postGathered() -> Int {
        let posted = gathered.post(to: &submissions)
        guard posted > 0 else {
            stats.ringFull &+= 1
            return 0
        }
        stats.submitted &+= UInt64(posted)
        ringDaemon()
        return posted
    }

    /// Rings the daemon's doorbell: a syscall only if it sleeps. The commands
    /// are already on the ring, so a failure is counted, not thrown: the
    /// daemon still finds them on its next pass (at most its poll timeout
    /// later), and a daemon that is gone is reported by the next wait.
    private mutating func ringDaemon() {
        // Remote: sent from this thread when the proxy's turn is free (no hand-over).
        if let remote, remote.forwardFromController() { return }
        do {
            if try submissions.ringConsumer(connection.submissionRing) { stats.doorbellRings &+= 1 }
        } catch {
            stats.doorbellFailures &+= 1
        }
    }

    // MARK: Completions

    /// The next completion if one has arrived; never blocks.
    public mutating func pollCompletion() throws(SubmitError) -> CommandCompletion? {
        if let done = try takeCompletion() { return done }
        guard let remote else { return nil }
        // Remote: what has arrived is fetched by this thread (a system call).
        remote.pollFromController()
        return try takeCompletion()
    }

    /// The next completion on the ring, if there is one.
    private mutating func takeCompletion() throws(SubmitError) -> CommandCompletion? {
        let next: Completion?
        do { next = try completions.dequeue() } catch { throw .ring(error) }
        guard let next else { return nil }
        let seen = MonotonicClock.now()
        // Relaxed by the doorbell protocol: no syscall unless the daemon sleeps.
        if (try? completions.ringProducers(connection.completionRing)) == true { stats.doorbellRings &+= 1 }
        return try finish(next, seen: seen)
    }

    /// Waits up to `timeout` for the next completion.
    ///
    /// - Throws: ``SubmitError/timedOut``; ``SubmitError/peerGone`` as soon as
    ///   the daemon's socket is found closed (checked every
    ///   ``ControllerOptions/livenessCheckInterval`` while blocked).
    public mutating func waitForCompletion(timeout: Duration) throws(SubmitError) -> CommandCompletion {
        // The ring only: for a remote daemon, the wait's turn below fetches from the network.
        if let done = try takeCompletion() { return done }
        let end = deadline(after: timeout)
        let slice = max(options.livenessCheckInterval.saturatingNanoseconds, 1_000_000)
        while true {
            let now = MonotonicClock.now()
            guard now < end else { throw .timedOut }
            // A gathered batch goes out when due, also while we wait.
            var wake = min(slice, end - now)
            if !gathered.isEmpty, !connection.isGone {
                if gathered.isDue(now: now) { _ = postGathered() }
                if let due = gathered.dueTime, due > now { wake = min(wake, due - now) }
            }
            // Remote: wait on the network here, so the completion needs no hand-over.
            if let remote {
                switch remote.driveWhileWaiting(timeout: wake, spin: options.wait.spinNanoseconds) {
                case true?:
                    if let done = try takeCompletion() { return done }
                    if !connection.checkPeer() { throw .peerGone }
                    continue
                case nil:
                    // The proxy thread's turn: it may be posting ours.
                    SpinWait.pause()
                    if let done = try takeCompletion() { return done }
                    continue
                case false?:
                    break  // the session has ended: the wait below reports it
                }
            }
            let wait: DoorbellWait
            do {
                wait = try completions.waitUntilReadable(
                    doorbell: connection.completionWait,
                    timeout: .nanoseconds(Int64(clamping: wake)))
            } catch {
                if case .ring(let e) = error { throw .ring(e) }
                if case .doorbell(let e) = error { throw .doorbell(e) }
                throw .timedOut
            }
            stats.sleeps &+= UInt64(wait.sleeps)
            if wait.sleeps > 0 { metrics.publish(stats) }
            if let done = try takeCompletion() { return done }
            // A whole slice without a completion: is the daemon still there?
            // (A system call, so only here, never on the way to a completion.)
            if !connection.checkPeer() { throw .peerGone }
        }
    }

    private mutating func finish(_ completion: Completion, seen: UInt64) throws(SubmitError) -> CommandCompletion {
        guard let (input, output) = inFlight.complete(completion.commandID) else {
            throw .protocolViolation("completion for command \(completion.commandID), which is not in flight")
        }
        let timings = StageTimestamps(
            submitted: completion.submitTimestamp, pickedUp: completion.pickupTimestamp,
            handlerStarted: completion.handlerStartTimestamp,
            handlerFinished: completion.handlerEndTimestamp, seen: seen)
        recorder.record(timings)
        stats.completed &+= 1
        let status = completion.status
        if status != .succeeded { stats.failed &+= 1 }
        if stats.completed & 4095 == 0 { metrics.publish(stats) }
        return CommandCompletion(
            commandID: completion.commandID, status: status, statusCode: completion.statusCode,
            detail: completion.detail, outputSize: min(Int(completion.outputSize), output.size),
            userData: completion.userData, input: input, output: output, timings: timings)
    }

    // MARK: Observability

    /// Per-stage latency percentiles of every command completed so far.
    public var latency: LatencySnapshot { recorder.snapshot }
    /// Forgets the latencies recorded so far (say, after a warm-up).
    public mutating func resetLatency() { recorder.reset() }
    /// Counters since the session opened.
    public var statistics: ControllerStatistics { stats }
    /// Pushes the counters to swift-metrics now.
    public func publishMetrics() { metrics.publish(stats) }
}
