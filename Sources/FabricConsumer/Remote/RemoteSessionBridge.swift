import FabricRemote
import FabricSession
import FabricSystem
import Glibc

/// One remote controller, as the daemon's poll thread serves it (through the
/// ``RemoteGateway``): its UCX
/// link and, once the handshake admitted it, an ordinary in-process session
/// of this daemon (``FabricDaemon/connectInProcess()``), for which the
/// bridge is the controller.
///
/// Every command that arrives is checked before anything is done with it:
/// its input bytes must be exactly `inputSize` and land inside the
/// session's slots (else the bridge answers it `invalidDescriptor` itself),
/// its id must not be in flight already and the session may not hold more
/// commands than its rings (else the controller broke the protocol and its
/// session ends). The bytes are copied into the data region at the
/// descriptor's offset, and the descriptor goes on the submission ring,
/// where the daemon validates it as it validates every local one. Each
/// completion goes back with its output bytes (at most `outputCapacity`,
/// read only from inside the slots).
///
/// Clocks differ between hosts, so the bridge stamps each descriptor with
/// its arrival time here (deadlines count from then: the network time
/// before it is not counted), and shifts the completion's timestamps back
/// onto the controller's clock by the same difference.
final class RemoteSessionBridge {
    enum State {
        /// Waiting for the hello, until the deadline.
        case awaitingHello(deadline: UInt64)
        /// Challenge sent; waiting for the proof.
        case awaitingProof(key: RemotePublicKey, nonce: [UInt8], deadline: UInt64)
        /// Proof accepted; the in-process session is being opened (its
        /// hello sent to the control thread, the grant to come).
        case opening(key: RemotePublicKey, deadline: UInt64)
        /// Admitted and serving.
        case serving(RemotePublicKey)
        /// Over (refused, failed or closed): the gateway drops it once its
        /// link is quiescent (``isFinished``).
        case ended
    }

    /// The most sends a session's link may have in progress: a completion
    /// for each command its rings hold, a refusal for each it may be
    /// answered directly, and a few heartbeats and handshake messages.
    static func maximumPendingSends(inFlightLimit: Int) -> Int { inFlightLimit * 2 + 16 }

    /// A handshaking link's limit (its messages carry no header).
    static let handshakePendingSends = 16

    /// A command in flight: where its output goes, and its two timestamps.
    struct InFlight {
        var outputOffset: UInt64
        var outputCapacity: UInt32
        var controllerSubmit: UInt64
        var localSubmit: UInt64
    }

    let link: RemoteLink
    private(set) var state: State
    /// Set once serving. Kept after the session ends until the link is
    /// quiescent: posted completions send their output from its data region.
    private(set) var session: Attached?
    /// The in-process session's socket while it opens, and what of its grant has arrived.
    private var opening: UnixSocket?
    private var grantReader: SessionGrantReader?
    private var inFlight: [UInt64: InFlight] = [:]
    /// Descriptors waiting for room on the submission ring, oldest at `backlogHead`.
    private var backlog: [Descriptor] = []
    private var backlogHead = 0
    /// Completions the bridge answers itself (inputs that do not fit), to send from the loop.
    private var answers: [Completion] = []
    private var commandsReceived: UInt64 = 0

    /// The in-process session: its rings as its controller holds them.
    final class Attached {
        /// The in-process session's socket: closing it ends the session.
        var socket: UnixSocket?
        let attachment: SessionAttachment
        var submissions: SPSCProducer<Descriptor>
        var completions: SPSCConsumer<Completion>
        let submissionRing: Doorbell
        let completionRing: Doorbell

        init(attachment: SessionAttachment) throws(SessionError) {
            do {
                submissions = try SPSCProducer(region: attachment.submissionRegion)
                completions = try SPSCConsumer(region: attachment.completionRegion)
            } catch { throw .malformed("in-process session rings: \(error)") }
            self.attachment = attachment
            submissionRing = attachment.submissionDoorbell
            completionRing = attachment.completionDoorbell
        }
    }

    init(link: RemoteLink, handshakeDeadline: UInt64) {
        self.link = link
        state = .awaitingHello(deadline: handshakeDeadline)
        link.onSessionMessage = { [unowned self] message, header, data in
            self.received(message, header: header, data: data)
        }
    }

    var isEnded: Bool {
        if case .ended = state { return true }
        return false
    }

    var sessionID: UInt64? { session?.attachment.sessionID }

    /// Ends the session: the link closes (forced unless `graceful`, and
    /// without waiting: ``advanceClose(now:)`` finishes it), and the
    /// in-process session with it (the daemon drops what is still queued).
    func end(graceful: Bool = false) {
        state = .ended
        link.close(force: !graceful)
        opening = nil
        grantReader = nil
        session?.socket = nil
        inFlight.removeAll()
        backlog.removeAll()
        backlogHead = 0
        answers.removeAll()
        advanceClose()
    }

    /// Moves an ended session's close on; once UCX holds none of its
    /// buffers, lets go of the data region.
    func advanceClose(now: UInt64 = monotonicNanoseconds()) {
        guard isEnded else { return }
        link.advanceClose(now: now)
        if link.isQuiescent { session = nil }
    }

    /// Ended, and its link quiescent: the gateway can drop it.
    var isFinished: Bool { isEnded && link.isQuiescent }

    // MARK: Handshake

    /// Advances the handshake with what has arrived. For an admitted key,
    /// `begin` starts opening the in-process session, whose grant is read
    /// as it arrives (never waiting), and `finish` maps it. Returns a
    /// refusal or failure to log (the bridge has ended then), or nil.
    func stepHandshake(
        now: UInt64, keys: AuthorizedKeys, begin: () throws(SessionError) -> UnixSocket,
        finish: (SessionGrant) throws(SessionError) -> (Attached, RemoteGrant)
    ) -> (key: RemotePublicKey?, error: RemoteLinkError)? {
        switch state {
        case .awaitingHello(let deadline):
            if let failure = link.failure(now: now) {
                // A peer that sends commands unauthenticated is told so.
                if case .protocolViolation(let why) = failure {
                    return refuse(nil, .challenge, .rejected(.notAllowed, reason: why))
                }
                return fail(nil, failure)
            }
            guard let (message, bytes) = link.takeHandshakeMessage() else {
                return now >= deadline ? refuse(nil, .challenge, .rejected(.malformed, reason: "no hello in time")) : nil
            }
            guard message == .hello else {
                return refuse(nil, .challenge, .rejected(.malformed, reason: "\(message) before the hello"))
            }
            do {
                let (key, nonce, challenge) = try RemoteHandshake.challenge(forHello: bytes)
                try link.send(.challenge, bytes: challenge)
                state = .awaitingProof(key: key, nonce: nonce, deadline: deadline)
                return nil
            } catch {
                return refuse(nil, .challenge, error)
            }
        case .awaitingProof(let key, let nonce, let deadline):
            if let failure = link.failure(now: now) {
                if case .protocolViolation(let why) = failure {
                    return refuse(key, .verdict, .rejected(.notAllowed, reason: why))
                }
                return fail(key, failure)
            }
            guard let (message, bytes) = link.takeHandshakeMessage() else {
                return now >= deadline ? refuse(key, .verdict, .rejected(.malformed, reason: "no proof in time")) : nil
            }
            guard message == .proof else {
                return refuse(key, .verdict, .rejected(.malformed, reason: "\(message) where the proof was due"))
            }
            do throws(RemoteLinkError) {
                try RemoteHandshake.checkProof(bytes, key: key, nonce: nonce, keys: keys)
            } catch {
                return refuse(key, .verdict, error)
            }
            do { opening = try begin() } catch { return refuse(key, .verdict, Self.refusal(error)) }
            grantReader = SessionGrantReader()
            state = .opening(key: key, deadline: deadline)
            return nil
        case .opening(let key, let deadline):
            if let failure = link.failure(now: now) { return fail(key, failure) }
            // The control thread answers within microseconds; what has
            // arrived is read (zero-timeout polls) on each pass until all has.
            guard let reader = grantReader, let socket = opening?.fileDescriptor else { return fail(key, .closed) }
            let granted: SessionGrant?
            do { granted = try reader.advance(on: socket) } catch { return refuse(key, .verdict, Self.refusal(error)) }
            guard let granted else {
                return now >= deadline
                    ? refuse(key, .verdict, .rejected(.busy, reason: "daemon did not open the session in time")) : nil
            }
            grantReader = nil
            guard let socket = opening.take() else { return fail(key, .closed) }
            let opened: (Attached, RemoteGrant)
            do { opened = try finish(granted) } catch { return refuse(key, .verdict, Self.refusal(error)) }
            opened.0.socket = consume socket
            session = opened.0
            let limit = opened.1.submissionCapacity + opened.1.completionCapacity
            inFlight.reserveCapacity(limit)
            backlog.reserveCapacity(limit)
            link.reservePendingSends(Self.maximumPendingSends(inFlightLimit: limit))
            state = .serving(key)
            do { try link.send(.verdict, bytes: RemoteHandshake.verdict(opened.1)) } catch { return fail(key, error) }
            return nil
        case .serving, .ended:
            return nil
        }
    }

    /// A session that could not be opened, as the controller is told.
    private static func refusal(_ error: SessionError) -> RemoteLinkError {
        if case .rejected(let why, let reason) = error { return .rejected(why, reason: reason) }
        return .rejected(.busy, reason: "\(error)")
    }

    private func refuse(
        _ key: RemotePublicKey?, _ message: RemoteMessage, _ error: RemoteLinkError
    ) -> (
        key: RemotePublicKey?, error: RemoteLinkError
    ) {
        if case .rejected(let why, let reason) = error {
            try? link.send(message, bytes: RemoteHandshake.refusal(message, why, reason))
            end(graceful: true)
        } else {
            end()
        }
        return (key, error)
    }

    private func fail(_ key: RemotePublicKey?, _ error: RemoteLinkError) -> (key: RemotePublicKey?, error: RemoteLinkError) {
        end()
        return (key, error)
    }

    // MARK: Serving

    /// The most commands a session may have at the daemon at once: what its two rings hold.
    private var inFlightLimit: Int {
        guard let session else { return 0 }
        return session.submissions.capacity + session.completions.capacity
    }

    /// A command from the controller (inside the worker's progress).
    private func received(_ message: RemoteMessage, header: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer) {
        guard link.violation == nil else { return }
        guard case .serving = state, let session else {
            link.violation = "\(message) before the handshake"
            return
        }
        guard message == .command, header.count == MemoryLayout<Descriptor>.size else {
            link.violation = "\(message) with a \(header.count)-byte header"
            return
        }
        var descriptor = header.loadUnaligned(as: Descriptor.self)
        commandsReceived &+= 1
        let now = monotonicNanoseconds()
        if descriptor.opcode == CommandOpcode.cancel.rawValue {
            guard data.isEmpty else {
                link.violation = "a cancellation with \(data.count) bytes"
                return
            }
            descriptor.submitTimestamp = now
            queue(descriptor)
            return
        }
        guard inFlight[descriptor.commandID] == nil else {
            link.violation = "command \(descriptor.commandID) sent while it is in flight"
            return
        }
        guard inFlight.count + answers.count < inFlightLimit else {
            link.violation = "more than \(inFlightLimit) commands in flight"
            return
        }
        guard data.count == Int(descriptor.inputSize),
            let target = session.attachment.data.slotBytes(offset: descriptor.inputOffset, length: UInt64(data.count))
        else {
            // What the daemon would answer for a range outside the slots.
            var refused = Completion(
                for: descriptor, status: .invalidDescriptor, detail: InvalidDescriptorReason.inputOutOfBounds.rawValue)
            refused.pickupTimestamp = descriptor.submitTimestamp
            answers.append(refused)
            return
        }
        if data.count > 0 { target.copyMemory(from: data) }
        inFlight[descriptor.commandID] = InFlight(
            outputOffset: descriptor.outputOffset, outputCapacity: descriptor.outputCapacity,
            controllerSubmit: descriptor.submitTimestamp, localSubmit: now)
        descriptor.submitTimestamp = now
        queue(descriptor)
    }

    private func queue(_ descriptor: Descriptor) {
        if backlogHead == backlog.count {
            backlog.removeAll(keepingCapacity: true)
            backlogHead = 0
        }
        guard backlog.count - backlogHead < inFlightLimit + 1 else {
            link.violation = "more than \(inFlightLimit) commands waiting"
            return
        }
        backlog.append(descriptor)
    }

    /// One pass while serving: post what arrived, send back what completed,
    /// keep the heartbeat. Returns whether it did anything, or throws why
    /// the session must end.
    func serve(now: UInt64) throws(RemoteLinkError) -> Bool {
        guard case .serving = state, let session else { return false }
        if let violation = link.violation { throw .protocolViolation(violation) }
        if link.hasHandshakeMessage { throw .protocolViolation("a handshake message after the verdict") }
        var worked = false
        // Commands onto the ring, as many as it takes.
        var posted = 0
        while backlogHead < backlog.count, session.submissions.enqueue(backlog[backlogHead]) {
            backlogHead += 1
            posted += 1
        }
        if posted > 0 {
            worked = true
            _ = try? session.submissions.ringConsumer(session.submissionRing)
        }
        // Completions back, with their outputs.
        var drained = 0
        while true {
            let next: Completion?
            do { next = try session.completions.dequeue() } catch {
                throw .protocolViolation("in-process completion ring: \(error)")
            }
            guard var completion = next else { break }
            drained += 1
            guard let command = inFlight.removeValue(forKey: completion.commandID) else { continue }
            // Wrapping: the controller's clock reading is its own to choose.
            func shift(_ time: UInt64) -> UInt64 {
                time == 0 ? 0 : time &- command.localSubmit &+ command.controllerSubmit
            }
            completion.submitTimestamp = command.controllerSubmit
            completion.pickupTimestamp = shift(completion.pickupTimestamp)
            completion.handlerStartTimestamp = shift(completion.handlerStartTimestamp)
            completion.handlerEndTimestamp = shift(completion.handlerEndTimestamp)
            var output = UnsafeRawBufferPointer(start: nil, count: 0)
            let size = min(completion.outputSize, command.outputCapacity)
            if size > 0, let bytes = session.attachment.data.slotBytes(offset: command.outputOffset, length: UInt64(size)) {
                output = UnsafeRawBufferPointer(bytes)
            }
            completion.outputSize = UInt32(output.count)
            try withUnsafeBytes(of: &completion) { (header) throws(RemoteLinkError) in
                try link.send(.completion, header: header, data: output)
            }
        }
        if drained > 0 {
            worked = true
            _ = try? session.completions.ringProducers(session.completionRing)
        }
        while !answers.isEmpty {
            var answer = answers.removeLast()
            try withUnsafeBytes(of: &answer) { (header) throws(RemoteLinkError) in try link.send(.completion, header: header) }
            worked = true
        }
        try link.keepAlive(now: now)
        return worked
    }

    /// Whether a pass would find work. Both ends of the in-process
    /// session's rings are the poll thread's, so no announcement is needed:
    /// nothing but the poll thread changes them.
    func hasWork() -> Bool {
        if isEnded { return false }
        if link.hasHandshakeMessage || link.failure() != nil { return true }
        guard case .serving = state, let session else { return false }
        if !answers.isEmpty { return true }
        if backlogHead < backlog.count && session.submissions.freeSlotCount(wanting: 1) > 0 { return true }
        return session.completions.hasElements()
    }
}
