import FabricSystem
import Synchronization

/// A producing end of a multi-producer single-consumer ring. Any number of
/// threads and processes may each hold one.
///
/// ## Protocol
/// 1. **Reserve**: read the shared `head`, check space against a private cached
///    copy of the consumer's `tail` (re-read with acquire only when the cache
///    says full), and claim `head..<head+n` with one compare-and-swap.
/// 2. **Write** the claimed slots in place.
/// 3. **Publish** each slot by storing `position + 1` into its sequence word
///    with release ordering.
///
/// Producers never wait for one another: a producer preempted or killed
/// between reserve and publish holds back only the consumer, at that one
/// position, and the consumer reports it as
/// ``RingError/slotStalled(position:stalledForNanoseconds:)`` rather than
/// spinning (see ``MPSCConsumer/skipStalledSlot()``). This is the difference
/// from a ring that publishes a shared tail in reservation order, where one
/// stuck producer stalls every other producer too.
public struct MPSCProducer<Element: RingElement>: ~Copyable, @unchecked Sendable {
    // @unchecked: raw pointers into the region; ~Copyable, so one owner at a time
    @usableFromInline let region: SharedRegion
    @usableFromInline let view: RingView<Element>
    @usableFromInline var cachedTail: UInt64

    /// Attaches a producer to the MPSC ring in `region`. Producers are not
    /// exclusive; create one per thread.
    public init(region: SharedRegion, of element: Element.Type = Element.self) throws(RegionError) {
        view = try RingView<Element>(region: region, kind: .mpsc)
        self.region = region
        // Acquire: as in `claim`, the consumer's reads of slots up to tail are done.
        cachedTail = view.tail.pointee.load(ordering: .acquiring)
    }

    /// Number of slots.
    @inlinable public var capacity: Int { Int(view.capacity) }

    /// Slots in use (reserved or published, not yet consumed): an estimate.
    @inlinable public var approximateCount: Int { view.approximateCount }

    /// Claims up to `wanted` consecutive positions. Returns the first position
    /// and how many were claimed (0 when full).
    @inlinable @inline(__always)
    mutating func claim(_ wanted: UInt64) -> (position: UInt64, count: UInt64) {
        guard wanted > 0 else { return (0, 0) }
        let capacity = view.capacity
        // Relaxed: the position is only a guess that the CAS below confirms;
        // slot contents are ordered by the tail acquire and the sequence release.
        var position = view.head.pointee.load(ordering: .relaxed)
        var inconsistent = 0
        while true {
            var used = position &- cachedTail
            if used > capacity || capacity &- used < wanted {
                // Acquire: pairs with the consumer's release store of tail, so
                // its reads of the slots we may now reuse are finished.
                cachedTail = view.tail.pointee.load(ordering: .acquiring)
                used = position &- cachedTail
                if used > capacity {
                    // Our head snapshot is older than the tail we just read (others
                    // moved both since), or the consumer wrote garbage. Re-read the
                    // head a bounded number of times, then report "full".
                    inconsistent += 1
                    if inconsistent > 64 { return (position, 0) }
                    // Relaxed: as above.
                    position = view.head.pointee.load(ordering: .relaxed)
                    continue
                }
            }
            let n = min(wanted, capacity &- used)
            if n == 0 { return (position, 0) }
            // Relaxed: the head only hands out positions. Exclusive ownership of
            // the slots follows from the CAS itself; their contents are published
            // by the per-slot sequence store (release).
            let (exchanged, current) = view.head.pointee.compareExchange(
                expected: position, desired: position &+ n, ordering: .relaxed)
            if exchanged { return (position, n) }
            position = current
        }
    }

    @inlinable @inline(__always)
    func publish(_ position: UInt64) {
        // Release: the slot written above is visible to a consumer that loads
        // this sequence with acquire and finds position + 1.
        view.sequences[Int(position & view.mask)].store(position &+ 1, ordering: .releasing)
    }

    /// Appends one element. Returns `false` when the ring is full.
    @inlinable
    public mutating func enqueue(_ element: Element) -> Bool {
        let (position, n) = claim(1)
        guard n == 1 else { return false }
        writeElement(element, to: view.slots + Int(position & view.mask))
        publish(position)
        return true
    }

    /// Appends as many of `elements` as fit, as one contiguous run, and returns
    /// how many went in. Elements of one call stay together and in order.
    @inlinable
    public mutating func enqueue(contentsOf elements: UnsafeBufferPointer<Element>) -> Int {
        let (position, n) = claim(UInt64(elements.count))
        guard n > 0, let source = elements.baseAddress else { return 0 }
        for i in 0..<Int(n) {
            let p = position &+ UInt64(i)
            copyElement(from: source + i, to: view.slots + Int(p & view.mask))
            publish(p)
        }
        return Int(n)
    }

    /// Claims up to `count` slots to be written in place; `commit(_:)`
    /// publishes them, ``abandon(_:)`` gives them up. A reservation dropped
    /// without either is abandoned when it goes away, so the consumer steps
    /// over its slots instead of stalling at them; only a producer that dies
    /// holding a reservation leaves a stalled slot (see
    /// `MPSCConsumer.skipStalledSlot()`).
    @inlinable
    public mutating func reserve(upTo count: Int) -> SlotReservation<Element> {
        let (position, n) = claim(UInt64(max(count, 0)))
        return SlotReservation(
            position: position, count: Int(n), slots: view.slots, mask: view.mask, sequences: view.sequences)
    }

    /// Publishes every slot of `reservation`, one sequence store per slot in
    /// order (not one store for all: the consumer may take the first slots
    /// before the last are published).
    @inlinable
    public mutating func commit(_ reservation: consuming SlotReservation<Element>) {
        for i in 0..<reservation.count { publish(reservation.position &+ UInt64(i)) }
        reservation.published()
    }

    /// Gives up `reservation` without publishing it: its slots are marked
    /// abandoned, and the consumer steps over them (counting them in
    /// `MPSCConsumer.abandonedCount`) instead of stalling.
    @inlinable
    public mutating func abandon(_ reservation: consuming SlotReservation<Element>) {
        _ = consume reservation  // its deinit marks the slots
    }

    /// Throws if the shared indices contradict each other.
    public func checkIndices() throws(RingError) { try view.checkIndices() }
}
