import CUCX
import FabricSystem
import SystemPackage

/// A UCX context and worker for one thread at a time (`ucp_init` with
/// active messages and wake-ups, `ucp_worker_create` in
/// `UCS_THREAD_MODE_SERIALIZED`): the progress engine every ``UCXEndpoint``
/// and ``UCXListener`` on it runs on.
///
/// Not thread-safe: one thread at a time drives it (a thread it is handed
/// to, or threads that take turns under a lock of their own). Sends and
/// receives make progress only inside ``progress()`` and the waits built
/// on it. To sleep, ``wait(timeout:)`` arms the worker and polls its event
/// file descriptor (`ucp_worker_get_efd`, `ucp_worker_arm`), so an idle
/// worker costs no CPU; ``eventFileDescriptor`` lets a caller poll it beside
/// its own descriptors instead.
public final class UCXWorker {
    let context: ucp_context_h
    let handle: ucp_worker_h
    /// The worker's event file descriptor: readable when it has work
    /// (after ``arm()`` returned true).
    public let eventFileDescriptor: FileDescriptor
    private var handlers: [UInt16: (borrowing UCXMessage) -> Void] = [:]
    private var handlerBoxes: [Unmanaged<HandlerBox>] = []
    /// Messages not yet handed to their handler, in arrival order: a
    /// rendezvous message until its data has arrived, and every message
    /// behind it (copied), so handlers see messages in the order they came.
    private var arriving: [ArrivingMessage] = []
    /// Set while UCX runs one of our callbacks, where progress is forbidden.
    private var inCallback = false
    /// The most data a message of each id may carry (``onMessage(_:maximumLength:_:)``).
    private var maximumLengths: [UInt16: Int] = [:]
    /// A send was posted (``UCXEndpoint/post(_:header:data:)``) that UCX
    /// queued instead of writing at once: the next ``progress()`` writes
    /// it, so a caller that posted should progress before it does other
    /// work. Cleared by that progress.
    public internal(set) var hasQueuedSends = false
    /// Requests handed over by ``retire(_:)``, freed as they complete.
    private var retiring: [(request: UCXRequest, completed: (() -> Void)?)] = []

    /// Changes the most data a message `id` may carry. A longer one is not
    /// received (nothing is allocated for it): its handler gets it with
    /// ``UCXMessage/isOversized`` set and no data, and a rendezvous sender's
    /// send fails.
    public func setMaximumLength(_ length: Int, for id: UInt16) { maximumLengths[id] = length }

    /// Decides, before its data is fetched, whether a rendezvous message of
    /// `id` from `sender` is wanted (nil: all are). One that is not is
    /// refused like an oversized one: the sender's send fails, nothing is
    /// allocated. A daemon fetches commands only from admitted peers.
    public var admitsTransfer: ((UInt16, OpaquePointer?) -> Bool)?

    /// Forgets every message from `sender` not yet handed on (its endpoint
    /// is closing): they are never delivered, to it or to a later endpoint
    /// that UCX gives the same handle.
    public func discardMessages(from sender: OpaquePointer?) {
        for message in arriving where message.sender == sender { message.isDiscarded = true }
    }

    /// Whether a rendezvous message is still arriving (progress, do not sleep).
    public var isReceiving: Bool { !arriving.isEmpty }

    /// Creates a context and a worker.
    ///
    /// - Throws: ``UCXError`` from `ucp_init`, `ucp_worker_create` or `ucp_worker_get_efd`.
    public init() throws(UCXError) {
        var context: ucp_context_h?
        try check(cfq_ucp_init(&context), "ucp_init")
        guard let context else { throw UCXError("ucp_init", UCS_ERR_NO_RESOURCE) }
        var worker: ucp_worker_h?
        do { try check(cfq_ucp_worker_create(context, &worker), "ucp_worker_create") } catch {
            ucp_cleanup(context)
            throw error
        }
        guard let worker else {
            ucp_cleanup(context)
            throw UCXError("ucp_worker_create", UCS_ERR_NO_RESOURCE)
        }
        var fd: Int32 = -1
        let status = ucp_worker_get_efd(worker, &fd)
        guard status == UCS_OK else {
            ucp_worker_destroy(worker)
            ucp_cleanup(context)
            throw UCXError("ucp_worker_get_efd", status)
        }
        self.context = context
        handle = worker
        eventFileDescriptor = FileDescriptor(rawValue: fd)
    }

    deinit {
        // Released before the worker goes (UCX frees one still running with it).
        for entry in retiring { release(entry.request) }
        // The worker first: a transport may still write into a receive buffer until then.
        ucp_worker_destroy(handle)
        for entry in retiring { entry.completed?() }
        for message in arriving { message.deallocate() }
        for box in handlerBoxes { box.release() }
        ucp_cleanup(context)
    }

    /// Calls `handler` for every active message `id` that arrives, in the
    /// order they arrived, from inside ``progress()``. A rendezvous message
    /// is delivered once its data has arrived (into a buffer of this
    /// worker), and the messages behind it wait for it. The message's bytes
    /// are valid only during the call. A handler must not call
    /// ``progress()``, ``wait(timeout:)`` or a send (it may run inside a UCX
    /// callback): queue the work and do it from the worker's loop.
    ///
    /// - Throws: ``UCXError`` from `ucp_worker_set_am_recv_handler`.
    public func onMessage(
        _ id: UInt16, maximumLength: Int = .max, _ handler: @escaping (borrowing UCXMessage) -> Void
    ) throws(UCXError) {
        maximumLengths[id] = maximumLength
        let box = Unmanaged.passRetained(HandlerBox(worker: self, id: id))
        do {
            try check(
                cfq_ucp_set_am_handler(handle, UInt32(id), receiveTrampoline, box.toOpaque()), "ucp_worker_set_am_recv_handler")
        } catch {
            box.release()
            throw error
        }
        handlers[id] = handler
        handlerBoxes.append(box)
    }

    /// Runs UCX's progress engine once (`ucp_worker_progress`) and delivers
    /// rendezvous messages whose data has arrived; returns whether anything
    /// happened.
    @discardableResult
    public func progress() -> Bool {
        precondition(!inCallback, "UCXWorker.progress() called from inside a message handler")
        hasQueuedSends = false
        var any = ucp_worker_progress(handle) != 0
        reapRetired()
        // In arrival order per sender: a message waits only for earlier ones
        // from the same endpoint, so one slow transfer holds up no other peer.
        var index = 0
        var waiting: [ucp_ep_h?] = []
        while index < arriving.count {
            let message = arriving[index]
            if waiting.contains(where: { $0 == message.sender }) {
                index += 1
                continue
            }
            guard message.isComplete else {
                waiting.append(message.sender)
                index += 1
                continue
            }
            arriving.remove(at: index)
            any = true
            if message.isDiscarded {
                // Its endpoint closed: never handed to whoever reuses the handle.
            } else if let handler = handlers[message.id] {
                if !message.succeeded { failedReceives &+= 1 }
                // A transfer that failed is handed on as not received, so the
                // messages behind it are not taken for the whole story.
                handler(
                    UCXMessage(
                        id: message.id, header: UnsafeRawBufferPointer(message.header),
                        data: message.succeeded
                            ? UnsafeRawBufferPointer(rebasing: message.data[0..<message.length])
                            : UnsafeRawBufferPointer(start: nil, count: 0),
                        sender: message.sender, isOversized: message.isOversized || !message.succeeded))
            }
            message.release()
        }
        return any
    }

    /// Whether `request` is done: nil while it runs, else how it ended
    /// (`ucp_request_check_status`).
    public func status(of request: UCXRequest) -> ucs_status_t? {
        let status = ucp_request_check_status(request.pointer)
        return status == UCS_INPROGRESS ? nil : status
    }

    /// Frees `request` (`ucp_request_free`). One still running is freed by
    /// UCX when it completes: only after that may its buffers go.
    public func release(_ request: UCXRequest) { ucp_request_free(request.pointer) }

    /// Hands `request` (one that holds no caller buffers: a close, say) to
    /// the worker, which frees it once it completes, then calls `completed`.
    func retire(_ request: UCXRequest, completed: (() -> Void)? = nil) {
        retiring.append((request, completed))
    }

    /// Frees the retired requests that have completed.
    private func reapRetired() {
        guard !retiring.isEmpty else { return }
        retiring.removeAll { entry in
            guard status(of: entry.request) != nil else { return false }
            release(entry.request)
            entry.completed?()
            return true
        }
    }

    /// Rendezvous messages whose data never arrived (their sender failed
    /// mid-transfer); the endpoint's ``UCXEndpoint/failure`` says why.
    public private(set) var failedReceives = 0

    /// Arms the event file descriptor (`ucp_worker_arm`): true when it is
    /// armed and will become readable on new work, false when work is
    /// already pending (progress again first).
    ///
    /// - Throws: ``UCXError`` from `ucp_worker_arm`.
    public func arm() throws(UCXError) -> Bool {
        let status = ucp_worker_arm(handle)
        if status == UCS_ERR_BUSY { return false }
        try check(status, "ucp_worker_arm")
        return true
    }

    /// Makes progress; returns at once if anything happened (a handler may
    /// have queued work for the caller), else sleeps on the event file
    /// descriptor until work arrives or `timeout` passes. A rendezvous
    /// receive in progress keeps it polling instead of sleeping.
    ///
    /// - Throws: ``UCXError`` from `ucp_worker_arm` or `ppoll(2)`.
    public func wait(timeout: Duration) throws(UCXError) {
        if progress() { return }
        guard arriving.isEmpty, try arm() else { return }
        do {
            _ = try Poll.waitReadable(eventFileDescriptor, timeoutNanoseconds: Int64(clamping: timeout.saturatingNanoseconds))
        } catch {
            throw UCXError("ppoll(worker event fd): \(error)", UCS_ERR_IO_ERROR)
        }
    }

    /// Progresses until `request` (a `ucs_status_ptr_t` a non-blocking call
    /// returned) completes, `abandon()` reports a failure, or `deadline` (a
    /// monotonic-clock reading) passes; frees it.
    ///
    /// UCX cannot cancel a send (`ucp_request_cancel` applies to tag
    /// receives only), and a send's buffers belong to the caller until it
    /// completes. So when the wait ends early, `giveUp()` must make UCX
    /// finish the request (force-closing its endpoint purges everything
    /// queued on it, completing each request with an error); this then
    /// progresses for at most `purgeTimeout` more until it has.
    ///
    /// - Throws: ``UCXError`` with the request's failure, `abandon()`'s
    ///   failure, or a timeout.
    func complete(
        _ request: ucs_status_ptr_t?, _ operation: String, deadline: UInt64, abandon: () -> UCXError? = { nil },
        giveUp: () -> Void = {}, purgeTimeout: Duration = .seconds(1)
    ) throws(UCXError) {
        precondition(!inCallback, "a UCX wait from inside a message handler")
        guard let request else { return }  // completed inline
        guard cfq_ucs_ptr_is_ptr(request) != 0 else { throw UCXError(operation, cfq_ucs_ptr_status(request)) }
        // Freed after completion; one still running when this returns is
        // released by UCX when it completes.
        defer { ucp_request_free(request) }
        var failure: UCXError?
        while ucp_request_check_status(request) == UCS_INPROGRESS {
            if let reason = abandon() {
                failure = reason
                break
            }
            if monotonicNanoseconds() >= deadline {
                failure = .timedOut(operation)
                break
            }
            progress()
        }
        guard let failure else {
            try check(ucp_request_check_status(request), operation)
            return
        }
        giveUp()
        let end = FabricSystem.deadline(after: purgeTimeout)
        while ucp_request_check_status(request) == UCS_INPROGRESS && monotonicNanoseconds() < end { progress() }
        throw failure
    }

    /// Called by UCX from inside `ucp_worker_progress` for message `id`.
    fileprivate func received(
        _ id: UInt16, header: UnsafeRawBufferPointer, data: UnsafeMutableRawPointer?, length: Int,
        rendezvous: Bool, sender: ucp_ep_h?
    ) -> ucs_status_t {
        // A rendezvous message this returns UCS_OK for without fetching is
        // dropped by UCX (and its sender's send completes); an error status
        // drops it too and fails the sender's send with it.
        guard let handler = handlers[id] else { return UCS_OK }
        inCallback = true
        defer { inCallback = false }
        // Not fetched, so never allocated: a peer's claimed length is no reason to allocate.
        let oversized =
            length > maximumLengths[id, default: .max] || (rendezvous && !(admitsTransfer?(id, sender) ?? true))
        let behind = arriving.contains { $0.sender == sender }
        if !rendezvous || oversized {
            let bytes =
                oversized
                ? UnsafeRawBufferPointer(start: nil, count: 0)
                : UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : length)
            if !behind {
                handler(UCXMessage(id: id, header: header, data: bytes, sender: sender, isOversized: oversized))
            } else {
                // Behind a rendezvous message from the same peer still arriving: wait in line, copied.
                let message = ArrivingMessage(id: id, header: header, length: bytes.count, sender: sender)
                message.isOversized = oversized
                if bytes.count > 0 { message.data.copyMemory(from: bytes) }
                arriving.append(message)
            }
            return oversized && rendezvous ? UCS_ERR_MESSAGE_TRUNCATED : UCS_OK
        }
        // Rendezvous: fetch the data into a buffer of our own; ``progress()``
        // delivers it once it has arrived.
        let message = ArrivingMessage(id: id, header: header, length: length, sender: sender)
        let request = cfq_ucp_am_receive(handle, data, message.data.baseAddress, length)
        if let request, cfq_ucs_ptr_is_err(request) != 0 {
            message.deallocate()
            failedReceives &+= 1
            return UCS_OK
        }
        message.request = request
        arriving.append(message)
        return UCS_OK
    }
}

/// A UCX operation in progress (a `ucs_status_ptr_t` that is a request):
/// a send, flush or close started without waiting. The buffers it was given
/// belong to UCX until ``UCXWorker/status(of:)`` says it completed.
public struct UCXRequest: Equatable {
    let pointer: UnsafeMutableRawPointer

    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}

/// One received active message, valid for the duration of the handler call.
public struct UCXMessage: ~Copyable {
    /// The message id it was sent with.
    public let id: UInt16
    /// The header bytes (a copy for rendezvous messages).
    public let header: UnsafeRawBufferPointer
    /// The data bytes.
    public let data: UnsafeRawBufferPointer
    /// The endpoint it came from, to match with ``UCXEndpoint/handle``.
    public let sender: OpaquePointer?
    /// The message was not received, and ``data`` is empty: it carried more
    /// data than its id allows (``UCXWorker/setMaximumLength(_:for:)``), its
    /// transfer was not admitted (``UCXWorker/admitsTransfer``), or it failed.
    public let isOversized: Bool

    init(
        id: UInt16, header: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer, sender: ucp_ep_h?,
        isOversized: Bool = false
    ) {
        self.id = id
        self.header = header
        self.data = data
        self.sender = sender
        self.isOversized = isOversized
    }
}

/// A rendezvous message whose data is being fetched.
private final class ArrivingMessage {
    let id: UInt16
    let header: UnsafeMutableRawBufferPointer
    let data: UnsafeMutableRawBufferPointer
    let length: Int
    let sender: ucp_ep_h?
    /// The receive of a rendezvous message's data; nil once there (or for a copied eager one).
    var request: ucs_status_ptr_t?
    /// Longer than its id allows: queued without its data.
    var isOversized = false
    /// Its endpoint closed before it was handed on.
    var isDiscarded = false

    init(id: UInt16, header: UnsafeRawBufferPointer, length: Int, sender: ucp_ep_h?) {
        self.id = id
        self.header = .allocate(byteCount: header.count, alignment: 8)
        if header.count > 0 { self.header.copyMemory(from: header) }
        data = .allocate(byteCount: max(length, 1), alignment: 64)
        self.length = length
        self.sender = sender
    }

    var isComplete: Bool {
        guard let request else { return true }
        return ucp_request_check_status(request) != UCS_INPROGRESS
    }

    var succeeded: Bool {
        guard let request else { return true }
        return ucp_request_check_status(request) == UCS_OK
    }

    /// Frees the request and the buffers (the request has completed).
    func release() {
        if let request { ucp_request_free(request) }
        request = nil
        deallocate()
    }

    /// Frees the buffers only (after the worker is destroyed, which ends every request).
    func deallocate() {
        header.deallocate()
        data.deallocate()
    }
}

/// What a handler registration passes UCX as its argument.
private final class HandlerBox {
    unowned let worker: UCXWorker
    let id: UInt16
    init(worker: UCXWorker, id: UInt16) {
        self.worker = worker
        self.id = id
    }
}

private let receiveTrampoline: ucp_am_recv_callback_t = { arg, header, headerLength, data, length, param in
    guard let arg, let param else { return UCS_OK }
    let box = Unmanaged<HandlerBox>.fromOpaque(arg).takeUnretainedValue()
    let sender: ucp_ep_h? =
        (param.pointee.recv_attr & UInt64(UCP_AM_RECV_ATTR_FIELD_REPLY_EP.rawValue)) != 0 ? param.pointee.reply_ep : nil
    return box.worker.received(
        box.id, header: UnsafeRawBufferPointer(start: header, count: header == nil ? 0 : headerLength), data: data,
        length: length, rendezvous: cfq_ucp_am_is_rendezvous(param) != 0, sender: sender)
}
