import FabricQueue
import XCTest

@testable import FabricSession

/// The one accumulator both controller paths batch through.
final class BatchAccumulatorTests: XCTestCase {
    private func descriptor(_ id: UInt64) -> Descriptor {
        Descriptor(commandID: id, modelID: 1, inputOffset: 4096, inputSize: 4, outputOffset: 8192, outputCapacity: 4)
    }

    func testPolicyClampsAndKnowsWhenItPostsImmediately() {
        XCTAssertEqual(BatchingPolicy(maximumBatchSize: 99, maximumWait: .milliseconds(1)).maximumBatchSize, 8)
        XCTAssertEqual(BatchingPolicy(maximumBatchSize: 0, maximumWait: .milliseconds(1)).maximumBatchSize, 1)
        XCTAssertEqual(BatchingPolicy(maximumBatchSize: 4, maximumWait: .milliseconds(-1)).maximumWait, .zero)
        XCTAssertTrue(BatchingPolicy.immediate.postsImmediately)
        XCTAssertTrue(BatchingPolicy(maximumBatchSize: 8, maximumWait: .zero).postsImmediately)
        XCTAssertTrue(BatchingPolicy(maximumBatchSize: 1, maximumWait: .seconds(1)).postsImmediately)
        XCTAssertFalse(BatchingPolicy(maximumBatchSize: 2, maximumWait: .microseconds(1)).postsImmediately)
    }

    func testBatchIsDueWhenFullOrWhenTheOldestHasWaited() {
        var batch = BatchAccumulator(
            policy: BatchingPolicy(maximumBatchSize: 3, maximumWait: .microseconds(100)), ringCapacity: 64)
        XCTAssertNil(batch.dueTime)
        XCTAssertFalse(batch.isDue(now: .max))
        XCTAssertFalse(batch.append(descriptor(1), now: 1_000))
        XCTAssertFalse(batch.append(descriptor(2), now: 50_000))
        XCTAssertEqual(batch.dueTime, 101_000, "due maximumWait after the first arrival, not the last")
        XCTAssertFalse(batch.isDue(now: 100_999))
        XCTAssertTrue(batch.isDue(now: 101_000))
        XCTAssertTrue(batch.append(descriptor(3), now: 60_000), "full: post now")
        XCTAssertEqual(batch.dueTime, 1_000)
        XCTAssertEqual((0..<batch.count).map { batch[$0].commandID }, [1, 2, 3])
    }

    /// A cancellation takes its command back out of a batch not yet posted.
    func testRemovingAGatheredCommandKeepsTheOthersInOrder() {
        var batch = BatchAccumulator(
            policy: BatchingPolicy(maximumBatchSize: 4, maximumWait: .seconds(1)), ringCapacity: 64)
        for id in 1...3 { _ = batch.append(descriptor(UInt64(id)), now: 10) }
        XCTAssertTrue(batch.remove(commandID: 2))
        XCTAssertFalse(batch.remove(commandID: 2), "already taken back")
        XCTAssertFalse(batch.remove(commandID: 9), "never gathered")
        XCTAssertEqual((0..<batch.count).map { batch[$0].commandID }, [1, 3])
        XCTAssertTrue(batch.remove(commandID: 3))
        XCTAssertTrue(batch.remove(commandID: 1))
        XCTAssertTrue(batch.isEmpty)
        XCTAssertNil(batch.dueTime)
    }

    func testImmediatePolicyPostsEveryRequest() {
        var batch = BatchAccumulator(policy: BatchingPolicy(maximumBatchSize: 8, maximumWait: .zero), ringCapacity: 64)
        XCTAssertTrue(batch.append(descriptor(1), now: 5))
        XCTAssertTrue(batch.isDue(now: 5))
    }

    func testPostIsAllOrNothingAndAFullRingKeepsTheBatch() throws {
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 4)
        var producer = try SPSCProducer<Descriptor>(region: region)
        var consumer = try SPSCConsumer<Descriptor>(region: region)
        var batch = BatchAccumulator(policy: BatchingPolicy(maximumBatchSize: 3, maximumWait: .seconds(1)), ringCapacity: 4)
        for id in 1...3 as ClosedRange<UInt64> { _ = batch.append(descriptor(id), now: 0) }
        XCTAssertEqual(batch.post(to: &producer), 3)
        XCTAssertTrue(batch.isEmpty)
        for id in 4...5 as ClosedRange<UInt64> { _ = batch.append(descriptor(id), now: 0) }
        XCTAssertEqual(batch.post(to: &producer), 0, "one slot free, two gathered: nothing posted")
        XCTAssertEqual(batch.count, 2, "the batch stays gathered")
        XCTAssertEqual(producer.approximateCount, 3)
        XCTAssertEqual(try consumer.dequeue()?.commandID, 1)
        XCTAssertEqual(batch.post(to: &producer), 2)
        XCTAssertEqual(try (0..<4).compactMap { _ in try consumer.dequeue()?.commandID }, [2, 3, 4, 5])
    }

    func testBatchHoldsThePolicySizeCappedAtTheRingCapacity() {
        var batch = BatchAccumulator(policy: BatchingPolicy(maximumBatchSize: 3, maximumWait: .seconds(1)), ringCapacity: 64)
        for id in 1...3 as ClosedRange<UInt64> { _ = batch.append(descriptor(id), now: 0) }
        XCTAssertTrue(batch.isFull, "a gathered batch never grows past the policy's size")
        // A batch larger than the ring could never be posted all at once.
        var capped = BatchAccumulator(policy: BatchingPolicy(maximumBatchSize: 8, maximumWait: .seconds(1)), ringCapacity: 2)
        XCTAssertEqual(capped.limit, 2)
        XCTAssertFalse(capped.append(descriptor(1), now: 0))
        XCTAssertTrue(capped.append(descriptor(2), now: 0), "full at the ring's capacity: post now")
        XCTAssertTrue(capped.isFull)
    }

    func testRemoveLastTakesBackTheNewestRequest() {
        var batch = BatchAccumulator(policy: .immediate, ringCapacity: 64)
        XCTAssertTrue(batch.append(descriptor(1), now: 7))
        batch.removeLast()
        XCTAssertTrue(batch.isEmpty)
        XCTAssertNil(batch.dueTime)
    }
}
