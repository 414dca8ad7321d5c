import DaemonTestSupport
import FabricProducer
import FabricTestSupport
import SystemPackage
import XCTest

@testable import FabricConsumer

/// The daemon's telemetry: the bucket arithmetic the poll thread runs, the
/// quantiles tools show, and the counts an in-process daemon reports.
final class TelemetryTests: XCTestCase {
    func testEveryBucketBoundaryFallsInItsBucket() {
        for scale in [HistogramScale.nanoseconds, .batchSize] {
            var previous: UInt64 = 0
            for bucket in 0..<scale.bucketCount - 1 {
                let top = scale.upperBound(of: bucket) ?? 0
                XCTAssertGreaterThan(top, previous, "\(scale) \(bucket): bounds ascend")
                XCTAssertEqual(scale.bucket(of: top), bucket, "\(scale): \(top) is in bucket \(bucket)")
                XCTAssertEqual(scale.bucket(of: top + 1), bucket + 1, "\(scale): \(top + 1) is past it")
                XCTAssertEqual(scale.lowerBound(of: bucket + 1), top)
                if scale == .nanoseconds && top > 1_000 {
                    XCTAssertLessThanOrEqual(Double(top - previous) / Double(previous), 0.25 + 1e-9, "at most 25 % wide")
                }
                previous = top
            }
            XCTAssertNil(scale.upperBound(of: scale.bucketCount - 1))
            XCTAssertEqual(scale.bucket(of: .max), scale.bucketCount - 1, "overflow, never out of range")
        }
        XCTAssertEqual(HistogramScale.nanoseconds.upperBound(of: 96), 16_777_216_000, "2^24 µs, the last bound")
        XCTAssertEqual(HistogramScale.batchSize.upperBound(of: 23), 4096, "the last bound")
        XCTAssertEqual(HistogramScale.batchSize.bucket(of: 4096), 23)
        XCTAssertEqual(HistogramScale.batchSize.bucket(of: 4097), 24, "overflow")
        XCTAssertEqual(HistogramScale.nanoseconds.bucket(of: 0), 0)
        XCTAssertEqual(HistogramScale.batchSize.upperBound(of: 0), 1)
    }

    func testQuantilesAreWithinABucketOfTheExactValues() {
        let histogram = TelemetryHistogram(.nanoseconds)
        var generator = SystemRandomNumberGenerator()
        var values: [UInt64] = []
        for _ in 0..<20_000 {
            // Log-uniform from 100 ns to 100 ms, like latencies.
            let value = UInt64(pow(10, Double.random(in: 2...8, using: &generator)))
            values.append(value)
            histogram.record(value)
        }
        values.sort()
        let distribution = histogram.snapshot()
        XCTAssertEqual(distribution.count, 20_000)
        XCTAssertEqual(distribution.sum, values.reduce(0, &+))
        for q in [0.5, 0.9, 0.99, 0.999] {
            let exact = Double(values[Int((q * Double(values.count)).rounded(.up)) - 1])
            let estimate = Double(distribution.quantile(q) ?? 0)
            XCTAssertEqual(estimate, exact, accuracy: max(exact * 0.25, 1_000), "p\(q * 100)")
        }
        XCTAssertEqual(distribution.count(atMost: 1_000), UInt64(values.filter { $0 <= 1_000 }.count))
        XCTAssertEqual(distribution.count(atMost: 1_024_000), UInt64(values.filter { $0 <= 1_024_000 }.count))
        XCTAssertNil(TelemetryHistogram(.batchSize).snapshot().quantile(0.5))
    }

    func testAnInProcessDaemonCountsEachModelAndSession() throws {
        let socket = temporarySocketPath(self)
        let daemon = try startDaemon(self, socket: socket, log: EventLog(), extra: [10: AlwaysFails()])
        var session = try ControllerSession.connect(to: FilePath(socket))
        func submit(_ model: UInt32) throws {
            let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
            try session.submit(CommandRequest(modelID: model, input: input, inputSize: 8, output: output))
            let completion = try session.waitForCompletion(timeout: .seconds(10))
            session.buffers.release(completion.input)
            session.buffers.release(completion.output)
        }
        for _ in 0..<30 { try submit(1) }
        for _ in 0..<5 { try submit(10) }
        for _ in 0..<3 { try submit(99) }
        // Counted before each completion is posted; the snapshot is read
        // while the poll thread runs, so wait (bounded) for the last one.
        var telemetry = daemon.telemetry()
        let end = Date().addingTimeInterval(5)
        while telemetry.totals.commandsFailed < 8 && Date() < end {
            usleep(1_000)
            telemetry = daemon.telemetry()
        }
        let echo = try XCTUnwrap(telemetry.models.first { $0.id == 1 })
        let failing = try XCTUnwrap(telemetry.models.first { $0.id == 10 })
        XCTAssertEqual(echo.completions, DaemonTelemetry.StatusCounts(succeeded: 30))
        XCTAssertEqual(failing.completions, DaemonTelemetry.StatusCounts(handlerFailed: 5))
        XCTAssertEqual(echo.handler.count, 30)
        XCTAssertEqual(failing.handler.count, 5, "a failed command ran: it has a handler time")
        XCTAssertEqual(telemetry.totals.invalidDescriptors, 3, "an unknown model id is an invalid descriptor")
        XCTAssertFalse(telemetry.models.contains { $0.id == 99 })
        XCTAssertEqual(telemetry.totals.commandsFailed, 8, "five failures and three unknown models")
        let mine = try XCTUnwrap(telemetry.sessions.first)
        XCTAssertEqual(telemetry.sessions.count, 1)
        XCTAssertEqual(mine.commandsReceived, 38)
        XCTAssertEqual(mine.commandsSucceeded, 30)
        XCTAssertEqual(mine.commandsFailed, 8)
        XCTAssertEqual(mine.inFlight, 0)
        XCTAssertEqual(mine.pid, getpid())
        XCTAssertGreaterThan(telemetry.uptimeSeconds, 0)
        // The JSON a query answers round-trips.
        XCTAssertEqual(try DaemonTelemetry.decode(DaemonTelemetry.encode(telemetry)), telemetry)
        // Discovery: over the socket, and for an in-process session what the daemon said at connect.
        XCTAssertEqual(try session.models(), daemon.models)
        XCTAssertEqual(daemon.models.first { $0.id == 10 }?.name, "AlwaysFails")
        XCTAssertEqual(daemon.models.first { $0.id == 1 }?.name, "echo")
        // And the same over the control socket, from this process.
        let fetched = try DaemonTelemetry.fetch(from: FilePath(socket))
        XCTAssertEqual(fetched.models.first { $0.id == 1 }?.completions.succeeded, 30)
        XCTAssertEqual(fetched.sessions.map(\.id), telemetry.sessions.map(\.id))
        XCTAssertEqual(try ControllerSession.connect(to: daemon.connectInProcess()).models(), daemon.models)
    }
}

/// Fails every command with code 7.
private final class AlwaysFails: CommandHandler {
    let requiredOutputCapacity: UInt32 = 0
    func handle(_ batch: borrowing CommandBatch) throws {
        for i in 0..<batch.count { batch.fail(i, code: 7) }
    }
}
