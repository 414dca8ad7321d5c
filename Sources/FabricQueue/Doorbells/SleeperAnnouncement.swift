import FabricSystem
import Synchronization

// For a thread that serves many rings and sleeps on one eventfd (the daemon's
// poll loop): it announces itself as an eventfd sleeper on every ring it
// serves, issues one sequentially consistent fence, re-checks every ring, and
// only then sleeps in `poll(2)`. Each announcement is what `DoorbellLine.wait`
// does for one ring, so the lost-wake-up argument on `DoorbellLine` carries
// over: a peer that publishes after our fence sees the announcement and
// signals the eventfd its doorbell names; one that published before it is
// seen by the re-check.
//
//     for ring in rings { ring.announceEventFDSleeper() }
//     atomicMemoryFence(ordering: .sequentiallyConsistent)    // F1
//     if no ring is ready { poll(eventfd) }
//     for ring in rings { ring.withdrawEventFDSleeper() }

extension SPSCConsumer {
    /// Counts the caller as an eventfd sleeper waiting for data on this ring,
    /// so that a producer's ring signals the eventfd its doorbell names. Follow
    /// with a sequentially consistent fence and a re-check before sleeping, and
    /// with ``withdrawEventFDSleeper()`` after waking.
    @inlinable
    public func announceEventFDSleeper() {
        // Relaxed: the caller's seq_cst fence orders it before the re-check.
        DoorbellLine(control: view.control, data: true).waiters.pointee.wrappingAdd(
            DoorbellLine.eventFDSleeper, ordering: .relaxed)
    }

    /// Undoes ``announceEventFDSleeper()``.
    @inlinable
    public func withdrawEventFDSleeper() {
        // Relaxed: only a hint that makes producers skip their syscall.
        DoorbellLine(control: view.control, data: true).waiters.pointee.wrappingSubtract(
            DoorbellLine.eventFDSleeper, ordering: .relaxed)
    }

    /// Whether an element is ready to dequeue, re-reading the producer's head
    /// (acquire); `true` also when the indices are corrupt, so that the caller's
    /// ``dequeue()`` reports it.
    @inlinable
    public mutating func hasElements() -> Bool {
        (try? available(wanting: 1)).map { $0 != 0 } ?? true
    }
}

extension SPSCProducer {
    /// Counts the caller as an eventfd sleeper waiting for space on this ring,
    /// so that the consumer's ring signals the eventfd its doorbell names.
    /// Same protocol as ``SPSCConsumer/announceEventFDSleeper()``.
    @inlinable
    public func announceEventFDSleeper() {
        // Relaxed: the caller's seq_cst fence orders it before the re-check.
        DoorbellLine(control: view.control, data: false).waiters.pointee.wrappingAdd(
            DoorbellLine.eventFDSleeper, ordering: .relaxed)
    }

    /// Undoes ``announceEventFDSleeper()``.
    @inlinable
    public func withdrawEventFDSleeper() {
        // Relaxed: only a hint that makes the consumer skip its syscall.
        DoorbellLine(control: view.control, data: false).waiters.pointee.wrappingSubtract(
            DoorbellLine.eventFDSleeper, ordering: .relaxed)
    }

    /// Free slots, at least `wanted` if that many are free: reads the
    /// consumer's tail (acquire) only when the cached copy shows fewer.
    @inlinable
    public mutating func freeSlotCount(wanting wanted: Int) -> Int {
        Int(freeSlots(wanting: UInt64(max(wanted, 0))))
    }
}
