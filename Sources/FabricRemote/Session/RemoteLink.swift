import CUCX
import FabricSession
import FabricSystem

/// One remote session's connection, on the thread that owns its worker: a
/// ``UCXWorker`` with a single ``UCXEndpoint``, the session protocol's
/// message handlers, and the heartbeat both sides keep.
///
/// Handshake messages are kept (copied, in order) for ``receive(_:timeout:)``;
/// commands and completions go to ``onSessionMessage`` as they arrive,
/// from inside ``UCXWorker/progress()``, so their bytes can be copied
/// straight into the session's data region.
package final class RemoteLink {
    package let worker: UCXWorker
    package private(set) var endpoint: UCXEndpoint?
    package var heartbeat: RemoteHeartbeat
    /// The longest one send may take before the link fails (default: the
    /// peer timeout). A daemon's gateway, which serves every remote session
    /// on one thread, keeps it short so one stuck peer cannot hold the
    /// others' heartbeats past their timeout.
    package var sendTimeout: Duration?
    /// When anything last arrived, and when we last sent (monotonic ns).
    package private(set) var lastReceived: UInt64
    package private(set) var lastSent: UInt64
    /// Commands (daemon side) or completions (controller side): header and
    /// data, valid during the call. Must not send or progress.
    package var onSessionMessage: ((RemoteMessage, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void)?
    private var handshake: [(RemoteMessage, [UInt8])] = []
    /// A message that broke the protocol (wrong id at this point, say).
    package var violation: String?
    /// The peer said it is closing the session.
    private var saidGoodbye = false
    /// How sends wait (``SendMode``); ``reservePendingSends(_:)`` raises a posting link's limit.
    package private(set) var sendMode: SendMode
    /// Posted sends UCX is not done with yet, oldest at `pendingHead`.
    private var pending: [PendingSend] = []
    private var pendingHead = 0
    /// Copies of posted headers (64 bytes each), one per pending send at most.
    private var headerSlots: UnsafeMutableRawBufferPointer
    private var freeHeaderSlots: [Int] = []
    /// A graceful close in progress (posting mode): the flush, until done or `closeDeadline`.
    private var flushing: UCXRequest?
    private var closeDeadline: UInt64 = 0
    /// Set once a close has begun: nothing more is sent.
    private var isClosing = false

    /// The most handshake messages kept before the peer is in violation.
    static let handshakeBacklog = 4

    /// A link over `endpoint` on `worker`. With `ownsWorker` it registers the
    /// protocol's handlers on the worker (which then must carry no other
    /// endpoint); otherwise whoever owns the worker hands this link its
    /// messages with ``deliver(_:header:data:)`` (a daemon's one worker for
    /// all remote sessions, see `RemoteMessageRouter`).
    package init(
        worker: UCXWorker, endpoint: UCXEndpoint, heartbeat: RemoteHeartbeat = RemoteHeartbeat(), ownsWorker: Bool = true,
        sendMode: SendMode = .blocking
    ) throws(UCXError) {
        self.worker = worker
        self.endpoint = endpoint
        self.heartbeat = heartbeat
        self.sendMode = sendMode
        let slots = if case .posting(let most) = sendMode { max(most, 1) } else { 0 }
        headerSlots = .allocate(byteCount: max(slots, 1) * Self.headerSlotSize, alignment: 64)
        freeHeaderSlots = Array((0..<slots).reversed())
        pending.reserveCapacity(slots)
        lastReceived = monotonicNanoseconds()
        lastSent = lastReceived
        guard ownsWorker else { return }
        // A controller's link: no completion data until the grant says how much (``allowCompletions(upTo:)``).
        for message in RemoteMessage.allCases {
            let limit = RemoteProtocol.maximumLength(of: message, daemonSide: false, sessionBytes: 0)
            try worker.onMessage(message.rawValue, maximumLength: limit) { [unowned self] received in
                self.deliver(message, header: received.header, data: received.data, oversized: received.isOversized)
            }
        }
    }

    /// Controller side, once granted: completions may carry up to `bytes` (the data region's slots).
    package func allowCompletions(upTo bytes: Int) {
        worker.setMaximumLength(bytes, for: RemoteMessage.completion.rawValue)
    }

    /// Whether handshake messages are waiting.
    package var hasHandshakeMessage: Bool { !handshake.isEmpty }

    /// Handshake messages waiting (daemon side, which takes them without blocking).
    package func takeHandshakeMessage() -> (RemoteMessage, [UInt8])? {
        handshake.isEmpty ? nil : handshake.removeFirst()
    }

    /// Connects to a remote daemon's listener on a new worker.
    package static func connect(
        to address: UCXAddress, heartbeat: RemoteHeartbeat = RemoteHeartbeat(), sendMode: SendMode = .blocking
    )
        throws(UCXError) -> RemoteLink
    {
        let worker = try UCXWorker()
        return try RemoteLink(
            worker: worker, endpoint: UCXEndpoint.connect(worker, to: address), heartbeat: heartbeat, sendMode: sendMode)
    }

    /// One message from the peer (inside the worker's progress).
    package func deliver(
        _ message: RemoteMessage, header: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer, oversized: Bool = false
    ) {
        lastReceived = monotonicNanoseconds()
        guard !oversized else {
            if violation == nil { violation = "a \(message) not received (longer than this side takes, or lost)" }
            return
        }
        switch message {
        case .heartbeat: return
        case .goodbye: saidGoodbye = true
        case .command, .completion:
            if let onSessionMessage {
                onSessionMessage(message, header, data)
            } else {
                violation = "\(message) before the session"
            }
        case .hello, .challenge, .proof, .verdict:
            guard handshake.count < Self.handshakeBacklog else {
                violation = "handshake flood"
                return
            }
            handshake.append((message, Array(data)))
        }
    }

    /// Why the link cannot be used: the endpoint failed, the peer broke the
    /// protocol, or it has been silent for ``RemoteHeartbeat/peerTimeout``.
    package func failure(now: UInt64 = monotonicNanoseconds()) -> RemoteLinkError? {
        guard let endpoint, !isClosing else { return .closed }
        if let failure = endpoint.failure { return .transport(failure) }
        if let violation { return .protocolViolation(violation) }
        if saidGoodbye { return .peerClosed }
        if now &- lastReceived > heartbeat.timeoutNanoseconds, now > lastReceived { return .peerSilent(heartbeat.peerTimeout) }
        return nil
    }

    /// Sends `message`.
    ///
    /// Blocking (``SendMode/blocking``): UCX is done with both buffers when
    /// this returns; it waits at most ``sendTimeout`` (default the peer
    /// timeout). Posting (``SendMode/posting(maximumPending:)``): it returns
    /// at once; the header is copied, but `data` must stay valid and
    /// unchanged until the send completes (``hasPendingSends`` is false, or
    /// ``isQuiescent`` after a close); ``reapSends(now:)`` fails the link
    /// when one takes longer than ``sendTimeout``.
    package func send(
        _ message: RemoteMessage, header: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        data: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) throws(RemoteLinkError) {
        try send(message, header: header, data: data, owned: nil)
    }

    private func send(
        _ message: RemoteMessage, header: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer,
        owned: UnsafeMutableRawBufferPointer?
    ) throws(RemoteLinkError) {
        guard let endpoint, !isClosing else {
            owned?.deallocate()
            throw .closed
        }
        guard case .posting(let most) = sendMode else {
            do {
                try endpoint.send(message.rawValue, header: header, data: data, timeout: sendTimeout ?? heartbeat.peerTimeout)
            } catch {
                throw .transport(error)
            }
            lastSent = monotonicNanoseconds()
            return
        }
        // Headers are the protocol's own (descriptors, completions: 64 bytes), never a peer's.
        precondition(header.count <= Self.headerSlotSize, "a \(header.count)-byte header")
        guard pending.count - pendingHead < most else {
            owned?.deallocate()
            throw .sendsBacklogged(pending.count - pendingHead)
        }
        // The header is copied into a slot of ours (UCX 1.13 has no
        // UCP_AM_SEND_FLAG_COPY_HEADER): the caller's copy may go at once.
        // There are as many slots as sends may be pending, so one is free.
        var slot = -1
        var postedHeader = header
        if header.count > 0 {
            guard let free = freeHeaderSlots.popLast() else { preconditionFailure("no free header slot") }
            slot = free
            let copy = UnsafeMutableRawBufferPointer(
                rebasing: headerSlots[(free * Self.headerSlotSize)..<(free * Self.headerSlotSize + header.count)])
            copy.copyMemory(from: header)
            postedHeader = UnsafeRawBufferPointer(copy)
        }
        let request: UCXRequest?
        do { request = try endpoint.post(message.rawValue, header: postedHeader, data: data) } catch {
            if slot >= 0 { freeHeaderSlots.append(slot) }
            owned?.deallocate()
            throw .transport(error)
        }
        lastSent = monotonicNanoseconds()
        guard let request else {
            if slot >= 0 { freeHeaderSlots.append(slot) }
            owned?.deallocate()
            return
        }
        // Compacted in place (a move, no allocation: the capacity was
        // reserved) once finished sends take half of it, so a link that is
        // never idle does not grow it.
        if pendingHead > 0, pendingHead >= pending.count / 2 {
            pending.removeSubrange(0..<pendingHead)
            pendingHead = 0
        }
        pending.append(PendingSend(request: request, posted: lastSent, headerSlot: slot, owned: owned))
    }

    /// Sends handshake `bytes` as `message` (copied first in posting mode).
    package func send(_ message: RemoteMessage, bytes: [UInt8]) throws(RemoteLinkError) {
        var owned: UnsafeMutableRawBufferPointer?
        if case .posting = sendMode, !bytes.isEmpty {
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
            copy.copyBytes(from: bytes)
            owned = copy
        }
        if let owned {
            try send(
                message, header: UnsafeRawBufferPointer(start: nil, count: 0), data: UnsafeRawBufferPointer(owned), owned: owned)
            return
        }
        let sent = bytes.withUnsafeBytes { data in Result { () throws(RemoteLinkError) in try send(message, data: data) } }
        try sent.get()
    }

    /// Raises a posting link's limit on sends in progress to `count` (a
    /// daemon does once a session is granted: as many as it may have
    /// commands in flight, and a few more). Allocates; call it outside the
    /// hot path.
    package func reservePendingSends(_ count: Int) {
        // UCX may read a posted header until its send completes: the slots
        // move only while none is in use (handshake messages have no header).
        guard case .posting(let most) = sendMode, count > most,
            !pending[pendingHead...].contains(where: { $0.headerSlot >= 0 })
        else { return }
        headerSlots.deallocate()
        headerSlots = .allocate(byteCount: count * Self.headerSlotSize, alignment: 64)
        freeHeaderSlots = Array((0..<count).reversed())
        pending.reserveCapacity(count)
        sendMode = .posting(maximumPending: count)
    }

    /// Posted sends not yet completed (posting mode).
    package var hasPendingSends: Bool { pendingHead < pending.count }

    /// Frees the posted sends that have completed, oldest first (posting
    /// mode). Throws when one failed, or when the oldest still running was
    /// posted more than ``sendTimeout`` ago (the peer does not take what is
    /// sent: it stalled, or the link is down and UCX has not noticed).
    package func reapSends(now: UInt64 = monotonicNanoseconds()) throws(RemoteLinkError) {
        while pendingHead < pending.count {
            let oldest = pending[pendingHead]
            guard let status = worker.status(of: oldest.request) else {
                let limit = (sendTimeout ?? heartbeat.peerTimeout).saturatingNanoseconds
                if now &- oldest.posted > limit, now > oldest.posted { throw .transport(.timedOut("ucp_am_send_nbx")) }
                return
            }
            finish(oldest)
            pendingHead += 1
            if pendingHead == pending.count {
                pending.removeAll(keepingCapacity: true)
                pendingHead = 0
            }
            guard status == UCS_OK else { throw .transport(UCXError("ucp_am_send_nbx", status)) }
        }
    }

    private func finish(_ send: PendingSend) {
        worker.release(send.request)
        if send.headerSlot >= 0 { freeHeaderSlots.append(send.headerSlot) }
        send.owned?.deallocate()
    }

    /// Sends a heartbeat if nothing was sent for an interval, and fails if
    /// the peer is gone (or, posting, a send is overdue). Call it on every
    /// pass of the loop.
    package func keepAlive(now: UInt64 = monotonicNanoseconds()) throws(RemoteLinkError) {
        if let failure = failure(now: now) { throw failure }
        if case .posting = sendMode { try reapSends(now: now) }
        // `now` may predate the last send (a pass's clock reading, sends
        // since): that is no silence, and must not wrap into one.
        if now > lastSent, now - lastSent >= heartbeat.intervalNanoseconds { try send(.heartbeat) }
    }

    /// When the next heartbeat is due (monotonic ns).
    package var nextHeartbeat: UInt64 { lastSent &+ heartbeat.intervalNanoseconds }

    /// Waits for handshake message `expected`, within `timeout`.
    ///
    /// - Throws: ``RemoteLinkError``: the link failed, the peer sent another
    ///   message, or nothing came in time.
    package func receive(_ expected: RemoteMessage, timeout: Duration) throws(RemoteLinkError) -> [UInt8] {
        let end = deadline(after: timeout)
        while handshake.isEmpty {
            if let failure = failure() { throw failure }
            let now = monotonicNanoseconds()
            guard now < end else { throw .timedOut(expected) }
            do { try worker.wait(timeout: .nanoseconds(Int64(clamping: min(end - now, 20_000_000)))) } catch {
                throw .transport(error)
            }
        }
        let (message, bytes) = handshake.removeFirst()
        guard message == expected else { throw .protocolViolation("\(message) where \(expected) was due") }
        return bytes
    }

    /// Closes the endpoint: flushed unless `force` (a peer that failed or
    /// broke the protocol gets no flush).
    ///
    /// Blocking mode waits for the flush (at most a second) and the close.
    /// Posting mode waits for nothing: the flush, for at most
    /// ``closingFlushTimeout``, and the close go on in ``advanceClose(now:)``,
    /// which the owner calls on each pass until ``isQuiescent``; only then
    /// may the buffers of its posted sends go.
    package func close(force: Bool = false) {
        guard let endpoint, !isClosing else { return }
        worker.discardMessages(from: endpoint.handle)
        guard case .posting = sendMode else {
            endpoint.close(force: force || failure() != nil)
            self.endpoint = nil
            return
        }
        // Only a failed endpoint skips the flush here: a refusal posted to a
        // peer that broke the protocol still goes out before the close.
        let force = force || endpoint.failure != nil
        isClosing = true
        if !force, let flush = endpoint.startFlush() {
            flushing = flush
            closeDeadline = monotonicNanoseconds() &+ Self.closingFlushTimeout.saturatingNanoseconds
        } else {
            endpoint.closeWithoutWaiting()
        }
    }

    /// How long a graceful close in posting mode waits for its flush.
    package static let closingFlushTimeout = Duration.milliseconds(500)

    /// Moves a posting-mode close on: ends the flush when it is done or
    /// overdue, then closes; frees the sends that completed.
    package func advanceClose(now: UInt64 = monotonicNanoseconds()) {
        guard isClosing else { return }
        if let flush = flushing, worker.status(of: flush) != nil || now >= closeDeadline {
            worker.release(flush)
            flushing = nil
        }
        if flushing == nil, let endpoint {
            endpoint.closeWithoutWaiting()
            self.endpoint = nil
        }
        // A close purges what was queued: every send completes, most with an error.
        while pendingHead < pending.count, worker.status(of: pending[pendingHead].request) != nil {
            finish(pending[pendingHead])
            pendingHead += 1
        }
    }

    /// Closes (see ``close(force:)``) and, in posting mode, progresses the
    /// worker until the link is quiescent or `timeout` has passed: for an
    /// owner whose thread may wait (a controller's proxy ending its session).
    package func closeAndWait(force: Bool = false, timeout: Duration = .seconds(1)) {
        close(force: force)
        guard case .posting = sendMode else { return }
        let end = deadline(after: timeout)
        while !isQuiescent && monotonicNanoseconds() < end {
            worker.progress()
            advanceClose()
        }
    }

    /// Closed, and UCX holds none of its buffers any more.
    package var isQuiescent: Bool { endpoint == nil && pendingHead == pending.count }

    deinit {
        // Not closed, or a posting-mode close still flushing: close and wait here (its owner is going).
        if let endpoint {
            worker.discardMessages(from: endpoint.handle)
            endpoint.close(force: true)
        }
        if let flushing { worker.release(flushing) }
        // A forced close completes every send queued on it; one that is still
        // running keeps its buffers (leaked, not freed under UCX).
        var allDone = true
        for send in pending[pendingHead...] {
            let done = worker.status(of: send.request) != nil
            worker.release(send.request)
            if done { send.owned?.deallocate() } else { allDone = false }
        }
        if allDone { headerSlots.deallocate() }
    }

    private static let headerSlotSize = 64
}

/// How a ``RemoteLink`` sends.
package enum SendMode: Equatable, Sendable {
    /// Each send progresses the worker until UCX is done with its buffers
    /// (a client with nothing else to do meanwhile: the test tools).
    case blocking
    /// Sends return at once, and at most this many may be in progress: a
    /// daemon's poll thread, which serves every session, and a controller's
    /// proxy, whose turns the controller's own thread takes; neither may
    /// wait for a peer.
    case posting(maximumPending: Int)
}

/// A posted send UCX is not done with.
private struct PendingSend {
    var request: UCXRequest
    var posted: UInt64
    /// Its header's slot in ``RemoteLink/headerSlots`` (-1: no header).
    var headerSlot: Int
    /// A copy of its data the link frees (handshake messages).
    var owned: UnsafeMutableRawBufferPointer?
}

/// Why a remote link failed.
package enum RemoteLinkError: Error, Equatable, Sendable, CustomStringConvertible {
    /// UCX reported the endpoint failed (the peer died, the connection reset), or a send timed out.
    case transport(UCXError)
    /// Nothing arrived from the peer for this long.
    case peerSilent(Duration)
    /// The peer sent something this protocol does not allow.
    case protocolViolation(String)
    /// A handshake message did not come in time.
    case timedOut(RemoteMessage)
    /// The other side refused the session.
    case rejected(SessionRejection, reason: String)
    /// The link was closed here.
    case closed
    /// The peer closed the session on purpose (it said goodbye).
    case peerClosed
    /// This many sends are still in progress: the peer does not take what is sent.
    case sendsBacklogged(Int)

    package var description: String {
        switch self {
        case .transport(let error): "\(error)"
        case .peerSilent(let timeout): "peer silent for \(timeout) (no heartbeat: link down or peer stalled)"
        case .protocolViolation(let why): "protocol violation: \(why)"
        case .timedOut(let message): "timed out waiting for the \(message)"
        case .rejected(let why, let reason): "rejected: \(why)\(reason.isEmpty ? "" : " (\(reason))")"
        case .closed: "closed"
        case .peerClosed: "closed by the peer"
        case .sendsBacklogged(let count): "\(count) sends still in progress: the peer does not take what is sent"
        }
    }

    /// The same failure as a ``SessionError`` (what a controller's connect throws).
    package var sessionError: SessionError {
        switch self {
        case .rejected(let why, let reason): .rejected(why, reason: reason)
        case .protocolViolation(let why): .malformed(why)
        default: .transport(description)
        }
    }
}
