import FabricRemote
import FabricSession
import FabricSystem
import Glibc
import Synchronization
import SystemPackage

/// The controller's half of a remote session: rings, a data region and
/// eventfds made here with the geometry the daemon granted, which
/// ``ControllerSession`` and ``FabricClient`` use exactly as they use a local
/// daemon's, and a thread that plays the daemon's part on them. It takes
/// each command off the submission ring and sends it with its input bytes
/// to the remote daemon (one UCX active message), and writes each
/// completion's output bytes into the data region before it posts the
/// completion. So the controller code, zero-copy buffers included, is the
/// same for local and remote daemons; a remote command costs one copy of its
/// input and its output on each host, which the network transfer needs anyway.
///
/// The session's "socket" is one end of a socket pair whose other end this
/// proxy holds: when the remote daemon is gone (its process died, the link
/// is down: no heartbeat for the peer timeout, or it broke the protocol) the
/// proxy closes its end, so the controller's liveness check reports
/// ``SubmitError/peerGone`` as for a local daemon, and every pending command
/// fails with it.
final class RemoteSessionProxy: @unchecked Sendable {
    // @unchecked: made on the connecting thread; after that every mutable field but `stopping` (atomic) and `endReason` (locked) is used only by whichever thread holds `turn`, and `waitSet` only by the proxy thread
    private let link: RemoteLink
    private let grant: RemoteGrant
    private let submissionRegion: SharedRegion
    private let completionRegion: SharedRegion
    private let data: DataRegion
    private let daemonDoorbellFD: EventFD
    private let sessionDoorbellFD: EventFD
    private var submissions: SPSCConsumer<Descriptor>
    private var completions: SPSCProducer<Completion>
    private let submissionDoorbell: Doorbell
    private let completionDoorbell: Doorbell
    /// Where each command in flight wants its output: offset and capacity.
    private var outputs: [UInt64: (offset: UInt64, capacity: UInt32)]
    /// The proxy's end of the session's socket pair.
    private var hangUp: UnixSocket?
    private var postedSinceRing = 0
    private var violation: String?
    private let stopping = Atomic<Bool>(false)
    private let endReason = LockedBox<String?>(nil)
    private var thread: ServiceThread?
    /// The proxy's `ppoll` set: its eventfd, the worker's, the socket pair.
    private var waitSet = [pollfd](repeating: pollfd(), count: 3)
    /// Serializes all of the proxy's work (the worker, the link, its ends
    /// of the rings, `outputs`, the fields below) between the proxy thread
    /// and the controller's own thread, which takes turns on it to skip the
    /// hand-over to the proxy thread (``forwardFromController()``,
    /// ``driveWhileWaiting(timeout:spin:)``, ``pollFromController()``).
    private let turn = LockedBox<Void>(())
    /// Set once the controller's thread took a turn: the proxy thread then only keeps house (see `sleep`).
    private var drivenByController = false
    /// The session has ended (the daemon is gone), noticed by whichever thread had the turn.
    private var ended = false
    /// Completions posted in the current controller's turn.
    private var postedThisTurn = 0
    /// Commands the controller's thread sent, and completions it put on the
    /// ring, in its own turns (what the tests look at).
    private var controllerTurns = (sent: 0, received: 0)

    /// ``controllerTurns``, read under the turn.
    var turnCounts: (sent: Int, received: Int) { turn.withLock { _ in controllerTurns } }
    /// While the proxy thread sleeps: it announced itself on the completion ring too.
    private var waitsForCompletionRoom = false

    /// Connects to the remote daemon at `address`, runs the handshake with
    /// `key`, builds the session's local half and starts the proxy thread.
    static func connect(
        to address: UCXAddress, key: RemoteSigningKey, options: ControllerOptions
    ) throws(SessionError) -> SessionConnection {
        let link: RemoteLink
        // Until the grant sets it: silence is the connect timeout, so a slow daemon gets all of it.
        let handshake = RemoteHeartbeat(peerTimeout: max(options.connectTimeout, .milliseconds(200)))
        // Posted sends: no turn waits for the daemon to take a command (a
        // large input's rendezvous goes on in later progress).
        do {
            link = try RemoteLink.connect(
                to: address, heartbeat: handshake,
                sendMode: .posting(maximumPending: RemoteSessionProxy.handshakePendingSends))
        } catch {
            throw .transport("\(address): \(error)")
        }
        let grant: RemoteGrant
        do { grant = try RemoteHandshake.request(over: link, key: key, timeout: options.connectTimeout) } catch {
            link.closeAndWait(force: true)
            if case .transport = error { throw .transport("\(address): \(error)") }
            throw error.sessionError
        }
        link.heartbeat = grant.heartbeat
        let (sessionBytes, overflow) = grant.slotSize.multipliedReportingOverflow(by: grant.slotCount)
        guard !overflow, grant.slotSize >= 0, grant.slotCount >= 0 else {
            link.closeAndWait(force: true)
            throw .malformed("granted \(grant.slotCount) slots of \(grant.slotSize) bytes")
        }
        link.allowCompletions(upTo: sessionBytes)
        let models = (try? ModelDescription.decode(grant.models)) ?? []
        let proxy: RemoteSessionProxy
        do { proxy = try RemoteSessionProxy(link: link, grant: grant) } catch {
            link.closeAndWait(force: true)
            throw error
        }
        // A failure from here on: the link closes before the proxy goes (its
        // handler must not be called while the proxy deinitializes).
        func abandon() {
            link.onSessionMessage = nil
            link.closeAndWait(force: true)
        }
        // A send in progress for every command the rings hold, and a few
        // heartbeats (the capacities are checked by now: the rings exist).
        link.reservePendingSends(grant.submissionCapacity + grant.completionCapacity + 16)
        let pair: (FileDescriptor, FileDescriptor)
        do { pair = try FileDescriptorPassing.socketPair() } catch {
            abandon()
            throw .socket(error)
        }
        proxy.hangUp = UnixSocket(pair.1)
        let attachment: SessionAttachment
        do {
            attachment = SessionAttachment(
                sessionID: grant.sessionID,
                submissionRegion: try SharedRegion.attach(fileDescriptor: proxy.submissionRegion.fileDescriptor),
                completionRegion: try SharedRegion.attach(fileDescriptor: proxy.completionRegion.fileDescriptor),
                data: try DataRegion.attach(fileDescriptor: proxy.data.fileDescriptor),
                daemonDoorbellFD: try EventFD(adopting: proxy.daemonDoorbellFD.fileDescriptor.duplicateCloseOnExec()),
                sessionDoorbellFD: try EventFD(adopting: proxy.sessionDoorbellFD.fileDescriptor.duplicateCloseOnExec()))
        } catch {
            _ = UnixSocket(pair.0)
            abandon()
            throw .malformed("remote session's local rings: \(error)")
        }
        let connection = SessionConnection(socket: UnixSocket(pair.0), attachment: attachment, options: options)
        do { proxy.thread = try ServiceThread { [proxy] in proxy.run() } } catch {
            abandon()
            throw .transport("starting the proxy thread: \(error)")
        }
        connection.daemon = .remote(models, proxy)
        return connection
    }

    private init(link: RemoteLink, grant: RemoteGrant) throws(SessionError) {
        do {
            submissionRegion = try SharedRegion.createAnonymous(
                name: "fabricqueue-remote-submissions", kind: .spsc, capacity: grant.submissionCapacity,
                of: Descriptor.self)
            completionRegion = try SharedRegion.createAnonymous(
                name: "fabricqueue-remote-completions", kind: .spsc, capacity: grant.completionCapacity,
                of: Completion.self)
            data = try DataRegion.createAnonymous(slotSize: grant.slotSize, slotCount: grant.slotCount)
            submissions = try SPSCConsumer(region: submissionRegion)
            completions = try SPSCProducer(region: completionRegion)
        } catch {
            throw .malformed(
                "granted geometry (\(grant.submissionCapacity)/\(grant.completionCapacity) ring slots, \(grant.slotCount) × \(grant.slotSize) B): \(error)"
            )
        }
        do {
            daemonDoorbellFD = try EventFD()
            sessionDoorbellFD = try EventFD()
        } catch { throw .malformed("eventfd: \(error)") }
        self.link = link
        self.grant = grant
        submissionDoorbell = SessionAttachment.submissionDoorbell(daemon: daemonDoorbellFD, session: sessionDoorbellFD)
        completionDoorbell = SessionAttachment.completionDoorbell(daemon: daemonDoorbellFD, session: sessionDoorbellFD)
        outputs = Dictionary(minimumCapacity: grant.completionCapacity)
        link.onSessionMessage = { [unowned self] message, header, bytes in
            self.received(message, header: header, data: bytes)
        }
    }

    /// Why the session ended (nil while it runs).
    var reason: String? { endReason.withLock { $0 } }

    /// Ends the session (the controller closed it) and waits for the thread.
    func stop() {
        // Relaxed + the eventfd: the proxy re-reads the flag on every pass, and the signal wakes it.
        stopping.store(true, ordering: .relaxed)
        try? daemonDoorbellFD.signal()
        thread?.join()
        thread = nil
    }

    // MARK: Turns

    /// What one pass of the proxy thread found.
    private enum Step {
        case again, sleep, ended
        /// The controller closed its end of the session.
        case closedByController
    }

    /// A link's limit on sends in progress during the handshake.
    static let handshakePendingSends = 16

    /// The proxy thread: passes (each a turn), sleeping in between, until
    /// the controller closes the session or the daemon is gone.
    private func run() {
        var idleSince: UInt64 = 0
        var lastHangUpCheck: UInt64 = 0
        loop: while !stopping.load(ordering: .relaxed) {
            switch turn.withLock({ _ in pass(idleSince: &idleSince, lastHangUpCheck: &lastHangUpCheck) }) {
            case .again: continue
            case .sleep: sleep()
            case .ended: return
            case .closedByController: break loop
            }
        }
        // The controller closed the session: say so, flush and close.
        turn.withLock { _ in
            guard !ended else { return }
            try? link.send(.goodbye)
            link.closeAndWait()
        }
        endReason.withLock { if $0 == nil { $0 = "closed by the controller" } }
    }

    private func pass(idleSince: inout UInt64, lastHangUpCheck: inout UInt64) -> Step {
        if ended { return .ended }
        let now = monotonicNanoseconds()
        if now &- lastHangUpCheck > 50_000_000 {
            lastHangUpCheck = now
            if hangUp?.peerHasClosed() ?? true { return .closedByController }
        }
        guard let (forwarded, worked) = work(now: now) else { return .ended }
        if forwarded > 0 || worked {
            idleSince = 0
            return .again
        }
        // A short spin before sleeping: a completion is often a few
        // microseconds away, and waking from ppoll costs more. Not once a
        // controller takes turns: it waits on the worker itself.
        guard !drivenByController else { return .sleep }
        if idleSince == 0 { idleSince = now }
        return now &- idleSince < 20_000 ? .again : .sleep
    }

    /// One turn's work, by whichever thread holds the turn: the heartbeat,
    /// the commands on the ring out (posted), what arrived in, and the sends
    /// that completed. Returns how many commands it sent and whether
    /// anything happened, or nil when the session has ended.
    private func work(now: UInt64) -> (forwarded: Int, worked: Bool)? {
        do { try link.keepAlive(now: now) } catch {
            end("\(error)")
            return nil
        }
        let forwarded: Int
        do { forwarded = try forwardCommands() } catch {
            end("\(error)")
            return nil
        }
        // Also writes what was just posted (UCX's TCP transport queues a
        // posted send until the next progress).
        let progressed = link.worker.progress()
        if let violation {
            end("daemon broke the protocol: \(violation)")
            return nil
        }
        do { try link.reapSends() } catch {
            end("\(error)")
            return nil
        }
        ringController()
        return (forwarded, forwarded > 0 || progressed)
    }

    /// On the controller's thread, after it posted commands: takes a turn,
    /// if the proxy thread is not in one, and sends them from here, so the
    /// proxy thread need not wake first. Returns false when it could not,
    /// or left commands on the ring (no room for their completions yet);
    /// the caller then rings the proxy as it would ring a local daemon.
    func forwardFromController() -> Bool {
        let outcome = turn.withLockIfAvailable { _ in
            controllerTurn { controllerWork() != nil } == true && !submissions.hasElements()
        }
        return outcome ?? false
    }

    /// On the controller's thread, when its completion ring is empty: one
    /// turn, without waiting, if the proxy thread is not in one (a
    /// controller that polls instead of waiting gets its completions so).
    func pollFromController() {
        _ = turn.withLockIfAvailable { _ in controllerTurn { _ = controllerWork() } }
    }

    /// On the controller's thread, which waits for a completion: takes a
    /// turn and waits on the worker itself, for at most `timeout` ns
    /// (spinning `spin` ns before it sleeps), so a completion goes from the
    /// network onto the ring on the thread that waits for it. Returns true
    /// when a completion may be on the ring, the time is up, or the session
    /// has ended (the liveness check says so); false when the session had
    /// ended before; nil at once when the proxy thread holds the turn (a
    /// short one: the caller looks at its ring, then tries again).
    func driveWhileWaiting(timeout: UInt64, spin: UInt64) -> Bool? {
        let start = monotonicNanoseconds()
        return turn.withLockIfAvailable { _ in
            controllerTurn { () -> Void in
                while true {
                    guard let worked = controllerWork() else { return }
                    let now = monotonicNanoseconds()
                    // Completions the proxy thread posted before this turn count too.
                    if completionsWaiting || now &- start >= timeout { return }
                    if worked || now &- start < spin || link.worker.isReceiving { continue }
                    // Sleeps holding the turn: the proxy thread, if it wakes, waits for it.
                    guard (try? link.worker.arm()) == true else { continue }
                    let due = link.nextHeartbeat
                    let left = min(timeout - (now &- start), due > now ? due - now : 0)
                    _ = try? Poll.waitReadable(link.worker.eventFileDescriptor, timeoutNanoseconds: Int64(clamping: left))
                }
            } != nil
        }
    }

    /// A turn of the controller's thread (holding the turn): `body`, or
    /// nil when the session has already ended. A transfer still in
    /// progress after it (a large input the daemon fetches, an output
    /// arriving) is left to whoever progresses next, so the proxy thread is
    /// told to watch the worker.
    private func controllerTurn<R>(_ body: () -> R) -> R? {
        guard !ended else { return nil }
        drivenByController = true
        postedThisTurn = 0
        defer {
            controllerTurns.received &+= postedThisTurn
            if !ended, link.hasPendingSends || link.worker.isReceiving { try? daemonDoorbellFD.signal() }
        }
        return body()
    }

    /// ``work(now:)`` in a controller's turn, counting what it sent; whether
    /// anything happened, or nil when the session has ended.
    private func controllerWork() -> Bool? {
        guard let (forwarded, worked) = work(now: monotonicNanoseconds()) else { return nil }
        controllerTurns.sent &+= forwarded
        return worked
    }

    /// Whether completions wait on the ring (the proxy's end of it: the
    /// controller has not read them).
    private var completionsWaiting: Bool {
        completions.freeSlotCount(wanting: completions.capacity) < completions.capacity
    }

    /// Whether the completion ring has room for the completion of every
    /// command in flight and one more (so posting one never waits), as the
    /// daemon's poll loop takes commands.
    private func hasRoomForAnother() -> Bool {
        completions.freeSlotCount(wanting: outputs.count + 1) > outputs.count
    }

    /// Posts every command the ring holds while ``hasRoomForAnother()``.
    private func forwardCommands() throws(RemoteLinkError) -> Int {
        var forwarded = 0
        while hasRoomForAnother() {
            let next: Descriptor?
            do { next = try submissions.dequeue() } catch { throw .protocolViolation("submission ring: \(error)") }
            guard let descriptor = next else { break }
            try send(descriptor)
            forwarded += 1
        }
        if forwarded > 0 { _ = try? submissions.ringProducers(submissionDoorbell) }
        return forwarded
    }

    /// Posts one command with its input bytes, noting where its output
    /// goes. The input stays in the data region, which outlives the link,
    /// until the send completes: the controller reuses its slot only after
    /// the completion, which the daemon sends after it has the bytes.
    private func send(_ command: Descriptor) throws(RemoteLinkError) {
        var descriptor = command
        let input: UnsafeRawBufferPointer
        if descriptor.opcode == CommandOpcode.cancel.rawValue {
            input = UnsafeRawBufferPointer(start: nil, count: 0)
        } else {
            outputs[descriptor.commandID] = (descriptor.outputOffset, descriptor.outputCapacity)
            // A range outside the slots travels without bytes: the daemon answers it invalid.
            input =
                data.slotBytes(offset: descriptor.inputOffset, length: UInt64(descriptor.inputSize)).map {
                    UnsafeRawBufferPointer($0)
                } ?? UnsafeRawBufferPointer(start: nil, count: 0)
        }
        try withUnsafeBytes(of: &descriptor) { (header) throws(RemoteLinkError) in
            try link.send(.command, header: header, data: input)
        }
    }

    /// A completion from the daemon (inside the worker's progress): its
    /// output into the data region, then the completion onto the ring.
    private func received(_ message: RemoteMessage, header: UnsafeRawBufferPointer, data bytes: UnsafeRawBufferPointer) {
        guard violation == nil else { return }
        guard message == .completion, header.count == MemoryLayout<Completion>.size else {
            violation = "\(message) with a \(header.count)-byte header"
            return
        }
        let completion = header.loadUnaligned(as: Completion.self)
        guard let place = outputs.removeValue(forKey: completion.commandID) else {
            violation = "completion for command \(completion.commandID), which is not in flight"
            return
        }
        guard bytes.count == Int(completion.outputSize), completion.outputSize <= place.capacity else {
            violation =
                "command \(completion.commandID): \(bytes.count) output bytes for outputSize \(completion.outputSize), capacity \(place.capacity)"
            return
        }
        if bytes.count > 0, let target = data.slotBytes(offset: place.offset, length: UInt64(bytes.count)) {
            target.copyMemory(from: bytes)
        }
        guard completions.enqueue(completion) else {
            violation = "completion ring full"  // cannot happen: commands are taken only while it has room
            return
        }
        postedSinceRing += 1
        postedThisTurn += 1
    }

    private func ringController() {
        guard postedSinceRing > 0 else { return }
        postedSinceRing = 0
        _ = try? completions.ringConsumer(completionDoorbell)
    }

    /// Sleeps until the controller posts (or frees completion space), the
    /// daemon sends, or the next heartbeat is due. The announcement, fence
    /// and re-check are the daemon poll loop's (see `SleeperAnnouncement`),
    /// under the turn; the `ppoll` is outside it, so the controller's
    /// thread can take turns meanwhile. Once the controller takes turns
    /// (``driveWhileWaiting(timeout:spin:)``), the proxy thread only keeps
    /// house: it leaves the worker's event fd to the controller's thread
    /// (two threads woken by every message would be one too many) and
    /// passes every ``housekeepingInterval`` for the heartbeat, the
    /// daemon's liveness and completions nobody waits for.
    private func sleep() {
        let timeout: UInt64? = turn.withLock { _ in
            submissions.announceEventFDSleeper()
            // Room on the completion ring matters only while commands wait
            // (else the controller would ring us for every completion it reads).
            waitsForCompletionRoom = submissions.hasElements()
            if waitsForCompletionRoom { completions.announceEventFDSleeper() }
            // F1: orders the announcements before the re-checks below.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            // A transfer still in progress needs progress to finish (a large
            // input the daemon is fetching, or an output arriving), whoever
            // else is away: the daemon's send times out otherwise.
            let watchWorker = !drivenByController || link.hasPendingSends || link.worker.isReceiving
            // Commands that arrived after that look, unannounced for room: pass again.
            var ready =
                stopping.load(ordering: .relaxed)
                || (submissions.hasElements() && (!waitsForCompletionRoom || hasRoomForAnother()))
            if !ready && watchWorker { ready = link.worker.isReceiving || (try? link.worker.arm()) != true }
            if ready {
                withdrawSleeper()
                return nil
            }
            let now = monotonicNanoseconds()
            let due = link.nextHeartbeat
            var timeout = due > now ? min(due - now, 50_000_000) : 0
            if !watchWorker { timeout = min(timeout, Self.housekeepingInterval) }
            waitSet[0] = pollfd(fd: daemonDoorbellFD.fileDescriptor.rawValue, events: Poll.readable, revents: 0)
            waitSet[1] = pollfd(
                fd: watchWorker ? link.worker.eventFileDescriptor.rawValue : -1, events: Poll.readable, revents: 0)
            waitSet[2] = pollfd(fd: hangUp?.fileDescriptor.rawValue ?? -1, events: Poll.readHangUp, revents: 0)
            return timeout
        }
        guard let timeout else { return }
        let woke = (try? Poll.wait(&waitSet, timeoutNanoseconds: Int64(timeout))) ?? 0
        turn.withLock { _ in
            withdrawSleeper()
            if woke > 0, waitSet[0].revents != 0 { _ = try? daemonDoorbellFD.consume() }
        }
    }

    private func withdrawSleeper() {
        submissions.withdrawEventFDSleeper()
        if waitsForCompletionRoom { completions.withdrawEventFDSleeper() }
        waitsForCompletionRoom = false
    }

    /// How often a proxy thread that only keeps house passes (ns).
    static let housekeepingInterval: UInt64 = 20_000_000

    /// The remote daemon is gone: close the link and our end of the
    /// session's socket pair, and wake the controller so it notices now.
    private func end(_ reason: String) {
        ended = true
        endReason.withLock { if $0 == nil { $0 = reason } }
        // Forced: completes without the daemon, so this waits only for UCX.
        link.closeAndWait(force: true)
        hangUp = nil
        try? sessionDoorbellFD.signal()
    }
}
