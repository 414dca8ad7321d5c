import FabricSession
import FabricSystem
import Glibc
import Synchronization

extension DaemonCore {
    /// The control thread: one `poll(2)` over the listening socket, its own
    /// eventfd and every session's socket. A controller's socket reports a
    /// hang-up the moment the controller exits or is killed (the kernel closes
    /// it), so a dead controller's session is dropped within one wake-up.
    func runControlLoop(_ binding: Binding) {
        var sessions: [DaemonSession] = []
        var entries: [pollfd] = []
        let hangUpEvents = Poll.readable | Poll.readHangUp

        // Relaxed: a stop request, re-read on every wake-up (stop also signals the eventfd).
        while !controlStopping.load(ordering: .relaxed) {
            entries.removeAll(keepingCapacity: true)
            entries.append(pollfd(fd: binding.listener.fileDescriptor.rawValue, events: Poll.readable, revents: 0))
            entries.append(pollfd(fd: binding.controlDoorbell.fileDescriptor.rawValue, events: Poll.readable, revents: 0))
            var watched: [DaemonSession] = []
            for session in sessions where !session.isEndRequested {
                guard let fd = session.socket?.fileDescriptor.rawValue else { continue }
                entries.append(pollfd(fd: fd, events: hangUpEvents, revents: 0))
                watched.append(session)
            }
            do { _ = try Poll.wait(&entries, timeoutNanoseconds: 1_000_000_000) } catch {
                logger.error("control poll failed", metadata: ["error": "\(error)"])
            }
            if entries[1].revents != 0 { _ = try? binding.controlDoorbell.consume() }

            // Hang-ups: ask the poll thread to let go (and wake it if it sleeps).
            for (i, session) in watched.enumerated() where entries[i + 2].revents != 0 {
                if session.socket?.peerHasClosed() ?? true {
                    session.requestEnd(.controllerGone)
                    try? binding.daemonDoorbell.signal()
                } else {
                    session.socket?.discardPendingBytes()
                }
            }
            // Sessions the poll thread has let go of: close and release.
            sessions.removeAll { session in
                guard session.isRetired else { return false }
                close(session)
                return true
            }
            if entries[0].revents != 0 { accept(binding, into: &sessions) }
        }
        // The poll thread has stopped and retired every session by now.
        for session in sessions { close(session) }
    }

    private func close(_ session: DaemonSession) {
        session.socket = nil
        // Relaxed: a statistic.
        activeSessions.subtract(1, ordering: .relaxed)
        DaemonCounters.bump(counters.sessionsClosed)
        emit(.sessionClosed(id: session.id, reason: session.reason ?? .controllerGone))
    }

    /// Accepts one controller, runs the handshake, and hands the session to
    /// the poll thread. A refused or failed handshake closes the connection.
    private func accept(_ binding: Binding, into sessions: inout [DaemonSession]) {
        let connection: UnixSocket
        do {
            guard let accepted = try binding.listener.accept(timeout: .zero) else { return }
            connection = accepted
        } catch {
            logger.warning("accept failed", metadata: ["error": "\(error)"])
            return
        }
        var created: DaemonSession?
        let outcome: Result<PeerCredentials, SessionError>
        do {
            let (peer, _) = try connection.serveHandshake(
                policy: configuration.peerPolicy,
                timeout: configuration.handshakeTimeout
            ) {
                (peer) throws(SessionError) -> SessionGrant in
                // Relaxed: only the control thread changes the count.
                guard activeSessions.load(ordering: .relaxed) < configuration.maximumSessions else {
                    throw .rejected(.busy, reason: "\(configuration.maximumSessions) sessions open")
                }
                let session = try DaemonSession(
                    id: makeSessionID(), peer: peer, limits: configuration.session, requiredOutput: requiredOutput)
                created = session
                return session.grant()
            }
            outcome = .success(peer)
        } catch {
            outcome = .failure(error)
        }
        switch outcome {
        case .success(let peer):
            guard let session = created else { return }
            session.socket = consume connection
            sessions.append(session)
            // Relaxed: a statistic and the admission check, both control-thread only.
            activeSessions.add(1, ordering: .relaxed)
            DaemonCounters.bump(counters.sessionsOpened)
            inbox.withLock { arrived in
                arrived.append(session)
                inboxPending.store(true, ordering: .relaxed)
            }
            try? binding.daemonDoorbell.signal()
            emit(.sessionOpened(id: session.id, peer: peer))
        case .failure(let error):
            DaemonCounters.bump(counters.connectionsRefused)
            emit(.connectionRefused(peer: try? connection.peerCredentials(), error: error))
        }
    }
}
