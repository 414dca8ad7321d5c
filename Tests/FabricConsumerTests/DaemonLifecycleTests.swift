import DaemonTestSupport
import FabricConsumer
import FabricProducer
import FabricSystem
import Foundation
import Glibc
import SystemPackage
import XCTest

/// Issue 13, items 4 and 15: one daemon per socket, a stale socket replaced
/// only when nothing listens on it, a stop that removes only its own socket,
/// a clean stop on SIGTERM, and connect errors that say what is wrong.
final class DaemonLifecycleTests: XCTestCase {
    private func serve(_ socket: String) throws -> ChildProcess {
        let daemon = try ChildProcess("fabricq", ["serve", "--socket", socket])
        XCTAssertTrue(daemon.waitForOutput("listening on", timeout: 20), daemon.standardError)
        return daemon
    }

    /// A second daemon used to unlink a live daemon's socket and take over
    /// its path silently.
    func testSecondDaemonRefusesALiveDaemonsSocket() throws {
        let socket = temporarySocketPath(self)
        let first = try serve(socket)
        defer { first.stop() }
        let second = try ChildProcess("fabricq", ["serve", "--socket", socket])
        XCTAssertEqual(second.wait(timeout: 20).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(second.standardError.contains("a daemon is already listening on \(socket)"), second.standardError)
        let inProcess = FabricDaemon(configuration: DaemonConfiguration(socketPath: FilePath(socket)), handlers: [:])
        XCTAssertThrowsError(try inProcess.start()) {
            XCTAssertEqual($0 as? DaemonError, .socket(.alreadyListening(path: socket)))
        }
        // The first daemon still owns its socket and serves.
        let controller = try ChildProcess("fabricq-test-helper", ["controller", socket, "100", "1", "64"])
        controller.assertSuccess(timeout: 30)
    }

    /// A killed daemon leaves its socket file behind; the next one replaces
    /// it. A file that is not a socket is never removed.
    func testStaleSocketIsReplacedAndOtherFilesAreLeftAlone() throws {
        let socket = temporarySocketPath(self)
        let crashed = try serve(socket)
        crashed.terminate()  // SIGKILL: no cleanup
        XCTAssertTrue(FileManager.default.fileExists(atPath: socket), "the killed daemon's socket file remains")
        let daemon = try startDaemon(self, socket: socket, log: EventLog())
        let controller = try ChildProcess("fabricq-test-helper", ["controller", socket, "100", "1", "64"])
        controller.assertSuccess(timeout: 30)
        daemon.stop()
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "stop removes the daemon's own socket")

        XCTAssertTrue(FileManager.default.createFile(atPath: socket, contents: Data("precious".utf8)))
        let refused = FabricDaemon(configuration: DaemonConfiguration(socketPath: FilePath(socket)), handlers: [:])
        XCTAssertThrowsError(try refused.start()) {
            XCTAssertEqual($0 as? DaemonError, .socket(.notASocket(path: socket, fileType: "regular file")))
        }
        XCTAssertEqual(FileManager.default.contents(atPath: socket), Data("precious".utf8))
    }

    /// A daemon stopping after another has taken over its path (its file
    /// was removed by hand) used to unlink the successor's socket.
    func testStoppingRemovesOnlyItsOwnSocket() throws {
        let socket = temporarySocketPath(self)
        let old = try startDaemon(self, socket: socket, log: EventLog())
        XCTAssertEqual(unlink(socket), 0)
        let successor = try serve(socket)
        defer { successor.stop() }
        old.stop()
        XCTAssertTrue(FileManager.default.fileExists(atPath: socket), "the successor's socket was removed")
        let controller = try ChildProcess("fabricq-test-helper", ["controller", socket, "100", "1", "64"])
        controller.assertSuccess(timeout: 30)
    }

    /// `fabricq serve` (through `FabricDaemon.run()`) stops on SIGTERM:
    /// sessions end, the process exits 0 and the socket file is gone.
    func testServeStopsCleanlyOnSIGTERM() throws {
        let socket = temporarySocketPath(self)
        let daemon = try serve(socket)
        let status = try XCTUnwrap(daemon.stop(timeout: 10), "no exit after SIGTERM")
        XCTAssertTrue(ChildProcess.exitedNormally(status) && ChildProcess.exitCode(status) == 0, daemon.standardError)
        XCTAssertTrue(daemon.standardOutput.contains("stopped:"), daemon.standardOutput)
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket))
    }

    /// A controller with no daemon to talk to hears which path it tried and
    /// why; with `waitForDaemon` it waits for one that is still starting.
    func testConnectNamesThePathAndCanWaitForTheDaemon() throws {
        let socket = temporarySocketPath(self)
        do {
            _ = try ControllerSession.connect(to: FilePath(socket))
            XCTFail("connected to nothing")
        } catch {
            let text = "\(error)"
            XCTAssertTrue(text.contains("no daemon at \(socket)") && text.contains("is the daemon running?"), text)
        }
        let fabricq = ChildProcess.executable("fabricq")
        let late = try ChildProcess("/bin/sh", ["-c", "sleep 0.3; exec \(fabricq) serve --socket \(socket)"])
        defer { late.stop() }
        var options = ControllerOptions()
        options.waitForDaemon = .seconds(20)
        var session = try ControllerSession.connect(to: FilePath(socket), options: options)
        let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
        try session.submit(CommandRequest(modelID: 1, input: input, inputSize: 8, output: output))
        XCTAssertEqual(try session.waitForCompletion(timeout: .seconds(5)).status, .succeeded)
    }
}
