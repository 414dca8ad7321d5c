import CoreMetrics
import Dispatch
import FabricRemote
import FabricSession
import FabricSystem
import Glibc
import Synchronization
import SystemPackage

/// The daemon side of FabricQueue: listens for controllers, gives each a
/// session (rings, buffer slots, doorbells), and serves their commands with
/// registered models, like an inference server.
///
/// ```swift
/// var configuration = DaemonConfiguration(socketPath: "/run/fabricqueue/daemon.sock")
/// configuration.pollThreadPlacement = .cpu(3)
/// var resnet = ModelConfiguration(instances: 2, placement: .node(0))
/// resnet.batching = DynamicBatching(maximumBatchSize: 8, maximumQueueDelay: .microseconds(500))
/// let daemon = FabricDaemon(configuration: configuration, models: [
///     1: ServedModel(handler: ResNetHandler(engine), configuration: resnet),
///     2: ServedModel(handler: EchoHandler()),
/// ])
/// try daemon.run()          // until SIGINT or SIGTERM
/// ```
///
/// Threads: a control thread accepts connections, runs the handshake
/// (`SessionHandshake`) and watches every session's socket, so a controller
/// that exits or is killed is noticed at once and its session dropped. A
/// poll thread takes commands off every session's submission ring (bursts of
/// up to ``DaemonConfiguration/burstSize``), validates each descriptor and
/// queues it on its model's lane; each model's batcher
/// (``DynamicBatching``) gathers commands from all sessions, highest priority
/// first, and hands batches to the model's idle instances
/// (``ModelConfiguration/instances``: threads, or slots for a deferred
/// handler); the poll thread posts each completion as the handler reports it.
/// The poll thread never runs a ``ModelExecution/threads`` model's handler and
/// never waits for one, so a slow model delays neither other models nor
/// other sessions.
///
/// ## Completion order
/// Completions arrive **in any order**: each carries its command id. Higher
/// priorities overtake lower ones; commands refused at pickup (invalid,
/// expired, model queue full), cancelled or expired while queued are
/// answered at once, ahead of earlier commands still running; several
/// instances, or a deferred handler, finish batches in any order. Only
/// commands of one priority, to a model with one instance and a synchronous
/// handler, that all run, complete in submission order.
public final class FabricDaemon: Sendable {
    let core: DaemonCore
    private let threads = LockedBox<Running?>(nil)

    private struct Running {
        let poll: ServiceThread
        let control: ServiceThread
        let binding: DaemonCore.Binding
        let runtime: DaemonRuntime
        /// Where remote controllers connect, when ``DaemonConfiguration/remote`` is set.
        let remoteAddress: UCXAddress?
    }

    /// A daemon serving `models`, keyed by model id; `onEvent` hears about
    /// sessions opening, closing and being refused (on the control thread;
    /// the `remote…` events on the poll thread: keep it short).
    public init(
        configuration: DaemonConfiguration, models: [UInt32: ServedModel],
        metricsFactory: (any MetricsFactory)? = nil,
        onEvent: (@Sendable (DaemonEvent) -> Void)? = nil
    ) {
        core = DaemonCore(
            configuration: configuration, models: models,
            metricsFactory: metricsFactory, onEvent: onEvent)
    }

    /// A daemon with `handlers` keyed by model id, each served with the
    /// default ``ModelConfiguration`` (one instance thread, batches of up to
    /// ``DaemonConfiguration/burstSize``, no queue delay).
    public convenience init(
        configuration: DaemonConfiguration, handlers: [UInt32: any BatchHandler],
        metricsFactory: (any MetricsFactory)? = nil,
        onEvent: (@Sendable (DaemonEvent) -> Void)? = nil
    ) {
        let model = ModelConfiguration(
            batching: DynamicBatching(maximumBatchSize: configuration.effectiveBurstSize))
        self.init(
            configuration: configuration,
            models: handlers.mapValues { ServedModel(handler: $0, configuration: model) },
            metricsFactory: metricsFactory, onEvent: onEvent)
    }

    deinit { stop() }

    /// Binds the socket and starts the control, poll and instance threads.
    ///
    /// - Throws: ``DaemonError`` when the socket cannot be bound or a thread
    ///   or eventfd cannot be created.
    public func start() throws(DaemonError) {
        try threads.withLock { (threads) throws(DaemonError) in
            guard threads == nil else { throw .alreadyStarted }
            let binding = try core.bind()
            let core = self.core
            // Relaxed: a timestamp for the uptime.
            core.startedAt.store(MonotonicClock.now(), ordering: .relaxed)
            let runtime = core.makeRuntime(binding)
            // Instance threads spin at most 20 µs after a batch, then sleep on
            // their futex: a busy-polling poll thread and controller already
            // take two CPUs, and a third spinner on a small machine costs a
            // scheduler quantum per batch (measured: 4 ms p50 on 2 vCPUs).
            let spin = min(core.configuration.idle.spinNanoseconds, 20_000)
            do throws(SystemCallError) {
                for lane in runtime.lanes {
                    try lane.startInstances(spin: spin) { error in
                        core.logger.error(
                            "instance placement failed", metadata: ["model": "\(lane.modelID)", "error": "\(error)"])
                    }
                }
            } catch {
                for lane in runtime.lanes { lane.stopInstances() }
                throw .thread(error)
            }
            // Remote controllers are served by the poll thread: the gateway
            // listens now (a bad address fails the start) and is handed over.
            var gateway: RemoteGateway?
            if let remote = core.configuration.remote {
                let limits = core.configuration.session
                do throws(DaemonError) {
                    let models = core.modelsAnswer
                    // The daemon's lock and core, not the daemon: a strong
                    // reference taken on the poll thread could make it the
                    // thread that runs the daemon's deinit, and `stop()`.
                    let threads = self.threads
                    gateway = try RemoteGateway(
                        remote, sessionBytes: limits.slotSize.multipliedReportingOverflow(by: limits.slotCount).partialValue,
                        emit: { core.emit($0) },
                        beginSession: { () throws(SessionError) -> UnixSocket in
                            try Self.beginRemoteSession(threads: threads, core: core)
                        },
                        finishSession: { (granted: SessionGrant) throws(SessionError) in
                            try Self.finishRemoteSession(granted, models: models)
                        })
                } catch {
                    for lane in runtime.lanes { lane.stopInstances() }
                    throw error
                }
            }
            let poll: ServiceThread
            do throws(SystemCallError) {
                poll = try ServiceThread { [gateway] in core.runPollLoop(binding, runtime, gateway) }
            } catch {
                for lane in runtime.lanes { lane.stopInstances() }
                throw .thread(error)
            }
            do throws(SystemCallError) {
                threads = Running(
                    poll: poll, control: try ServiceThread { core.runControlLoop(binding) }, binding: binding,
                    runtime: runtime, remoteAddress: gateway?.address)
            } catch {
                core.stopPolling()
                try? binding.daemonDoorbell.signal()
                poll.join()
                for lane in runtime.lanes { lane.stopInstances() }
                throw .thread(error)
            }
        }
        if let address = remoteAddress {
            core.logger.info("listening for remote controllers", metadata: ["address": "\(address.url)"])
        }
    }

    /// Where remote controllers connect (the port bound, for port 0), or nil
    /// when the daemon does not listen for them or is not running.
    public var remoteAddress: UCXAddress? { threads.withLock { $0?.remoteAddress } }

    /// Starts a session of this daemon for a remote controller's bridge,
    /// on the poll thread, without waiting for the control thread: the
    /// in-process connection, and the handshake's hello sent on it.
    private static func beginRemoteSession(threads: LockedBox<Running?>, core: DaemonCore) throws(SessionError) -> UnixSocket {
        let connection: InProcessConnection
        do { connection = try connectInProcess(threads: threads, core: core) } catch {
            throw .rejected(.busy, reason: "\(error)")
        }
        let socket = connection.takeSocket()
        try socket.sendSessionHello()
        return socket
    }

    /// Maps what ``beginRemoteSession(threads:core:)`` was granted (read as
    /// it arrived by a `SessionGrantReader`): its regions, and the models JSON.
    private static func finishRemoteSession(
        _ grant: SessionGrant, models: [UInt8]
    ) throws(SessionError) -> (RemoteSessionBridge.Attached, [UInt8]) {
        let attachment = try SessionAttachment(grant)
        return (try RemoteSessionBridge.Attached(attachment: attachment), models)
    }

    /// Stops serving: every session ends (``SessionEndReason/daemonStopping``),
    /// the threads exit and the socket file is removed. Idempotent. Waits
    /// for handler calls in progress on instance threads to return; a
    /// deferred handler's commands still outstanding are dropped (their
    /// sessions are gone).
    public func stop() {
        guard
            let running = threads.withLock({ t in
                defer { t = nil }
                return t
            })
        else { return }
        core.stopPolling()
        try? running.binding.daemonDoorbell.signal()
        running.poll.join()
        for lane in running.runtime.lanes { lane.stopInstances() }
        core.stopControl()
        try? running.binding.controlDoorbell.signal()
        running.control.join()
        core.counters.publish()
    }

    /// Opens a session for a controller in this very process ("Model A":
    /// the control process links the engine): a connected socket pair whose
    /// far end the daemon treats as an accepted connection, running the same
    /// handshake and granting the same rings, data region and doorbells as
    /// over ``DaemonConfiguration/socketPath``. Hand the result to
    /// `ControllerSession.connect(to:)` or `FabricClient.connect(to:)`: the
    /// controller code is the same as for a daemon in another process.
    ///
    /// - Throws: ``DaemonError/notRunning`` before ``start()`` or after ``stop()``;
    ///   ``DaemonError/socket(_:)`` when `socketpair(2)` fails.
    public func connectInProcess() throws(DaemonError) -> InProcessConnection {
        try Self.connectInProcess(threads: threads, core: core)
    }

    private static func connectInProcess(
        threads: LockedBox<Running?>, core: DaemonCore
    ) throws(DaemonError) -> InProcessConnection {
        let pair: (client: FileDescriptor, daemon: FileDescriptor)
        do { pair = try FileDescriptorPassing.socketPair() } catch { throw .socket(error) }
        // Queued under the lock `stop()` takes first: the control thread,
        // which exits only after that, either adopts it or refuses it.
        let binding = threads.withLock { running -> DaemonCore.Binding? in
            guard let running else { return nil }
            core.inProcessConnections.withLock { $0.append(pair.daemon) }
            return running.binding
        }
        guard let binding else {
            _ = UnixSocket(pair.daemon)
            _ = InProcessConnection(adopting: pair.client)
            throw .notRunning
        }
        try? binding.controlDoorbell.signal()
        return InProcessConnection(adopting: pair.client, models: core.modelDescriptions)
    }

    /// Starts the daemon (unless it is running already), serves until the
    /// process receives one of `signals` (default `SIGINT` and `SIGTERM`),
    /// then stops: every session ends, the threads exit and the socket file
    /// is removed. Returns the signal that arrived.
    ///
    /// The signals are taken with Dispatch signal sources: their default
    /// action (ending the process) is set aside while this runs and restored
    /// afterwards, so a `kill` or Ctrl-C stops the daemon cleanly instead of
    /// leaving its socket behind.
    ///
    /// Under a service manager that speaks systemd's notification protocol
    /// (`$NOTIFY_SOCKET`, `Type=notify`) it reports `READY=1` once serving
    /// and `STOPPING=1` before stopping, and feeds a watchdog
    /// (`$WATCHDOG_USEC`, `WatchdogSec=`) every half interval for as long as
    /// the poll thread is alive: a poll thread stuck in a handler stops the
    /// pings and the manager restarts the daemon.
    ///
    /// ```swift
    /// let daemon = FabricDaemon(configuration: DaemonConfiguration(socketPath: "/tmp/fq.sock"), handlers: [1: Doubler()])
    /// try daemon.run()          // until Ctrl-C or SIGTERM
    /// ```
    ///
    /// - Throws: ``DaemonError`` when the daemon cannot start.
    /// - Parameters:
    ///   - signals: the signals that stop the daemon.
    ///   - onServing: called once the daemon serves and the signals are
    ///     taken (say, to print "listening"): a signal sent from then on
    ///     stops the daemon cleanly, never with the signal's default action.
    @discardableResult
    public func run(
        untilSignal signals: [Int32] = [SIGINT, SIGTERM], onServing: () -> Void = {}
    ) throws(DaemonError) -> Int32 {
        let arrived = LockedBox<Int32?>(nil)
        let wakeUp: EventFD
        do { wakeUp = try EventFD() } catch { throw .doorbell(error) }
        let queue = DispatchQueue(label: "fabricqueue.daemon.signals")
        var previous: [(Int32, sighandler_t?)] = []
        var sources: [any DispatchSourceSignal] = []
        for number in signals {
            // Dispatch sees the signal only once its default action is off.
            previous.append((number, signal(number, SIG_IGN)))
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                arrived.withLock { if $0 == nil { $0 = number } }
                try? wakeUp.signal()
            }
            source.resume()
            sources.append(source)
        }
        defer {
            for source in sources { source.cancel() }
            for (number, handler) in previous { signal(number, handler) }
        }
        if threads.withLock({ $0 == nil }) {
            do { try start() } catch {
                if error != .alreadyStarted { throw error }
            }
        }
        onServing()
        ServiceManager.notify("READY=1\nSTATUS=serving \(core.models.count) models on \(core.configuration.socketPath)")
        // A watchdog asks for WATCHDOG=1 within its interval: sent every
        // half interval while the poll thread is alive (its passes move, or
        // it sleeps waiting for work). A poll thread stuck in a handler that
        // never returns stops the pings, and the manager restarts us.
        let watchdog = ServiceManager.watchdogInterval
        let tick = Int64(min(watchdog.map { $0 / 2 } ?? 1_000_000_000, 1_000_000_000))
        var lastPasses = core.pollPasses.load(ordering: .relaxed)
        while arrived.withLock({ $0 }) == nil {
            _ = try? wakeUp.wait(timeoutNanoseconds: max(tick, 1_000_000))
            guard watchdog != nil else { continue }
            // Relaxed: a liveness hint, nothing else is read on its strength.
            let passes = core.pollPasses.load(ordering: .relaxed)
            let sleeping = threads.withLock { $0?.runtime.waker.sleeping.load(ordering: .relaxed) } ?? false
            if passes != lastPasses || sleeping { ServiceManager.notify("WATCHDOG=1") }
            lastPasses = passes
        }
        ServiceManager.notify("STOPPING=1")
        stop()
        return arrived.withLock { $0 } ?? 0
    }

    /// What the daemon has done so far.
    public var statistics: DaemonStatistics { core.counters.snapshot }

    /// The daemon's telemetry now: totals, every model's counts, queue and
    /// latency distributions, every open session. Read from counters the
    /// poll thread writes without locks; taking it costs the poll thread
    /// nothing. Tools in other processes get the same through
    /// ``DaemonTelemetry/fetch(from:timeout:)``.
    public func telemetry() -> DaemonTelemetry { core.telemetry() }

    /// The models this daemon serves, as controllers discover them
    /// (`ModelDescription.fetch(from:timeout:)`, `fabricq models`).
    public var models: [ModelDescription] { core.modelDescriptions }

    /// Whether the daemon serves (between ``start()`` and ``stop()``).
    public var isRunning: Bool { threads.withLock { $0 != nil } }

    /// Sessions open now.
    public var activeSessionCount: Int { core.activeSessions.load(ordering: .relaxed) }
}

/// Why a daemon did not start.
public enum DaemonError: Error, Equatable, Sendable, CustomStringConvertible {
    /// ``FabricDaemon/start()`` was called twice.
    case alreadyStarted
    /// The daemon is not running (``FabricDaemon/connectInProcess()`` before ``FabricDaemon/start()``).
    case notRunning
    /// The control socket could not be bound.
    case socket(SocketError)
    /// An eventfd could not be created.
    case doorbell(DoorbellError)
    /// A thread could not be started (`pthread_create`'s error).
    case thread(SystemCallError)
    /// The system-call filter could not be installed (libseccomp's reason).
    case systemCallFilter(String)
    /// The remote listener could not be set up (UCX's reason: an address
    /// not on this host, a port in use).
    case remoteListener(String)

    public var description: String {
        switch self {
        case .alreadyStarted: "daemon already started"
        case .notRunning: "daemon not running"
        case .socket(let e): "daemon socket: \(e)"
        case .doorbell(let e): "daemon doorbell: \(e)"
        case .thread(let e): "starting a daemon thread: \(e)"
        case .systemCallFilter(let why): "system-call filter: \(why)"
        case .remoteListener(let why): "remote listener: \(why)"
        }
    }
}
