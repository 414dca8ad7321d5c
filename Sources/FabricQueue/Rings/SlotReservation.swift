import FabricSystem
import Synchronization

/// Slots reserved by a producer for writing in place (zero copy).
///
/// Obtained from `reserve(upTo:)` on a producer; write each slot through
/// ``subscript(_:)`` or the two contiguous ``parts``, then hand the
/// reservation back to `commit(_:)`. An SPSC commit publishes every slot with
/// one store of the head; an MPSC commit stores each slot's sequence word in
/// order, so the consumer may see the first slots before the last.
///
/// Noncopyable, so it is committed at most once. One that is not committed
/// is abandoned when it goes away: an SPSC reservation simply lapses; an MPSC
/// reservation's slots are marked abandoned, and the consumer steps over them
/// instead of stalling at them for good (``MPSCProducer/abandon(_:)`` does
/// the same explicitly). The pointers stay valid while the producer that made
/// the reservation exists.
@frozen
public struct SlotReservation<Element: RingElement>: ~Copyable {
    /// Ring position of the first reserved slot.
    public let position: UInt64
    /// Number of slots reserved; 0 when the ring was full.
    public let count: Int
    @usableFromInline let slots: UnsafeMutablePointer<Element>
    @usableFromInline let mask: UInt64
    /// The MPSC ring's sequence words; nil for SPSC.
    @usableFromInline let sequences: UnsafeMutablePointer<Atomic<UInt64>>?

    @inlinable
    init(
        position: UInt64, count: Int, slots: UnsafeMutablePointer<Element>, mask: UInt64,
        sequences: UnsafeMutablePointer<Atomic<UInt64>>? = nil
    ) {
        self.position = position
        self.count = count
        self.slots = slots
        self.mask = mask
        self.sequences = sequences
    }

    deinit {
        guard let sequences else { return }
        for i in 0..<count { Self.markAbandoned(position &+ UInt64(i), sequences, mask) }
    }

    /// Ends the reservation without abandoning it (its producer has
    /// published its slots, or it is SPSC and has nothing to abandon).
    @inlinable
    consuming func published() { discard self }

    /// Ends a reservation the caller decided not to commit. An SPSC one
    /// lapses; an MPSC one abandons its slots (see ``MPSCProducer/abandon(_:)``).
    @inlinable
    public consuming func lapse() {
        guard let sequences else {
            discard self
            return
        }
        for i in 0..<count { Self.markAbandoned(position &+ UInt64(i), sequences, mask) }
        discard self
    }

    /// Marks the slot at `position` abandoned: its sequence word becomes
    /// `(position + 1) | RegionLayout.abandonedSequenceBit`.
    @usableFromInline
    static func markAbandoned(_ position: UInt64, _ sequences: UnsafeMutablePointer<Atomic<UInt64>>, _ mask: UInt64) {
        // Release: as a publication, so the consumer that steps over the slot
        // sees the marker, and nothing written to the slot matters.
        sequences[Int(position & mask)].store((position &+ 1) | RegionLayout.abandonedSequenceBit, ordering: .releasing)
    }

    /// Whether no slot was reserved (the ring was full).
    @inlinable public var isEmpty: Bool { count == 0 }

    /// The `index`th reserved slot, `0..<count`. The ring wraps, so consecutive
    /// indices are not always adjacent in memory; use ``parts`` for bulk copies.
    @inlinable
    public subscript(index: Int) -> UnsafeMutablePointer<Element> {
        precondition(index >= 0 && index < count, "slot index out of the reservation")
        return slots + Int((position &+ UInt64(index)) & mask)
    }

    /// Writes `element` into the `index`th reserved slot, `0..<count`.
    @inlinable
    public func write(_ element: Element, at index: Int) {
        writeElement(element, to: self[index])
    }

    /// The reservation as at most two contiguous runs of slots (it splits where
    /// the ring wraps around); the second is empty when it does not wrap.
    @inlinable
    public var parts: (UnsafeMutableBufferPointer<Element>, UnsafeMutableBufferPointer<Element>) {
        let start = Int(position & mask)
        let first = min(count, Int(mask) + 1 - start)
        return (
            UnsafeMutableBufferPointer(start: slots + start, count: first),
            UnsafeMutableBufferPointer(start: slots, count: count - first)
        )
    }
}
