import FabricDiagnostics
import FabricQueue
import Synchronization
import SystemPackage
import XCTest

/// Single-threaded behaviour of both rings: wrap-around, bursts, reserve/commit,
/// full and empty, roles, and what a consumer does with a corrupt peer.
final class RingSemanticsTests: XCTestCase {
    private func d(_ i: Int) -> Descriptor { CheckedTraffic.descriptor(producer: 1, sequence: UInt64(i)) }

    /// Pushes `total` descriptors through in bursts of `burst`, checking order.
    private func exercise<P: RingProducer & ~Copyable, C: RingConsumer & ~Copyable>(
        _ producer: inout P, _ consumer: inout C, total: Int, burst: Int
    ) throws where P.Element == Descriptor, C.Element == Descriptor {
        var sent = 0, received = 0
        var out = [Descriptor](repeating: Descriptor(), count: burst)
        while received < total {
            let batch = (0..<min(burst, total - sent)).map { d(sent + $0) }
            let n = batch.withUnsafeBufferPointer { producer.enqueue(contentsOf: $0) }
            XCTAssertLessThanOrEqual(n, producer.capacity)
            sent += n
            let m = try out.withUnsafeMutableBufferPointer { try consumer.dequeue(into: $0) }
            for i in 0..<m { XCTAssertEqual(out[i], d(received + i)) }
            received += m
            XCTAssertTrue(n > 0 || m > 0, "no progress")
        }
        XCTAssertEqual(sent, total)
        XCTAssertTrue(consumer.isEmpty)
        XCTAssertNil(try consumer.dequeue())
    }

    func testSPSCWrapAroundWithBurstsLargerThanCapacity() throws {
        for capacity in [2, 4, 1024] {
            for burst in [1, 3, capacity, capacity * 2 + 1] {
                let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: capacity)
                var p = try SPSCProducer<Descriptor>(region: region)
                var c = try SPSCConsumer<Descriptor>(region: region)
                try exercise(&p, &c, total: capacity * 5 + 3, burst: burst)
            }
        }
    }

    func testMPSCWrapAroundWithBurstsLargerThanCapacity() throws {
        for capacity in [2, 4, 1024] {
            for burst in [1, 3, capacity, capacity * 2 + 1] {
                let region = try SharedRegion.createAnonymous(kind: .mpsc, capacity: capacity)
                var p = try MPSCProducer<Descriptor>(region: region)
                var c = try MPSCConsumer<Descriptor>(region: region)
                try exercise(&p, &c, total: capacity * 5 + 3, burst: burst)
            }
        }
    }

    private func checkFullAndEmpty<P: RingProducer & ~Copyable, C: RingConsumer & ~Copyable>(
        _ p: inout P, _ c: inout C
    ) throws where P.Element == Descriptor, C.Element == Descriptor {
        XCTAssertNil(try c.dequeue())
        for i in 0..<4 { XCTAssertTrue(p.enqueue(d(i))) }
        XCTAssertFalse(p.enqueue(d(4)))
        XCTAssertEqual(p.approximateCount, 4)
        XCTAssertEqual(try c.dequeue(), d(0))
        XCTAssertTrue(p.enqueue(d(4)))
        XCTAssertEqual(c.approximateCount, 4)
    }

    func testFullAndEmptyAreNormalResults() throws {
        let spsc = try SharedRegion.createAnonymous(kind: .spsc, capacity: 4)
        var sp = try SPSCProducer<Descriptor>(region: spsc)
        var sc = try SPSCConsumer<Descriptor>(region: spsc)
        try checkFullAndEmpty(&sp, &sc)
        let mpsc = try SharedRegion.createAnonymous(kind: .mpsc, capacity: 4)
        var mp = try MPSCProducer<Descriptor>(region: mpsc)
        var mc = try MPSCConsumer<Descriptor>(region: mpsc)
        try checkFullAndEmpty(&mp, &mc)
    }

    func testSPSCReserveCommitAcrossWrap() throws {
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 8)
        var p = try SPSCProducer<Descriptor>(region: region)
        var c = try SPSCConsumer<Descriptor>(region: region)
        var next = 0, expected = 0
        for round in 0..<20 {
            let r = p.reserve(upTo: 5 + round % 4)
            XCTAssertEqual(r.parts.0.count + r.parts.1.count, r.count)
            for i in 0..<r.count { r[i].pointee = d(next + i) }
            XCTAssertTrue(c.isEmpty || c.approximateCount > 0)
            next += r.count
            p.commit(r)
            while let got = try c.dequeue() {
                XCTAssertEqual(got, d(expected))
                expected += 1
            }
        }
        XCTAssertEqual(expected, next)
        XCTAssertGreaterThan(next, 8 * 5)
    }

    func testMPSCReservationsCommitOutOfOrder() throws {
        let region = try SharedRegion.createAnonymous(kind: .mpsc, capacity: 8)
        var p1 = try MPSCProducer<Descriptor>(region: region)
        var p2 = try MPSCProducer<Descriptor>(region: region)
        var c = try MPSCConsumer<Descriptor>(region: region)
        let first = p1.reserve(upTo: 2)
        let second = p2.reserve(upTo: 2)
        XCTAssertEqual(second.position, first.position + 2)
        for i in 0..<2 {
            first[i].pointee = d(i)
            second[i].pointee = d(2 + i)
        }
        p2.commit(second)
        XCTAssertNil(try c.dequeue(), "position 0 is not published yet")
        p1.commit(first)
        for i in 0..<4 { XCTAssertEqual(try c.dequeue(), d(i)) }
        XCTAssertNil(try c.dequeue())
    }

    func testExclusiveRoles() throws {
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 8)
        do {
            let p = try SPSCProducer<Descriptor>(region: region)
            XCTAssertNil(p.tookOverFrom)
            XCTAssertThrowsError(try SPSCProducer<Descriptor>(region: region).capacity) {
                XCTAssertEqual($0 as? RegionError, .endpointInUse(role: "producer", ownerPID: getpid()))
            }
            let c = try SPSCConsumer<Descriptor>(region: region)
            XCTAssertEqual(region.snapshot().producerOwner, getpid())
            XCTAssertEqual(region.snapshot().consumerOwner, getpid())
            _ = consume p
            _ = consume c
        }
        XCTAssertEqual(region.snapshot().producerOwner, 0, "roles are released on deinit")
        XCTAssertNoThrow(try SPSCProducer<Descriptor>(region: region).capacity)
        // The wrong kind of endpoint is refused.
        XCTAssertThrowsError(try MPSCProducer<Descriptor>(region: region).capacity) {
            XCTAssertEqual($0 as? RegionError, .ringKindMismatch(expected: .mpsc, found: .spsc))
        }
    }

    func testConsumerReportsCorruptHead() throws {
        for kind in RingKind.allCases {
            let region = try SharedRegion.createAnonymous(kind: kind, capacity: 16)
            region.withUnsafeMutableBytes {
                $0.storeBytes(
                    of: UInt64(1) << 40, toByteOffset: RegionLayout.controlOffset + RegionLayout.Control.head, as: UInt64.self)
            }
            let expected = RingError.indicesCorrupted(head: 1 << 40, tail: 0, capacity: 16)
            var buffer = [Descriptor](repeating: Descriptor(), count: 4)
            if kind == .spsc {
                var c = try SPSCConsumer<Descriptor>(region: region)
                XCTAssertThrowsError(try c.dequeue()) { XCTAssertEqual($0 as? RingError, expected) }
                XCTAssertThrowsError(try buffer.withUnsafeMutableBufferPointer { try c.dequeue(into: $0) })
                XCTAssertThrowsError(try c.checkIndices())
            } else {
                var c = try MPSCConsumer<Descriptor>(region: region)
                XCTAssertThrowsError(try c.dequeue()) { XCTAssertEqual($0 as? RingError, expected) }
                XCTAssertThrowsError(try buffer.withUnsafeMutableBufferPointer { try c.dequeue(into: $0) })
                XCTAssertNil(c.skipStalledSlot())
            }
            XCTAssertFalse(region.snapshot().indicesConsistent)
        }
    }

    func testProducerTreatsCorruptTailAsFull() throws {
        for kind in RingKind.allCases {
            let region = try SharedRegion.createAnonymous(kind: kind, capacity: 16)
            region.withUnsafeMutableBytes {
                $0.storeBytes(
                    of: UInt64(1) << 50, toByteOffset: RegionLayout.controlOffset + RegionLayout.Control.tail, as: UInt64.self)
            }
            if kind == .spsc {
                var p = try SPSCProducer<Descriptor>(region: region)
                for _ in 0..<100 { XCTAssertFalse(p.enqueue(d(0))) }
            } else {
                var p = try MPSCProducer<Descriptor>(region: region)
                for _ in 0..<100 { XCTAssertFalse(p.enqueue(d(0))) }
                XCTAssertEqual(p.reserve(upTo: 4).count, 0)
            }
        }
    }

    func testGarbageSlotSequencesStallInsteadOfDeliveringGarbage() throws {
        let region = try SharedRegion.createAnonymous(kind: .mpsc, capacity: 4)
        var p = try MPSCProducer<Descriptor>(region: region)
        var c = try MPSCConsumer<Descriptor>(region: region, stallTimeout: .milliseconds(20))
        let r = p.reserve(upTo: 1)
        XCTAssertEqual(r.count, 1)
        // A peer scribbles a wrong sequence word instead of publishing.
        region.withUnsafeMutableBytes {
            $0.storeBytes(of: UInt64(777), toByteOffset: region.info.geometry.sequencesOffset, as: UInt64.self)
        }
        XCTAssertNil(try c.dequeue())
        let deadline = MonotonicClock.now() + 5_000_000_000
        var stalled: RingError?
        while stalled == nil && MonotonicClock.now() < deadline {
            do { _ = try c.dequeue() } catch { stalled = error }
            usleep(1000)
        }
        guard case .slotStalled(let position, let ns) = stalled else { return XCTFail("no stall reported") }
        XCTAssertEqual(position, 0)
        XCTAssertGreaterThanOrEqual(ns, 20_000_000)
        XCTAssertEqual(region.snapshot().unpublished, 1)
        XCTAssertEqual(c.skipStalledSlot(), 0)
        XCTAssertNil(try c.dequeue())
        p.commit(r)  // too late: position 0 was given up; the ring keeps working
        XCTAssertTrue(p.enqueue(d(1)))
        XCTAssertEqual(try c.dequeue(), d(1))
    }

    /// Issue 13, item 11: an MPSC reservation dropped without `commit` used
    /// to stall the consumer at its position for good. Dropped or explicitly
    /// abandoned, its slots are stepped over; the consumer counts them.
    func testAbandonedMPSCReservationsAreSteppedOver() throws {
        let region = try SharedRegion.createAnonymous(kind: .mpsc, capacity: 16)
        var producer = try MPSCProducer<Descriptor>(region: region)
        var consumer = try MPSCConsumer<Descriptor>(region: region, stallTimeout: .milliseconds(1))
        do {
            let dropped = producer.reserve(upTo: 3)
            XCTAssertEqual(dropped.count, 3)
        }  // goes away uncommitted
        XCTAssertTrue(producer.enqueue(Descriptor(commandID: 10)))
        producer.abandon(producer.reserve(upTo: 2))
        let reservation = producer.reserve(upTo: 1)
        reservation.write(Descriptor(commandID: 11), at: 0)
        producer.commit(reservation)
        usleep(5_000)  // longer than the stall timeout: an unpublished slot would now throw
        XCTAssertEqual(try consumer.dequeue()?.commandID, 10)
        var buffer = [Descriptor](repeating: Descriptor(), count: 4)
        let n = try buffer.withUnsafeMutableBufferPointer { try consumer.dequeue(into: $0) }
        XCTAssertEqual(n, 1)
        XCTAssertEqual(buffer[0].commandID, 11)
        XCTAssertNil(try consumer.dequeue())
        XCTAssertEqual(consumer.abandonedCount, 5)
        XCTAssertTrue(consumer.isEmpty)
        // A blocking receive steps over abandoned slots too.
        producer.abandon(producer.reserve(upTo: 1))
        XCTAssertTrue(producer.enqueue(Descriptor(commandID: 12)))
        XCTAssertEqual(try consumer.receive(doorbell: .busyPoll, timeout: .seconds(1)).commandID, 12)
    }
}
