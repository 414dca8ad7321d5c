import DaemonTestSupport
import FabricConsumer
import FabricDiagnostics
import FabricProducer
import FabricSystem
import Foundation
import SystemPackage
import XCTest

/// The controller API over a remote session, in one process: an in-process
/// daemon listening on loopback UCX and a `FabricClient` connected to
/// `ucx://127.0.0.1:PORT`. Its gateway, the client's proxy, the poll loop
/// and the reaper are threads of this process, so the TSan job sees every
/// hand-over between them. (Remote sessions between processes and
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
