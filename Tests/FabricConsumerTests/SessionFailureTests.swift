import DaemonTestSupport
import FabricConsumer
import FabricDiagnostics
import FabricProducer
import FabricTestSupport
import Foundation
import SystemPackage
import XCTest

/// Controller and daemon in separate processes, killed with SIGKILL.
final class SessionFailureTests: XCTestCase {
    func testControllersInSeparateProcessesGetCheckedResults() throws {
        let socket = temporarySocketPath(self), log = EventLog()
        let daemon = try startDaemon(self, socket: socket, log: log)
        let echo = try ChildProcess("fabricq-test-helper", ["controller", socket, "20000", "1", "256"])
        let checksum = try ChildProcess("fabricq-test-helper", ["controller", socket, "20000", "2", "1000"])
        echo.assertSuccess(timeout: 60)
        checksum.assertSuccess(timeout: 60)
        XCTAssertTrue(echo.standardOutput.contains("ok 20000"), echo.standardOutput)
        XCTAssertTrue(checksum.standardOutput.contains("ok 20000"), checksum.standardOutput)
        XCTAssertNotNil(log.wait(timeout: 5) { if case .sessionClosed = $0 { true } else { false } })
        let stats = daemon.statistics
        XCTAssertEqual(stats.commandsReceived, 40000)
        XCTAssertEqual(stats.commandsSucceeded, 40000)
        XCTAssertEqual(stats.sessionsOpened, 2)
    }

    func testKilledControllerIsDroppedWithin100msAndOthersCarryOn() throws {
        let socket = temporarySocketPath(self), log = EventLog()
        let daemon = try startDaemon(self, socket: socket, log: log)
        let baseline = openDescriptorCount()
        let victim = try ChildProcess("fabricq-test-helper", ["controller", socket, "0", "1", "512"])
        XCTAssertTrue(victim.waitForOutput("first", timeout: 20), victim.standardError)
        let survivor = try ChildProcess("fabricq-test-helper", ["controller", socket, "50000", "2", "512"])
        XCTAssertNotNil(log.wait(timeout: 10) { if case .sessionOpened(let id, _) = $0 { id == 2 } else { false } })

        let killedAt = MonotonicClock.now()
        kill(victim.pid, SIGKILL)
        let closedAt = log.wait(timeout: 5) { event in
            if case .sessionClosed(1, .controllerGone) = event { return true }
            return false
        }
        let noticed = try XCTUnwrap(closedAt, "daemon never dropped the killed controller's session: \(log.all)")
        let elapsedMs = Double(noticed - killedAt) / 1e6
        print("measured: killed controller's session dropped \(elapsedMs) ms after SIGKILL")
        XCTAssertLessThan(elapsedMs, 100, "session dropped \(elapsedMs) ms after kill -9")
        survivor.assertSuccess(timeout: 60)
        XCTAssertTrue(survivor.standardOutput.contains("ok 50000"), survivor.standardOutput)
        victim.wait(timeout: 5)
        // Both sessions released: their regions, eventfds and sockets are closed.
        XCTAssertNotNil(log.wait(timeout: 5) { if case .sessionClosed(2, _) = $0 { true } else { false } })
        XCTAssertEqual(daemon.activeSessionCount, 0)
        // The control thread drops its last reference just after the event.
        XCTAssertEqual(waitForDescriptorCount(baseline, timeout: 2), baseline)
    }

    func testDaemonKilledFailsPendingSubmitsAndControllerReconnects() async throws {
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess("fabricq", ["serve", "--socket", socket, "--slot-size", "4096", "--slots", "16"])
        XCTAssertTrue(daemon.waitForOutput("listening", timeout: 20), daemon.standardError)

        let client = try FabricClient.connect(to: FilePath(socket))
        var session = try ControllerSession.connect(to: FilePath(socket))
        // Four async commands that take 5 s each, and one on the polling path.
        let start = MonotonicClock.now()
        let tasks = (0..<4).map { i in
            Task { () -> (SubmitError?, UInt64) in
                do {
                    _ = try await client.submit(
                        modelID: DiagnosticModel.delay.rawValue, outputCapacity: 64,
                        flags: 5000, timeout: .seconds(30)
                    ) {
                        $0[0] = UInt8(i)
                        return 1
                    }
                    return (nil, MonotonicClock.now())
                } catch { return (error as? SubmitError, MonotonicClock.now()) }
            }
        }
        let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
        try session.submit(
            CommandRequest(
                modelID: DiagnosticModel.delay.rawValue, input: input, inputSize: 1,
                output: output, flags: 5000))
        try await Task.sleep(for: .milliseconds(200))
        let killedAt = MonotonicClock.now()
        kill(daemon.pid, SIGKILL)
        for task in tasks {
            let (error, at) = await task.value
            XCTAssertEqual(error, .peerGone)
            print("measured: pending submit failed \(Double(at - killedAt) / 1e6) ms after the daemon's SIGKILL")
            XCTAssertLessThan(Double(at - killedAt) / 1e9, 1.0, "a pending submit took over 1 s to fail")
        }
        XCTAssertThrowsError(try session.waitForCompletion(timeout: .seconds(5))) {
            XCTAssertEqual($0 as? SubmitError, .peerGone)
        }
        XCTAssertLessThan(Double(MonotonicClock.now() - start) / 1e9, 3.0)
        XCTAssertTrue(client.isPeerGone)
        XCTAssertThrowsError(try session.submit(CommandRequest(modelID: 1, input: input, inputSize: 1, output: output))) {
            XCTAssertEqual($0 as? SubmitError, .peerGone)
        }
        daemon.wait(timeout: 5)

        // A restarted daemon (same socket path, stale file replaced) takes a new session.
        let restarted = try ChildProcess("fabricq", ["serve", "--socket", socket])
        defer { restarted.terminate() }
        XCTAssertTrue(restarted.waitForOutput("listening", timeout: 20), restarted.standardError)
        let again = try FabricClient.connect(to: FilePath(socket))
        let result = try await again.submit(modelID: DiagnosticModel.echo.rawValue, outputCapacity: 16, timeout: .seconds(5)) {
            buffer in
            buffer.copyBytes(from: Array("reconnected".utf8))
            return 11
        }
        XCTAssertEqual(String(decoding: result.output, as: UTF8.self), "reconnected")
        again.close()
        client.close()
    }

    func testGarbageDescriptorsGetErrorCompletionsAndCorruptIndicesDropOnlyThatSession() throws {
        let socket = temporarySocketPath(self), log = EventLog()
        let daemon = try startDaemon(self, socket: socket, log: log)
        let bystander = try ChildProcess("fabricq-test-helper", ["controller", socket, "30000", "1", "128"])
        let garbage = try ChildProcess("fabricq-test-helper", ["garbage", socket])
        garbage.assertSuccess(timeout: 30)
        let out = garbage.standardOutput
        let invalid = CompletionStatus.invalidDescriptor.rawValue, unknown = CompletionStatus.unknownModel.rawValue
        for (name, status, detail) in [
            ("unknown-model", unknown, 0),
            ("input-past-end", invalid, InvalidDescriptorReason.inputOutOfBounds.rawValue),
            ("output-in-header", invalid, InvalidDescriptorReason.outputOutOfBounds.rawValue),
            ("run-past-last-slot", invalid, InvalidDescriptorReason.inputOutOfBounds.rawValue),
            ("overlap", invalid, InvalidDescriptorReason.overlappingBuffers.rawValue),
            ("past-last-slot", invalid, InvalidDescriptorReason.inputOutOfBounds.rawValue),
            ("small-output", invalid, InvalidDescriptorReason.outputTooSmall.rawValue),
            // A success's detail is the size of the batch it ran in, which
            // may hold the bystander's commands too (the batcher spans sessions).
            ("valid", CompletionStatus.succeeded.rawValue, nil),
            ("valid-span", CompletionStatus.succeeded.rawValue, nil),
            ("opcode", invalid, InvalidDescriptorReason.unknownOpcode.rawValue),
        ] as [(String, UInt32, UInt32?)] {
            let line = out.split(separator: "\n").first { $0.hasPrefix(name + " ") } ?? ""
            if let detail {
                XCTAssertTrue(line.hasSuffix("status=\(status) detail=\(detail)"), "\(name): \(line)")
            } else {
                let batch = line.split(separator: "detail=").last.flatMap { UInt32($0) } ?? 0
                XCTAssertTrue(line.contains("status=\(status) detail="), "\(name): \(line)")
                XCTAssertGreaterThanOrEqual(batch, 1, "\(name): \(line)")
            }
        }
        XCTAssertTrue(out.contains("dropped after"), out)
        XCTAssertNotNil(
            log.wait(timeout: 5) { event in
                if case .sessionClosed(_, .protocolViolation) = event { return true }
                return false
            }, "\(log.all)")
        bystander.assertSuccess(timeout: 60)
        XCTAssertTrue(bystander.standardOutput.contains("ok 30000"), bystander.standardOutput)
        XCTAssertEqual(daemon.statistics.invalidDescriptors, 8)
    }

    func testPeerOutsideTheAllowListIsRejectedOnBothSides() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root to connect as another uid")
        let socket = temporarySocketPath(self), log = EventLog()
        _ = try startDaemon(self, socket: socket, log: log) { $0.socketPermissions = [.ownerReadWrite, .otherReadWrite] }
        chmod(NSTemporaryDirectory(), 0o1777)
        let stranger = try ChildProcess("fabricq-test-helper", ["controller", socket, "1", "1", "8", "65534", "65534"])
        XCTAssertNotNil(stranger.wait(timeout: 20))
        XCTAssertTrue(stranger.standardError.contains("session rejected: peer not allowed"), stranger.standardError)
        XCTAssertNotNil(
            log.wait(timeout: 5) { event in
                if case .connectionRefused(let peer, .rejected(.notAllowed, _)) = event { return peer?.uid == 65534 }
                return false
            }, "\(log.all)")
    }

    func testVersionMismatchIsReportedOnBothSides() throws {
        let socket = temporarySocketPath(self), log = EventLog()
        _ = try startDaemon(self, socket: socket, log: log)
        let connection = try UnixSocket.connect(to: FilePath(socket))
        XCTAssertThrowsError(try connection.requestSession(timeout: .seconds(5), version: 99)) { error in
            XCTAssertEqual(error as? SessionError, .versionMismatch(daemon: SessionHandshake.protocolVersion, client: 99))
        }
        XCTAssertNotNil(
            log.wait(timeout: 5) { event in
                if case .connectionRefused(_, .versionMismatch(_, 99)) = event { return true }
                return false
            }, "\(log.all)")
    }
}
