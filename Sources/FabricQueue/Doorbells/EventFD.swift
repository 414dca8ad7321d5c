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
    /// Bit 63: closed. Bits 0–62: calls using the descriptor right now. The
    /// descriptor is closed by whoever leaves it closed with no call in
    /// progress, so no call can reach a closed (and perhaps reused) number.
    private let state = Atomic<UInt64>(0)
    private static let closedBit: UInt64 = 1 << 63

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
        // Relaxed: no other reference exists during deinit, so no call is in progress.
        if state.load(ordering: .relaxed) & Self.closedBit == 0 { try? fileDescriptor.close() }
    }

    /// Closes the descriptor; every later call throws `EBADF`. A call in
    /// progress on another thread (a `wait` in `ppoll`, a `signal`) finishes
    /// on the still-open descriptor, and the last one to finish closes it.
    /// Idempotent.
    public func close() {
        // Acquiring-and-releasing: calls that finished before this happen
        // before the close; exactly one caller sees the closed bit go on.
        let before = state.bitwiseOr(Self.closedBit, ordering: .acquiringAndReleasing).oldValue
        if before == 0 { try? fileDescriptor.close() }
    }

    /// Runs `body` with the descriptor held open: it cannot be closed (or
    /// its number reused) until `body` returns.
    private func using<R>(_ operation: String, _ body: () throws(SystemCallError) -> R) throws(DoorbellError) -> R {
        var current = state.load(ordering: .relaxed)
        while true {
            if current & Self.closedBit != 0 { throw .system(SystemCallError(operation, .badFileDescriptor)) }
            // Acquiring: our call follows everything before the last state change.
            let (exchanged, found) = state.weakCompareExchange(
                expected: current, desired: current &+ 1, ordering: .acquiring)
            if exchanged { break }
            current = found
        }
        defer {
            // Acquiring-and-releasing: our call happens before a close that
            // sees the count drop; the last one out after close() closes.
            let after = state.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue
            if after == Self.closedBit { try? fileDescriptor.close() }
        }
        do { return try body() } catch { throw .system(error) }
    }

    /// Adds `value` to the counter with `write(2)`, waking pollers. A counter
    /// already at its maximum is left as it is (a waiter is due to wake).
    public func signal(_ value: UInt64 = 1) throws(DoorbellError) {
        try using("write") { () throws(SystemCallError) in try EventCounter.add(value, to: fileDescriptor) }
    }

    /// Reads and resets the counter (or takes one, for a semaphore) with
    /// `read(2)`; returns 0 when it was zero.
    @discardableResult
    public func consume() throws(DoorbellError) -> UInt64 {
        try using("read") { () throws(SystemCallError) in try EventCounter.take(from: fileDescriptor) }
    }

    /// Blocks in `ppoll(2)` until the counter is non-zero or the timeout passes
    /// (negative: forever). Does not consume. Returns whether it is readable
    /// (false also when a signal interrupted the wait: callers re-check).
    public func wait(timeoutNanoseconds: Int64) throws(DoorbellError) -> Bool {
        try using("ppoll") { () throws(SystemCallError) in
            try Poll.waitReadable(fileDescriptor, timeoutNanoseconds: timeoutNanoseconds)
        }
    }
}
