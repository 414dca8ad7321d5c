import CUCX

/// A UCX listener (`ucp_listener_create`): accepts client endpoints on an
/// IPv4 or IPv6 address, on a ``UCXWorker``'s thread.
///
/// Connection requests arrive during ``UCXWorker/progress()``; each becomes
/// a ``UCXEndpoint`` that ``accept()`` hands out, oldest first.
public final class UCXListener {
    /// The worker it runs on.
    public let worker: UCXWorker
    /// The address it listens on, with the port it bound (for port 0).
    public let address: UCXAddress
    private let handle: ucp_listener_h
    private let box: Unmanaged<ListenerBox>
    private var pending: [UCXEndpoint] = []
    private var acceptFailures: [UCXError] = []

    /// Listens on `address` (port 0: any free port, see ``address``).
    ///
    /// - Throws: ``UCXError`` from `ucp_listener_create` (an address in use
    ///   or not on this host, say).
    public init(_ worker: UCXWorker, on address: UCXAddress) throws(UCXError) {
        self.worker = worker
        let box = Unmanaged.passRetained(ListenerBox())
        var listener: ucp_listener_h?
        let status = try address.withSocketAddress { (pointer, length) throws(UCXError) in
            cfq_ucp_listen(worker.handle, pointer, length, connectionTrampoline, box.toOpaque(), &listener)
        }
        guard status == UCS_OK, let listener else {
            box.release()
            throw UCXError("ucp_listener_create(\(address))", status == UCS_OK ? UCS_ERR_NO_RESOURCE : status)
        }
        handle = listener
        self.box = box
        box.takeUnretainedValue().handle = listener
        let bound = cfq_ucp_listener_port(listener)
        self.address = address.with(port: bound == 0 ? address.port : bound) ?? address
        box.takeUnretainedValue().listener = self
    }

    deinit {
        ucp_listener_destroy(handle)
        box.release()
    }

    /// The next connected endpoint, or nil (progress the worker to receive more).
    public func accept() -> UCXEndpoint? {
        pending.isEmpty ? nil : pending.removeFirst()
    }

    /// Connection requests that could not be accepted since the last call.
    public func takeAcceptFailures() -> [UCXError] {
        defer { acceptFailures.removeAll() }
        return acceptFailures
    }

    /// Called with each endpoint as it is accepted (inside the worker's
    /// progress, so before any message it sends is delivered) instead of
    /// queueing it for ``accept()``. It must not progress or send.
    public var onAccept: ((UCXEndpoint) -> Void)?

    fileprivate func requested(_ request: ucp_conn_request_h) {
        let endpoint: UCXEndpoint
        do { endpoint = try UCXEndpoint.accept(worker, request) } catch {
            acceptFailures.append(error)
            return
        }
        if let onAccept { onAccept(endpoint) } else { pending.append(endpoint) }
    }
}

private final class ListenerBox {
    weak var listener: UCXListener?
    var handle: ucp_listener_h?
}

private let connectionTrampoline: ucp_listener_conn_callback_t = { request, arg in
    guard let request, let arg else { return }
    let box = Unmanaged<ListenerBox>.fromOpaque(arg).takeUnretainedValue()
    guard let listener = box.listener else {
        // Every request must be accepted or rejected.
        if let handle = box.handle { _ = ucp_listener_reject(handle, request) }
        return
    }
    listener.requested(request)
}
