import CUCX
import FabricSystem

/// A UCX endpoint: one connection to a peer, on a ``UCXWorker``'s thread.
///
/// Created by ``connect(_:to:)`` (client) or from a ``UCXListener``'s
/// connection request (server), with peer error handling
/// (`UCP_ERR_HANDLING_MODE_PEER`): when the peer process dies or the link
/// fails, UCX reports it through the endpoint's error handler, ``failure``
/// says so, and every later send fails with that error instead of hanging.
public final class UCXEndpoint {
    /// The worker it runs on.
    public let worker: UCXWorker
    /// UCX's endpoint, as ``UCXMessage/sender`` names it.
    public private(set) var handle: OpaquePointer?
    /// Why the endpoint failed (the peer is gone), or nil while it works.
    public private(set) var failure: UCXError?
    private var errorBox: Unmanaged<EndpointBox>?

    private init(worker: UCXWorker) {
        self.worker = worker
    }

    /// Connects to a ``UCXListener`` at `address` (`ucp_ep_create` with
    /// `UCP_EP_PARAMS_FLAGS_CLIENT_SERVER`). The connection completes in the
    /// background: the first send waits for it.
    ///
    /// - Throws: ``UCXError`` from `ucp_ep_create`.
    public static func connect(_ worker: UCXWorker, to address: UCXAddress) throws(UCXError) -> UCXEndpoint {
        let endpoint = UCXEndpoint(worker: worker)
        try endpoint.create(address: address, request: nil)
        return endpoint
    }

    /// Accepts a connection request a listener received.
    static func accept(_ worker: UCXWorker, _ request: ucp_conn_request_h) throws(UCXError) -> UCXEndpoint {
        let endpoint = UCXEndpoint(worker: worker)
        try endpoint.create(address: nil, request: request)
        return endpoint
    }

    private func create(address: UCXAddress?, request: ucp_conn_request_h?) throws(UCXError) {
        let box = Unmanaged.passRetained(EndpointBox(self))
        var endpoint: ucp_ep_h?
        let status: ucs_status_t
        if let address {
            status = try address.withSocketAddress { (pointer, length) throws(UCXError) in
                cfq_ucp_connect(worker.handle, pointer, length, nil, errorTrampoline, box.toOpaque(), &endpoint)
            }
        } else {
            status = cfq_ucp_connect(worker.handle, nil, 0, request, errorTrampoline, box.toOpaque(), &endpoint)
        }
        guard status == UCS_OK, let endpoint else {
            box.release()
            throw UCXError("ucp_ep_create", status == UCS_OK ? UCS_ERR_NO_RESOURCE : status)
        }
        handle = endpoint
        errorBox = box
    }

    deinit {
        close(force: failure != nil)
        errorBox?.release()
    }

    /// Sends active message `id` with `header` and `data` and progresses the
    /// worker until UCX is done with both buffers (`ucp_am_send_nbx`): eager
    /// for small messages, rendezvous for large ones (UCX chooses by size).
    /// Messages on one endpoint arrive in the order they were sent.
    ///
    /// Do not call it from a ``UCXWorker/onMessage(_:_:)`` handler (UCX
    /// forbids progress inside its callbacks): queue the reply and send it
    /// from the worker's loop.
    ///
    /// - Throws: ``UCXError``: the endpoint failed (``failure``), the send
    ///   failed, or `timeout` passed. A send that cannot finish in time
    ///   (a stalled peer, a cut link UCX has not noticed) fails the
    ///   endpoint: it is force-closed, which makes UCX give the buffers back,
    ///   and ``failure`` is the timeout from then on.
    public func send(
        _ id: UInt16, header: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer, timeout: Duration
    ) throws(UCXError) {
        if let failure { throw failure }
        guard let handle else { throw UCXError("ucp_am_send_nbx", UCS_ERR_NOT_CONNECTED) }
        let request = cfq_ucp_am_send(
            handle, UInt32(id), header.baseAddress, header.count, data.baseAddress, data.count)
        let end = deadline(after: timeout)
        do {
            try worker.complete(request, "ucp_am_send_nbx", deadline: end, abandon: { self.failure }) {
                if self.failure == nil { self.failure = .timedOut("ucp_am_send_nbx") }
                self.close(force: true)
            }
        } catch {
            if failure == nil { failure = error }
            throw error
        }
        if let failure { throw failure }
    }

    /// Starts sending active message `id` with `header` and `data`
    /// (`ucp_am_send_nbx`) without waiting: nil when UCX is done with both
    /// buffers already (an eager message that went out at once), else the
    /// send in progress. Both buffers must then stay valid, unchanged,
    /// until ``UCXWorker/status(of:)`` says it has completed; free it with
    /// ``UCXWorker/release(_:)``. Messages on one endpoint arrive in the
    /// order they were posted.
    ///
    /// - Throws: ``UCXError``: the endpoint failed (``failure``) or is
    ///   closed, or the send failed at once.
    public func post(
        _ id: UInt16, header: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer
    ) throws(UCXError) -> UCXRequest? {
        if let failure { throw failure }
        guard let handle else { throw UCXError("ucp_am_send_nbx", UCS_ERR_NOT_CONNECTED) }
        let request = cfq_ucp_am_send(handle, UInt32(id), header.baseAddress, header.count, data.baseAddress, data.count)
        guard let request else { return nil }
        guard cfq_ucs_ptr_is_ptr(request) != 0 else {
            let error = UCXError("ucp_am_send_nbx", cfq_ucs_ptr_status(request))
            if failure == nil { failure = error }
            throw error
        }
        worker.hasQueuedSends = true
        return UCXRequest(request)
    }

    /// Starts a flush (`ucp_ep_flush_nbx`) without waiting: nil when
    /// everything sent is delivered already, or the endpoint is closed or
    /// failed; else the flush in progress (free it with ``UCXWorker/release(_:)``).
    public func startFlush() -> UCXRequest? {
        guard failure == nil, let handle, let request = cfq_ucp_flush(handle), cfq_ucs_ptr_is_ptr(request) != 0 else {
            return nil
        }
        return UCXRequest(request)
    }

    /// Closes the endpoint at once, dropping what is still queued on it
    /// (`ucp_ep_close_nbx` with `UCP_EP_CLOSE_FLAG_FORCE`), without waiting:
    /// the worker completes the close in its later progress. Every send
    /// still in progress on it completes (with an error) there too. Idempotent.
    public func closeWithoutWaiting() {
        guard let endpoint = handle else { return }
        handle = nil
        // UCX may call the error handler until the close completes: its box goes then.
        let box = errorBox
        errorBox = nil
        if let request = cfq_ucp_close(endpoint, 1), cfq_ucs_ptr_is_ptr(request) != 0 {
            worker.retire(UCXRequest(request)) { box?.release() }
        } else {
            box?.release()
        }
    }

    /// Closes the endpoint: flushes what was sent (`ucp_ep_flush_nbx`, for
    /// at most a second), then closes it (`ucp_ep_close_nbx`, forced: the
    /// flush already delivered what could be). With `force`, or after a
    /// failure, it skips the flush. Idempotent.
    public func close(force: Bool = false) {
        guard let endpoint = handle else { return }
        handle = nil
        if !force && failure == nil {
            // A flush holds no caller buffers: one that cannot finish in a second is let go.
            try? worker.complete(cfq_ucp_flush(endpoint), "ucp_ep_flush_nbx", deadline: deadline(after: .seconds(1)))
        }
        // A forced close completes without the peer (it purges what is queued).
        try? worker.complete(cfq_ucp_close(endpoint, 1), "ucp_ep_close_nbx", deadline: deadline(after: .seconds(1)))
    }

    fileprivate func failed(_ status: ucs_status_t) {
        if failure == nil { failure = UCXError("peer", status) }
    }
}

/// What the error handler gets as its argument. Weak: after a close that
/// did not wait, the endpoint may be gone while UCX still holds the box
/// (it is released when the close completes).
private final class EndpointBox {
    weak var endpoint: UCXEndpoint?
    init(_ endpoint: UCXEndpoint) { self.endpoint = endpoint }
}

private let errorTrampoline: ucp_err_handler_cb_t = { arg, _, status in
    guard let arg else { return }
    Unmanaged<EndpointBox>.fromOpaque(arg).takeUnretainedValue().endpoint?.failed(status)
}
