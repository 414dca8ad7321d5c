import DaemonTestSupport
import FabricConsumer
import FabricDiagnostics
import FabricProducer
import FabricSystem
import Foundation
import Logging
import MetricsTestKit
import Synchronization
import SystemPackage
import XCTest

/// Records the size of every batch it is handed; echoes.
final class BatchRecorder: CommandHandler {
    let requiredOutputCapacity: UInt32 = 0
    let sizes = LockedBox<[Int]>([])
    func handle(_ batch: borrowing CommandBatch) throws {
        sizes.withLock { $0.append(batch.count) }
        for i in 0..<batch.count { batch.complete(i, outputSize: 0) }
    }
}

/// Fails odd commands with a code, throws when asked to by flags, leaves
/// commands with flags 2 unreported.
final class PickyHandler: CommandHandler {
    struct Refusal: Error {}
    let requiredOutputCapacity: UInt32 = 0
    func handle(_ batch: borrowing CommandBatch) throws {
        for i in 0..<batch.count {
            switch batch.descriptor(i).flags {
            case 1: batch.fail(i, code: 77)
            case 2: continue
            case 3: throw Refusal()
            default: batch.complete(i, outputSize: 0)
            }
        }
    }
}

/// The controller API against an in-process daemon (real sockets, memfds
/// and eventfds; the failure cases with real processes are in SessionFailureTests).
final class ControllerAPITests: XCTestCase {
    func testAsyncSubmitReturnsOutputAndStageTimings() async throws {
        let socket = temporarySocketPath(self)
        _ = try startDaemon(self, socket: socket, log: EventLog())
        let client = try FabricClient.connect(to: FilePath(socket))
        defer { client.close() }
        let full = client.availableBuffers
        let result = try await client.submit(modelID: DiagnosticModel.checksum.rawValue, outputCapacity: 8, timeout: .seconds(5))
        { input in
            input.copyBytes(from: Array("fabric".utf8))
            return 6
        }
        XCTAssertTrue(result.succeeded)
        let expected = Array("fabric".utf8).withUnsafeBytes { DiagnosticModel.fnv1a($0) }
        XCTAssertEqual(result.output.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }, expected.littleEndian)
        let t = result.timings
        XCTAssertTrue(
            t.submitted <= t.pickedUp && t.pickedUp <= t.handlerStarted && t.handlerStarted <= t.handlerFinished
                && t.handlerFinished <= t.seen, "\(t)")
        XCTAssertEqual(client.availableBuffers, full, "slots go back to the pool")
    }

    /// `inputCapacity`/`outputCapacity` larger than a slot take runs
    /// (issue 16); a request that waits for a run is served in turn when
    /// one frees; one the session can never hold is refused at once.
    func testAsyncSubmitTakesRunsOfSlotsForLargeBuffers() async throws {
        let socket = temporarySocketPath(self)
        _ = try startDaemon(self, socket: socket, log: EventLog())  // 64 slots of 4 KiB
        let client = try FabricClient.connect(to: FilePath(socket))
        defer { client.close() }
        let full = client.availableBuffers
        let bytes = 100_000  // 25 slots
        let pattern = (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        func echo(delay: UInt16) async throws -> CommandResult {
            try await client.submit(
                modelID: DiagnosticModel.delay.rawValue, inputCapacity: bytes, outputCapacity: bytes, flags: delay,
                timeout: .seconds(10)
            ) { input in
                XCTAssertGreaterThanOrEqual(input.count, bytes)
                input.copyBytes(from: pattern)
                return bytes
            }
        }
        // Two need 100 slots of 64: the second waits for the first's runs.
        async let first = echo(delay: 100)
        async let second = echo(delay: 0)
        let results = try await [first, second]
        for result in results {
            XCTAssertTrue(result.succeeded)
            XCTAssertEqual(result.output, pattern, "the whole run came back")
        }
        XCTAssertEqual(client.availableBuffers, full, "runs go back to the pool")
        do {
            _ = try await client.submit(modelID: 1, inputCapacity: 40 * 4096, outputCapacity: 30 * 4096, timeout: .seconds(1)) {
                _ in 0
            }
            XCTFail("70 slots of a 64-slot session")
        } catch {
            guard case .invalidRequest = error else { return XCTFail("\(error)") }
        }
    }

    /// Buffer waiters are served strictly in order: a small request behind
    /// a large one waits even though its slots are free, and is served the
    /// moment the large one stops waiting (timed out or cancelled), not when
    /// slots next come back.
    func testSmallRequestsWaitBehindALargeOneUntilItLeaves() async throws {
        let socket = temporarySocketPath(self)
        _ = try startDaemon(self, socket: socket, log: EventLog())  // 64 slots of 4 KiB
        let client = try FabricClient.connect(to: FilePath(socket))
        defer { client.close() }
        let slot = 4096, delay = DiagnosticModel.delay.rawValue
        let started = MonotonicClock.now()
        // 60 of 64 slots, held for 1.5 s by the delay model.
        let holder = Task {
            try await client.submit(
                modelID: delay, inputCapacity: 30 * slot, outputCapacity: 30 * slot, flags: 1500, timeout: .seconds(10)
            ) { _ in 1 }
        }
        while client.availableBuffers > 4 { try await Task.sleep(for: .milliseconds(5)) }
        for leaves in ["timeout", "cancel"] {
            let large = Task {
                try await client.submit(
                    modelID: delay, inputCapacity: 20 * slot, outputCapacity: 20 * slot,
                    timeout: leaves == "timeout" ? .milliseconds(150) : .seconds(10)
                ) { _ in 1 }
            }
            try await Task.sleep(for: .milliseconds(20))
            let small = Task { () throws -> UInt64 in
                // The echo model: its own lane, not queued behind the delay model's command.
                let echo = DiagnosticModel.echo.rawValue
                _ = try await client.submit(modelID: echo, outputCapacity: 8, timeout: .seconds(10)) { _ in 1 }
                return MonotonicClock.now()
            }
            try await Task.sleep(for: .milliseconds(50))
            XCTAssertEqual(client.availableBuffers, 4, "\(leaves): the small request has not overtaken the large one")
            if leaves == "cancel" { large.cancel() }
            do {
                _ = try await large.value
                XCTFail("\(leaves): the large request cannot get 40 slots")
            } catch {
                XCTAssertEqual(error as? SubmitError, leaves == "timeout" ? .timedOut : .cancelled)
            }
            let served = try await small.value
            XCTAssertLessThan(served - started, 1_400_000_000, "\(leaves): served before the holder's slots came back")
        }
        let held = try await holder.value
        XCTAssertTrue(held.succeeded)
        XCTAssertEqual(client.availableBuffers, 64)
    }

    func testDeadlineAndCancellationReclaimSlotsWhenTheCompletionArrives() async throws {
        let socket = temporarySocketPath(self)
        _ = try startDaemon(self, socket: socket, log: EventLog())
        let client = try FabricClient.connect(to: FilePath(socket))
        defer { client.close() }
        let full = client.availableBuffers
        let delay = DiagnosticModel.delay.rawValue
        do {
            _ = try await client.submit(modelID: delay, outputCapacity: 8, flags: 300, timeout: .milliseconds(50)) { _ in 1 }
            XCTFail("should time out")
        } catch { XCTAssertEqual(error, .timedOut) }

        let task = Task {
            try await client.submit(modelID: delay, outputCapacity: 8, flags: 300, timeout: .seconds(10)) { _ in 1 }
        }
        try await Task.sleep(for: .milliseconds(50))
        let cancelledAt = MonotonicClock.now()
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("should be cancelled")
        } catch { XCTAssertEqual(error as? SubmitError, .cancelled) }
        XCTAssertLessThan(MonotonicClock.now() - cancelledAt, 100_000_000, "cancellation resumes at once")
        XCTAssertLessThan(client.availableBuffers, full, "the abandoned commands still own their slots")
        // Both delayed commands complete within ~0.6 s; their slots come back.
        let end = Date().addingTimeInterval(5)
        while client.availableBuffers < full && Date() < end { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(client.availableBuffers, full)
    }

    func testDynamicBatchingGathersUpToNOrUntilMaxWait() async throws {
        let socket = temporarySocketPath(self), recorder = BatchRecorder()
        _ = try startDaemon(self, socket: socket, log: EventLog(), extra: [50: recorder])
        var options = ControllerOptions()
        options.batching = BatchingPolicy(maximumBatchSize: 4, maximumWait: .milliseconds(200))
        let client = try FabricClient.connect(to: FilePath(socket), options: options)
        defer { client.close() }
        // Four concurrent requests fill a batch: one handler call of 4, long before the max wait.
        let start = MonotonicClock.now()
        try await withThrowingTaskGroup(of: CommandResult.self) { group in
            for _ in 0..<4 {
                group.addTask { try await client.submit(modelID: 50, outputCapacity: 0, timeout: .seconds(5)) { _ in 0 } }
            }
            for try await result in group { XCTAssertTrue(result.succeeded) }
        }
        XCTAssertLessThan(MonotonicClock.now() - start, 150_000_000)
        XCTAssertEqual(recorder.sizes.withLock { $0 }, [4])
        // A lone request waits for company until the max wait, then goes alone.
        let lone = MonotonicClock.now()
        _ = try await client.submit(modelID: 50, outputCapacity: 0, timeout: .seconds(5)) { _ in 0 }
        let waited = Double(MonotonicClock.now() - lone) / 1e6
        XCTAssertGreaterThanOrEqual(waited, 190, "posted before the max wait")
        XCTAssertLessThan(waited, 1000)
        XCTAssertEqual(recorder.sizes.withLock { $0 }, [4, 1])
    }

    func testMicroBatchIsOneHandlerCallAndPollingPathBackpressure() throws {
        let socket = temporarySocketPath(self), recorder = BatchRecorder()
        _ = try startDaemon(self, socket: socket, log: EventLog(), extra: [50: recorder])
        var session = try ControllerSession.connect(to: FilePath(socket))
        var requests: [CommandRequest] = []
        for _ in 0..<8 {
            let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
            requests.append(CommandRequest(modelID: 50, input: input, inputSize: 0, output: output))
        }
        let first = try session.submit(batch: requests)
        for i in 0..<8 {
            let done = try session.waitForCompletion(timeout: .seconds(5))
            XCTAssertEqual(done.commandID, first + UInt64(i), "completions in submission order")
            XCTAssertEqual(done.input, requests[i].input)
        }
        XCTAssertEqual(recorder.sizes.withLock { $0 }, [8])
        XCTAssertThrowsError(try session.submit(batch: requests + [requests[0]])) {
            guard case .invalidRequest = $0 as? SubmitError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(
            try session.submit(CommandRequest(modelID: 50, input: requests[0].input, inputSize: 5000, output: requests[0].output))
        ) {
            guard case .invalidRequest = $0 as? SubmitError else { return XCTFail("\($0)") }
        }
        // The pool runs dry: backpressure, not an allocation.
        while session.buffers.acquire() != nil {}
        XCTAssertEqual(session.buffers.availableCount, 0)
        XCTAssertNil(session.buffers.acquire())
        XCTAssertNil(try session.pollCompletion())
        XCTAssertThrowsError(try session.waitForCompletion(timeout: .milliseconds(30))) {
            XCTAssertEqual($0 as? SubmitError, .timedOut)
        }
    }

    func testPollingPathGathersBatchesUntilFullOrDue() throws {
        let socket = temporarySocketPath(self), recorder = BatchRecorder()
        _ = try startDaemon(self, socket: socket, log: EventLog(), extra: [50: recorder])
        var options = ControllerOptions()
        options.batching = BatchingPolicy(maximumBatchSize: 3, maximumWait: .milliseconds(100))
        var session = try ControllerSession.connect(to: FilePath(socket), options: options)
        let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
        let request = CommandRequest(modelID: 50, input: input, inputSize: 0, output: output)
        // Three staged requests make a full batch: posted by the third stage().
        for _ in 0..<3 { try session.stage(request) }
        XCTAssertEqual(session.gatheredCount, 0)
        for _ in 0..<3 { _ = try session.waitForCompletion(timeout: .seconds(5)) }
        // Two staged requests wait until the first has waited 100 ms.
        let start = MonotonicClock.now()
        try session.stage(request)
        try session.stage(request)
        XCTAssertEqual(try session.flushIfDue(), 0, "not due yet")
        while try session.flushIfDue() == 0 { usleep(1_000) }
        XCTAssertGreaterThanOrEqual(MonotonicClock.now() - start, 100_000_000)
        for _ in 0..<2 { _ = try session.waitForCompletion(timeout: .seconds(5)) }
        XCTAssertEqual(recorder.sizes.withLock { $0 }, [3, 2])
        XCTAssertEqual(session.inFlightCount, 0)
    }

    /// Issue 13, item 10: a staged request that finds the ring full is
    /// either accepted (it has an id and is posted exactly once, later) or
    /// refused (no id, nothing registered); never an error for a command that
    /// will still run. Immediate policies refuse, as `submit` does.
    func testStagingOnAFullRingNeverLosesOrDuplicatesACommand() throws {
        let socket = temporarySocketPath(self)
        let daemon = try startDaemon(self, socket: socket, log: EventLog()) {
            $0.session = SessionLimits(submissionCapacity: 4, completionCapacity: 4, slotSize: 64, slotCount: 64)
        }
        for policy in [BatchingPolicy(maximumBatchSize: 2, maximumWait: .milliseconds(1)), .immediate] {
            var options = ControllerOptions()
            options.batching = policy
            var session = try ControllerSession.connect(to: FilePath(socket), options: options)
            let before = daemon.statistics.commandsReceived
            var accepted: Set<UInt64> = []
            var refused = 0
            for _ in 0..<24 {
                let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
                let slow = CommandRequest(
                    modelID: DiagnosticModel.delay.rawValue, input: input, inputSize: 0, output: output, flags: 20)
                do {
                    accepted.insert(try session.stage(slow))
                } catch {
                    XCTAssertEqual(error, .queueFull)
                    session.buffers.release(input)
                    session.buffers.release(output)
                    refused += 1
                }
            }
            XCTAssertGreaterThan(refused, 0, "\(policy): the ring never filled")
            XCTAssertEqual(session.inFlightCount, accepted.count, "\(policy): only accepted requests are registered")
            var completed: Set<UInt64> = []
            while completed.count < accepted.count {
                let done = try session.waitForCompletion(timeout: .seconds(10))
                XCTAssertTrue(completed.insert(done.commandID).inserted, "\(policy): command \(done.commandID) completed twice")
                session.buffers.release(done.input)
                session.buffers.release(done.output)
            }
            XCTAssertEqual(completed, accepted, "\(policy)")
            XCTAssertEqual(daemon.statistics.commandsReceived - before, UInt64(accepted.count), "\(policy): posted once each")
        }
    }

    func testFullSubmissionRingIsQueueFull() throws {
        let socket = temporarySocketPath(self)
        _ = try startDaemon(self, socket: socket, log: EventLog()) {
            $0.session = SessionLimits(submissionCapacity: 4, completionCapacity: 4, slotSize: 64, slotCount: 64)
        }
        var session = try ControllerSession.connect(to: FilePath(socket))
        let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
        // Slow commands: the daemon holds at most 4 (completion ring), the ring 4 more.
        let slow = CommandRequest(
            modelID: DiagnosticModel.delay.rawValue, input: input, inputSize: 0, output: output, flags: 100)
        var accepted = 0
        var sawFull = false
        for _ in 0..<20 {
            do {
                try session.submit(slow)
                accepted += 1
            } catch {
                XCTAssertEqual(error, .queueFull)
                sawFull = true
                break
            }
        }
        XCTAssertTrue(sawFull)
        XCTAssertLessThanOrEqual(accepted, 8)
        // At 8 the ring (4) and the in-flight table (4 + 4) are full at once:
        // which one refuses first depends on how many the daemon took yet.
        XCTAssertLessThanOrEqual(session.statistics.ringFull, 1)
    }

    func testHandlerFailuresBecomeErrorCompletions() throws {
        let socket = temporarySocketPath(self)
        let logs = RecordingLogHandler()
        _ = try startDaemon(self, socket: socket, log: EventLog(), extra: [60: PickyHandler()]) {
            $0.logger = Logger(label: "test") { _ in logs }
        }
        var session = try ControllerSession.connect(to: FilePath(socket))
        let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
        var results: [CommandCompletion] = []
        for flags: UInt16 in [0, 1, 2, 3] {
            try session.submit(CommandRequest(modelID: 60, input: input, inputSize: 0, output: output, flags: flags))
            results.append(try session.waitForCompletion(timeout: .seconds(5)))
        }
        XCTAssertEqual(results.map(\.status), [.succeeded, .handlerFailed, .handlerFailed, .handlerFailed])
        // A success's detail is the size of the batch it ran in.
        XCTAssertEqual(results.map(\.detail), [1, 77, HandlerFailure.unreported.rawValue, HandlerFailure.threw.rawValue])
        XCTAssertEqual(session.statistics.failed, 3)
        // Issue 13, item 14: the controller decodes why; the daemon logs what was thrown.
        XCTAssertEqual(results.map(\.failure), [nil, .handlerCode(77), .handler(.unreported), .handler(.threw)])
        let thrown = logs.entries.filter { $0.message == "handler threw" }
        XCTAssertEqual(thrown.count, 1, "\(logs.entries)")
        XCTAssertEqual(thrown.first?.metadata["model"], "60")
        XCTAssertEqual(thrown.first?.metadata["error"], "Refusal()")
    }

    /// Issue 13, item 12: a command refused before its handler ran carries no
    /// handler stamps; its dispatch, handler and completion stages are not
    /// recorded (they used to be recorded as the whole uptime).
    func testFailedCommandsRecordOnlyTheStagesTheyWentThrough() throws {
        let socket = temporarySocketPath(self)
        _ = try startDaemon(self, socket: socket, log: EventLog())
        var session = try ControllerSession.connect(to: FilePath(socket))
        let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
        try session.submit(CommandRequest(modelID: 999, input: input, inputSize: 8, output: output))
        let done = try session.waitForCompletion(timeout: .seconds(5))
        XCTAssertEqual(done.failure, .unknownModel)
        XCTAssertNil(done.timings.duration(of: .handler))
        XCTAssertNil(done.timings.duration(of: .completion))
        XCTAssertNotNil(done.timings.duration(of: .queue))
        let latency = session.latency
        XCTAssertEqual(latency.summary(.queue).count, 1)
        XCTAssertEqual(latency.summary(.total).count, 1)
        XCTAssertEqual(latency.summary(.dispatch).count, 0)
        XCTAssertEqual(latency.summary(.handler).count, 0)
        XCTAssertEqual(latency.summary(.completion).count, 0)
        XCTAssertLessThan(latency.summary(.total).max, 10_000_000_000, "no uptime-sized sample")
    }

    func testLatencySnapshotAndMetricsCountEveryCommand() throws {
        let socket = temporarySocketPath(self)
        let metrics = TestMetrics()
        let daemonMetrics = TestMetrics()
        let daemon = FabricDaemon(
            configuration: {
                var c = DaemonConfiguration(socketPath: FilePath(socket))
                c.idle = .sleep
                return c
            }(), handlers: DiagnosticModel.allHandlers, metricsFactory: daemonMetrics)
        try daemon.start()
        defer { daemon.stop() }
        var options = ControllerOptions()
        options.metricsFactory = metrics
        options.wait = .futex
        var session = try ControllerSession.connect(to: FilePath(socket), options: options)
        let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
        for _ in 0..<500 {
            try session.submit(
                CommandRequest(modelID: DiagnosticModel.empty.rawValue, input: input, inputSize: 0, output: output))
            _ = try session.waitForCompletion(timeout: .seconds(5))
        }
        let latency = session.latency
        for stage in Stage.allCases {
            let s = latency.summary(stage)
            XCTAssertEqual(s.count, 500, "\(stage)")
            XCTAssertTrue(s.p50 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max, "\(stage): \(s)")
        }
        XCTAssertGreaterThan(latency.summary(.total).p50, 0)
        session.publishMetrics()
        XCTAssertEqual(try metrics.expectCounter("fabricqueue_controller_submitted_total").totalValue, 500)
        XCTAssertEqual(try metrics.expectCounter("fabricqueue_controller_completed_total").totalValue, 500)
        XCTAssertGreaterThan(session.statistics.sleeps, 0, "the futex wait slept: the daemon rang")
        XCTAssertGreaterThan(daemon.statistics.doorbellRings, 0)
        daemon.stop()
        XCTAssertEqual(try daemonMetrics.expectCounter("fabricqueue_daemon_commands_received_total").totalValue, 500)
        XCTAssertGreaterThan(try daemonMetrics.expectCounter("fabricqueue_daemon_sleeps_total").totalValue, 0)
    }
}
