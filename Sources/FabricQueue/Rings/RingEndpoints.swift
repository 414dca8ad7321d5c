/// What every producing end offers, so code (such as `fabricq produce`) can be
/// written once for SPSC and MPSC rings.
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
    /// Appends one element, waiting for space on `doorbell` up to `timeout`; rings the consumer.
    @discardableResult
    mutating func send(_ element: Element, doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> DoorbellWait
    /// Appends as many as fit once there is space; rings the consumer; returns how many.
    mutating func send(contentsOf elements: UnsafeBufferPointer<Element>, doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> Int
    /// Wakes a sleeping consumer (no syscall when none sleeps).
    @discardableResult
    func ringConsumer(_ doorbell: Doorbell) throws(RingWaitError) -> Bool
}

/// What every consuming end offers.
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
    /// Removes the oldest element, waiting on `doorbell` up to `timeout`; rings producers.
    mutating func receive(doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> Element
    /// Copies out up to `buffer.count` once at least one is there; rings producers.
    mutating func receive(into buffer: UnsafeMutableBufferPointer<Element>, doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> Int
    /// Wakes producers sleeping for space (no syscall when none sleeps).
    @discardableResult
    func ringProducers(_ doorbell: Doorbell) throws(RingWaitError) -> Bool
}

extension SPSCProducer: RingProducer {}
extension MPSCProducer: RingProducer {}
extension SPSCConsumer: RingConsumer {}
extension MPSCConsumer: RingConsumer {}
