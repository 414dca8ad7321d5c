import FabricRemote
import FabricSystem
import Glibc
import Synchronization

/// The daemon's remote sessions: one thread with one UCX worker, a listener
/// on ``RemoteListening/address``, and a ``RemoteSessionBridge`` per remote
/// controller.
///
/// Nothing on this thread waits for a peer: handshakes advance a message at
/// a time, and the only blocking calls are sends, which UCX completes at
/// once for eager messages and which are bounded by the peer timeout for
/// rendezvous ones (a peer that stops reading is then cut off). When idle
/// it sleeps in one `ppoll(2)` over the worker's event fd, each session's
/// eventfd and its own wake-up eventfd, so an idle daemon still sleeps.
final class RemoteGateway: @unchecked Sendable {
    // @unchecked: the worker, listener and bridges belong to the gateway thread (handed over at its start); `stopping` is atomic
    private let configuration: RemoteListening
    private let worker: UCXWorker
    private let listener: UCXListener
    private let wake: EventFD
    /// Reports remote sessions and refusals (`DaemonCore.emit`: logged, and the daemon's `onEvent`).
    private let emit: @Sendable (DaemonEvent) -> Void
    private let stopping = Atomic<Bool>(false)
    private var bridges: [RemoteSessionBridge] = []
    private var waitSet: [pollfd] = []
    /// Endpoints refused at accept, to close from the loop.
    private var refused: [UCXEndpoint] = []
    private var thread: ServiceThread?
    /// Opens an in-process session of the daemon (``FabricDaemon/connectInProcess()``).
    private let openSession: () throws(SessionError) -> (RemoteSessionBridge.Attached, [UInt8])
    /// The address it listens on (the port it bound, for port 0).
    let address: UCXAddress

    /// Listens (so a bad address fails the daemon's start) and starts the thread.
    init(
        _ configuration: RemoteListening, sessionBytes: Int, emit: @escaping @Sendable (DaemonEvent) -> Void,
        openSession: @escaping () throws(SessionError) -> (RemoteSessionBridge.Attached, [UInt8])
    ) throws(DaemonError) {
        do {
            worker = try UCXWorker()
            listener = try UCXListener(worker, on: configuration.address)
            wake = try EventFD()
        } catch { throw .remoteListener("\(error)") }
        self.configuration = configuration
        self.emit = emit
        self.openSession = openSession
        address = listener.address
        try router(sessionBytes: sessionBytes)
        // Admitted inside the progress that accepts them, so their hello finds its bridge.
        listener.onAccept = { [unowned self] endpoint in admit(endpoint) }
        // Command data is fetched only for admitted sessions: before the
        // verdict a peer cannot make the daemon allocate for it.
        worker.admitsTransfer = { [unowned self] id, sender in
            guard id == RemoteMessage.command.rawValue, let sender else { return false }
            return bridges.contains { bridge in
                guard case .serving = bridge.state else { return false }
                return bridge.link.endpoint?.handle == sender
            }
        }
        do { thread = try ServiceThread { [self] in run() } } catch { throw .thread(error) }
    }

    /// Routes every remote message to the bridge whose endpoint sent it,
    /// refusing (unreceived) any longer than a daemon takes: handshake
    /// messages of their exact sizes, commands of at most `sessionBytes`.
    private func router(sessionBytes: Int) throws(DaemonError) {
        for message in RemoteMessage.allCases {
            let limit = RemoteProtocol.maximumLength(of: message, daemonSide: true, sessionBytes: sessionBytes)
            do {
                try worker.onMessage(message.rawValue, maximumLength: limit) { [unowned self] received in
                    guard let sender = received.sender,
                        let bridge = bridges.first(where: { $0.link.endpoint?.handle == sender })
                    else { return }
                    bridge.link.deliver(message, header: received.header, data: received.data, oversized: received.isOversized)
                }
            } catch { throw .remoteListener("\(error)") }
        }
    }

    /// Ends every remote session and the thread.
    func stop() {
        // Relaxed + the eventfd: the thread re-reads the flag on every pass.
        stopping.store(true, ordering: .relaxed)
        try? wake.signal()
        thread?.join()
        thread = nil
    }

    private func run() {
        var idleSince: UInt64 = 0
        while !stopping.load(ordering: .relaxed) {
            var worked = worker.progress()
            for failure in listener.takeAcceptFailures() {
                emit(.remoteConnectionRefused(key: nil, error: .transport("\(failure)")))
            }
            // Endpoints refused inside the accepting callback, closed here
            // (closing progresses the worker, which a callback must not).
            while let endpoint = refused.popLast() { endpoint.close(force: true) }
            let now = monotonicNanoseconds()
            for bridge in bridges {
                worked = step(bridge, now: now) || worked
                // A send that took long must not starve the others' heartbeats.
                if monotonicNanoseconds() &- now > configuration.heartbeat.interval.saturatingNanoseconds / 2 {
                    keepOthersAlive()
                }
            }
            bridges.removeAll { $0.isEnded }
            if worked {
                idleSince = 0
                continue
            }
            if idleSince == 0 { idleSince = now }
            if now &- idleSince < 20_000 { continue }
            sleep(now: now)
        }
        // Goodbye to all first, then close without waiting for anyone.
        for bridge in bridges {
            log(bridge, closed: "daemon stopping")
            try? bridge.link.send(.goodbye)
        }
        for bridge in bridges { bridge.end() }
        while let endpoint = refused.popLast() { endpoint.close(force: true) }
        bridges.removeAll()
    }

    private func admit(_ endpoint: UCXEndpoint) {
        // Connections that never finish a handshake cost a bridge each until
        // their deadline; their number is bounded on its own, so they cannot
        // crowd out admitted sessions.
        let handshaking = bridges.count { if case .serving = $0.state { false } else { true } }
        guard handshaking < configuration.maximumPendingHandshakes else {
            refused.append(endpoint)
            emit(.remoteConnectionRefused(key: nil, error: .rejected(.busy, reason: "too many remote handshakes")))
            return
        }
        let deadline = monotonicNanoseconds() &+ configuration.handshakeTimeout.saturatingNanoseconds
        let link: RemoteLink
        do {
            link = try RemoteLink(worker: worker, endpoint: endpoint, heartbeat: configuration.heartbeat, ownsWorker: false)
        } catch {
            refused.append(endpoint)
            emit(.remoteConnectionRefused(key: nil, error: .transport("\(error)")))
            return
        }
        let beat = configuration.heartbeat
        link.sendTimeout = max(beat.interval, beat.peerTimeout - beat.interval * 4)
        bridges.append(RemoteSessionBridge(link: link, handshakeDeadline: deadline))
    }

    /// One pass over one bridge; returns whether it did anything.
    private func step(_ bridge: RemoteSessionBridge, now: UInt64) -> Bool {
        switch bridge.state {
        case .awaitingHello, .awaitingProof:
            let serving = bridges.count { if case .serving = $0.state { true } else { false } }
            let outcome = bridge.stepHandshake(now: now, keys: configuration.authorizedKeys) { key throws(SessionError) in
                guard serving < configuration.maximumSessions else {
                    throw .rejected(.busy, reason: "\(configuration.maximumSessions) remote sessions already")
                }
                let (attached, models) = try openSession()
                let attachment = attached.attachment
                let grant = RemoteGrant(
                    sessionID: attachment.sessionID, submissionCapacity: attached.submissions.capacity,
                    completionCapacity: attached.completions.capacity,
                    slotSize: Int(attachment.data.geometry.slotSize), slotCount: Int(attachment.data.geometry.slotCount),
                    heartbeat: configuration.heartbeat, models: models)
                return (attached, grant)
            }
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
            return false
        }
    }

    /// Sends the heartbeats that are due to every serving session (its
    /// failures are left for its own next pass).
    private func keepOthersAlive() {
        let now = monotonicNanoseconds()
        for bridge in bridges {
            guard case .serving = bridge.state, now &- bridge.link.lastSent >= configuration.heartbeat.intervalNanoseconds
            else { continue }
            try? bridge.link.send(.heartbeat)
        }
    }

    private func log(_ bridge: RemoteSessionBridge, closed reason: String) {
        guard case .serving(let key) = bridge.state else { return }
        emit(.remoteSessionClosed(id: bridge.sessionID ?? 0, key: key.fingerprint, reason: reason))
    }

    /// Sleeps until a message, a completion, a due heartbeat or handshake
    /// deadline, or a stop. Announce, fence, re-check, sleep: the daemon
    /// poll loop's protocol (see `SleeperAnnouncement`).
    private func sleep(now: UInt64) {
        for bridge in bridges { bridge.announceSleeper() }
        defer { for bridge in bridges { bridge.withdrawSleeper() } }
        // F1: orders the announcements before the re-checks below.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if stopping.load(ordering: .relaxed) || bridges.contains(where: { $0.hasWork() }) { return }
        guard !worker.isReceiving, (try? worker.arm()) == true else { return }
        var timeout: UInt64 = 50_000_000
        for bridge in bridges {
            // Handshaking links send no heartbeats; their deadlines are checked every 10 ms (below).
            guard case .serving = bridge.state else { continue }
            let due = bridge.link.nextHeartbeat
            timeout = min(timeout, due > now ? due - now : 0)
        }
        // Handshakes and silent peers are checked at least this often.
        if bridges.contains(where: { if case .serving = $0.state { false } else { true } }) {
            timeout = min(timeout, 10_000_000)
        }
        waitSet.removeAll(keepingCapacity: true)
        waitSet.append(pollfd(fd: worker.eventFileDescriptor.rawValue, events: Poll.readable, revents: 0))
        waitSet.append(pollfd(fd: wake.fileDescriptor.rawValue, events: Poll.readable, revents: 0))
        for bridge in bridges {
            waitSet.append(pollfd(fd: bridge.sessionDoorbell?.fileDescriptor.rawValue ?? -1, events: Poll.readable, revents: 0))
        }
        guard (try? Poll.wait(&waitSet, timeoutNanoseconds: Int64(timeout))) ?? 0 > 0 else { return }
        if waitSet[1].revents != 0 { _ = try? wake.consume() }
        for (i, bridge) in bridges.enumerated() where waitSet[i + 2].revents != 0 {
            _ = try? bridge.sessionDoorbell?.consume()
        }
    }
}
