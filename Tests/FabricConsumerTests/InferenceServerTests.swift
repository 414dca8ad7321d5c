import DaemonTestSupport
import FabricConsumer
import FabricDiagnostics
import FabricProducer
import FabricTestSupport
import Glibc
import SystemPackage
import XCTest

/// The daemon as an inference server (issue 14): per-model lanes, instances,
/// the batcher across sessions, deadlines, priorities, cancellation, and
/// handlers that complete late, twice or never. The daemon runs in a child
/// process (`fabricq-test-helper serve-models`); the controllers are this
/// process or further children.
final class InferenceServerTests: XCTestCase {
    /// Starts a daemon process serving `specifications` and waits until it listens.
    private func serve(_ specifications: [String]) throws -> (daemon: ChildProcess, socket: String) {
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess("fabricq-test-helper", ["serve-models", socket] + specifications)
        addTeardownBlock { daemon.terminate() }
        XCTAssertTrue(daemon.waitForOutput("listening", timeout: 30), daemon.standardError)
        return (daemon, socket)
    }

    /// Stops the daemon with SIGTERM and returns its statistics line.
    private func stopAndReadStats(_ daemon: ChildProcess, file: StaticString = #filePath, line: UInt = #line) -> [String: Int] {
        let status = daemon.stop(timeout: 10)
        XCTAssertEqual(status.map(ChildProcess.exitCode), 0, daemon.standardError, file: file, line: line)
        var stats: [String: Int] = [:]
        let text = daemon.standardOutput.split(separator: "\n").first { $0.hasPrefix("stats ") } ?? ""
        for field in text.split(separator: " ").dropFirst() {
            let parts = field.split(separator: "=")
            if parts.count == 2, let value = Int(parts[1]) { stats[String(parts[0])] = value }
        }
        return stats
    }

    /// Submits one command with `bytes` as input; returns its id.
    @discardableResult
    private func submit(
        _ session: inout ControllerSession, model: UInt32, bytes: [UInt8] = [1, 2, 3, 4], priority: UInt8 = 0,
        deadline: Duration? = nil
    ) throws -> UInt64 {
        let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
        session.buffers.buffer(input).copyBytes(from: bytes)
        return try session.submit(
            CommandRequest(
                modelID: model, input: input, inputSize: bytes.count, output: output, priority: priority, deadline: deadline))
    }

    /// Waits for `count` completions (releasing their slots), in arrival order.
    private func collect(
        _ session: inout ControllerSession, _ count: Int, timeout: Duration = .seconds(10)
    ) throws -> [CommandCompletion] {
        var done: [CommandCompletion] = []
        for _ in 0..<count {
            let completion = try session.waitForCompletion(timeout: timeout)
            session.buffers.release(completion.input)
            session.buffers.release(completion.output)
            done.append(completion)
        }
        return done
    }

    func testSlowModelNeverDelaysAFastOne() throws {
        let (daemon, socket) = try serve(["1:delay=300ms", "2:echo"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        let slow = try submit(&session, model: 1)
        usleep(20_000)
        let fast = try submit(&session, model: 2, bytes: [9, 8, 7])
        let done = try collect(&session, 2)
        XCTAssertEqual(done.map(\.commandID), [fast, slow], "the echo completes while the delay model still runs")
        XCTAssertTrue(done.allSatisfy(\.succeeded))
        XCTAssertLessThan(done[0].timings.duration(of: .total) ?? .max, 250_000_000)
        _ = stopAndReadStats(daemon)
    }

    func testInstancesRunBatchesOfOneModelAtOnce() throws {
        let (daemon, socket) = try serve(["3:delay=200ms,instances=4,max-batch=1"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        for k in 0..<4 { try submit(&session, model: 3, bytes: [UInt8(k)]) }
        let done = try collect(&session, 4)
        XCTAssertTrue(done.allSatisfy(\.succeeded))
        let starts = done.map(\.timings.handlerStarted), ends = done.map(\.timings.handlerFinished)
        XCTAssertLessThan(starts.max() ?? .max, ends.min() ?? 0, "all four batches were in flight together")
        XCTAssertEqual(done.map(\.detail), [1, 1, 1, 1], "batch size 1 each")
        XCTAssertEqual(stopAndReadStats(daemon)["batches"], 4)
    }

    func testBatcherGathersCommandsFromSeveralSessions() throws {
        let (daemon, socket) = try serve(["4:delay=150ms,max-batch=8"])
        var first = try ControllerSession.connect(to: FilePath(socket))
        var second = try ControllerSession.connect(to: FilePath(socket))
        var third = try ControllerSession.connect(to: FilePath(socket))
        try submit(&first, model: 4)  // occupies the one instance
        usleep(50_000)
        for _ in 0..<2 {
            try submit(&first, model: 4)
            try submit(&second, model: 4)
            try submit(&third, model: 4)
        }
        let a = try collect(&first, 3), b = try collect(&second, 2), c = try collect(&third, 2)
        XCTAssertEqual(a[0].detail, 1)
        XCTAssertEqual(
            (a.dropFirst() + b + c).map(\.detail), Array(repeating: 6, count: 6), "one batch of six from three sessions")
        let stats = stopAndReadStats(daemon)
        XCTAssertEqual(stats["batches"], 2)
        XCTAssertEqual(stats["started"], 7)
    }

    func testMaximumQueueDelayAndPreferredSizes() throws {
        let (daemon, socket) = try serve([
            "5:echo,max-batch=8,max-queue-delay=200ms", "6:echo,max-batch=8,preferred=2,max-queue-delay=10s",
        ])
        var session = try ControllerSession.connect(to: FilePath(socket))
        for _ in 0..<3 { try submit(&session, model: 5) }
        let delayed = try collect(&session, 3)
        XCTAssertEqual(delayed.map(\.detail), [3, 3, 3], "the batch waited for company")
        XCTAssertGreaterThanOrEqual(delayed[0].timings.duration(of: .dispatch) ?? 0, 150_000_000, "…up to the queue delay")
        for _ in 0..<2 { try submit(&session, model: 6) }
        let preferred = try collect(&session, 2, timeout: .seconds(5))
        XCTAssertEqual(preferred.map(\.detail), [2, 2], "a preferred size goes at once, long before the delay")
        _ = stopAndReadStats(daemon)
    }

    func testExpiredCommandCompletesWithoutRunning() throws {
        let (daemon, socket) = try serve(["7:delay=200ms,max-batch=1"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        let running = try submit(&session, model: 7)
        usleep(20_000)
        let late = try submit(&session, model: 7, deadline: .milliseconds(50))
        let done = try collect(&session, 2)
        let byID = Dictionary(uniqueKeysWithValues: done.map { ($0.commandID, $0) })
        XCTAssertEqual(byID[running]?.status, .succeeded)
        XCTAssertEqual(byID[late]?.status, .expired)
        XCTAssertEqual(byID[late]?.failure, .expired)
        XCTAssertEqual(byID[late]?.timings.handlerStarted, 0, "it never ran")
        XCTAssertEqual(stopAndReadStats(daemon)["expired"], 1)
    }

    /// A queued command's deadline is kept even while no instance is free
    /// to form a batch (here the only instance never finishes).
    func testQueuedCommandExpiresWhileEveryInstanceIsBusy() throws {
        let (daemon, socket) = try serve(["11:never,max-batch=1"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        try submit(&session, model: 11)  // takes the instance for good
        usleep(50_000)
        let late = try submit(&session, model: 11, deadline: .milliseconds(100))
        let done = try collect(&session, 1, timeout: .seconds(5))
        XCTAssertEqual(done.map(\.commandID), [late])
        XCTAssertEqual(done.first?.status, .expired)
        XCTAssertEqual(done.first?.timings.handlerStarted, 0, "it never ran")
        XCTAssertEqual(stopAndReadStats(daemon)["expired"], 1)
    }

    /// A cancelled command's queue entry never takes room a live command needs.
    func testCancelledCommandsLeaveTheirQueueRoom() throws {
        let (daemon, socket) = try serve(["8:delay=200ms,max-batch=1,queue=2"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        let running = try submit(&session, model: 8)
        usleep(50_000)
        let head = try submit(&session, model: 8)
        let cancelled = try submit(&session, model: 8)  // behind `head`: its entry stays until compacted
        XCTAssertTrue(try session.cancel(cancelled))
        usleep(50_000)
        let next = try submit(&session, model: 8)
        let done = try collect(&session, 4)
        let byID = Dictionary(uniqueKeysWithValues: done.map { ($0.commandID, $0.status) })
        XCTAssertEqual(byID[cancelled], .cancelled)
        XCTAssertEqual(byID[next], .succeeded, "queued in the room the cancelled command left")
        XCTAssertEqual(byID[running], .succeeded)
        XCTAssertEqual(byID[head], .succeeded)
        XCTAssertEqual(stopAndReadStats(daemon)["full"], 0)
    }

    /// A compaction moves queued commands; a later cancel still finds its
    /// command where it moved to (through the session's index).
    func testCancelFindsACommandThatACompactionMoved() throws {
        let (daemon, socket) = try serve(["8:delay=200ms,max-batch=1,queue=3,priorities=1"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        let running = try submit(&session, model: 8)
        usleep(50_000)
        let a = try submit(&session, model: 8)
        let b = try submit(&session, model: 8)
        let c = try submit(&session, model: 8)
        XCTAssertTrue(try session.cancel(b))  // a dead entry between a and c: the queue is full
        usleep(50_000)
        let d = try submit(&session, model: 8)  // compacts: c moves into b's place
        usleep(50_000)
        XCTAssertTrue(try session.cancel(c))
        let done = try collect(&session, 5)
        let byID = Dictionary(uniqueKeysWithValues: done.map { ($0.commandID, $0.status) })
        XCTAssertEqual(byID[b], .cancelled)
        XCTAssertEqual(byID[c], .cancelled, "found after it moved")
        for id in [running, a, d] { XCTAssertEqual(byID[id], .succeeded) }
        XCTAssertEqual(stopAndReadStats(daemon)["cancelled"], 2)
    }

    /// Command ids wrap around the controller's in-flight table; one command
    /// that never completes must not block every later id that maps to its entry.
    func testAStuckCommandDoesNotBlockLaterIds() throws {
        let (daemon, socket) = try serve(["11:never,max-batch=1", "2:echo"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        try submit(&session, model: 11)
        for i in 0..<2_000 {
            try submit(&session, model: 2, bytes: withUnsafeBytes(of: UInt32(i)) { Array($0) })
            XCTAssertTrue(try collect(&session, 1)[0].succeeded)
        }
        _ = stopAndReadStats(daemon)
    }

    func testFullModelQueueAnswersAtOnce() throws {
        let (daemon, socket) = try serve(["8:delay=300ms,max-batch=1,queue=2"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        let ids = [try submit(&session, model: 8)]
        usleep(50_000)
        let queued = [try submit(&session, model: 8), try submit(&session, model: 8)]
        let refused = try submit(&session, model: 8)
        let done = try collect(&session, 4)
        XCTAssertEqual(done[0].commandID, refused, "refused at pickup, ahead of the running command")
        XCTAssertEqual(done[0].status, .modelQueueFull)
        XCTAssertEqual(Set(done.dropFirst().map(\.commandID)), Set(ids + queued))
        XCTAssertTrue(done.dropFirst().allSatisfy(\.succeeded))
        XCTAssertEqual(stopAndReadStats(daemon)["full"], 1)
    }

    func testHigherPriorityRunsFirstUnderLoad() throws {
        let (daemon, socket) = try serve(["9:delay=40ms,max-batch=1"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        let first = try submit(&session, model: 9)
        usleep(10_000)
        var low: [UInt64] = [], high: [UInt64] = []
        for _ in 0..<3 { low.append(try submit(&session, model: 9, priority: 0)) }
        for _ in 0..<2 { high.append(try submit(&session, model: 9, priority: 1)) }
        let order = try collect(&session, 6).map(\.commandID)
        XCTAssertEqual(order, [first] + high + low)
        _ = stopAndReadStats(daemon)
    }

    func testCancellationDropsAQueuedCommandAndLetsARunningOneFinish() throws {
        let (daemon, socket) = try serve(["10:delay=300ms,max-batch=1"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        let running = try submit(&session, model: 10)
        usleep(50_000)
        let queued = try submit(&session, model: 10)
        XCTAssertTrue(try session.cancel(running))
        XCTAssertTrue(try session.cancel(queued))
        XCTAssertFalse(try session.cancel(12345), "not in flight")
        let done = try collect(&session, 2)
        XCTAssertEqual(done.map(\.commandID), [queued, running])
        XCTAssertEqual(done[0].status, .cancelled)
        XCTAssertEqual(done[1].status, .succeeded, "already running: it finishes")
        XCTAssertNil(try session.pollCompletion(), "exactly one completion each")
        XCTAssertEqual(stopAndReadStats(daemon)["cancelled"], 1)
    }

    func testClientCancellationReachesTheDaemon() async throws {
        let (daemon, socket) = try serve(["10:delay=300ms,max-batch=1"])
        let client = try FabricClient.connect(to: FilePath(socket))
        defer { client.close() }
        let running = Task { try await client.submit(modelID: 10, outputCapacity: 8, timeout: .seconds(10)) { _ in 1 } }
        try await Task.sleep(nanoseconds: 50_000_000)
        let queued = Task { try await client.submit(modelID: 10, outputCapacity: 8, timeout: .seconds(10)) { _ in 1 } }
        try await Task.sleep(nanoseconds: 50_000_000)
        queued.cancel()
        do {
            _ = try await queued.value
            XCTFail("a cancelled submission returned")
        } catch { XCTAssertEqual(error as? SubmitError, .cancelled) }
        let result = try await running.value
        XCTAssertTrue(result.succeeded)
        try await Task.sleep(nanoseconds: 100_000_000)
        XCTAssertEqual(stopAndReadStats(daemon)["cancelled"], 1, "the daemon dropped it without running it")
    }

    func testHandlerThatNeverCompletesCostsOnlyItsModel() throws {
        let (daemon, socket) = try serve(["11:never,max-batch=1,queue=2", "2:echo"])
        do {
            var session = try ControllerSession.connect(to: FilePath(socket))
            try submit(&session, model: 11)  // taken, never completed
            usleep(50_000)
            for _ in 0..<2 { try submit(&session, model: 11) }  // queued behind it
            usleep(50_000)
            let refused = try submit(&session, model: 11)
            let echo = try submit(&session, model: 2)
            let done = try collect(&session, 2)
            XCTAssertEqual(Set(done.map(\.commandID)), [refused, echo])
            XCTAssertEqual(done.first { $0.commandID == refused }?.status, .modelQueueFull)
            XCTAssertEqual(done.first { $0.commandID == echo }?.status, .succeeded)
            XCTAssertThrowsError(try session.waitForCompletion(timeout: .milliseconds(100))) {
                XCTAssertEqual($0 as? SubmitError, .timedOut)
            }
        }
        // The session is gone with its stuck commands; a new one is served.
        var next = try ControllerSession.connect(to: FilePath(socket))
        try submit(&next, model: 2)
        XCTAssertTrue(try collect(&next, 1)[0].succeeded)
        _ = stopAndReadStats(daemon)  // stops cleanly (exit 0) with a batch still taken
    }

    func testSecondCompletionOfACommandIsRefused() throws {
        let (daemon, socket) = try serve(["12:twice"])
        var session = try ControllerSession.connect(to: FilePath(socket))
        for k in 0..<5 { try submit(&session, model: 12, bytes: [UInt8](repeating: UInt8(k), count: 16)) }
        let done = try collect(&session, 5)
        XCTAssertTrue(done.allSatisfy { $0.succeeded && $0.outputSize == 16 }, "the first report stands")
        XCTAssertThrowsError(try session.waitForCompletion(timeout: .milliseconds(200)), "no duplicate arrives")
        XCTAssertEqual(stopAndReadStats(daemon)["rejected"], 10, "two refused reports per command")
    }

    func testLateCompletionsAfterTheSessionDiedAreDropped() throws {
        let (daemon, socket) = try serve(["13:late=300ms,instances=4", "2:echo"])
        let doomed = try ChildProcess("fabricq-test-helper", ["controller", socket, "0", "13", "8"])
        usleep(100_000)
        doomed.terminate()  // SIGKILL with commands in flight
        usleep(500_000)  // their completions arrive from foreign threads after the session died
        XCTAssertTrue(daemon.isRunning, daemon.standardError)
        var session = try ControllerSession.connect(to: FilePath(socket))
        let id = try submit(&session, model: 13, bytes: [5, 6, 7])
        let done = try collect(&session, 1)
        XCTAssertEqual(done[0].commandID, id)
        XCTAssertTrue(done[0].succeeded)
        XCTAssertEqual(Array(session.buffers.buffer(done[0].output).prefix(3)), [5, 6, 7])
        XCTAssertEqual(stopAndReadStats(daemon)["rejected"], 0)
    }

    func testClientWaitsForBufferSlotsInsteadOfFailing() async throws {
        let (daemon, socket) = try serve(["14:delay=20ms,instances=4,max-batch=4"])
        let client = try FabricClient.connect(to: FilePath(socket))
        defer { client.close() }
        XCTAssertEqual(client.availableBuffers, 32, "16 requests in flight at most")
        let results = try await withThrowingTaskGroup(of: CommandResult.self) { group in
            for k in 0..<48 {
                group.addTask {
                    try await client.submit(modelID: 14, outputCapacity: 8, timeout: .seconds(20)) { input in
                        input.storeBytes(of: UInt64(k), as: UInt64.self)
                        return 8
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(results.count, 48)
        XCTAssertTrue(results.allSatisfy(\.succeeded))
        XCTAssertEqual(Set(results.map { $0.output.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }), Set(0..<48))
        XCTAssertEqual(client.availableBuffers, 32)
        _ = stopAndReadStats(daemon)
    }

    func testBufferWaitEndsAtTheDeadline() async throws {
        let (daemon, socket) = try serve(["11:never"])
        let client = try FabricClient.connect(to: FilePath(socket))
        defer { client.close() }
        let stuck = (0..<16).map { _ in
            Task { try await client.submit(modelID: 11, outputCapacity: 8, timeout: .seconds(2)) { _ in 1 } }
        }
        try await Task.sleep(nanoseconds: 100_000_000)
        let start = MonotonicClock.now()
        do {
            _ = try await client.submit(modelID: 11, outputCapacity: 8, timeout: .milliseconds(100)) { _ in 1 }
            XCTFail("no slot can free up")
        } catch { XCTAssertEqual(error, .timedOut) }
        XCTAssertLessThan(MonotonicClock.now() - start, 1_500_000_000)
        for task in stuck { task.cancel() }
        _ = stopAndReadStats(daemon)
    }

    // MARK: Same controller code, in-process ("Model A") or daemon ("Model B")

    /// The controller code under test: the same for both hostings.
    private func driveChecksums(_ client: FabricClient) async throws {
        for k in 0..<20 {
            let bytes = [UInt8](repeating: UInt8(k), count: 100)
            let result = try await client.submit(
                modelID: DiagnosticModel.checksum.rawValue, outputCapacity: 8, timeout: .seconds(5)
            ) {
                $0.copyBytes(from: bytes)
                return bytes.count
            }
            XCTAssertTrue(result.succeeded)
            XCTAssertEqual(
                result.output, bytes.withUnsafeBytes { withUnsafeBytes(of: DiagnosticModel.fnv1a($0).littleEndian) { Array($0) } }
            )
        }
    }

    private func drivePolling(_ session: inout ControllerSession) throws {
        for round in 0..<2 {
            for k in 0..<10 { try submit(&session, model: DiagnosticModel.echo.rawValue, bytes: [UInt8(k), UInt8(round), 2]) }
            let done = try collect(&session, 10)
            XCTAssertTrue(done.allSatisfy { $0.succeeded && $0.outputSize == 3 })
        }
    }

    func testSameControllerCodeDrivesAnInProcessDaemonAndADaemonProcess() async throws {
        // Model A: the engine in this process.
        let socket = temporarySocketPath(self)
        let hosted = try startDaemon(self, socket: socket, log: EventLog())
        let asyncClient = try FabricClient.connect(to: try hosted.connectInProcess())
        try await driveChecksums(asyncClient)
        asyncClient.close()
        var polling = try ControllerSession.connect(to: try hosted.connectInProcess())
        try drivePolling(&polling)
        XCTAssertEqual(hosted.statistics.sessionsOpened, 2)
        XCTAssertEqual(hosted.statistics.commandsSucceeded, 40)

        // Model B: the same code against a daemon process.
        let (daemon, remote) = try serve(["1:echo", "2:checksum"])
        let remoteClient = try FabricClient.connect(to: FilePath(remote))
        try await driveChecksums(remoteClient)
        remoteClient.close()
        var remotePolling = try ControllerSession.connect(to: FilePath(remote))
        try drivePolling(&remotePolling)
        _ = stopAndReadStats(daemon)
    }

    func testInProcessConnectionBeforeStartIsRefused() {
        let daemon = FabricDaemon(configuration: DaemonConfiguration(socketPath: "/nonexistent/x.sock"), handlers: [:])
        do {
            _ = try daemon.connectInProcess()
            XCTFail("connected to a daemon that is not running")
        } catch { XCTAssertEqual(error, .notRunning) }
    }

    func testInProcessConnectionAfterStopIsRefusedAndLeaksNothing() throws {
        let descriptors = openDescriptorCount()
        let daemon = FabricDaemon(
            configuration: DaemonConfiguration(socketPath: FilePath(temporarySocketPath(self))),
            handlers: [2: EchoHandler()])
        try daemon.start()
        daemon.stop()
        do {
            _ = try daemon.connectInProcess()
            XCTFail("connected to a stopped daemon")
        } catch { XCTAssertEqual(error, .notRunning) }
        XCTAssertEqual(waitForDescriptorCount(descriptors, timeout: 5), descriptors)
    }

    /// `fabricq load` against `fabricq serve`: verified outputs, the JSON
    /// report, and exit status 1 when outputs are not what was expected.
    func testFabricqLoadReportsVerifiedResults() throws {
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess("fabricq", ["serve", "--socket", socket, "--model", "2:echo", "--model", "5:checksum"])
        addTeardownBlock { daemon.terminate() }
        XCTAssertTrue(daemon.waitForOutput("listening", timeout: 30), daemon.standardError)
        func load(_ arguments: [String]) throws -> (status: Int32?, report: [String: Any]) {
            let run = try ChildProcess(
                "fabricq", ["load", "--socket", socket, "--duration", "300ms", "--json"] + arguments)
            let status = run.wait(timeout: 30).map(ChildProcess.exitCode)
            let json = try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any]
            return (status, try XCTUnwrap(json, run.standardOutput + run.standardError))
        }
        for (model, expect) in [("2", "echo"), ("5", "checksum")] {
            let (status, report) = try load(["--model", model, "--expect", expect, "--concurrency", "4"])
            XCTAssertEqual(status, 0)
            XCTAssertGreaterThan(report["completed"] as? Int ?? 0, 0)
            XCTAssertEqual(report["wrong"] as? Int, 0)
            XCTAssertEqual(report["failed"] as? Int, 0)
            let latency = try XCTUnwrap(report["latency_ns"] as? [String: Any])
            XCTAssertGreaterThan(latency["p50"] as? Int ?? 0, 0)
            XCTAssertEqual(latency["count"] as? Int, report["completed"] as? Int)
            let stages = try XCTUnwrap(report["stages_ns"] as? [String: Any])
            XCTAssertEqual(Set(stages.keys), ["queue", "dispatch", "handler", "completion"])
            XCTAssertGreaterThanOrEqual(report["mean_batch_size"] as? Double ?? 0, 1)
        }
        let (status, report) = try load(["--model", "2", "--expect", "checksum"])
        XCTAssertEqual(status, 1, "an echo is not the checksum")
        XCTAssertGreaterThan(report["wrong"] as? Int ?? 0, 0)
        XCTAssertEqual(daemon.stop(timeout: 10).map(ChildProcess.exitCode), 0)
    }
}
