import FabricRemote
import FabricSystem
import Logging
import SystemPackage

/// How a ``FabricDaemon`` listens, what each session gets, and how its poll
/// thread runs.
public struct DaemonConfiguration: Sendable {
    /// The Unix domain socket controllers connect to.
    public var socketPath: FilePath
    /// File mode of the socket (default 0600: the owner only; the peer policy
    /// is checked as well).
    public var socketPermissions: FilePermissions = [.ownerReadWrite]
    /// Remove a stale socket file at ``socketPath`` before binding (a daemon
    /// restarting after a crash finds its old one there). Only a socket that
    /// nothing listens on is removed: a live daemon at the path makes
    /// ``FabricDaemon/start()`` fail with "a daemon is already listening on
    /// PATH", and a file that is not a socket is never touched.
    public var replaceStaleSocket = true
    /// A listening socket to serve on instead of binding ``socketPath``
    /// (socket activation: see ``adoptSocketActivation()``). The daemon
    /// closes it when it stops and never removes its file; ``socketPath``
    /// then only names it in logs and status. It is adopted once: a second
    /// `start()` of the same daemon throws instead of trusting the number.
    public var inheritedListener: FileDescriptor?
    /// Which peers may open a session (checked with `SO_PEERCRED`).
    public var peerPolicy: PeerPolicy = .sameUser
    /// What each session gets.
    public var session = SessionLimits()
    /// At most this many sessions at once; more are refused with `SessionRejection.busy`.
    public var maximumSessions = 64
    /// Descriptors taken from one session's ring per pass, 1...256 (values
    /// outside are clamped). Batches are sized per model
    /// (``DynamicBatching``); `FabricDaemon(configuration:handlers:)` uses
    /// this as its models' largest batch.
    public var burstSize = 32

    /// ``burstSize`` clamped to 1...256.
    var effectiveBurstSize: Int { min(max(burstSize, 1), 256) }
    /// What the poll thread does when no session has work.
    public var idle: IdleStrategy = .adaptive(spinFor: .microseconds(50))
    /// Where the poll thread runs (nil: wherever the scheduler puts it).
    public var pollThreadPlacement: ThreadPlacement?
    /// How long a connecting controller has to send its hello. Handshakes
    /// never wait for one another: a silent peer holds only its own
    /// connection for this long.
    public var handshakeTimeout: Duration = .seconds(1)
    /// At most this many connections may be between accept and a complete
    /// hello at once; more are refused with `SessionRejection.busy`. Every
    /// one of them has passed ``peerPolicy`` already.
    public var maximumPendingHandshakes = 64
    /// Where the daemon logs session events.
    public var logger = Logger(label: "fabricqueue.daemon")
    /// Also serve controllers on other hosts over UCX (nil: local sessions only).
    public var remote: RemoteListening?

    /// Socket activation: when the service manager passed listening sockets
    /// (systemd's `$LISTEN_FDS` and `$LISTEN_PID`, as `sd_listen_fds(3)`
    /// reads them), serves on the first as ``inheritedListener``, closes any
    /// others, and returns true. The variables are removed either way.
    public mutating func adoptSocketActivation() -> Bool {
        let passed = ServiceManager.takeListenedDescriptors()
        for extra in passed.dropFirst() { try? extra.close() }
        guard let first = passed.first else { return false }
        inheritedListener = first
        return true
    }

    /// A configuration listening at `socketPath`, other settings at their defaults.
    public init(socketPath: FilePath) {
        self.socketPath = socketPath
    }
}

/// The resources the daemon creates for each session.
public struct SessionLimits: Sendable, Equatable {
    /// Slots of the submission ring (a power of two).
    public var submissionCapacity = 256
    /// Slots of the completion ring (a power of two). The daemon takes a
    /// command only when its completion has room, so this bounds the commands
    /// it holds for a session.
    public var completionCapacity = 256
    /// Bytes per buffer slot (a multiple of 64).
    public var slotSize = 64 * 1024
    /// Buffer slots in the session's data region.
    public var slotCount = 64

    /// Default limits: 256-slot rings, 64 buffer slots of 64 KiB.
    public init() {}

    /// Limits with the given values.
    public init(submissionCapacity: Int = 256, completionCapacity: Int = 256, slotSize: Int, slotCount: Int) {
        self.submissionCapacity = submissionCapacity
        self.completionCapacity = completionCapacity
        self.slotSize = slotSize
        self.slotCount = slotCount
    }
}

/// What the daemon's poll thread does when no session has work.
///
/// The daemon serves many rings from one thread, so when it blocks it sleeps
/// in one `ppoll(2)` over every session's own eventfd towards it
/// (`SessionDescriptorTag.daemonDoorbell`, one per session, so no controller
/// can consume or flood another's wake-ups). A controller signals its eventfd
/// only when the daemon has announced that it sleeps: a busy daemon costs
/// producers no system call. A futex would need one word for all sessions.
public enum IdleStrategy: Sendable, Equatable {
    /// Never sleep: lowest latency, one core at 100 %.
    case busyPoll
    /// Spin this long after the last work, then sleep on the eventfd.
    case adaptive(spinFor: Duration)
    /// Sleep on the eventfd as soon as there is no work.
    case sleep

    /// The names command-line tools take: `poll`, `adaptive` (spin 50 µs,
    /// then sleep) and `sleep`; nil for anything else.
    public init?(commandLineName name: String) {
        switch name {
        case "poll": self = .busyPoll
        case "adaptive": self = .adaptive(spinFor: .microseconds(50))
        case "sleep": self = .sleep
        default: return nil
        }
    }
}

/// Where a service thread runs.
public enum ThreadPlacement: Sendable, Equatable {
    /// Pinned to one CPU.
    case cpu(Int)
    /// Allowed on the CPUs of one NUMA node.
    case node(Int)

    /// Pins the calling thread.
    func apply() throws(NUMAError) {
        switch self {
        case .cpu(let cpu): try NUMA.pinCurrentThread(toCPU: cpu)
        case .node(let node): try NUMA.pinCurrentThread(toNode: node)
        }
    }
}

/// Something that happened to a session, reported to ``FabricDaemon``'s event handler.
public enum DaemonEvent: Sendable, Equatable {
    /// A controller completed the handshake.
    case sessionOpened(id: UInt64, peer: PeerCredentials)
    /// A session ended and its resources were released.
    case sessionClosed(id: UInt64, reason: SessionEndReason)
    /// A connecting process was refused.
    case connectionRefused(peer: PeerCredentials?, error: SessionError)
    /// A remote controller proved its key (named by its fingerprint) and
    /// got session `id` (an ordinary session, whose `sessionOpened` comes too).
    case remoteSessionOpened(id: UInt64, key: String)
    /// A remote session ended: the controller closed it, died, its link went
    /// down (no heartbeat), it broke the protocol, or the daemon stopped.
    case remoteSessionClosed(id: UInt64, key: String, reason: String)
    /// A remote controller was refused: a key not authorized, a bad or
    /// replayed proof, no handshake, or no room (`key` is nil before its hello).
    case remoteConnectionRefused(key: String?, error: SessionError)
}

/// Why a session ended.
public enum SessionEndReason: Sendable, Equatable, CustomStringConvertible {
    /// The controller closed its socket or died.
    case controllerGone
    /// The controller broke the ring protocol (say, corrupt ring indices);
    /// the daemon dropped it to protect everyone else.
    case protocolViolation(String)
    /// The daemon is stopping.
    case daemonStopping

    public var description: String {
        switch self {
        case .controllerGone: "controller gone"
        case .protocolViolation(let what): "protocol violation: \(what)"
        case .daemonStopping: "daemon stopping"
        }
    }
}
