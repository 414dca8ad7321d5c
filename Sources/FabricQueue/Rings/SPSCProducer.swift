import FabricSystem
import Synchronization

/// The producing end of a single-producer single-consumer ring.
///
/// ## Protocol
/// The producer owns `head` (the next position to write) and keeps a private
/// copy of it; it reads the consumer's `tail` only when its cached copy says
/// the ring is full (the "cached index" trick), so an uncontended enqueue
/// touches only its own cache line and the slot. A slot is written first, then
/// `head` is stored with release ordering: a consumer that loads `head` with
/// acquire ordering sees the slot's contents.
///
/// Noncopyable: there is exactly one producer value per ring, and the role is
/// also claimed in the region (a second process gets
/// ``RegionError/endpointInUse(role:ownerPID:)``; a dead one is taken over).
/// Create the endpoint on the thread that uses it.
public struct SPSCProducer<Element: RingElement>: ~Copyable, @unchecked Sendable {
    // @unchecked: raw pointers into the region; ~Copyable, so one owner at a time
    @usableFromInline let region: SharedRegion
    @usableFromInline let view: RingView<Element>
    @usableFromInline var localHead: UInt64
    @usableFromInline var cachedTail: UInt64
    /// The pid of a dead producer whose role this one took over, if any.
    public let tookOverFrom: Int32?
    /// The exclusive role this endpoint holds (released when it goes away).
    /// Last, so the fields the hot loops use keep their places.
    let role: RoleClaim

    /// Attaches the producer end of the SPSC ring in `region`.
    public init(region: SharedRegion, of element: Element.Type = Element.self) throws(RegionError) {
        let view = try RingView<Element>(region: region, kind: .spsc)
        let claim = try RoleClaim(.producer, region: region, word: view.ownerWord(EndpointRole.producer.offset))
        tookOverFrom = claim.tookOverFrom
        if tookOverFrom != nil { view.clearStaleWaiters(RegionLayout.Control.spaceWaiters) }
        role = claim
        self.region = region
        self.view = view
        // Acquire: resume after everything a previous (possibly dead) producer
        // published; acquire on tail as in `refreshTail`.
        let head = view.head.pointee.load(ordering: .acquiring)
        let tail = view.tail.pointee.load(ordering: .acquiring)
        localHead = head
        // A tail that contradicts the head is not trusted: start out "full".
        cachedTail = head &- tail <= view.capacity ? tail : head &- view.capacity
    }

    // The role is released by `role`'s own deinit; this one keeps the endpoint
    // a value with a deinit (never taken apart field by field), as it was
    // before roles became locks: measured, the SPSC burst-1 loop ran ~15 %
    // slower without it.
    deinit {}

    /// Number of slots.
    @inlinable public var capacity: Int { Int(view.capacity) }

    /// Slots in use, from relaxed loads: a monitoring estimate.
    @inlinable public var approximateCount: Int { view.approximateCount }

    /// Re-reads the consumer's tail. A tail that contradicts our head (a
    /// corrupt peer) is ignored, which leaves the ring looking full: a bad
    /// consumer can stall its own ring but never make us overwrite unread slots
    /// beyond what it claims, or write outside the slots.
    @inlinable @inline(__always)
    mutating func refreshTail() {
        // Acquire: pairs with the consumer's release store of tail, so its reads
        // of the slots we are about to reuse happen before our writes.
        let t = view.tail.pointee.load(ordering: .acquiring)
        if localHead &- t <= view.capacity { cachedTail = t }
    }

    /// Free slots according to the cached tail, refreshing it when fewer than `wanted`.
    @inlinable @inline(__always)
    mutating func freeSlots(wanting wanted: UInt64) -> UInt64 {
        var free = view.capacity &- (localHead &- cachedTail)
        if free < wanted {
            refreshTail()
            free = view.capacity &- (localHead &- cachedTail)
        }
        return free
    }

    /// Appends one element. Returns `false` when the ring is full.
    @inlinable
    public mutating func enqueue(_ element: Element) -> Bool {
        guard freeSlots(wanting: 1) != 0 else { return false }
        writeElement(element, to: view.slots + Int(localHead & view.mask))
        localHead &+= 1
        // Release: the slot write above is visible before the new head.
        view.head.pointee.store(localHead, ordering: .releasing)
        return true
    }

    /// Appends as many of `elements` as fit (burst semantics) and returns how
    /// many went in; one release store publishes them all.
    @inlinable
    public mutating func enqueue(contentsOf elements: UnsafeBufferPointer<Element>) -> Int {
        let n = Int(min(freeSlots(wanting: UInt64(elements.count)), UInt64(elements.count)))
        guard n > 0, let source = elements.baseAddress else { return 0 }
        // At most two contiguous runs: up to the end of the slot array, then from its start.
        let start = Int(localHead & view.mask)
        let first = min(n, Int(view.capacity) - start)
        copyElements(from: source, to: view.slots + start, count: first)
        if n > first { copyElements(from: source + first, to: view.slots, count: n - first) }
        localHead &+= UInt64(n)
        // Release: all n slot writes are visible before the new head.
        view.head.pointee.store(localHead, ordering: .releasing)
        return n
    }

    /// Reserves up to `count` slots to be written in place; `commit(_:)`
    /// publishes them. One reservation may be outstanding at a time.
    @inlinable
    public mutating func reserve(upTo count: Int) -> SlotReservation<Element> {
        let wanted = UInt64(max(count, 0))
        let n = Int(min(freeSlots(wanting: wanted), wanted))
        return SlotReservation(position: localHead, count: n, slots: view.slots, mask: view.mask)
    }

    /// Publishes every slot of `reservation`.
    @inlinable
    public mutating func commit(_ reservation: consuming SlotReservation<Element>) {
        precondition(reservation.position == localHead, "SPSC reservations must be committed in order, one at a time")
        let count = reservation.count
        // Ended here on every path: an SPSC reservation has nothing to abandon,
        // and its (generic) deinit would cost a call even for an empty one.
        reservation.published()
        guard count > 0 else { return }
        localHead &+= UInt64(count)
        // Release: the in-place slot writes are visible before the new head.
        view.head.pointee.store(localHead, ordering: .releasing)
    }

    /// Throws ``RingError/indicesCorrupted(head:tail:capacity:)`` if the shared
    /// indices contradict each other (use when a send unexpectedly times out).
    public func checkIndices() throws(RingError) { try view.checkIndices() }
}
