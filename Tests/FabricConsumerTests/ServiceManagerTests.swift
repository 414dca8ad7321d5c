import DaemonTestSupport
import FabricSession
import FabricTestSupport
import Foundation
import Glibc
import SystemPackage
import XCTest

/// `fabricq serve` under a service manager (issue 17): systemd's
/// notification protocol spoken to a datagram socket this test binds, as
/// systemd's `$NOTIFY_SOCKET` would be; and the shipped unit file verifies.
final class ServiceManagerTests: XCTestCase {
    /// A bound `AF_UNIX` datagram socket standing in for systemd's.
    private final class NotifySocket {
        let fd: Int32
        let path: String

        init(_ test: XCTestCase) throws {
            path = temporarySocketPath(test)
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw POSIXError(.EIO) }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { bytes in
                for (i, byte) in path.utf8.enumerated() { bytes[i] = byte }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
        }

        deinit {
            close(fd)
            unlink(path)
        }

        /// The next datagram, waiting at most `timeout` seconds.
        func receive(timeout: Double) -> String? {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, Int32(timeout * 1000)) == 1 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
        }
    }

    func testServeReportsReadyFeedsTheWatchdogAndReportsStopping() throws {
        let manager = try NotifySocket(self)
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess(
            "fabricq", ["serve", "--socket", socket],
            environment: ["NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "200000"])
        addTeardownBlock { daemon.terminate() }
        let ready = try XCTUnwrap(manager.receive(timeout: 20), daemon.standardError)
        XCTAssertTrue(ready.hasPrefix("READY=1\n"), ready)
        XCTAssertTrue(ready.contains("STATUS=serving 4 models on \(socket)"), ready)
        // Half the watchdog interval: at least two pings in half a second.
        var pings = 0
        let end = Date().addingTimeInterval(0.5)
        while Date() < end, let message = manager.receive(timeout: 0.5) { if message == "WATCHDOG=1" { pings += 1 } }
        XCTAssertGreaterThanOrEqual(pings, 2)
        kill(daemon.pid, SIGTERM)
        var stopping = false
        while let message = manager.receive(timeout: 5) {
            if message == "STOPPING=1" {
                stopping = true
                break
            }
        }
        XCTAssertTrue(stopping, "STOPPING=1 before it stops")
        XCTAssertEqual(daemon.wait(timeout: 10).map(ChildProcess.exitCode), 0)
    }

    /// A poll thread stuck in a handler (a poll-thread model spinning for
    /// seconds) stops the pings, so the manager's watchdog fires.
    func testWatchdogStarvesWhileThePollThreadIsStuck() throws {
        let manager = try NotifySocket(self)
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess(
            "fabricq", ["serve", "--socket", socket, "--model", "9:spin=3s,execution=poll-thread"],
            environment: ["NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "200000"])
        addTeardownBlock { daemon.terminate() }
        XCTAssertEqual(manager.receive(timeout: 20)?.hasPrefix("READY=1"), true, daemon.standardError)
        XCTAssertEqual(manager.receive(timeout: 1), "WATCHDOG=1", "fed while healthy")
        let controller = try ChildProcess("fabricq-test-helper", ["controller", socket, "1", "9", "8"])
        addTeardownBlock { controller.terminate() }
        usleep(300_000)  // the command reaches the poll thread, which spins in it
        while manager.receive(timeout: 0) != nil {}  // pings sent before it got stuck
        XCTAssertNil(manager.receive(timeout: 1), "no WATCHDOG=1 while the poll thread is stuck")
        controller.assertSuccess(timeout: 30)
        XCTAssertEqual(manager.receive(timeout: 2), "WATCHDOG=1", "fed again once it is free")
        XCTAssertEqual(daemon.stop(timeout: 10).map(ChildProcess.exitCode), 0)
    }

    func testServeWithoutAManagerSendsNothingAndServes() throws {
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess(
            "fabricq", ["serve", "--socket", socket], environment: ["NOTIFY_SOCKET": "relative/is/ignored"])
        addTeardownBlock { daemon.terminate() }
        XCTAssertTrue(daemon.waitForOutput("listening on", timeout: 20), daemon.standardError)
        XCTAssertEqual(daemon.stop(timeout: 10).map(ChildProcess.exitCode), 0)
    }

    /// Socket activation: `fabricq serve` started the way systemd starts it
    /// (the listening socket at descriptor 3, `LISTEN_FDS=1`, `LISTEN_PID`
    /// its own pid) serves on that socket and leaves its file in place.
    func testServeTakesOverASocketActivatedListener() throws {
        let path = temporarySocketPath(self)
        let listener = try UnixSocket.listen(at: FilePath(path))
        let fd = listener.fileDescriptor.rawValue
        _ = fcntl(fd, F_SETFD, 0)  // inherited by bash below (dash takes one-digit descriptors only), which moves it to 3
        let script =
            "exec 3<&\(fd); export LISTEN_PID=$$ LISTEN_FDS=1; exec \(ChildProcess.executable("fabricq")) serve --socket \(path)"
        let daemon = try ChildProcess("/bin/bash", ["-c", script])
        addTeardownBlock { daemon.terminate() }
        XCTAssertTrue(daemon.waitForOutput("listening on \(path) (socket activated)", timeout: 20), daemon.standardError)
        let controller = try ChildProcess("fabricq-test-helper", ["controller", path, "100", "1", "64"])
        controller.assertSuccess(timeout: 30)
        XCTAssertEqual(daemon.stop(timeout: 10).map(ChildProcess.exitCode), 0, daemon.standardError)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), "the manager's socket file stays")
        _ = listener  // ours closes (and removes the file) when the test ends
    }

    /// A passed descriptor that is not a listening socket is refused, not served on.
    func testServeRefusesAPassedDescriptorThatIsNotAListener() throws {
        let path = temporarySocketPath(self)
        let script =
            "exec 3</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1; exec \(ChildProcess.executable("fabricq")) serve --socket \(path)"
        let daemon = try ChildProcess("/bin/bash", ["-c", script])
        XCTAssertEqual(daemon.wait(timeout: 20).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(daemon.standardError.contains("descriptor 3 is not a listening Unix stream socket"), daemon.standardError)
    }

    /// The shipped unit files verify (`systemd-analyze verify`), with
    /// ExecStart pointed at a binary that exists here (resnet-daemon is
    /// built by its own package: fabricq stands in for the check).
    func testShippedUnitFilesVerify() throws {
        let analyze = "/usr/bin/systemd-analyze"
        guard FileManager.default.isExecutableFile(atPath: analyze) else {
            throw XCTSkip("systemd-analyze is not installed here")
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let directory = NSTemporaryDirectory() + "fq-unit-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for name in ["fabricq", "resnet-daemon"] {
            let unit = try String(
                contentsOf: root.appendingPathComponent("Deploy/systemd/\(name).service"), encoding: .utf8)
            let socketUnit = try String(
                contentsOf: root.appendingPathComponent("Deploy/systemd/\(name).socket"), encoding: .utf8)
            for needed in [
                "Type=notify", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                "RestrictAddressFamilies=", "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes",
                "LimitMEMLOCK=", "--seccomp",
            ] {
                XCTAssertTrue(unit.contains(needed), "\(name).service has \(needed)")
            }
            let service = directory + "/\(name).service", socket = directory + "/\(name).socket"
            try unit.replacingOccurrences(of: "/usr/local/bin/\(name)", with: ChildProcess.executable("fabricq"))
                .write(toFile: service, atomically: true, encoding: .utf8)
            try socketUnit.write(toFile: socket, atomically: true, encoding: .utf8)
            let verify = try ChildProcess(analyze, ["verify", service, socket])
            let status = verify.wait(timeout: 60)
            XCTAssertEqual(status.map(ChildProcess.exitCode), 0, verify.standardError + verify.standardOutput)
            XCTAssertFalse(verify.standardError.contains(directory), "no warnings about \(name)'s units: \(verify.standardError)")
        }
    }
}
