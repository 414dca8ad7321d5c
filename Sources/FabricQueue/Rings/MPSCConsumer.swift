import FabricSystem
import Synchronization

/// The consuming end of a multi-producer single-consumer ring.
///
/// ## Protocol
/// The consumer reads position `tail` when that slot's sequence word equals
/// `tail + 1` (acquire: the producer's writes to the slot are visible), copies
/// the element out, and stores `tail` with release ordering, which returns the
/// slot to the producers.
///
/// When the sequence is not ready the consumer reads `head` to tell an empty
/// ring (nothing reserved) from a slot that was reserved but not yet
/// published. The second is normal for a few nanoseconds while a producer
/// writes; if it lasts longer than `stallTimeout` the producer has most likely
/// died mid-write, and `dequeue` throws
/// ``RingError/slotStalled(position:stalledForNanoseconds:)`` every time it is
/// called until the slot is published or ``skipStalledSlot()`` is called.
public struct MPSCConsumer<Element: RingElement>: ~Copyable, @unchecked Sendable {
    // @unchecked: raw pointers into the region; ~Copyable, so one owner at a time
    @usableFromInline let region: SharedRegion
    @usableFromInline let view: RingView<Element>
    @usableFromInline var localTail: UInt64
    @usableFromInline var stallPosition: UInt64
    @usableFromInline var stallSince: UInt64
    /// How long a reserved slot may stay unpublished before it is reported.
    public let stallTimeout: Duration
    @usableFromInline let stallTimeoutNanoseconds: UInt64
    /// The pid of a dead consumer whose role this one took over, if any.
    public let tookOverFrom: Int32?
    /// The exclusive role this endpoint holds (released when it goes away).
    /// Last, so the fields the hot loops use keep their places.
    let role: RoleClaim

    /// Attaches the consumer end of the MPSC ring in `region`.
    ///
    /// - Parameters:
    ///   - region: a validated region holding an MPSC ring of `Element`.
    ///   - element: the slot type (inferred from the context by default).
    ///   - stallTimeout: how long a reserved-but-unpublished slot is waited
    ///     for before `dequeue` reports it. Default 500 ms.
    public init(
        region: SharedRegion, of element: Element.Type = Element.self,
        stallTimeout: Duration = .milliseconds(500)
    ) throws(RegionError) {
        let view = try RingView<Element>(region: region, kind: .mpsc)
        let claim = try RoleClaim(.consumer, region: region, word: view.ownerWord(EndpointRole.consumer.offset))
        if claim.tookOverFrom != nil { view.clearStaleWaiters(RegionLayout.Control.dataWaiters) }
        self.view = view
        self.tookOverFrom = claim.tookOverFrom
        role = claim
        self.region = region
        stallPosition = .max
        stallSince = 0
        self.stallTimeout = stallTimeout
        stallTimeoutNanoseconds = stallTimeout.saturatingNanoseconds
        // Acquire: resume after a previous consumer's last release of tail.
        localTail = view.tail.pointee.load(ordering: .acquiring)
    }

    // The role is released by `role`'s own deinit; this one keeps the endpoint
    // a value with a deinit (never taken apart field by field), as it was
    // before roles became locks: measured, the SPSC burst-1 loop ran ~15 %
    // slower without it.
    deinit {}

    /// Number of slots.
    @inlinable public var capacity: Int { Int(view.capacity) }

    /// Slots in use (reserved or published, not yet consumed): an estimate.
    @inlinable public var approximateCount: Int { view.approximateCount }

    /// Whether no producer has reserved anything past our tail.
    @inlinable public var isEmpty: Bool {
        // Relaxed: a yes/no snapshot; no slot is read on the strength of it.
        view.head.pointee.load(ordering: .relaxed) == localTail
    }

    /// Whether the slot at `position` has been published for this lap.
    @inlinable @inline(__always)
    func isPublished(_ position: UInt64) -> Bool {
        // Acquire: pairs with the producer's release store of the sequence, so
        // its writes to the slot are visible once we see position + 1.
        view.sequences[Int(position & view.mask)].load(ordering: .acquiring) == position &+ 1
    }

    /// Slots stepped over because their producer abandoned them (dropped or
    /// ``MPSCProducer/abandon(_:)``ed a reservation without committing it).
    public private(set) var abandonedCount: UInt64 = 0

    /// The slow path when the slot at `localTail` is not published: steps
    /// over it if its producer abandoned it (returns `true`: look again);
    /// otherwise it is empty, being written, stalled, or the indices are
    /// corrupt (returns `false` or throws).
    @usableFromInline
    mutating func stepOverAbandonedOrWait() throws(RingError) -> Bool {
        // Acquire: pairs with the release store of the abandonment marker.
        let sequence = view.sequences[Int(localTail & view.mask)].load(ordering: .acquiring)
        if sequence == (localTail &+ 1) | RegionLayout.abandonedSequenceBit {
            localTail &+= 1
            abandonedCount &+= 1
            stallPosition = .max
            // Release: hands the slot back to the producers.
            view.tail.pointee.store(localTail, ordering: .releasing)
            return true
        }
        try notPublished()
        return false
    }

    /// Whether the slot at `localTail` is reserved but neither published nor
    /// abandoned: empty, being written, stalled, or corrupt indices.
    @usableFromInline
    mutating func notPublished() throws(RingError) {
        // Relaxed: we only learn whether the position was reserved; the slot's
        // contents are ordered by its sequence word, not by head.
        let h = view.head.pointee.load(ordering: .relaxed)
        if h == localTail { return }  // empty
        guard h &- localTail <= view.capacity else {
            throw .indicesCorrupted(head: h, tail: localTail, capacity: Int(view.capacity))
        }
        // Reserved, unpublished: a producer is writing it, or died doing so.
        let now = MonotonicClock.now()
        if stallPosition != localTail {
            stallPosition = localTail
            stallSince = now
            return
        }
        let stalled = now &- stallSince
        if stalled >= stallTimeoutNanoseconds {
            throw .slotStalled(position: localTail, stalledForNanoseconds: stalled)
        }
    }

    /// Removes and returns the oldest published element, or `nil` when there
    /// is none yet.
    @inlinable
    public mutating func dequeue() throws(RingError) -> Element? {
        while !isPublished(localTail) {
            guard try stepOverAbandonedOrWait() else { return nil }
        }
        let element = readElement(from: view.slots + Int(localTail & view.mask))
        localTail &+= 1
        // Release: our read of the slot happens before a producer that
        // acquires this tail reuses the slot.
        view.tail.pointee.store(localTail, ordering: .releasing)
        return element
    }

    /// Copies out up to `buffer.count` consecutive published elements and
    /// returns how many; one release store hands all their slots back.
    @inlinable
    public mutating func dequeue(into buffer: UnsafeMutableBufferPointer<Element>) throws(RingError) -> Int {
        guard let destination = buffer.baseAddress else { return 0 }
        var n = 0
        while true {
            while n < buffer.count && isPublished(localTail &+ UInt64(n)) {
                copyElement(from: view.slots + Int((localTail &+ UInt64(n)) & view.mask), to: destination + n)
                n += 1
            }
            if n > 0 { break }
            guard try stepOverAbandonedOrWait() else { return 0 }
        }
        localTail &+= UInt64(n)
        // Release: our reads of the n slots happen before producers reuse them.
        view.tail.pointee.store(localTail, ordering: .releasing)
        return n
    }

    /// Gives up on the reserved-but-unpublished slot at the tail and moves past
    /// it; returns the position skipped, or `nil` if the tail slot is not
    /// reserved-and-unpublished.
    ///
    /// Call it only once the producer that reserved the slot is known to be
    /// dead (its process exited, its session hung up): a producer that is
    /// merely slow would later write into a slot that has been handed out
    /// again. The skipped command is lost; the caller is expected to report it.
    public mutating func skipStalledSlot() -> UInt64? {
        guard !isPublished(localTail) else { return nil }
        // Relaxed: see `notPublished`.
        let h = view.head.pointee.load(ordering: .relaxed)
        guard h != localTail, h &- localTail <= view.capacity else { return nil }
        let skipped = localTail
        localTail &+= 1
        stallPosition = .max
        // Release: hands the skipped slot back to the producers.
        view.tail.pointee.store(localTail, ordering: .releasing)
        return skipped
    }

    /// Throws if the shared indices contradict each other.
    public func checkIndices() throws(RingError) { try view.checkIndices() }
}
