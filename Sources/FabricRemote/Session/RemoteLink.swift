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

    /// The most handshake messages kept before the peer is in violation.
    static let handshakeBacklog = 4

    /// A link over `endpoint` on `worker`. With `ownsWorker` it registers the
    /// protocol's handlers on the worker (which then must carry no other
    /// endpoint); otherwise whoever owns the worker hands this link its
    /// messages with ``deliver(_:header:data:)`` (a daemon's one worker for
    /// all remote sessions, see `RemoteMessageRouter`).
    package init(
        worker: UCXWorker, endpoint: UCXEndpoint, heartbeat: RemoteHeartbeat = RemoteHeartbeat(), ownsWorker: Bool = true
    ) throws(UCXError) {
        self.worker = worker
        self.endpoint = endpoint
        self.heartbeat = heartbeat
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
        to address: UCXAddress, heartbeat: RemoteHeartbeat = RemoteHeartbeat()
    )
        throws(UCXError) -> RemoteLink
    {
        let worker = try UCXWorker()
        return try RemoteLink(worker: worker, endpoint: UCXEndpoint.connect(worker, to: address), heartbeat: heartbeat)
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
        guard let endpoint else { return .closed }
        if let failure = endpoint.failure { return .transport(failure) }
        if let violation { return .protocolViolation(violation) }
        if saidGoodbye { return .peerClosed }
        if now &- lastReceived > heartbeat.timeoutNanoseconds, now > lastReceived { return .peerSilent(heartbeat.peerTimeout) }
        return nil
    }

    /// Sends `message` (UCX is done with both buffers when this returns),
    /// waiting at most the peer timeout.
    package func send(
        _ message: RemoteMessage, header: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        data: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) throws(RemoteLinkError) {
        guard let endpoint else { throw .closed }
        do {
            try endpoint.send(message.rawValue, header: header, data: data, timeout: sendTimeout ?? heartbeat.peerTimeout)
        } catch {
            throw .transport(error)
        }
        lastSent = monotonicNanoseconds()
    }

    /// Sends handshake `bytes` as `message`.
    package func send(_ message: RemoteMessage, bytes: [UInt8]) throws(RemoteLinkError) {
        let sent = bytes.withUnsafeBytes { data in Result { () throws(RemoteLinkError) in try send(message, data: data) } }
        try sent.get()
    }

    /// Sends a heartbeat if nothing was sent for an interval, and fails if
    /// the peer is gone. Call it on every pass of the loop.
    package func keepAlive(now: UInt64 = monotonicNanoseconds()) throws(RemoteLinkError) {
        if let failure = failure(now: now) { throw failure }
        if now &- lastSent >= heartbeat.intervalNanoseconds { try send(.heartbeat) }
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
    package func close(force: Bool = false) {
        guard let endpoint else { return }
        worker.discardMessages(from: endpoint.handle)
        endpoint.close(force: force || failure() != nil)
        self.endpoint = nil
    }

    deinit { close(force: true) }
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

    package var description: String {
        switch self {
        case .transport(let error): "\(error)"
        case .peerSilent(let timeout): "peer silent for \(timeout) (no heartbeat: link down or peer stalled)"
        case .protocolViolation(let why): "protocol violation: \(why)"
        case .timedOut(let message): "timed out waiting for the \(message)"
        case .rejected(let why, let reason): "rejected: \(why)\(reason.isEmpty ? "" : " (\(reason))")"
        case .closed: "closed"
        case .peerClosed: "closed by the peer"
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
