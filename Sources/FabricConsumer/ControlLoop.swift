import FabricSession
import FabricSystem
import Glibc
import Synchronization

/// A connection whose peer passed the credential check at accept and whose
/// hello is still arriving. Control thread only.
final class PendingHandshake {
    /// Taken when the handshake succeeds and the socket moves to the session.
    var socket: UnixSocket?
    let peer: PeerCredentials
    /// `MonotonicClock` time past which the peer is refused (or, once a
    /// query's answer is going out, dropped).
    var deadline: UInt64
    /// Hello bytes received so far.
    var hello: [UInt8] = []
    /// A query's answer (reply and payload) and how much of it went: sent
    /// as the socket takes it, so a tool that reads slowly costs only its
    /// own connection.
    var answer: [UInt8] = []
    var answered = 0

    /// Whether a query's answer is being sent.
    var isAnswering: Bool { answered < answer.count }

    init(socket: consuming UnixSocket, peer: PeerCredentials, deadline: UInt64) {
        self.socket = consume socket
        self.peer = peer
        self.deadline = deadline
        hello.reserveCapacity(SessionHandshake.helloSize)
    }
}

extension DaemonCore {
    /// The control thread: one `ppoll(2)` over the listening socket, its own
    /// eventfd, every handshake in progress and every session's socket.
    ///
    /// Nothing here blocks on a peer. A connection's credentials are checked
    /// the moment it is accepted (a peer the policy refuses is answered at
    /// once); its hello is collected as it arrives, without waiting, and
    /// answered when complete; a peer that is silent past
    /// ``DaemonConfiguration/handshakeTimeout`` or closes mid-hello is
    /// answered and dropped. So a slow or silent peer costs only its own
    /// connection: other handshakes, and noticing that a controller died,
    /// never wait behind it. A controller's socket reports a hang-up the
    /// moment the controller exits or is killed (the kernel closes it), so a
    /// dead controller's session is dropped within one wake-up.
    func runControlLoop(_ binding: Binding) {
        var sessions: [DaemonSession] = []
        var pending: [PendingHandshake] = []
        // Reused on every wake-up, so an idle daemon's once-a-second look
        // allocates nothing once they have grown.
        var entries: [pollfd] = []
        var watched: [DaemonSession] = []
        var stillPending: [PendingHandshake] = []
        let hangUpEvents = Poll.readable | Poll.readHangUp

        // Relaxed: a stop request, re-read on every wake-up (stop also signals the eventfd).
        while !controlStopping.load(ordering: .relaxed) {
            entries.removeAll(keepingCapacity: true)
            entries.append(pollfd(fd: binding.listener.fileDescriptor.rawValue, events: Poll.readable, revents: 0))
            entries.append(pollfd(fd: binding.controlDoorbell.fileDescriptor.rawValue, events: Poll.readable, revents: 0))
            for handshake in pending {
                let events = handshake.isAnswering ? Poll.writable : Poll.readable
                entries.append(pollfd(fd: handshake.socket?.fileDescriptor.rawValue ?? -1, events: events, revents: 0))
            }
            watched.removeAll(keepingCapacity: true)
            for session in sessions where !session.isEndRequested {
                guard let fd = session.socket?.fileDescriptor.rawValue else { continue }
                entries.append(pollfd(fd: fd, events: hangUpEvents, revents: 0))
                watched.append(session)
            }
            let now = MonotonicClock.now()
            var timeout: UInt64 = 1_000_000_000
            for handshake in pending { timeout = min(timeout, handshake.deadline > now ? handshake.deadline - now : 0) }
            do { _ = try Poll.wait(&entries, timeoutNanoseconds: Int64(timeout)) } catch {
                logger.error("control poll failed", metadata: ["error": "\(error)"])
            }
            if entries[1].revents != 0 { _ = try? binding.controlDoorbell.consume() }

            // Handshakes: take what has arrived, answer the complete, drop the late.
            let afterPoll = MonotonicClock.now()
            stillPending.removeAll(keepingCapacity: true)
            for (i, handshake) in pending.enumerated()
            where !progress(handshake, readable: entries[2 + i].revents != 0, now: afterPoll, binding, &sessions) {
                stillPending.append(handshake)
            }
            swap(&pending, &stillPending)

            // Hang-ups: ask the poll thread to let go (and wake it if it sleeps).
            let firstSession = 2 + (entries.count - 2 - watched.count)
            for (i, session) in watched.enumerated() where entries[firstSession + i].revents != 0 {
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
            if entries[0].revents != 0 { acceptConnections(binding, into: &pending) }
            adoptInProcessConnections(into: &pending)
        }
        for handshake in pending { handshake.socket?.refuse(.busy, reason: "daemon stopping") }
        // `connectInProcess()` queues only while the daemon runs, under the
        // lock `stop()` takes first, so nothing arrives after this.
        let late = inProcessConnections.withLock { fds in
            defer { fds.removeAll() }
            return fds
        }
        for fd in late { UnixSocket(fd).refuse(.busy, reason: "daemon stopping") }
        // The poll thread has stopped and retired every session by now.
        for session in sessions { close(session) }
    }

    private func close(_ session: DaemonSession) {
        session.socket = nil
        liveSessions.withLock { live in live.removeAll { $0 === session } }
        // Relaxed: a statistic.
        activeSessions.subtract(1, ordering: .relaxed)
        DaemonCounters.bump(counters.sessionsClosed)
        emit(.sessionClosed(id: session.id, reason: session.reason ?? .controllerGone))
    }

    /// Accepts every connection waiting (a bounded number per wake-up),
    /// checks each peer's credentials at once, and queues the admitted ones
    /// for their hello.
    private func acceptConnections(_ binding: Binding, into pending: inout [PendingHandshake]) {
        for _ in 0..<32 {
            let connection: UnixSocket
            do {
                guard let accepted = try binding.listener.accept(timeout: .zero) else { return }
                connection = accepted
            } catch {
                if case .system(let failure) = error,
                    failure.errno == .tooManyOpenFiles || failure.errno == .tooManyOpenFilesInSystem
                {
                    refuseForLackOfDescriptors(binding, failure)
                } else {
                    logger.warning("accept failed", metadata: ["error": "\(error)"])
                }
                return
            }
            admit(connection, into: &pending)
        }
    }

    /// Checks a new connection's peer credentials at once and queues an
    /// admitted one for its hello; refuses it when the policy says no or
    /// ``DaemonConfiguration/maximumPendingHandshakes`` are pending.
    private func admit(_ connection: consuming UnixSocket, into pending: inout [PendingHandshake]) {
        let peer: PeerCredentials
        do { peer = try connection.refuseUnlessAdmitted(by: configuration.peerPolicy) } catch {
            refused(peer: try? connection.peerCredentials(), error)
            return
        }
        guard pending.count < configuration.maximumPendingHandshakes else {
            connection.refuse(.busy, reason: "\(pending.count) handshakes pending")
            refused(peer: peer, .rejected(.busy, reason: "\(pending.count) handshakes pending"))
            return
        }
        pending.append(
            PendingHandshake(socket: connection, peer: peer, deadline: deadline(after: configuration.handshakeTimeout)))
    }

    /// Takes the sockets ``FabricDaemon/connectInProcess()`` made and treats
    /// each like an accepted connection: the same credential check (the
    /// peer is this process) and the same handshake.
    private func adoptInProcessConnections(into pending: inout [PendingHandshake]) {
        let arrived = inProcessConnections.withLock { fds in
            defer { fds.removeAll() }
            return fds
        }
        for fd in arrived { admit(UnixSocket(fd), into: &pending) }
    }

    /// Out of descriptors: frees the reserve one, accepts the waiting
    /// connection, answers it "busy" with the errno, closes it, and takes the
    /// reserve back. Without this the connection would wait unanswered and
    /// the listener stay readable, spinning the control thread.
    private func refuseForLackOfDescriptors(_ binding: Binding, _ failure: SystemCallError) {
        try? binding.reserve?.close()
        binding.reserve = nil
        if let connection = try? binding.listener.accept(timeout: .zero) {
            connection.refuse(.busy, reason: failure.brief)
            refused(peer: try? connection.peerCredentials(), .rejected(.busy, reason: failure.brief))
        }
        binding.reserve = try? FileDescriptor.openFile("/dev/null", .readOnly, options: [.closeOnExec])
        if binding.reserve == nil {
            // Not even one descriptor: back off so a full backlog cannot spin this thread.
            usleep(10_000)
        }
    }

    /// Moves one handshake on: reads what has arrived (never waiting),
    /// answers a complete hello, refuses a truncated or late one. Returns
    /// whether the handshake is finished (answered or dropped).
    private func progress(
        _ handshake: PendingHandshake, readable: Bool, now: UInt64, _ binding: Binding, _ sessions: inout [DaemonSession]
    ) -> Bool {
        if handshake.isAnswering {
            if readable, !sendAnswer(handshake) { return true }
            guard handshake.isAnswering else { return true }
            if now >= handshake.deadline {
                logger.debug("telemetry answer not read in time", metadata: ["peer": "\(handshake.peer)"])
                return true
            }
            return false
        }
        if readable {
            do {
                let missing = SessionHandshake.helloSize - handshake.hello.count
                guard let arrived = try handshake.socket?.receiveAvailable(maximum: missing) else { return true }
                handshake.hello += arrived
            } catch {
                let have = handshake.hello.count
                if case .peerClosed = error {
                    handshake.socket?.refuse(.malformed, reason: "truncated hello (\(have) of \(SessionHandshake.helloSize))")
                    refused(peer: handshake.peer, .malformed("truncated hello: \(have) of \(SessionHandshake.helloSize) bytes"))
                } else {
                    refused(peer: handshake.peer, .socket(error))
                }
                return true
            }
            if handshake.hello.count == SessionHandshake.helloSize {
                return finish(handshake, binding, &sessions)
            }
        }
        if now >= handshake.deadline {
            handshake.socket?.refuse(.malformed, reason: "timed out waiting for hello")
            refused(peer: handshake.peer, .socket(.timedOut))
            return true
        }
        return false
    }

    /// Answers a complete hello: a session for the peer, the telemetry for
    /// a tool's query, or a refusal. Returns whether the handshake is
    /// finished (false while a query's answer is still going out).
    private func finish(_ handshake: PendingHandshake, _ binding: Binding, _ sessions: inout [DaemonSession]) -> Bool {
        if SessionHandshake.purpose(of: handshake.hello) != SessionHandshake.Purpose.session.rawValue {
            // Queries are answered here (telemetry from the counters): the
            // poll thread never hears of them.
            let purpose: SessionHandshake.Purpose?
            do { purpose = try handshake.socket?.acceptQuery(hello: handshake.hello) } catch {
                refused(peer: handshake.peer, error)
                return true
            }
            let payload = purpose == .models ? modelsAnswer : telemetryAnswer()
            handshake.answer = SessionHandshake.queryReply(payloadSize: payload.count) + payload
            handshake.deadline = deadline(after: configuration.handshakeTimeout)
            return !sendAnswer(handshake) || !handshake.isAnswering
        }
        openSession(handshake, binding, &sessions)
        return true
    }

    /// Sends what the socket takes of a query's answer; false when the
    /// tool is gone.
    private func sendAnswer(_ handshake: PendingHandshake) -> Bool {
        do {
            guard let reached = try handshake.socket?.sendAvailable(handshake.answer, from: handshake.answered) else {
                return false
            }
            handshake.answered = reached
        } catch {
            logger.debug("telemetry answer not delivered", metadata: ["error": "\(error)"])
            return false
        }
        return true
    }

    /// Opens a session for a complete session hello, or refuses it.
    private func openSession(_ handshake: PendingHandshake, _ binding: Binding, _ sessions: inout [DaemonSession]) {
        var created: DaemonSession?
        do {
            _ = try handshake.socket?.answer(hello: handshake.hello, from: handshake.peer) {
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
        } catch {
            refused(peer: handshake.peer, error)
            return
        }
        guard let session = created, let connection = handshake.socket.take() else { return }
        session.socket = consume connection
        sessions.append(session)
        liveSessions.withLock { $0.append(session) }
        // Relaxed: a statistic and the admission check, both control-thread only.
        activeSessions.add(1, ordering: .relaxed)
        DaemonCounters.bump(counters.sessionsOpened)
        inbox.withLock { arrived in
            arrived.append(session)
            inboxPending.store(true, ordering: .relaxed)
        }
        try? binding.daemonDoorbell.signal()
        emit(.sessionOpened(id: session.id, peer: handshake.peer))
    }

    private func refused(peer: PeerCredentials?, _ error: SessionError) {
        DaemonCounters.bump(counters.connectionsRefused)
        emit(.connectionRefused(peer: peer, error: error))
    }
}
