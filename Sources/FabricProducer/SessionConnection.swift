import FabricSession
import FabricSystem
import Glibc
import Synchronization
import SystemPackage

/// A controller's connection to the daemon: the control socket and what the
/// handshake granted (rings, data region, eventfds), validated and mapped.
final class SessionConnection: @unchecked Sendable {
    // @unchecked: immutable once its initializers return (`daemon` is set by the convenience ones, before the connection is shared) but for `gone`, an atomic
    let socket: UnixSocket
    let sessionID: UInt64
    let submissionRegion: SharedRegion
    let completionRegion: SharedRegion
    let data: DataRegion
    let daemonDoorbellFD: EventFD
    let sessionDoorbellFD: EventFD
    /// Rings the daemon: signals its eventfd (and wakes futex sleepers).
    let submissionRing: Doorbell
    let completionRing: Doorbell
    /// How this controller sleeps, per ``WaitStrategy``.
    let submissionWait: Doorbell
    let completionWait: Doorbell
    private let gone = Atomic<Bool>(false)

    /// Connects to the daemon at `path` and runs the handshake.
    convenience init(path: FilePath, options: ControllerOptions) throws(SessionError) {
        try self.init(socket: Self.connect(to: path, waitingUpTo: options.waitForDaemon), options: options)
        daemon = .path(path)
    }

    /// Runs the handshake on a connection to a daemon in this process.
    convenience init(inProcess connection: consuming InProcessConnection, options: ControllerOptions) throws(SessionError) {
        let models = connection.models
        try self.init(socket: connection.takeSocket(), options: options)
        daemon = .inProcess(models)
    }

    /// Where the daemon is: its socket path (to query), or in this process
    /// (its models known at connect).
    enum DaemonLocation: Sendable {
        case path(FilePath)
        case inProcess([ModelDescription])
        /// Across the network: its models as the handshake listed them, and
        /// the proxy that carries the session.
        case remote([ModelDescription], RemoteSessionProxy)
    }

    /// Set once by the convenience initializers, before the connection is shared.
    var daemon: DaemonLocation = .inProcess([])

    /// The models the daemon serves: a models query on its socket, or what
    /// an in-process daemon said at connect.
    func models(timeout: Duration) throws(SessionError) -> [ModelDescription] {
        switch daemon {
        case .path(let path): try ModelDescription.fetch(from: path, timeout: timeout)
        case .inProcess(let models), .remote(let models, _): models
        }
    }

    /// Runs the handshake on `socket`, connected to the daemon.
    convenience init(socket: consuming UnixSocket, options: ControllerOptions) throws(SessionError) {
        let grant = try socket.requestSession(timeout: options.connectTimeout)
        try self.init(socket: socket, attachment: SessionAttachment(grant), options: options)
    }

    /// A connection over rings, data region and eventfds already mapped;
    /// `socket`'s hang-up says the daemon is gone.
    init(socket: consuming UnixSocket, attachment: SessionAttachment, options: ControllerOptions) {
        submissionRegion = attachment.submissionRegion
        completionRegion = attachment.completionRegion
        data = attachment.data
        daemonDoorbellFD = attachment.daemonDoorbellFD
        sessionDoorbellFD = attachment.sessionDoorbellFD
        self.socket = socket
        sessionID = attachment.sessionID
        submissionRing = attachment.submissionDoorbell
        completionRing = attachment.completionDoorbell
        switch options.wait {
        case .busyPoll:
            submissionWait = .busyPoll
            completionWait = .busyPoll
        case .futex:
            submissionWait = .futex
            completionWait = .futex
        case .eventFD:
            submissionWait = submissionRing
            completionWait = completionRing
        case .adaptive(let spin, let eventFD):
            submissionWait = .adaptive(spinFor: spin, then: eventFD ? submissionRing : .futex)
            completionWait = .adaptive(spinFor: spin, then: eventFD ? completionRing : .futex)
        }
    }

    /// Connects to `path`, retrying every 10 ms for up to `wait` while no
    /// daemon is there yet (no socket file, or nothing listening on it).
    private static func connect(to path: FilePath, waitingUpTo wait: Duration) throws(SessionError) -> UnixSocket {
        let end = deadline(after: wait)
        while true {
            do { return try UnixSocket.connect(to: path) } catch {
                guard case .system(let failure) = error,
                    failure.errno == .noSuchFileOrDirectory || failure.errno == .connectionRefused
                else { throw .socket(error) }
                guard MonotonicClock.now() < end else { throw .daemonUnreachable(path: path.string, error) }
                usleep(10_000)
            }
        }
    }

    deinit {
        // A remote session's proxy thread ends with its connection.
        if case .remote(_, let proxy) = daemon { proxy.stop() }
    }

    /// Whether the daemon is known to be gone. Relaxed: a latch, set once.
    var isGone: Bool { gone.load(ordering: .relaxed) }

    /// Checks the socket (no blocking) and latches ``isGone`` on a hang-up.
    @discardableResult
    func checkPeer() -> Bool {
        if isGone { return false }
        if socket.peerHasClosed() {
            gone.store(true, ordering: .relaxed)
            return false
        }
        return true
    }
}
