import FabricSystem
import Synchronization

// Blocking send/receive on every ring end: wait on the "space available" or
// "data available" doorbell with a deadline, so a full ring is backpressure
// rather than a spin forever, and ring the peer after each operation.
//
// A sleeping peer is woken only by these calls or by the explicit `ring…`
// methods. Code that enqueues with the non-blocking API (say, a burst) and
// has a peer that may sleep must call `ringConsumer(_:)` afterwards.

/// A producing end that also waits for space and wakes its consumer through
/// a ``Doorbell`` (every ring producer in this module is one), so code such as
/// `fabricq produce` can be written once for SPSC and MPSC rings.
public protocol BlockingRingProducer: RingProducer, ~Copyable {
    /// Appends one element, waiting for space on `doorbell` up to `timeout`; rings the consumer.
    @discardableResult
    mutating func send(_ element: Element, doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> DoorbellWait
    /// Appends as many as fit once there is space; rings the consumer; returns how many.
    mutating func send(
        contentsOf elements: UnsafeBufferPointer<Element>, doorbell: Doorbell, timeout: Duration
    ) throws(RingWaitError) -> Int
    /// Wakes a sleeping consumer (no syscall when none sleeps).
    @discardableResult
    func ringConsumer(_ doorbell: Doorbell) throws(RingWaitError) -> Bool
}

/// A consuming end that also waits for data and wakes its producers through
/// a ``Doorbell``.
public protocol BlockingRingConsumer: RingConsumer, ~Copyable {
    /// Removes the oldest element, waiting on `doorbell` up to `timeout`; rings producers.
    mutating func receive(doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> Element
    /// Copies out up to `buffer.count` once at least one is there; rings producers.
    mutating func receive(
        into buffer: UnsafeMutableBufferPointer<Element>, doorbell: Doorbell, timeout: Duration
    ) throws(RingWaitError) -> Int
    /// Wakes producers sleeping for space (no syscall when none sleeps).
    @discardableResult
    func ringProducers(_ doorbell: Doorbell) throws(RingWaitError) -> Bool
}

extension SPSCProducer: BlockingRingProducer {}
extension MPSCProducer: BlockingRingProducer {}
extension SPSCConsumer: BlockingRingConsumer {}
extension MPSCConsumer: BlockingRingConsumer {}

extension RingView {
    /// Rings the "data available" (`data: true`) or "space available" line.
    @inlinable
    func ring(data: Bool, _ doorbell: Doorbell) throws(RingWaitError) -> Bool {
        do { return try DoorbellLine(control: control, data: data).ring(doorbell) } catch { throw .doorbell(error) }
    }
}

extension SPSCProducer {
    /// Appends `element`, waiting up to `timeout` for space, then rings the
    /// consumer. Throws ``RingWaitError/timedOut`` if the ring stays full.
    @inlinable @discardableResult
    public mutating func send(_ element: Element, doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> DoorbellWait {
        var wait = DoorbellWait(isReady: true)
        if !enqueue(element) {
            wait = try waitUntilWritable(doorbell: doorbell, timeout: timeout)
            guard wait.isReady, enqueue(element) else { throw .timedOut }
        }
        try ringConsumer(doorbell)
        return wait
    }

    /// Appends as many of `elements` as fit once at least one slot is free
    /// (waiting up to `timeout`), rings the consumer, returns how many went in.
    @inlinable
    public mutating func send(
        contentsOf elements: UnsafeBufferPointer<Element>, doorbell: Doorbell, timeout: Duration
    ) throws(RingWaitError) -> Int {
        var n = enqueue(contentsOf: elements)
        if n == 0 && !elements.isEmpty {
            guard try waitUntilWritable(doorbell: doorbell, timeout: timeout).isReady else { throw .timedOut }
            n = enqueue(contentsOf: elements)
        }
        try ringConsumer(doorbell)
        return n
    }

    /// Waits until at least one slot is free or `timeout` passes; returns how
    /// the wait went (``DoorbellWait/isReady`` false: timed out).
    @inlinable
    public mutating func waitUntilWritable(doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> DoorbellWait {
        try DoorbellLine(control: view.control, data: false)
            .wait(doorbell, deadline: deadline(after: timeout)) { freeSlots(wanting: 1) != 0 }
    }

    /// Wakes the consumer if it sleeps (no syscall otherwise). Returns whether
    /// a wake-up was sent.
    @inlinable @discardableResult
    public func ringConsumer(_ doorbell: Doorbell) throws(RingWaitError) -> Bool {
        try view.ring(data: true, doorbell)
    }
}

extension MPSCProducer {
    @inlinable
    func hasSpace() -> Bool {
        // Relaxed head, acquire tail: as in `claim`.
        let h = view.head.pointee.load(ordering: .relaxed)
        let t = view.tail.pointee.load(ordering: .acquiring)
        return h &- t < view.capacity
    }

    /// Appends `element`, waiting up to `timeout` for space, then rings the
    /// consumer. Throws ``RingWaitError/timedOut`` if the ring stays full.
    @inlinable @discardableResult
    public mutating func send(_ element: Element, doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> DoorbellWait {
        let end = deadline(after: timeout)
        var total = DoorbellWait(isReady: true)
        // Other producers may take the freed slot first: wait again until the deadline.
        while !enqueue(element) {
            let wait = try DoorbellLine(control: view.control, data: false).wait(doorbell, deadline: end) { hasSpace() }
            total.sleeps += wait.sleeps
            total.spuriousWakeups += wait.spuriousWakeups
            if !wait.isReady { throw .timedOut }
        }
        try ringConsumer(doorbell)
        return total
    }

    /// Appends as many of `elements` as fit once there is space (waiting up
    /// to `timeout`), rings the consumer, returns how many went in.
    @inlinable
    public mutating func send(
        contentsOf elements: UnsafeBufferPointer<Element>, doorbell: Doorbell, timeout: Duration
    ) throws(RingWaitError) -> Int {
        let end = deadline(after: timeout)
        var n = enqueue(contentsOf: elements)
        while n == 0 && !elements.isEmpty {
            let wait = try DoorbellLine(control: view.control, data: false).wait(doorbell, deadline: end) { hasSpace() }
            if !wait.isReady { throw .timedOut }
            n = enqueue(contentsOf: elements)
        }
        try ringConsumer(doorbell)
        return n
    }

    /// Wakes the consumer if it sleeps (no syscall otherwise).
    @inlinable @discardableResult
    public func ringConsumer(_ doorbell: Doorbell) throws(RingWaitError) -> Bool {
        try view.ring(data: true, doorbell)
    }
}

extension SPSCConsumer {
    /// Removes the oldest element, waiting up to `timeout` for one, then rings
    /// a producer waiting for space. Throws ``RingWaitError/timedOut`` if the
    /// ring stays empty.
    @inlinable
    public mutating func receive(doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> Element {
        var next: Element?
        do { next = try dequeue() } catch { throw .ring(error) }
        if next == nil {
            guard try waitUntilReadable(doorbell: doorbell, timeout: timeout).isReady else { throw .timedOut }
            do { next = try dequeue() } catch { throw .ring(error) }
        }
        guard let element = next else { throw .timedOut }
        try ringProducers(doorbell)
        return element
    }

    /// Copies out up to `buffer.count` elements once at least one is there
    /// (waiting up to `timeout`), rings the producer, returns how many.
    @inlinable
    public mutating func receive(
        into buffer: UnsafeMutableBufferPointer<Element>, doorbell: Doorbell, timeout: Duration
    ) throws(RingWaitError) -> Int {
        var n: Int
        do { n = try dequeue(into: buffer) } catch { throw .ring(error) }
        if n == 0 && buffer.count > 0 {
            guard try waitUntilReadable(doorbell: doorbell, timeout: timeout).isReady else { throw .timedOut }
            do { n = try dequeue(into: buffer) } catch { throw .ring(error) }
        }
        try ringProducers(doorbell)
        return n
    }

    /// Waits until at least one element is there or `timeout` passes; returns
    /// how the wait went (``DoorbellWait/isReady`` false: timed out).
    @inlinable
    public mutating func waitUntilReadable(doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> DoorbellWait {
        try DoorbellLine(control: view.control, data: true)
            .wait(doorbell, deadline: deadline(after: timeout)) { () throws(RingError) -> Bool in try available(wanting: 1) != 0 }
    }

    /// Wakes producers waiting for space, if any (no syscall otherwise).
    @inlinable @discardableResult
    public func ringProducers(_ doorbell: Doorbell) throws(RingWaitError) -> Bool {
        try view.ring(data: false, doorbell)
    }
}

extension MPSCConsumer {
    /// Removes the oldest element, waiting up to `timeout` for one, then rings
    /// producers waiting for space. A slot stalled by a dead producer surfaces
    /// as ``RingWaitError/ring(_:)`` with ``RingError/slotStalled(position:stalledForNanoseconds:)``.
    @inlinable
    public mutating func receive(doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> Element {
        let end = deadline(after: timeout)
        while true {
            let next: Element?
            do { next = try dequeue() } catch { throw .ring(error) }
            if let next {
                try ringProducers(doorbell)
                return next
            }
            if try !waitUntilReadable(doorbell: doorbell, deadline: end).isReady { throw .timedOut }
        }
    }

    /// Waits until the next element is published or `timeout` passes; returns
    /// how the wait went (``DoorbellWait/isReady`` false: timed out).
    @inlinable
    public mutating func waitUntilReadable(doorbell: Doorbell, timeout: Duration) throws(RingWaitError) -> DoorbellWait {
        try waitUntilReadable(doorbell: doorbell, deadline: deadline(after: timeout))
    }

    @inlinable
    mutating func waitUntilReadable(doorbell: Doorbell, deadline end: UInt64) throws(RingWaitError) -> DoorbellWait {
        try DoorbellLine(control: view.control, data: true).wait(doorbell, deadline: end) {
            () throws(RingError) -> Bool in
            while !isPublished(localTail) {
                // An abandoned slot is stepped over; anything else is waited for.
                guard try stepOverAbandonedOrWait() else { return false }
            }
            return true
        }
    }

    /// Copies out up to `buffer.count` published elements once at least one is
    /// there (waiting up to `timeout`), rings producers, returns how many.
    @inlinable
    public mutating func receive(
        into buffer: UnsafeMutableBufferPointer<Element>, doorbell: Doorbell, timeout: Duration
    ) throws(RingWaitError) -> Int {
        let end = deadline(after: timeout)
        while true {
            let n: Int
            do { n = try dequeue(into: buffer) } catch { throw .ring(error) }
            if n > 0 || buffer.isEmpty {
                try ringProducers(doorbell)
                return n
            }
            if try !waitUntilReadable(doorbell: doorbell, deadline: end).isReady { throw .timedOut }
        }
    }

    /// Wakes producers waiting for space, if any (no syscall otherwise).
    @inlinable @discardableResult
    public func ringProducers(_ doorbell: Doorbell) throws(RingWaitError) -> Bool {
        try view.ring(data: false, doorbell)
    }
}
