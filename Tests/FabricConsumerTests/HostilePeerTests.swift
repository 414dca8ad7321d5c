import DaemonTestSupport
import FabricConsumer
import FabricProducer
import FabricSystem
import Foundation
import Glibc
import SystemPackage
import XCTest

/// Admitted controllers that misbehave, against a daemon in its own process
/// (`fabricq serve`): a peer may cost its own session, never the daemon, and
/// never another session.
final class HostilePeerTests: XCTestCase {
    /// Starts `fabricq serve` on a fresh socket; stopped when the test ends.
    private func serve(idle: String = "sleep") throws -> (ChildProcess, String) {
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess(
            "fabricq", ["serve", "--socket", socket, "--idle", idle, "--slots", "16", "--slot-size", "4096"])
        XCTAssertTrue(daemon.waitForOutput("listening on", timeout: 20), daemon.standardError)
        addTeardownBlock { daemon.stop() }
        return (daemon, socket)
    }

    /// Issue 13, item 1: nonsense stored into a controller's own doorbell
    /// words (0xFFFFFFFF, then 0, while the daemon sleeps and wakes) used to
    /// trap the daemon on a checked add or subtract, taking every session
    /// with it. Now the words wrap; the daemon serves another controller
    /// throughout and stops cleanly.
    func testPoisonedDoorbellWordsCostOnlyThatSession() throws {
        let (daemon, socket) = try serve()
        let hostile = try ChildProcess("fabricq-test-helper", ["poison-doorbells", socket, "2"])
        XCTAssertTrue(hostile.waitForOutput("ready", timeout: 20), hostile.standardError)
        let good = try ChildProcess("fabricq-test-helper", ["controller", socket, "20000", "2", "256"])
        good.assertSuccess(timeout: 60)
        XCTAssertTrue(good.standardOutput.contains("ok 20000"), good.standardOutput + good.standardError)
        hostile.assertSuccess(timeout: 20)
        XCTAssertTrue(daemon.isRunning, "daemon died: \(daemon.standardError)")
        let status = daemon.stop(timeout: 10)
        XCTAssertNotNil(status)
        if let status {
            XCTAssertTrue(ChildProcess.exitedNormally(status), "daemon ended by signal \(ChildProcess.signal(status))")
        }
    }

    /// Issue 13, item 3: every session used to be handed the daemon's own
    /// eventfd, so a controller that read it took the wake-ups meant for the
    /// others. Each session now gets an eventfd of its own: two sessions'
    /// daemon doorbells are different kernel objects.
    func testEachSessionHasItsOwnDaemonDoorbell() throws {
        let (_, socket) = try serve()
        func daemonDoorbellID(_ grant: SessionGrant) throws -> String {
            let fd = try XCTUnwrap(grant.descriptors.first { $0.tag == SessionDescriptorTag.daemonDoorbell.rawValue }?.descriptor)
            let info = try String(contentsOfFile: "/proc/self/fdinfo/\(fd.rawValue)", encoding: .utf8)
            let id = info.split(separator: "\n").first { $0.hasPrefix("eventfd-id:") }
            return try XCTUnwrap(id.map(String.init), "no eventfd-id in fdinfo: \(info)")
        }
        // Both sessions stay open while their ids are compared: a released
        // eventfd's id can be handed out again.
        let first = try UnixSocket.connect(to: FilePath(socket))
        let firstGrant = try first.requestSession(timeout: .seconds(5))
        let second = try UnixSocket.connect(to: FilePath(socket))
        let secondGrant = try second.requestSession(timeout: .seconds(5))
        defer { for (_, fd) in firstGrant.descriptors + secondGrant.descriptors { try? fd.close() } }
        XCTAssertNotEqual(
            try daemonDoorbellID(firstGrant), try daemonDoorbellID(secondGrant), "two sessions share one daemon eventfd")
        _ = consume first
        _ = consume second
    }

    /// Issue 13, item 3, as a user sees it: a controller draining its daemon
    /// eventfd in a loop must not delay another session's commands. With a
    /// shared eventfd the sleeping daemon missed the victim's wake-ups and
    /// slept its full 1 s poll timeout with work waiting.
    func testDrainingItsOwnDoorbellDoesNotStallAnotherSession() throws {
        let (_, socket) = try serve(idle: "sleep")
        let hostile = try ChildProcess("fabricq-test-helper", ["drain-doorbell", socket, "3"])
        XCTAssertTrue(hostile.waitForOutput("ready", timeout: 20), hostile.standardError)
        var options = ControllerOptions()
        options.wait = .eventFD
        var session = try ControllerSession.connect(to: FilePath(socket), options: options)
        var slowest: UInt64 = 0
        var roundTrips = 0
        let end = monotonicNanoseconds() + 1_500_000_000
        while monotonicNanoseconds() < end {
            let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
            let start = monotonicNanoseconds()
            try session.submit(CommandRequest(modelID: 1, input: input, inputSize: 8, output: output))
            let done = try session.waitForCompletion(timeout: .seconds(5))
            slowest = max(slowest, monotonicNanoseconds() - start)
            XCTAssertTrue(done.status == .succeeded)
            session.buffers.release(done.input)
            session.buffers.release(done.output)
            roundTrips += 1
        }
        print("measured: \(roundTrips) round trips beside a draining peer, slowest \(Double(slowest) / 1e6) ms")
        XCTAssertLessThan(slowest, 500_000_000, "a round trip waited \(Double(slowest) / 1e6) ms: a wake-up was stolen")
        hostile.assertSuccess(timeout: 20)
    }
}

/// Issue 13, item 8, from the controller's side: a hostile daemon that sends
/// two descriptors per message used to leak both into the controller with
/// every message. The controller refuses the grant and keeps no descriptor.
final class HostileDaemonTests: XCTestCase {
    func testMalformedGrantLeaksNoDescriptorIntoTheController() throws {
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess("fabricq-test-helper", ["hostile-daemon", socket])
        XCTAssertTrue(daemon.waitForOutput("listening", timeout: 20), daemon.standardError)
        let before = openDescriptorCount()
        do {
            _ = try ControllerSession.connect(to: FilePath(socket))
            XCTFail("a grant of doubled descriptors was accepted")
        } catch {
            guard case .descriptorPassing(.system(let failure)) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(failure.errno, .badMessage)
        }
        XCTAssertEqual(waitForDescriptorCount(before, timeout: 2), before, "descriptors leaked into the controller")
        daemon.wait(timeout: 20)
    }
}
