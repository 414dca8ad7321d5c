import FabricQueue
import FabricSystem

/// The batch a controller is gathering under a ``BatchingPolicy``: up to
/// ``BatchingPolicy/largestBatch`` descriptors in preallocated storage, and
/// when the first of them arrived. Both controller paths (the polling
/// `ControllerSession` and the async `FabricClient`) gather through this one
/// type, so they follow the same rules (see ``BatchingPolicy``).
///
/// No allocation after `init`, no lock (the owner serializes access), no
/// system call.
package struct BatchAccumulator: ~Copyable {
    @usableFromInline let storage: UnsafeMutablePointer<Descriptor>
    /// Descriptors gathered and not yet posted.
    package private(set) var count = 0
    /// `MonotonicClock` time the oldest gathered descriptor arrived (meaningful when `count > 0`).
    package private(set) var oldestArrival: UInt64 = 0
    /// The rules.
    package let policy: BatchingPolicy
    /// The most descriptors one batch holds: the policy's size, capped at the
    /// ring's capacity (a batch larger than the ring could never be posted
    /// all at once).
    package let limit: Int

    /// An empty batch under `policy`, for a ring of `ringCapacity` slots.
    package init(policy: BatchingPolicy, ringCapacity: Int) {
        self.policy = policy
        limit = max(1, min(policy.maximumBatchSize, ringCapacity))
        storage = .allocate(capacity: limit)
    }

    deinit { storage.deallocate() }

    /// Whether nothing is gathered.
    package var isEmpty: Bool { count == 0 }
    /// Whether no further descriptor fits (a post must succeed first).
    package var isFull: Bool { count >= limit }

    /// Adds `descriptor` (which must not find the batch ``isFull``) arriving
    /// at `now`; returns whether the batch should be posted now: it reached
    /// its size, or the policy posts immediately.
    package mutating func append(_ descriptor: Descriptor, now: UInt64) -> Bool {
        precondition(!isFull, "append to a full batch: post it first")
        if count == 0 { oldestArrival = now }
        storage[count] = descriptor
        count += 1
        return count >= limit || policy.postsImmediately
    }

    /// Takes back the most recent descriptor (a caller that posts every
    /// request at once refuses the one whose post found the ring full).
    package mutating func removeLast() {
        precondition(count > 0)
        count -= 1
    }

    /// Takes back the gathered descriptor of command `commandID`, keeping the
    /// others in order; false when it is not gathered (posted already, or
    /// never staged). For a cancellation that must not overtake its command.
    package mutating func remove(commandID: UInt64) -> Bool {
        guard let index = (0..<count).first(where: { storage[$0].commandID == commandID }) else { return false }
        for i in index..<(count - 1) { storage[i] = storage[i + 1] }
        count -= 1
        return true
    }

    /// When the gathered batch is due, or nil when nothing is gathered.
    package var dueTime: UInt64? {
        guard count > 0 else { return nil }
        if count >= limit || policy.postsImmediately { return oldestArrival }
        let (due, overflow) = oldestArrival.addingReportingOverflow(policy.maximumWait.saturatingNanoseconds)
        return overflow ? .max : due
    }

    /// Whether the gathered batch should be posted at `now`.
    package func isDue(now: UInt64) -> Bool {
        guard let due = dueTime else { return false }
        return now >= due
    }

    /// The descriptor at `index` (`0..<count`).
    package subscript(index: Int) -> Descriptor {
        precondition(index >= 0 && index < count)
        return storage[index]
    }

    /// Publishes every gathered descriptor on `producer`, all or nothing: one
    /// reservation, one commit (the daemon sees them in one burst). Returns
    /// how many were posted: the whole batch, or 0 when the ring lacks room
    /// for all of them, in which case the batch stays gathered.
    package mutating func post(to producer: inout SPSCProducer<Descriptor>) -> Int {
        guard count > 0 else { return 0 }
        let reservation = producer.reserve(upTo: count)
        guard reservation.count == count else {
            reservation.lapse()  // a short SPSC reservation changes nothing
            return 0
        }
        for i in 0..<count { reservation.write(storage[i], at: i) }
        producer.commit(reservation)
        let posted = count
        count = 0
        return posted
    }
}
