import DaemonTestSupport
import FabricConsumer
import FabricDiagnostics
import FabricProducer
import FabricRemote
import FabricSystem
import Foundation
import SystemPackage
import XCTest

/// The controller API over a remote session, in one process: an in-process
/// daemon listening on loopback UCX and a `FabricClient` connected to
/// `ucx://127.0.0.1:PORT`. The client's proxy, the poll loop (which serves
/// the remote sessions too) and the reaper are threads of this process, so
/// the TSan job sees every hand-over between them. (Remote sessions between processes and
/// namespaces: `RemoteSessionTests` in FabricRemoteTests.)
final class RemoteControllerTests: XCTestCase {
    private func startRemoteDaemon(admitting keys: [RemotePublicKey], log: EventLog) throws -> (FabricDaemon, UCXAddress) {
        let daemon = try startDaemon(self, socket: temporarySocketPath(self), log: log) { configuration in
            configuration.remote = RemoteListening(
                address: UCXAddress(host: "127.0.0.1", port: 0)!, authorizedKeys: AuthorizedKeys(keys))
        }
        return (daemon, try XCTUnwrap(daemon.remoteAddress))
    }

    /// Checked async submits from several tasks through a remote session:
    /// outputs, timings on the controller's clock, slots returned, the
    /// models listed by the handshake.
    func testAsyncSubmitsOverARemoteSession() async throws {
        let key = RemoteSigningKey.generate()
        let log = EventLog()
        let (_, address) = try startRemoteDaemon(admitting: [key.publicKey], log: log)
        let client = try FabricClient.connect(to: .remote(address, key: key))
        defer { client.close() }
        XCTAssertEqual(
            try client.models().map(\.id).sorted(), DiagnosticModel.allHandlers.keys.sorted(), "models from the handshake")
        let full = client.availableBuffers
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<4 {
                group.addTask {
                    for n in 0..<250 {
                        let text = Array("remote \(task) \(n)".utf8)
                        let started = MonotonicClock.now()
                        let result = try await client.submit(
                            modelID: DiagnosticModel.echo.rawValue, outputCapacity: 64, timeout: .seconds(10)
                        ) { input in
                            input.copyBytes(from: text)
                            return text.count
                        }
                        XCTAssertTrue(result.succeeded)
                        XCTAssertEqual(Array(result.output), text)
                        let t = result.timings
                        XCTAssertTrue(t.submitted >= started && t.submitted <= t.pickedUp && t.handlerFinished <= t.seen, "\(t)")
                    }
                }
            }
            try await group.waitForAll()
        }
        XCTAssertEqual(client.availableBuffers, full, "slots go back to the pool")
        XCTAssertNotNil(log.wait(timeout: 5) { if case .remoteSessionOpened = $0 { true } else { false } })
    }

    /// A `ControllerSession` takes the proxy's turns: commands small and
    /// large (12 KiB, over UCX's eager sizes: their rendezvous goes on in
    /// later progress), interleaved and several in flight, go from its own
    /// thread and come back checked, byte for byte, mostly fetched by its
    /// own thread too. Waits and polls both take turns; the proxy thread
    /// keeps house meanwhile.
    func testAControllerSessionTakesTheProxysTurns() throws {
        let key = RemoteSigningKey.generate()
        let (_, address) = try startRemoteDaemon(admitting: [key.publicKey], log: EventLog())
        var session = try ControllerSession.connect(to: .remote(address, key: key))
        var pending: [UInt64: (BufferSlot, BufferSlot, [UInt8])] = [:]
        func check(_ done: CommandCompletion) {
            guard let (input, output, bytes) = pending.removeValue(forKey: done.commandID) else {
                return XCTFail("completion for \(done.commandID), not in flight")
            }
            XCTAssertTrue(done.succeeded, "\(done.commandID): \(done.statusCode)")
            XCTAssertEqual(Array(session.buffers.buffer(done.output).prefix(done.outputSize)), bytes)
            session.buffers.release(input)
            session.buffers.release(output)
        }
        var submitted = 0
        var polled = 0
        while submitted < 600 || !pending.isEmpty {
            if submitted < 600 && pending.count < 6 {
                // Every third command is 12 KiB.
                let size = submitted % 3 == 2 ? 12 * 1024 : 64 + submitted % 50
                guard let input = session.buffers.acquire(bytes: size), let output = session.buffers.acquire(bytes: size)
                else { return XCTFail("no slots for \(size) bytes") }
                let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ submitted) }
                session.buffers.buffer(input).copyBytes(from: bytes)
                let id = try session.submit(
                    CommandRequest(modelID: DiagnosticModel.echo.rawValue, input: input, inputSize: size, output: output))
                pending[id] = (input, output, bytes)
                submitted += 1
                continue
            }
            // Alternately poll (a turn without waiting) and wait.
            if submitted % 2 == 0, let done = try session.pollCompletion() {
                polled += 1
                check(done)
            } else {
                check(try session.waitForCompletion(timeout: .seconds(10)))
            }
        }
        XCTAssertGreaterThan(polled, 0, "polls (a turn without waiting) returned completions")
        // The controller's thread sent and fetched much of it itself (no
        // hand-over). Not all: a turn the proxy thread held is left to it,
        // and the proxy thread watches the worker while a large input's
        // rendezvous is in progress (measured under TSan: 505–587 of 600 sent, 168–237 fetched).
        let turns = try XCTUnwrap(session.remoteTurns)
        XCTAssertGreaterThan(turns.sent, 200, "\(turns)")
        XCTAssertGreaterThan(turns.received, 60, "\(turns)")
    }

    /// A session the daemon ends (it stops) fails the controller's pending
    /// and later submits with `peerGone`, promptly, instead of hanging.
    func testADaemonThatStopsFailsTheRemoteControllersCommands() async throws {
        let key = RemoteSigningKey.generate()
        let (daemon, address) = try startRemoteDaemon(admitting: [key.publicKey], log: EventLog())
        var session = try ControllerSession.connect(to: .remote(address, key: key))
        guard let input = session.buffers.acquire(), let output = session.buffers.acquire() else {
            return XCTFail("no slots")
        }
        // Held 0.5 s by the delay model: still running when the daemon stops.
        try session.submit(
            CommandRequest(modelID: DiagnosticModel.delay.rawValue, input: input, inputSize: 0, output: output, flags: 500))
        daemon.stop()
        let stopped = MonotonicClock.now()
        XCTAssertThrowsError(try session.waitForCompletion(timeout: .seconds(5))) { error in
            XCTAssertEqual(error as? SubmitError, .peerGone)
        }
        XCTAssertLessThan(MonotonicClock.now() - stopped, 1_000_000_000)
        XCTAssertTrue(session.isPeerGone)
    }

    /// A remote peer that stops taking what the daemon sends never holds up
    /// the poll thread, which serves local sessions too: with a send
    /// timeout of 1.5 s, a local session's round trips stay far below it
    /// while the daemon's outputs to the stalled peer cannot go out, and
    /// the stalled peer's session ends on its own, by that timeout (well
    /// before its 6 s of silence would).
    func testARemotePeerThatStopsReadingNeverHoldsUpLocalSessions() throws {
        let key = RemoteSigningKey.generate()
        let log = EventLog()
        let slotSize = 1 << 20
        let daemon = try startDaemon(self, socket: temporarySocketPath(self), log: log) { configuration in
            configuration.session = SessionLimits(
                submissionCapacity: 16, completionCapacity: 16, slotSize: slotSize, slotCount: 32)
            var remote = RemoteListening(
                address: UCXAddress(host: "127.0.0.1", port: 0)!, authorizedKeys: AuthorizedKeys([key.publicKey]))
            // Sends time out after 1.5 s (max(interval, timeout − 4 intervals)), silence after 6 s.
            remote.heartbeat = RemoteHeartbeat(interval: .milliseconds(1500), peerTimeout: .seconds(6))
            configuration.remote = remote
        }
        defer { daemon.stop() }
        let address = try XCTUnwrap(daemon.remoteAddress)
        // The stalled peer: a raw link that sends 16 echo commands of 1 MiB
        // (16 MiB of outputs to come back) and then never progresses its
        // worker again, so it neither fetches nor acknowledges a byte.
        let link = try RemoteLink.connect(to: address, heartbeat: RemoteHeartbeat(peerTimeout: .seconds(6)))
        let grant = try RemoteHandshake.request(over: link, key: key, timeout: .seconds(5))
        XCTAssertEqual(grant.slotSize, slotSize)
        link.allowCompletions(upTo: 32 * slotSize)
        let input = [UInt8](repeating: 0x5a, count: slotSize)
        for n in 0..<16 {
            var descriptor = Descriptor(
                commandID: UInt64(n + 1), modelID: DiagnosticModel.echo.rawValue, inputOffset: UInt64(2 * n * slotSize),
                inputSize: UInt32(slotSize), outputOffset: UInt64((2 * n + 1) * slotSize), outputCapacity: UInt32(slotSize))
            try withUnsafeBytes(of: &descriptor) { header in
                try input.withUnsafeBytes { data in try link.send(.command, header: header, data: data) }
            }
        }
        let stalled = MonotonicClock.now()
        // Meanwhile a local session's round trips.
        var session = try ControllerSession.connect(to: daemon.connectInProcess())
        guard let buffer = session.buffers.acquire(), let output = session.buffers.acquire() else { return XCTFail("no slots") }
        var slowest: UInt64 = 0
        var trips = 0
        var ended = false
        while MonotonicClock.now() - stalled < 5_000_000_000 {
            let started = MonotonicClock.now()
            try session.submit(
                CommandRequest(modelID: DiagnosticModel.echo.rawValue, input: buffer, inputSize: 64, output: output))
            XCTAssertTrue(try session.waitForCompletion(timeout: .seconds(10)).succeeded)
            slowest = max(slowest, MonotonicClock.now() - started)
            trips += 1
            ended = log.all.contains { if case .remoteSessionClosed = $0 { true } else { false } }
            if ended { break }
        }
        XCTAssertTrue(ended, "the stalled peer's session ended on its own")
        XCTAssertGreaterThan(trips, 10)
        // A blocking send would have held the poll thread for the 1.5 s send timeout.
        XCTAssertLessThan(slowest, 750_000_000, "slowest local round trip: \(slowest) ns over \(trips)")
        let reason = log.all.compactMap { if case .remoteSessionClosed(_, _, let why) = $0 { why } else { nil } }.first ?? ""
        // Its outputs could not go out: a send overdue, not only silence.
        XCTAssertTrue(reason.contains("ucp_am_send_nbx") || reason.contains("sends still in progress"), reason)
        print(
            "measured: slowest of \(trips) local round trips while a remote peer stalled: \(slowest / 1000) µs; "
                + "its session ended after \((MonotonicClock.now() - stalled) / 1_000_000) ms: \(reason)")
        link.close(force: true)
    }

    /// A key the daemon does not admit is refused at connect, with the
    /// daemon's reason, and the daemon reports it.
    func testAKeyNotAdmittedIsRefused() throws {
        let log = EventLog()
        let (_, address) = try startRemoteDaemon(admitting: [RemoteSigningKey.generate().publicKey], log: log)
        let stranger = RemoteSigningKey.generate()
        do {
            _ = try ControllerSession.connect(to: .remote(address, key: stranger))
            XCTFail("a key not admitted was let in")
        } catch {
            guard case .rejected(.notAllowed, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains(stranger.publicKey.fingerprint), reason)
        }
        XCTAssertNotNil(
            log.wait(timeout: 5) {
                if case .remoteConnectionRefused(let key, .rejected(.notAllowed, _)) = $0 {
                    key == stranger.publicKey.fingerprint
                } else {
                    false
                }
            })
    }
}
