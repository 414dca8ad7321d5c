import FabricSystem
import Synchronization
import SystemPackage

/// An `eventfd(2)` counter: a kernel object another process can wait on with
/// `ppoll(2)`, shared by inheriting its descriptor or passing it over a Unix
/// socket (the session layer's `EventFD.send(over:tag:)` and `EventFD.receive(over:)`).
///
/// **Counter semantics** (the default, and what ``Doorbell`` uses): each
/// ``signal(_:)`` adds to a 64-bit counter; a read returns the whole count and
/// resets it to zero, so any number of signals before a wait wake it once.
/// **Semaphore semantics** (`semaphore: true`): each read returns 1 and
/// decrements the counter by one, so each signal releases one read.
///
/// The descriptor is non-blocking; ``wait(timeoutNanoseconds:)`` blocks in
/// `ppoll(2)` with a timeout. It is closed when the object is released.
public final class EventFD: @unchecked Sendable {
    // @unchecked: the descriptor is immutable, the closed flag atomic
    /// The eventfd descriptor, owned by this object.
    public let fileDescriptor: FileDescriptor
    /// Whether reads follow semaphore semantics.
    public let isSemaphore: Bool
    private let closed = Atomic<Bool>(false)

    /// Creates an eventfd with `eventfd(2)` (`EFD_NONBLOCK`, plus `EFD_CLOEXEC`
    /// unless `inheritable`, plus `EFD_SEMAPHORE` if `semaphore`).
    public init(initialValue: UInt32 = 0, semaphore: Bool = false, inheritable: Bool = false) throws(DoorbellError) {
        do {
            fileDescriptor = try EventCounter.create(initialValue: initialValue, semaphore: semaphore, inheritable: inheritable)
        } catch { throw .system(error) }
        isSemaphore = semaphore
    }

    /// Adopts an eventfd descriptor received from another process (inherited
    /// or over a socket). The object takes ownership and closes it. It is
    /// made non-blocking. Throws if `fileDescriptor` is not an open eventfd.
    public init(adopting fileDescriptor: FileDescriptor, semaphore: Bool = false) throws(DoorbellError) {
        let target: String
        do {
            try fileDescriptor.checkOpen()
            target = try fileDescriptor.procLink()
        } catch { throw .system(error) }
        guard target == "anon_inode:[eventfd]" else { throw .notAnEventFD(target) }
        do { try fileDescriptor.setNonBlocking() } catch { throw .system(error) }
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
        if closed.load(ordering: .acquiring) { throw .system(SystemCallError(operation, .badFileDescriptor)) }
    }

    /// Adds `value` to the counter with `write(2)`, waking pollers. A counter
    /// already at its maximum is left as it is (a waiter is due to wake).
    public func signal(_ value: UInt64 = 1) throws(DoorbellError) {
        try checkOpen("write")
        do { try EventCounter.add(value, to: fileDescriptor) } catch { throw .system(error) }
    }

    /// Reads and resets the counter (or takes one, for a semaphore) with
    /// `read(2)`; returns 0 when it was zero.
    @discardableResult
    public func consume() throws(DoorbellError) -> UInt64 {
        try checkOpen("read")
        do { return try EventCounter.take(from: fileDescriptor) } catch { throw .system(error) }
    }

    /// Blocks in `ppoll(2)` until the counter is non-zero or the timeout passes
    /// (negative: forever). Does not consume. Returns whether it is readable
    /// (false also when a signal interrupted the wait: callers re-check).
    public func wait(timeoutNanoseconds: Int64) throws(DoorbellError) -> Bool {
        try checkOpen("ppoll")
        do { return try Poll.waitReadable(fileDescriptor, timeoutNanoseconds: timeoutNanoseconds) } catch {
            throw .system(error)
        }
    }
}
