import CoreMetrics
import FabricSystem
import Logging
import Synchronization

/// What the daemon's threads share: configuration, handlers, the hand-over
/// of new sessions from the control thread to the poll thread, stop flags and
/// counters.
final class DaemonCore: Sendable {
    let configuration: DaemonConfiguration
    let models: [UInt32: ServedModel]
    let requiredOutput: [UInt32: UInt32]
    let onEvent: (@Sendable (DaemonEvent) -> Void)?
    let counters: DaemonCounters
    /// Each model's telemetry, by model id (its lane writes it).
    let modelCounters: [UInt32: ModelCounters]
    /// What controllers discover (`fabricq models`), by id, and its JSON
    /// (the answer to every models query: it never changes).
    let modelDescriptions: [ModelDescription]
    let modelsAnswer: [UInt8]
    /// Sessions the control thread holds, for ``telemetry()`` (the control
    /// thread adds and drops them; the poll thread never takes this lock).
    let liveSessions = LockedBox<[DaemonSession]>([])
    /// The last telemetry answer sent to a tool and when it was made
    /// (control thread): queries within ``telemetryReuseInterval`` get the
    /// same bytes, so tools asking in a loop cost one snapshot per interval.
    let telemetryCache = LockedBox<(at: UInt64, bytes: [UInt8])?>(nil)
    /// When the daemon last started serving (`MonotonicClock`; 0 before).
    /// Relaxed: a timestamp for the uptime, orders nothing.
    let startedAt = Atomic<UInt64>(0)

    /// New sessions on their way to the poll thread.
    let inbox = LockedBox<[DaemonSession]>([])
    /// Connected sockets from ``FabricDaemon/connectInProcess()`` on their
    /// way to the control thread, which runs the handshake on them as on an
    /// accepted connection.
    let inProcessConnections = LockedBox<[FileDescriptor]>([])
    /// Per model: when a handler error was last logged, and how many since
    /// were left out (poll thread; a lock only because DaemonCore is shared).
    let handlerErrorLog = LockedBox<[UInt32: (last: UInt64, suppressed: Int)]>([:])
    /// Whether ``inbox`` may hold something: the poll thread reads it on every
    /// pass and takes the lock only when it is set.
    let inboxPending = Atomic<Bool>(false)
    let pollStopping = Atomic<Bool>(false)
    /// Whether ``DaemonConfiguration/inheritedListener`` was adopted (it is
    /// closed at the first stop). Relaxed: `start()` runs under the daemon's
    /// lock; the flag orders nothing else.
    let inheritedListenerTaken = Atomic<Bool>(false)
    /// Passes of the poll loop so far: the service manager's watchdog is
    /// fed only while it moves (or the poll thread sleeps in `ppoll`).
    /// Written by the poll thread alone.
    let pollPasses = Atomic<UInt64>(0)
    let controlStopping = Atomic<Bool>(false)
    let activeSessions = Atomic<Int>(0)
    private let nextSessionID = Atomic<UInt64>(1)

    init(
        configuration: DaemonConfiguration, models: [UInt32: ServedModel],
        metricsFactory: (any MetricsFactory)?, onEvent: (@Sendable (DaemonEvent) -> Void)?
    ) {
        self.configuration = configuration
        self.models = models
        requiredOutput = models.mapValues { $0.handler.requiredOutputCapacity }
        self.onEvent = onEvent
        counters = DaemonCounters(factory: metricsFactory)
        modelCounters = models.mapValues { _ in ModelCounters() }
        let logger = configuration.logger
        modelDescriptions = models.sorted { $0.key < $1.key }.map { id, model in
            let c = model.configuration
            var input = model.handler.inputSpecification
            if input != nil && TensorRequirement(input) == nil {
                // Never advertise what is not enforced.
                logger.warning(
                    "input specification does not fit the tensor ABI: not advertised, typed inputs not checked against it",
                    metadata: ["model": "\(id)", "specification": "\(input.map { "\($0)" } ?? "")"])
                input = nil
            }
            return ModelDescription(
                id: id, name: model.handler.modelName, input: input,
                outputBytes: model.handler.requiredOutputCapacity, maximumBatchSize: c.batching.maximumBatchSize,
                preferredBatchSizes: c.batching.preferredBatchSizes,
                maximumQueueDelayMicroseconds: Int(clamping: c.batching.maximumQueueDelay.saturatingNanoseconds / 1000),
                instances: c.instances, execution: c.execution == .threads ? "threads" : "pollThread",
                priorityLevels: c.priorityLevels, queueCapacity: c.queueCapacity)
        }
        modelsAnswer = ModelDescription.encode(modelDescriptions)
    }

    var logger: Logger { configuration.logger }

    /// The listening socket and the two eventfds: made by ``bind()`` before
    /// the threads start, then shared by them.
    final class Binding: @unchecked Sendable {
        // @unchecked: immutable after bind(); the socket and eventfds are used from their own threads
        let listener: UnixSocket
        /// Work for the poll thread from the control thread (a session
        /// arrived or must end, or stop). Never handed to a controller: each
        /// session wakes the poll thread through an eventfd of its own.
        let daemonDoorbell: EventFD
        /// Work for the control thread: a retired session, or stop.
        let controlDoorbell: EventFD
        /// A descriptor held in reserve (`/dev/null`): when the process runs
        /// out of descriptors, the control thread closes it to accept the
        /// waiting connection, answers it "busy" and closes it again, instead
        /// of leaving it unanswered in the backlog and the listener readable
        /// forever (a busy loop). Control thread only.
        var reserve: FileDescriptor?

        init(listener: consuming UnixSocket, daemonDoorbell: EventFD, controlDoorbell: EventFD) {
            self.listener = listener
            self.daemonDoorbell = daemonDoorbell
            self.controlDoorbell = controlDoorbell
            reserve = try? FileDescriptor.openFile("/dev/null", .readOnly, options: [.closeOnExec])
        }

        deinit { try? reserve?.close() }
    }

    func bind() throws(DaemonError) -> Binding {
        let daemonDoorbell: EventFD, controlDoorbell: EventFD
        do {
            daemonDoorbell = try EventFD()
            controlDoorbell = try EventFD()
        } catch { throw .doorbell(error) }
        do throws(SocketError) {
            let listener: UnixSocket
            if let inherited = configuration.inheritedListener {
                // Once only: after a stop the number may name something else.
                if inheritedListenerTaken.exchange(true, ordering: .relaxed) {
                    throw .notAListeningSocket(descriptor: inherited.rawValue)
                }
                listener = try UnixSocket.adoptListener(inherited)
            } else {
                listener = try UnixSocket.listen(
                    at: configuration.socketPath, permissions: configuration.socketPermissions,
                    replaceStale: configuration.replaceStaleSocket)
            }
            return Binding(listener: listener, daemonDoorbell: daemonDoorbell, controlDoorbell: controlDoorbell)
        } catch { throw .socket(error) }
    }

    /// The lanes for every model, with their instances not yet started.
    func makeRuntime(_ binding: Binding) -> DaemonRuntime {
        let waker = PollWaker(doorbell: binding.daemonDoorbell)
        let lanes = models.sorted { $0.key < $1.key }.enumerated().map { number, entry in
            let (id, model) = entry
            return ModelLane(
                number: number, modelID: id, model: model, waker: waker, counters: counters,
                telemetry: modelCounters[id] ?? ModelCounters()
            ) { [self] error in
                reportHandlerError(error, model: id)
            }
        }
        return DaemonRuntime(lanes: lanes, waker: waker)
    }

    func makeSessionID() -> UInt64 {
        // Relaxed: a unique number, nothing is ordered by it.
        nextSessionID.add(1, ordering: .relaxed).oldValue
    }

    func stopPolling() {
        // Relaxed + the eventfd: the poll thread re-reads the flag on every
        // pass, and the signal wakes it if it sleeps.
        pollStopping.store(true, ordering: .relaxed)
    }

    func stopControl() {
        controlStopping.store(true, ordering: .relaxed)
    }

    func emit(_ event: DaemonEvent) {
        switch event {
        case .sessionOpened(let id, let peer):
            logger.info("session opened", metadata: ["session": "\(id)", "peer": "\(peer)"])
        case .sessionClosed(let id, let reason):
            logger.info("session closed", metadata: ["session": "\(id)", "reason": "\(reason)"])
        case .connectionRefused(let peer, let error):
            logger.warning("connection refused", metadata: ["peer": "\(peer.map { "\($0)" } ?? "unknown")", "error": "\(error)"])
        case .remoteSessionOpened(let id, let key):
            logger.info("remote session opened", metadata: ["session": "\(id)", "key": "\(key)"])
        case .remoteSessionClosed(let id, let key, let reason):
            logger.info("remote session closed", metadata: ["session": "\(id)", "key": "\(key)", "reason": "\(reason)"])
        case .remoteConnectionRefused(let key, let error):
            logger.warning("remote connection refused", metadata: ["key": "\(key ?? "none")", "error": "\(error)"])
        }
        onEvent?(event)
    }
}
