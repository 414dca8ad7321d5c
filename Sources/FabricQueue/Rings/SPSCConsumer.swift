import FabricSystem
import Synchronization

/// The consuming end of a single-producer single-consumer ring.
///
/// ## Protocol
/// The consumer owns `tail` and keeps a private copy; it re-reads the
/// producer's `head` (acquire) only when its cached copy says the ring is
/// empty. Elements are copied out of their slots before `tail` is stored with
/// release ordering, which hands the slots back to the producer.
///
/// Elements are always copied out: a consumer validates its copy, which the
/// producer can no longer change (no time-of-check/time-of-use race).
///
/// A `head` that contradicts `tail` (more than `capacity` ahead, or behind) is
/// reported as ``RingError/indicesCorrupted(head:tail:capacity:)``; nothing
/// is ever read outside the slot array because positions are masked.
public struct SPSCConsumer<Element: RingElement>: ~Copyable, @unchecked Sendable {
    // @unchecked: raw pointers into the region; ~Copyable, so one owner at a time
    @usableFromInline let region: SharedRegion
    @usableFromInline let view: RingView<Element>
    @usableFromInline var localTail: UInt64
    @usableFromInline var cachedHead: UInt64
    /// The pid of a dead consumer whose role this one took over, if any.
    public let tookOverFrom: Int32?
    /// The exclusive role this endpoint holds (released when it goes away).
    /// Last, so the fields the hot loops use keep their places.
    let role: RoleClaim

    /// Attaches the consumer end of the SPSC ring in `region`.
    public init(region: SharedRegion, of element: Element.Type = Element.self) throws(RegionError) {
        let view = try RingView<Element>(region: region, kind: .spsc)
        let claim = try RoleClaim(.consumer, region: region, word: view.ownerWord(EndpointRole.consumer.offset))
        tookOverFrom = claim.tookOverFrom
        if tookOverFrom != nil { view.clearStaleWaiters(RegionLayout.Control.dataWaiters) }
        role = claim
        self.region = region
        self.view = view
        // Acquire: resume after a previous consumer's last release of tail.
        localTail = view.tail.pointee.load(ordering: .acquiring)
        cachedHead = localTail
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

    /// Whether the ring holds nothing (re-reads the producer's head).
    @inlinable public var isEmpty: Bool {
        // Acquire is not needed to answer the question; relaxed suffices.
        view.head.pointee.load(ordering: .relaxed) == localTail
    }

    @inlinable @inline(__always)
    mutating func available(wanting wanted: UInt64) throws(RingError) -> UInt64 {
        var available = cachedHead &- localTail
        if available < wanted {
            // Acquire: pairs with the producer's release store of head, so the
            // slots up to head hold what it wrote.
            let h = view.head.pointee.load(ordering: .acquiring)
            guard h &- localTail <= view.capacity else {
                throw .indicesCorrupted(head: h, tail: localTail, capacity: Int(view.capacity))
            }
            cachedHead = h
            available = h &- localTail
        }
        return available
    }

    /// Removes and returns the oldest element, or `nil` when the ring is empty.
    @inlinable
    public mutating func dequeue() throws(RingError) -> Element? {
        guard try available(wanting: 1) != 0 else { return nil }
        let element = readElement(from: view.slots + Int(localTail & view.mask))
        localTail &+= 1
        // Release: our read of the slot happens before the producer reuses it.
        view.tail.pointee.store(localTail, ordering: .releasing)
        return element
    }

    /// Copies up to `buffer.count` elements out (burst semantics) and returns
    /// how many; one release store hands all their slots back.
    @inlinable
    public mutating func dequeue(into buffer: UnsafeMutableBufferPointer<Element>) throws(RingError) -> Int {
        let n = Int(min(try available(wanting: UInt64(buffer.count)), UInt64(buffer.count)))
        guard n > 0, let destination = buffer.baseAddress else { return 0 }
        // At most two contiguous runs: up to the end of the slot array, then from its start.
        let start = Int(localTail & view.mask)
        let first = min(n, Int(view.capacity) - start)
        copyElements(from: view.slots + start, to: destination, count: first)
        if n > first { copyElements(from: view.slots, to: destination + first, count: n - first) }
        localTail &+= UInt64(n)
        // Release: our reads of the n slots happen before the producer reuses them.
        view.tail.pointee.store(localTail, ordering: .releasing)
        return n
    }

    /// Throws if the shared indices contradict each other.
    public func checkIndices() throws(RingError) { try view.checkIndices() }
}
