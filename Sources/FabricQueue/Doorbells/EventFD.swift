import CFabricShims
import Glibc
import Synchronization
import SystemPackage

/// An `eventfd(2)` counter: a kernel object another process can wait on with
/// `poll(2)`, shared by inheriting its descriptor or passing it over a Unix
/// socket (see ``EventFD/send(over:tag:)`` and ``EventFD/receive(over:)``).
///
/// **Counter semantics** (the default, and what ``Doorbell`` uses): each
/// ``signal(_:)`` adds to a 64-bit counter; a read returns the whole count and
/// resets it to zero, so any number of signals before a wait wake it once.
/// **Semaphore semantics** (`semaphore: true`): each read returns 1 and
/// decrements the counter by one, so each signal releases one read.
///
/// The descriptor is non-blocking; ``wait(timeoutNanoseconds:)`` blocks in
/// `poll(2)` with a timeout. It is closed when the object is released.
public final class EventFD: @unchecked Sendable {
    /// The eventfd descriptor, owned by this object.
    public let fileDescriptor: FileDescriptor
    /// Whether reads follow semaphore semantics.
    public let isSemaphore: Bool
    private let closed = Atomic<Bool>(false)

    /// Creates an eventfd with `eventfd(2)` (`EFD_NONBLOCK`, plus `EFD_CLOEXEC`
    /// unless `inheritable`, plus `EFD_SEMAPHORE` if `semaphore`).
    public init(initialValue: UInt32 = 0, semaphore: Bool = false, inheritable: Bool = false) throws(DoorbellError) {
        var flags = CFQ_EFD_NONBLOCK
        if !inheritable { flags |= CFQ_EFD_CLOEXEC }
        if semaphore { flags |= CFQ_EFD_SEMAPHORE }
        let fd = cfq_eventfd(initialValue, flags)
        guard fd >= 0 else { throw .eventFD(operation: "eventfd", errno: Errno(rawValue: errno)) }
        fileDescriptor = FileDescriptor(rawValue: fd)
        isSemaphore = semaphore
    }

    /// Adopts an eventfd descriptor received from another process (inherited
    /// or over a socket). The object takes ownership and closes it. It is
    /// made non-blocking. Throws if `fileDescriptor` is not an open eventfd.
    public init(adopting fileDescriptor: FileDescriptor, semaphore: Bool = false) throws(DoorbellError) {
        guard fcntl(fileDescriptor.rawValue, F_GETFD) >= 0 else {
            throw .eventFD(operation: "fcntl", errno: Errno(rawValue: errno))
        }
        guard let target = MappedFile.procLink(fileDescriptor) else {
            throw .eventFD(operation: "readlink", errno: Errno(rawValue: errno))
        }
        guard target == "anon_inode:[eventfd]" else { throw .notAnEventFD(target) }
        let flags = fcntl(fileDescriptor.rawValue, F_GETFL)
        guard flags >= 0, fcntl(fileDescriptor.rawValue, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw .eventFD(operation: "fcntl", errno: Errno(rawValue: errno))
        }
        self.fileDescriptor = fileDescriptor
        isSemaphore = semaphore
    }

    deinit {
        // Relaxed: no other reference exists during deinit.
        if !closed.load(ordering: .relaxed) { try? fileDescriptor.close() }
    }

    /// Closes the descriptor now; every later call throws `EBADF`. Idempotent.
    public func close() {
        // Acquiring-and-releasing: exactly one caller closes.
        if !closed.exchange(true, ordering: .acquiringAndReleasing) { try? fileDescriptor.close() }
    }

    private func checkOpen(_ operation: String) throws(DoorbellError) {
        // Acquire: pairs with `close`.
        if closed.load(ordering: .acquiring) { throw .eventFD(operation: operation, errno: .badFileDescriptor) }
    }

    /// Adds `value` to the counter with `write(2)`, waking pollers.
    public func signal(_ value: UInt64 = 1) throws(DoorbellError) {
        try checkOpen("write")
        var v = value
        while true {
            if write(fileDescriptor.rawValue, &v, 8) == 8 { return }
            let e = Errno(rawValue: errno)
            if e == .interrupted { continue }
            // EAGAIN: the counter is at its maximum; a waiter is already due to wake.
            if e == .resourceTemporarilyUnavailable { return }
            throw .eventFD(operation: "write", errno: e)
        }
    }

    /// Reads and resets the counter (or takes one, for a semaphore) with
    /// `read(2)`; returns 0 when it was zero.
    @discardableResult
    public func consume() throws(DoorbellError) -> UInt64 {
        try checkOpen("read")
        var v: UInt64 = 0
        while true {
            if read(fileDescriptor.rawValue, &v, 8) == 8 { return v }
            let e = Errno(rawValue: errno)
            if e == .interrupted { continue }
            if e == .resourceTemporarilyUnavailable { return 0 }
            throw .eventFD(operation: "read", errno: e)
        }
    }

    /// Blocks in `poll(2)` until the counter is non-zero or the timeout passes
    /// (negative: forever). Does not consume. Returns whether it is readable.
    public func wait(timeoutNanoseconds: Int64) throws(DoorbellError) -> Bool {
        try checkOpen("ppoll")
        let r = cfq_poll_readable(fileDescriptor.rawValue, timeoutNanoseconds)
        guard r >= 0 else { throw .eventFD(operation: "ppoll", errno: Errno(rawValue: errno)) }
        return r > 0
    }

    /// Sends this eventfd's descriptor over a connected Unix socket as
    /// `SCM_RIGHTS`, with a one-byte `tag` the receiver gets back.
    public func send(over socket: FileDescriptor, tag: UInt8 = 0) throws(DoorbellError) {
        try FileDescriptorPassing.send(fileDescriptor, over: socket, tag: tag)
    }

    /// Receives an eventfd sent with ``send(over:tag:)``.
    public static func receive(over socket: FileDescriptor, semaphore: Bool = false) throws(DoorbellError) -> (EventFD, tag: UInt8) {
        let (fd, tag) = try FileDescriptorPassing.receive(over: socket)
        do {
            return (try EventFD(adopting: fd, semaphore: semaphore), tag)
        } catch {
            try? fd.close()
            throw error
        }
    }
}
