import FabricSystem

/// What every producing end offers, so code can be written once for SPSC and
/// MPSC rings. The non-blocking operations only: waiting and waking through
/// a doorbell is ``BlockingRingProducer``, one layer up.
public protocol RingProducer: ~Copyable {
    /// The slot type.
    associatedtype Element: RingElement
    /// Number of slots.
    var capacity: Int { get }
    /// Slots in use: a monitoring estimate.
    var approximateCount: Int { get }
    /// Appends one element; `false` when full.
    mutating func enqueue(_ element: Element) -> Bool
    /// Appends as many as fit; returns how many.
    mutating func enqueue(contentsOf elements: UnsafeBufferPointer<Element>) -> Int
    /// Reserves up to `count` slots for writing in place.
    mutating func reserve(upTo count: Int) -> SlotReservation<Element>
    /// Publishes a reservation.
    mutating func commit(_ reservation: consuming SlotReservation<Element>)
}

/// What every consuming end offers (non-blocking; see ``BlockingRingConsumer``).
public protocol RingConsumer: ~Copyable {
    /// The slot type.
    associatedtype Element: RingElement
    /// Number of slots.
    var capacity: Int { get }
    /// Slots in use: a monitoring estimate.
    var approximateCount: Int { get }
    /// Whether nothing is waiting.
    var isEmpty: Bool { get }
    /// Removes the oldest element, `nil` when empty.
    mutating func dequeue() throws(RingError) -> Element?
    /// Copies out up to `buffer.count` elements; returns how many.
    mutating func dequeue(into buffer: UnsafeMutableBufferPointer<Element>) throws(RingError) -> Int
}

extension SPSCProducer: RingProducer {}
extension MPSCProducer: RingProducer {}
extension SPSCConsumer: RingConsumer {}
extension MPSCConsumer: RingConsumer {}
