import FabricSystem
import Glibc
import Synchronization

/// One execution instance of a ``ModelExecution/threads`` model: a thread
/// that waits for the poll thread to hand it a batch and calls the handler.
///
/// Hand-over is a mailbox word: the poll thread writes the batch into the
/// instance's ``BatchSlot``, stores 1 (release) and wakes the thread with
/// `FUTEX_WAKE` only if it announced that it sleeps; the thread takes the
/// batch (acquire), stores 0, and runs it (the poll thread hands the next
/// batch only once this one's completions are posted). Nobody sleeps while batches keep
/// coming: no system call then. The announcement follows the doorbells'
/// protocol (fence on both sides, see `SleeperAnnouncement` in the core).
final class InstanceThread: @unchecked Sendable {
    // @unchecked: `batch` is written by the poll thread before the mailbox release and read by the instance after its acquire
    static let empty: UInt32 = 0
    static let batchReady: UInt32 = 1
    static let stop: UInt32 = 2

    /// The mailbox word; futex-waited on, so it lives at a stable address.
    private let mailbox: UnsafeMutablePointer<Atomic<UInt32>>
    private let sleeping = Atomic<Bool>(false)
    /// The batch being handed over (see the class comment).
    var batch: InFlightBatch?
    private var thread: ServiceThread?

    init() {
        mailbox = .allocate(capacity: 1)
        mailbox.initialize(to: Atomic<UInt32>(Self.empty))
    }

    deinit {
        mailbox.deinitialize(count: 1)
        mailbox.deallocate()
    }

    private var word: UnsafeMutablePointer<UInt32> { UnsafeMutableRawPointer(mailbox).assumingMemoryBound(to: UInt32.self) }

    /// Starts the thread, which runs every batch handed to it with `handler`.
    func start(
        handler: any BatchHandler, placement: ThreadPlacement?, spin: UInt64,
        onPlacementError: @escaping @Sendable (any Error) -> Void
    ) throws(SystemCallError) {
        thread = try ServiceThread { [self] in
            if let placement {
                do { try placement.apply() } catch { onPlacementError(error) }
            }
            run(handler, spin: spin)
        }
    }

    /// Poll thread: hands `batch` over (the instance must be idle).
    func hand(_ batch: InFlightBatch) {
        self.batch = batch
        // Release: the batch above (and the slot's contents) before the mailbox.
        mailbox.pointee.store(Self.batchReady, ordering: .releasing)
        wakeIfSleeping()
    }

    /// Asks the thread to exit once its current call returns, and waits for
    /// it. Only after the poll thread has exited (`FabricDaemon.stop()`): a
    /// batch handed over and not yet taken is then dropped, as every
    /// session's outstanding commands are.
    func stopAndJoin() {
        // Release: nothing to publish but the request; ordered like `hand`.
        mailbox.pointee.store(Self.stop, ordering: .releasing)
        wakeIfSleeping()
        thread?.join()
        thread = nil
    }

    private func wakeIfSleeping() {
        // F2: the mailbox store before the read of the announcement.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        // Relaxed: ordered by the fence.
        if sleeping.load(ordering: .relaxed) { _ = try? Futex.wake(word, count: 1) }
    }

    private func run(_ handler: any BatchHandler, spin: UInt64) {
        while true {
            // Acquire: pairs with the release in `hand`.
            var state = mailbox.pointee.load(ordering: .acquiring)
            if state == Self.empty {
                let since = MonotonicClock.now()
                // Spinning instances, the poll thread and busy-polling
                // controllers can outnumber the CPUs: let the thread that
                // will hand us work run.
                var wait = PoliteSpin()
                while state == Self.empty && MonotonicClock.now() &- since < spin {
                    wait.pause()
                    state = mailbox.pointee.load(ordering: .acquiring)
                }
            }
            if state == Self.empty {
                // Relaxed + F1: the announcement before the re-check.
                sleeping.store(true, ordering: .relaxed)
                atomicMemoryFence(ordering: .sequentiallyConsistent)
                if mailbox.pointee.load(ordering: .acquiring) == Self.empty {
                    // Bounded, so even a lost wake-up would only delay, never hang.
                    _ = try? Futex.wait(on: word, expecting: Self.empty, timeoutNanoseconds: 100_000_000)
                }
                sleeping.store(false, ordering: .relaxed)
                continue
            }
            if state == Self.stop { return }
            guard let batch else {
                mailbox.pointee.store(Self.empty, ordering: .relaxed)
                continue
            }
            self.batch = nil
            // Relaxed: the poll thread hands the next batch only after this
            // batch's completions, which are published with release.
            _ = mailbox.pointee.compareExchange(expected: Self.batchReady, desired: Self.empty, ordering: .relaxed)
            handler.start(batch)
        }
    }
}
