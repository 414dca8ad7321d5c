import FabricDiagnostics
import XCTest

@testable import FabricConsumer

/// `fabricq serve --model` parsing and the batcher's size rule.
final class ModelSpecificationTests: XCTestCase {
    func testDurationsReadAsOperatorsWriteThem() {
        XCTAssertEqual(parseDuration("500us"), .microseconds(500))
        XCTAssertEqual(parseDuration("20ms"), .milliseconds(20))
        XCTAssertEqual(parseDuration("5s"), .seconds(5))
        XCTAssertEqual(parseDuration("1.5ms"), .microseconds(1500))
        XCTAssertEqual(parseDuration("250ns"), .nanoseconds(250))
        for bad in ["", "ms", "5", "-1ms", "1e3ms", "fast", "5 ms", "nanms"] { XCTAssertNil(parseDuration(bad), bad) }
    }

    func testKindsAndOptions() throws {
        let spec = try ModelSpecification.parse(
            "3:delay=5ms,instances=4,max-batch=8,max-queue-delay=500us,preferred=4/8,queue=64,priorities=3")
        XCTAssertEqual(spec.id, 3)
        XCTAssertEqual(spec.kind, .delay(.milliseconds(5)))
        XCTAssertEqual(spec.configuration.instances, 4)
        XCTAssertEqual(spec.configuration.batching.maximumBatchSize, 8)
        XCTAssertEqual(spec.configuration.batching.preferredBatchSizes, [4, 8])
        XCTAssertEqual(spec.configuration.batching.maximumQueueDelay, .microseconds(500))
        XCTAssertEqual(spec.configuration.queueCapacity, 64)
        XCTAssertEqual(spec.configuration.priorityLevels, 3)
        XCTAssertEqual(try ModelSpecification.parse("2:echo").kind, .echo)
        XCTAssertEqual(
            try ModelSpecification.parse("1:spin=1ms,execution=poll-thread,cpu=1").configuration.execution, .pollThread)
        XCTAssertEqual(
            try ModelSpecification.parse("9:checksum").expectedOutput(for: []),
            Array(withUnsafeBytes(of: UInt64(0xcbf2_9ce4_8422_2325).littleEndian) { Array($0) }))
    }

    func testMistakesAreExplained() {
        for (text, says) in [
            ("echo", "expected ID:KIND"), ("x:echo", "expected ID:KIND"), ("1:", "no kind"),
            ("1:teleport", "unknown kind"), ("1:delay", "needs a duration"), ("1:echo,instances=0", "instances must be"),
            ("1:echo,instances", "needs a value"), ("1:echo,colour=red", "unknown option"),
            ("1:echo,preferred=4/x", "preferred takes sizes"), ("1:echo,execution=gpu", "threads or poll-thread"),
        ] {
            XCTAssertThrowsError(try ModelSpecification.parse(text), text) { error in
                XCTAssertTrue("\(error)".contains(says), "\(text): \(error)")
            }
        }
    }

    func testBatcherPrefersFullThenPreferredThenWaitsForTheDelay() {
        let batching = DynamicBatching(maximumBatchSize: 8, preferredBatchSizes: [4, 6], maximumQueueDelay: .milliseconds(1))
        XCTAssertEqual(batching.batchSize(queued: 0, oldestWaited: 10_000_000), 0)
        XCTAssertEqual(batching.batchSize(queued: 12, oldestWaited: 0), 8)
        XCTAssertEqual(batching.batchSize(queued: 7, oldestWaited: 0), 6)
        XCTAssertEqual(batching.batchSize(queued: 5, oldestWaited: 0), 4)
        XCTAssertEqual(batching.batchSize(queued: 3, oldestWaited: 999_999), 0, "wait for company")
        XCTAssertEqual(batching.batchSize(queued: 3, oldestWaited: 1_000_000), 3, "the delay is up")
        XCTAssertEqual(DynamicBatching().batchSize(queued: 3, oldestWaited: 0), 3, "no delay: send what is there")
        XCTAssertEqual(DynamicBatching(maximumBatchSize: 1000, preferredBatchSizes: [0, 300]).preferredBatchSizes, [1, 256])
    }

    /// Values set after `init` are clamped too: a zero here would trap or stall the lane.
    func testConfigurationsClampValuesSetAfterInit() {
        var configuration = ModelConfiguration()
        configuration.priorityLevels = 0
        configuration.queueCapacity = 0
        configuration.instances = 1000
        XCTAssertEqual(configuration.priorityLevels, 1)
        XCTAssertEqual(configuration.queueCapacity, 1)
        XCTAssertEqual(configuration.instances, 64)
        var batching = DynamicBatching(maximumBatchSize: 8, preferredBatchSizes: [4, 8])
        batching.maximumBatchSize = 0
        XCTAssertEqual(batching.maximumBatchSize, 1)
        XCTAssertEqual(batching.preferredBatchSizes, [1])
        batching.maximumBatchSize = 4
        batching.preferredBatchSizes = [0, 9, 2, 2]
        XCTAssertEqual(batching.preferredBatchSizes, [1, 2, 4])
        batching.maximumQueueDelay = .milliseconds(-5)
        XCTAssertEqual(batching.maximumQueueDelay, .zero)
        XCTAssertEqual(batching.batchSize(queued: 1, oldestWaited: 0), 1)
    }
}
