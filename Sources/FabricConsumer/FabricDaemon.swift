import CoreMetrics
import Dispatch
import FabricSession
import FabricSystem
import Glibc
import Synchronization
import SystemPackage

/// The daemon side of FabricQueue: listens for controllers, gives each a
/// session (rings, buffer slots, doorbells), and serves their commands with
/// registered ``CommandHandler``s.
///
/// ```swift
/// var configuration = DaemonConfiguration(socketPath: "/run/fabricqueue/daemon.sock")
/// configuration.pollThreadPlacement = .cpu(3)
/// let daemon = FabricDaemon(configuration: configuration, handlers: [1: ResNetHandler(engine)])
/// try daemon.start()
/// // … serve until asked to stop …
/// daemon.stop()
/// ```
///
/// Two threads: a control thread accepts connections, runs the handshake
/// (`SessionHandshake`) and watches every session's socket, so a controller
/// that exits or is killed is noticed at once (the kernel closes its socket)
/// and its session is dropped and its memory released; a poll thread serves
/// every session's submission ring in turn (bursts of up to
/// ``DaemonConfiguration/burstSize``), validates each descriptor, hands runs of
/// consecutive valid commands for one model to its handler as one batch, and
/// posts one completion per command.
///
/// ## Completion order
/// Completions are posted to the submitting session's completion ring **in
/// submission order**, and each carries its command id: one thread serves a
/// session, and commands that fail validation are answered in their place.
public final class FabricDaemon: Sendable {
    let core: DaemonCore
    private let threads = LockedBox<(poll: ServiceThread, control: ServiceThread, binding: DaemonCore.Binding)?>(nil)

    /// A daemon with `handlers` keyed by model id; `onEvent` hears about
    /// sessions opening, closing and being refused (on the control thread).
    public init(
        configuration: DaemonConfiguration, handlers: [UInt32: any CommandHandler],
        metricsFactory: (any MetricsFactory)? = nil,
        onEvent: (@Sendable (DaemonEvent) -> Void)? = nil
    ) {
        core = DaemonCore(
            configuration: configuration, handlers: handlers,
            metricsFactory: metricsFactory, onEvent: onEvent)
    }

    deinit { stop() }

    /// Binds the socket and starts the control and poll threads.
    ///
    /// - Throws: ``DaemonError`` when the socket cannot be bound or a thread
    ///   or eventfd cannot be created.
    public func start() throws(DaemonError) {
        try threads.withLock { (threads) throws(DaemonError) in
            guard threads == nil else { throw .alreadyStarted }
            let binding = try core.bind()
            let core = self.core
            let poll: ServiceThread
            do throws(SystemCallError) { poll = try ServiceThread { core.runPollLoop(binding) } } catch { throw .thread(error) }
            do throws(SystemCallError) {
                threads = (poll, try ServiceThread { core.runControlLoop(binding) }, binding)
            } catch {
                core.stopPolling()
                try? binding.daemonDoorbell.signal()
                poll.join()
                throw .thread(error)
            }
        }
    }

    /// Stops serving: every session ends (``SessionEndReason/daemonStopping``),
    /// the threads exit and the socket file is removed. Idempotent.
    public func stop() {
        guard
            let (poll, control, binding) = threads.withLock({ t in
                defer { t = nil }
                return t
            })
        else { return }
        core.stopPolling()
        try? binding.daemonDoorbell.signal()
        poll.join()
        core.stopControl()
        try? binding.controlDoorbell.signal()
        control.join()
        core.counters.publish()
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
        while arrived.withLock({ $0 }) == nil {
            _ = try? wakeUp.wait(timeoutNanoseconds: 1_000_000_000)
        }
        stop()
        return arrived.withLock { $0 } ?? 0
    }

    /// What the daemon has done so far.
    public var statistics: DaemonStatistics { core.counters.snapshot }

    /// Sessions open now.
    public var activeSessionCount: Int { core.activeSessions.load(ordering: .relaxed) }
}

/// Why a daemon did not start.
public enum DaemonError: Error, Equatable, Sendable, CustomStringConvertible {
    /// ``FabricDaemon/start()`` was called twice.
    case alreadyStarted
    /// The control socket could not be bound.
    case socket(SocketError)
    /// An eventfd could not be created.
    case doorbell(DoorbellError)
    /// A thread could not be started (`pthread_create`'s error).
    case thread(SystemCallError)

    public var description: String {
        switch self {
        case .alreadyStarted: "daemon already started"
        case .socket(let e): "daemon socket: \(e)"
        case .doorbell(let e): "daemon doorbell: \(e)"
        case .thread(let e): "starting a daemon thread: \(e)"
        }
    }
}
