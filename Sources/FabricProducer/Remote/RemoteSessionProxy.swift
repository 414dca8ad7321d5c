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
    // @unchecked: made on the connecting thread, then owned by the proxy thread (handed over at thread start); `stopping` is atomic and `endReason` locked
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

    /// Connects to the remote daemon at `address`, runs the handshake with
    /// `key`, builds the session's local half and starts the proxy thread.
    static func connect(
        to address: UCXAddress, key: RemoteSigningKey, options: ControllerOptions
    ) throws(SessionError) -> SessionConnection {
        let link: RemoteLink
        // Until the grant sets it: silence is the connect timeout, so a slow daemon gets all of it.
        let handshake = RemoteHeartbeat(peerTimeout: max(options.connectTimeout, .milliseconds(200)))
        do { link = try RemoteLink.connect(to: address, heartbeat: handshake) } catch {
            throw .transport("\(address): \(error)")
        }
        let grant: RemoteGrant
        do { grant = try RemoteHandshake.request(over: link, key: key, timeout: options.connectTimeout) } catch {
            link.close(force: true)
            if case .transport = error { throw .transport("\(address): \(error)") }
            throw error.sessionError
        }
        link.heartbeat = grant.heartbeat
        let (sessionBytes, overflow) = grant.slotSize.multipliedReportingOverflow(by: grant.slotCount)
        guard !overflow, grant.slotSize >= 0, grant.slotCount >= 0 else {
            link.close(force: true)
            throw .malformed("granted \(grant.slotCount) slots of \(grant.slotSize) bytes")
        }
        link.allowCompletions(upTo: sessionBytes)
        let models = (try? ModelDescription.decode(grant.models)) ?? []
        let proxy = try RemoteSessionProxy(link: link, grant: grant)
        let pair: (FileDescriptor, FileDescriptor)
        do { pair = try FileDescriptorPassing.socketPair() } catch { throw .socket(error) }
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
            throw .malformed("remote session's local rings: \(error)")
        }
        let connection = SessionConnection(socket: UnixSocket(pair.0), attachment: attachment, options: options)
        do { proxy.thread = try ServiceThread { [proxy] in proxy.run() } } catch {
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

    // MARK: The proxy thread

    private func run() {
        var idleSince: UInt64 = 0
        var lastHangUpCheck: UInt64 = 0
        while !stopping.load(ordering: .relaxed) {
            let now = monotonicNanoseconds()
            do { try link.keepAlive(now: now) } catch {
                end("\(error)")
                return
            }
            if now &- lastHangUpCheck > 50_000_000 {
                lastHangUpCheck = now
                if hangUp?.peerHasClosed() ?? true { break }
            }
            let forwarded: Int
            do { forwarded = try forwardCommands() } catch {
                end("\(error)")
                return
            }
            let progressed = link.worker.progress()
            if let violation {
                end("daemon broke the protocol: \(violation)")
                return
            }
            ringController()
            if forwarded > 0 || progressed {
                idleSince = 0
                continue
            }
            // A short spin before sleeping: a completion is often a few
            // microseconds away, and waking from ppoll costs more.
            if idleSince == 0 { idleSince = now }
            if now &- idleSince < 20_000 { continue }
            sleep()
        }
        // The controller closed the session: say so, flush and close.
        try? link.send(.goodbye)
        link.close()
        endReason.withLock { if $0 == nil { $0 = "closed by the controller" } }
    }

    /// Whether the completion ring has room for the completion of every
    /// command in flight and one more (so posting one never waits), as the
    /// daemon's poll loop takes commands.
    private func hasRoomForAnother() -> Bool {
        completions.freeSlotCount(wanting: outputs.count + 1) > outputs.count
    }

    /// Sends every command the ring holds while ``hasRoomForAnother()``.
    private func forwardCommands() throws(RemoteLinkError) -> Int {
        var forwarded = 0
        while hasRoomForAnother() {
            let next: Descriptor?
            do { next = try submissions.dequeue() } catch { throw .protocolViolation("submission ring: \(error)") }
            guard var descriptor = next else { break }
            forwarded += 1
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
        if forwarded > 0 { _ = try? submissions.ringProducers(submissionDoorbell) }
        return forwarded
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
    }

    private func ringController() {
        guard postedSinceRing > 0 else { return }
        postedSinceRing = 0
        _ = try? completions.ringConsumer(completionDoorbell)
    }

    /// Sleeps until the controller posts (or frees completion space), the
    /// daemon sends, or the next heartbeat is due. The announcement, fence
    /// and re-check are the daemon poll loop's (see `SleeperAnnouncement`).
    private func sleep() {
        submissions.announceEventFDSleeper()
        completions.announceEventFDSleeper()
        defer {
            submissions.withdrawEventFDSleeper()
            completions.withdrawEventFDSleeper()
        }
        // F1: orders the announcements before the re-checks below.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if stopping.load(ordering: .relaxed) { return }
        if submissions.hasElements() && hasRoomForAnother() { return }
        guard !link.worker.isReceiving, (try? link.worker.arm()) == true else { return }
        let now = monotonicNanoseconds()
        let due = link.nextHeartbeat
        let timeout = due > now ? min(due - now, 50_000_000) : 0
        waitSet[0] = pollfd(fd: daemonDoorbellFD.fileDescriptor.rawValue, events: Poll.readable, revents: 0)
        waitSet[1] = pollfd(fd: link.worker.eventFileDescriptor.rawValue, events: Poll.readable, revents: 0)
        waitSet[2] = pollfd(fd: hangUp?.fileDescriptor.rawValue ?? -1, events: Poll.readHangUp, revents: 0)
        if (try? Poll.wait(&waitSet, timeoutNanoseconds: Int64(timeout))) ?? 0 > 0, waitSet[0].revents != 0 {
            _ = try? daemonDoorbellFD.consume()
        }
    }

    /// The remote daemon is gone: close the link and our end of the
    /// session's socket pair, and wake the controller so it notices now.
    private func end(_ reason: String) {
        endReason.withLock { if $0 == nil { $0 = reason } }
        link.close(force: true)
        hangUp = nil
        try? sessionDoorbellFD.signal()
    }
}
