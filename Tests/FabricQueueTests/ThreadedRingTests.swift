import FabricDiagnostics
import FabricQueue
import Synchronization
import XCTest

/// Producer and consumer on separate threads of one process. These are the
/// tests `.ci/run` also runs under ThreadSanitizer
/// (`swift test --sanitize=thread --filter ThreadedRingTests`).
final class ThreadedRingTests: XCTestCase {
    private let idleTimeout: UInt64 = 20_000_000_000

    private final class Outcome: @unchecked Sendable {
        // @unchecked: the only state is behind the Mutex
        let lock = Mutex<[String]>([])
        func fail(_ message: String) { lock.withLock { $0.append(message) } }
        var failures: [String] { lock.withLock { $0 } }
    }

    private func spsc(count: Int, burst: Int, capacity: Int) throws {
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: capacity)
        let outcome = Outcome()
        let verdict = Mutex(StreamVerifier())
        let timeout = idleTimeout
        runOnThreads([
            {
                do {
                    var producer = try SPSCProducer<Descriptor>(region: region)
                    try TrafficRunner.produce(
                        into: &producer, producerID: 1, count: count, burst: burst,
                        idleTimeoutNanoseconds: timeout)
                } catch { outcome.fail("producer: \(error)") }
            },
            {
                var verifier = StreamVerifier()
                do {
                    var consumer = try SPSCConsumer<Descriptor>(region: region)
                    try TrafficRunner.consume(
                        from: &consumer, count: count, burst: burst,
                        idleTimeoutNanoseconds: timeout, verifier: &verifier)
                } catch { outcome.fail("consumer: \(error)") }
                verdict.withLock { $0 = verifier }
            },
        ])
        XCTAssertEqual(outcome.failures, [])
        let verifier = verdict.withLock { $0 }
        XCTAssertEqual(verifier.received, count)
        XCTAssertTrue(verifier.isClean, "lost \(verifier.lost) dup \(verifier.duplicated) corrupt \(verifier.corrupt)")
    }

    func testSPSCTwoThreadsSingle() throws { try spsc(count: 200_000, burst: 1, capacity: 64) }

    func testSPSCTwoThreadsBurst() throws { try spsc(count: 400_000, burst: 32, capacity: 1024) }

    func testSPSCTwoThreadsTinyRing() throws { try spsc(count: 50_000, burst: 3, capacity: 2) }

    func testMPSCFourProducerThreads() throws {
        let region = try SharedRegion.createAnonymous(kind: .mpsc, capacity: 256)
        let producers = 4, perProducer = 100_000
        let outcome = Outcome()
        let verdict = Mutex(StreamVerifier())
        let timeout = idleTimeout
        var bodies: [@Sendable () -> Void] = (0..<producers).map { id in
            {
                do {
                    var producer = try MPSCProducer<Descriptor>(region: region)
                    try TrafficRunner.produce(
                        into: &producer, producerID: UInt32(id), count: perProducer,
                        burst: id % 2 == 0 ? 1 : 8, idleTimeoutNanoseconds: timeout)
                } catch { outcome.fail("producer \(id): \(error)") }
            }
        }
        bodies.append {
            var verifier = StreamVerifier()
            do {
                var consumer = try MPSCConsumer<Descriptor>(region: region)
                try TrafficRunner.consume(
                    from: &consumer, count: producers * perProducer, burst: 16,
                    idleTimeoutNanoseconds: timeout, verifier: &verifier)
            } catch { outcome.fail("consumer: \(error)") }
            verdict.withLock { $0 = verifier }
        }
        runOnThreads(bodies)
        XCTAssertEqual(outcome.failures, [])
        let verifier = verdict.withLock { $0 }
        XCTAssertEqual(verifier.received, producers * perProducer)
        XCTAssertTrue(verifier.isClean, "lost \(verifier.lost) dup \(verifier.duplicated) corrupt \(verifier.corrupt)")
        XCTAssertEqual(verifier.nextSequence.count, producers)
        for id in 0..<producers { XCTAssertEqual(verifier.nextSequence[UInt32(id)], UInt64(perProducer)) }
    }

    func testStalledProducerDoesNotBlockOtherProducers() throws {
        let region = try SharedRegion.createAnonymous(kind: .mpsc, capacity: 64)
        var stuck = try MPSCProducer<Descriptor>(region: region)
        let reservation = stuck.reserve(upTo: 1)  // never committed, as if its thread died
        XCTAssertEqual(reservation.count, 1)
        let sent = Counter()
        runOnThreads(
            (0..<3).map { id in
                {
                    guard var producer = try? MPSCProducer<Descriptor>(region: region) else { return }
                    for i in 0..<21 where producer.enqueue(CheckedTraffic.descriptor(producer: UInt32(id), sequence: UInt64(i))) {
                        // Relaxed: a counter read after the threads are joined.
                        sent.value.add(1, ordering: .relaxed)
                    }
                }
            })
        // Relaxed: the threads have been joined.
        XCTAssertEqual(sent.value.load(ordering: .relaxed), 63, "the other producers filled the rest of the ring")
        var consumer = try MPSCConsumer<Descriptor>(region: region, stallTimeout: .milliseconds(10))
        XCTAssertNil(try consumer.dequeue())
        usleep(20_000)
        XCTAssertThrowsError(try consumer.dequeue()) {
            guard case .slotStalled(0, _) = $0 as? RingError else { return XCTFail("got \($0)") }
        }
        XCTAssertEqual(consumer.skipStalledSlot(), 0)
        var verifier = StreamVerifier()
        while let d = try consumer.dequeue() { verifier.record(d) }
        XCTAssertEqual(verifier.received, 63)
        XCTAssertTrue(verifier.isClean)
        _ = consume reservation
    }
}

/// A counter shared by threads.
final class Counter: Sendable {
    let value = Atomic<Int>(0)
}
