import CoreMetrics
import FabricSession
import FabricSystem

/// How a controller waits for completions (and for room on a full ring).
public enum WaitStrategy: Sendable, Equatable {
    /// Spin; never sleep (lowest latency, burns the core).
    case busyPoll
    /// Sleep on the completion ring's futex word.
    case futex
    /// Sleep on the session's eventfd (`SessionDescriptorTag.sessionDoorbell`),
    /// which can also be watched with `poll`/`epoll` alongside other descriptors.
    case eventFD
    /// Spin for `spinFor`, then sleep on the futex (`eventFD: false`) or the eventfd.
    case adaptive(spinFor: Duration, eventFD: Bool = false)
}

/// How a controller connects and behaves.
public struct ControllerOptions: Sendable {
    /// How long connecting and the handshake may take.
    public var connectTimeout: Duration = .seconds(2)
    /// How long to keep retrying while no daemon listens at the socket path
    /// yet (a controller started before its daemon). Zero (the default):
    /// fail at once with `SessionError.daemonUnreachable(path:_:)`.
    public var waitForDaemon: Duration = .zero
    /// How to wait for completions and for ring space.
    public var wait: WaitStrategy = .adaptive(spinFor: .microseconds(20))
    /// How often a blocked wait wakes to check that the daemon is still
    /// there: the bound on noticing a dead daemon (the socket tells at once
    /// when checked).
    public var livenessCheckInterval: Duration = .milliseconds(20)
    /// Dynamic batching (``FabricClient`` and ``ControllerSession/stage(_:)``).
    public var batching: BatchingPolicy = .immediate
    /// Where counters go (nil: the process-wide `MetricsSystem` factory).
    public var metricsFactory: (any MetricsFactory)?
    /// Stamped into every descriptor (`Descriptor.producerID`); defaults to this process's pid.
    public var producerID: UInt32?

    /// Default options.
    public init() {}
}

extension WaitStrategy {
    /// How long a wait spins before it sleeps (ns).
    var spinNanoseconds: UInt64 {
        switch self {
        case .busyPoll: .max
        case .futex, .eventFD: 0
        case .adaptive(let spin, _): spin.saturatingNanoseconds
        }
    }
}
