import FabricRemote
import FabricSession
import FabricSystem
import Glibc

/// The daemon's remote sessions: one UCX worker, a listener on
/// ``RemoteListening/address``, and a ``RemoteSessionBridge`` per remote
/// controller, all driven by the daemon's poll thread.
///
/// The poll thread calls ``pass(now:busy:)`` on each of its passes, and
/// when it would sleep it asks ``hasWork()``, ``arm()`` and
/// ``timeout(now:)`` and puts ``eventFileDescriptor`` in its `ppoll` set.
/// So a remote command goes from the network onto its session's ring, and
/// its completion back onto the network, on the thread that serves it: no
/// hand-over between threads, and an idle daemon still sleeps.
///
/// Nothing here waits for a peer: handshakes advance a message at a time,
/// the in-process session is opened without waiting for the control
/// thread, sends are posted (a peer that does not take them within its
/// send timeout loses its session), and closes finish in later passes.
/// The only waits are at ``shutDown()``.
final class RemoteGateway: @unchecked Sendable {
    // @unchecked: made on the starting thread, then used only by the poll thread (handed over at its start); `address` is a constant
    private let configuration: RemoteListening
    private let worker: UCXWorker
    private let listener: UCXListener
    /// Reports remote sessions and refusals (`DaemonCore.emit`: logged, and the daemon's `onEvent`).
    private let emit: @Sendable (DaemonEvent) -> Void
    private var bridges: [RemoteSessionBridge] = []
    /// Endpoints refused at accept, to close from the loop.
    private var refused: [UCXEndpoint] = []
    /// Starts an in-process session (the hello sent, the grant to come).
    private let beginSession: () throws(SessionError) -> UnixSocket
    /// Maps the grant of a session ``beginSession`` started.
    private let finishSession: (SessionGrant) throws(SessionError) -> (RemoteSessionBridge.Attached, [UInt8])
    /// When the worker last progressed (monotonic ns).
    private var lastProgress: UInt64 = 0
    /// Set by ``shutDown()``: no connection is admitted any more.
    private var shuttingDown = false
    /// What the worker's and listener's callbacks reach the gateway through.
    private let callbacks = Callbacks()

    /// The gateway as UCX's callbacks see it, until it goes (closing what
    /// is left then progresses the worker, which may call them). Not a weak
    /// reference: its side table would send every retain and release of the
    /// gateway on the poll thread down the runtime's slow path.
    private final class Callbacks {
        var unmanaged: Unmanaged<RemoteGateway>?
        var gateway: RemoteGateway? { unmanaged?.takeUnretainedValue() }
    }

    deinit { callbacks.unmanaged = nil }
    /// The address it listens on (the port it bound, for port 0).
    let address: UCXAddress

    /// While local sessions keep the poll thread busy, the worker
    /// progresses at most this often (each progress is a system call on the
    /// TCP transport).
    static let busyProgressInterval: UInt64 = 2_000

    /// Listens (so a bad address fails the daemon's start).
    init(
        _ configuration: RemoteListening, sessionBytes: Int, emit: @escaping @Sendable (DaemonEvent) -> Void,
        beginSession: @escaping () throws(SessionError) -> UnixSocket,
        finishSession: @escaping (SessionGrant) throws(SessionError) -> (RemoteSessionBridge.Attached, [UInt8])
    ) throws(DaemonError) {
        do {
            worker = try UCXWorker()
            listener = try UCXListener(worker, on: configuration.address)
        } catch { throw .remoteListener("\(error)") }
        self.configuration = configuration
        self.emit = emit
        self.beginSession = beginSession
        self.finishSession = finishSession
        address = listener.address
        try router(sessionBytes: sessionBytes)
        let callbacks = callbacks
        // Admitted inside the progress that accepts them, so their hello finds its bridge.
        listener.onAccept = { endpoint in
            guard let gateway = callbacks.gateway else { return endpoint.closeWithoutWaiting() }
            gateway.admit(endpoint)
        }
        // Command data is fetched only for admitted sessions: before the
        // verdict a peer cannot make the daemon allocate for it.
        worker.admitsTransfer = { id, sender in
            guard let gateway = callbacks.gateway, id == RemoteMessage.command.rawValue, let sender else { return false }
            return gateway.bridges.contains { bridge in
                guard case .serving = bridge.state else { return false }
                return bridge.link.endpoint?.handle == sender
            }
        }
        callbacks.unmanaged = .passUnretained(self)
    }

    /// Routes every remote message to the bridge whose endpoint sent it,
    /// refusing (unreceived) any longer than a daemon takes: handshake
    /// messages of their exact sizes, commands of at most `sessionBytes`.
    private func router(sessionBytes: Int) throws(DaemonError) {
        for message in RemoteMessage.allCases {
            let limit = RemoteProtocol.maximumLength(of: message, daemonSide: true, sessionBytes: sessionBytes)
            do {
                try worker.onMessage(message.rawValue, maximumLength: limit) { [callbacks] received in
                    guard let gateway = callbacks.gateway, let sender = received.sender,
                        let bridge = gateway.bridges.first(where: { !$0.isEnded && $0.link.endpoint?.handle == sender })
                    else { return }
                    bridge.link.deliver(message, header: received.header, data: received.data, oversized: received.isOversized)
                }
            } catch { throw .remoteListener("\(error)") }
        }
    }

    /// The worker's event file descriptor, for the poll thread's `ppoll`
    /// set (readable on new work once ``arm()`` returned true).
    var eventFileDescriptor: Int32 { worker.eventFileDescriptor.rawValue }

    /// One pass (on the poll thread): progresses the worker (when `busy`,
    /// at most every ``busyProgressInterval``), moves every handshake on,
    /// puts arrived commands on their sessions' rings and sends completions
    /// back, keeps heartbeats, ends failed sessions and finishes closes.
    /// Returns whether it did anything.
    func pass(now: UInt64, busy: Bool) -> Bool {
        var worked = false
        if !busy || now &- lastProgress >= Self.busyProgressInterval {
            lastProgress = now
            worked = worker.progress()
        }
        for failure in listener.takeAcceptFailures() {
            emit(.remoteConnectionRefused(key: nil, error: .transport("\(failure)")))
        }
        // Endpoints refused inside the accepting callback, closed here
        // (closing progresses the worker, which a callback must not).
        while let endpoint = refused.popLast() { endpoint.closeWithoutWaiting() }
        var finished = false
        for bridge in bridges {
            worked = step(bridge, now: now) || worked
            if bridge.isFinished { finished = true }
        }
        if finished { bridges.removeAll { $0.isFinished } }
        // What this pass posted goes out now: UCX's TCP transport often
        // queues a posted send and writes it in the next progress (measured:
        // a busy-polled round trip 19.5 µs with this, 29.8 µs without).
        if worker.hasQueuedSends { worker.progress() }
        return worked
    }

    /// Whether a pass would find work (the poll thread asks before it sleeps).
    func hasWork() -> Bool {
        !refused.isEmpty || worker.isReceiving || bridges.contains { $0.hasWork() }
    }

    /// Arms the worker's event file descriptor: false when work is pending
    /// already (then the poll thread passes again instead of sleeping).
    func arm() -> Bool { (try? worker.arm()) == true }

    /// How long the poll thread may sleep (ns) before a pass is due here:
    /// the next heartbeat, a handshake's deadline, a session opening or
    /// closing, a send in progress.
    func timeout(now: UInt64) -> UInt64 {
        var timeout: UInt64 = 50_000_000
        for bridge in bridges {
            switch bridge.state {
            case .serving:
                let due = bridge.link.nextHeartbeat
                timeout = min(timeout, due > now ? due - now : 0)
                // A send's completion, or its timeout, may come without an event.
                if bridge.link.hasPendingSends { timeout = min(timeout, 1_000_000) }
            case .opening, .ended:
                timeout = min(timeout, 1_000_000)
            case .awaitingHello, .awaitingProof:
                // Handshakes and silent peers are checked at least this often.
                timeout = min(timeout, 10_000_000)
            }
        }
        return timeout
    }

    /// Ends every remote session (the daemon stops): a goodbye to each,
    /// then the links close, waiting at most a second for all of them.
    /// Connections that arrive meanwhile are closed.
    func shutDown() {
        shuttingDown = true
        for bridge in bridges {
            if case .serving = bridge.state {
                log(bridge, closed: "daemon stopping")
                try? bridge.link.send(.goodbye)
            }
            if !bridge.isEnded { bridge.end(graceful: true) }
        }
        while let endpoint = refused.popLast() { endpoint.closeWithoutWaiting() }
        let end = deadline(after: .seconds(1))
        while bridges.contains(where: { !$0.isFinished }) && monotonicNanoseconds() < end {
            worker.progress()
            for bridge in bridges { bridge.advanceClose() }
        }
        // What is still closing closes (and waits) as its link goes; taken
        // out first, as that progress may call back into the gateway.
        var leaving = bridges
        bridges = []
        leaving.removeAll()
        while let endpoint = refused.popLast() { endpoint.closeWithoutWaiting() }
    }

    private func admit(_ endpoint: UCXEndpoint) {
        guard !shuttingDown else { return refused.append(endpoint) }
        // Connections that never finish a handshake cost a bridge each until
        // their deadline; their number is bounded on its own, so they cannot
        // crowd out admitted sessions.
        guard handshaking < configuration.maximumPendingHandshakes else {
            refused.append(endpoint)
            emit(.remoteConnectionRefused(key: nil, error: .rejected(.busy, reason: "too many remote handshakes")))
            return
        }
        let deadline = monotonicNanoseconds() &+ configuration.handshakeTimeout.saturatingNanoseconds
        let link: RemoteLink
        do {
            link = try RemoteLink(
                worker: worker, endpoint: endpoint, heartbeat: configuration.heartbeat, ownsWorker: false,
                sendMode: .posting(maximumPending: RemoteSessionBridge.handshakePendingSends))
        } catch {
            refused.append(endpoint)
            emit(.remoteConnectionRefused(key: nil, error: .transport("\(error)")))
            return
        }
        let beat = configuration.heartbeat
        link.sendTimeout = max(beat.interval, beat.peerTimeout - beat.interval * 4)
        bridges.append(RemoteSessionBridge(link: link, handshakeDeadline: deadline))
    }

    /// Connections still handshaking (opening included).
    private var handshaking: Int {
        bridges.count { bridge in
            switch bridge.state {
            case .awaitingHello, .awaitingProof, .opening: true
            case .serving, .ended: false
            }
        }
    }

    /// One pass over one bridge; returns whether it did anything.
    private func step(_ bridge: RemoteSessionBridge, now: UInt64) -> Bool {
        switch bridge.state {
        case .awaitingHello, .awaitingProof, .opening:
            // Sessions being opened count: each would otherwise pass the check.
            let serving = bridges.count { bridge in
                switch bridge.state {
                case .serving, .opening: true
                case .awaitingHello, .awaitingProof, .ended: false
                }
            }
            let outcome = bridge.stepHandshake(
                now: now, keys: configuration.authorizedKeys,
                begin: { [self] () throws(SessionError) -> UnixSocket in
                    guard serving < configuration.maximumSessions else {
                        throw .rejected(.busy, reason: "\(configuration.maximumSessions) remote sessions already")
                    }
                    return try beginSession()
                },
                finish: { [self] (granted: SessionGrant) throws(SessionError) in
                    let (attached, models) = try finishSession(granted)
                    let attachment = attached.attachment
                    let grant = RemoteGrant(
                        sessionID: attachment.sessionID, submissionCapacity: attached.submissions.capacity,
                        completionCapacity: attached.completions.capacity,
                        slotSize: Int(attachment.data.geometry.slotSize), slotCount: Int(attachment.data.geometry.slotCount),
                        heartbeat: configuration.heartbeat, models: models)
                    return (attached, grant)
                })
            if let (key, error) = outcome {
                emit(.remoteConnectionRefused(key: key?.fingerprint, error: error.sessionError))
                return true
            }
            if case .serving(let key) = bridge.state {
                emit(.remoteSessionOpened(id: bridge.sessionID ?? 0, key: key.fingerprint))
                return true
            }
            return false
        case .serving:
            do { return try bridge.serve(now: now) } catch {
                log(bridge, closed: "\(error)")
                bridge.end()
                return true
            }
        case .ended:
            bridge.advanceClose(now: now)
            return false
        }
    }

    private func log(_ bridge: RemoteSessionBridge, closed reason: String) {
        guard case .serving(let key) = bridge.state else { return }
        emit(.remoteSessionClosed(id: bridge.sessionID ?? 0, key: key.fingerprint, reason: reason))
    }
}
