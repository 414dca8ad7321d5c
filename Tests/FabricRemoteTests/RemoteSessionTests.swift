import FabricRemote
import FabricSystem
import FabricTestSupport
import Foundation
import SystemPackage
import XCTest

/// A `fabricq serve --listen` daemon and the key files of its controllers,
/// in a temporary folder removed at the end of the test.
private final class RemoteDaemonFixture {
    let folder: String
    let socket: String
    /// Admitted (in the daemon's authorized-keys file) and not.
    let admittedKey: String, strangerKey: String
    private(set) var daemon: ChildProcess?
    private(set) var url = ""

    init(_ test: XCTestCase) throws {
        folder = NSTemporaryDirectory() + "fq-remote-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        socket = folder + "/daemon.sock"
        for name in ["admitted", "stranger"] {
            let keygen = try ChildProcess("fabricq", ["keygen", folder + "/" + name])
            keygen.assertSuccess(timeout: 30)
        }
        admittedKey = folder + "/admitted.key"
        strangerKey = folder + "/stranger.key"
        let admitted = try String(contentsOfFile: folder + "/admitted.pub", encoding: .utf8)
        try ("# controllers admitted by this test\n\n" + admitted).write(
            toFile: folder + "/authorized-keys", atomically: true, encoding: .utf8)
        test.addTeardownBlock { [folder] in try? FileManager.default.removeItem(atPath: folder) }
    }

    /// Starts the daemon listening on `host` (`port` 0: any), spawned by `spawn`.
    func start(
        host: String, port: UInt16 = 0, spawn: (String, [String]) throws -> ChildProcess = { try ChildProcess($0, $1) }
    ) throws {
        let daemon = try spawn(
            "fabricq",
            [
                "serve", "--socket", socket, "--listen", "ucx://\(host):\(port)", "--authorized-keys",
                folder + "/authorized-keys", "--slots", "16", "--slot-size", "65536",
            ])
        self.daemon = daemon
        XCTAssertTrue(daemon.waitForOutput("remote controllers on ", timeout: 30), daemon.standardOutput + daemon.standardError)
        url = try XCTUnwrap(
            daemon.standardOutput.split(separator: "\n").first { $0.hasPrefix("remote controllers on ") }
                .map { String($0.dropFirst("remote controllers on ".count)) })
    }

    var output: String { (daemon?.standardOutput ?? "") + (daemon?.standardError ?? "") }

    /// Waits until the daemon's output has `text` `count` times; returns when it saw it (monotonic ns), or nil.
    func waitForOutput(_ text: String, count: Int = 1, timeout: Double) -> UInt64? {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if (daemon?.standardOutput ?? "").components(separatedBy: text).count - 1 >= count { return monotonicNanoseconds() }
            usleep(1_000)
        }
        return nil
    }
}

/// Remote sessions on loopback, between real processes: `fabricq serve
/// --listen` and controllers that connect to `ucx://…` (no root needed).
final class RemoteSessionTests: XCTestCase {
    /// `fabricq keygen` writes a private key only its owner can read (mode
    /// 0600) and the public line; it never overwrites; a private key others
    /// can read is refused.
    func testKeygenWritesAKeyPairAndNeverOverwrites() throws {
        let fixture = try RemoteDaemonFixture(self)
        var status = stat()
        XCTAssertEqual(stat(fixture.admittedKey, &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o600)
        XCTAssertEqual(stat(fixture.folder + "/admitted.pub", &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o644)
        let key = try RemoteSigningKey(contentsOf: FilePath(fixture.admittedKey))
        let line = try String(contentsOfFile: fixture.folder + "/admitted.pub", encoding: .utf8)
        XCTAssertEqual(RemotePublicKey(line: line), key.publicKey)
        XCTAssertTrue(line.hasSuffix(" admitted\n"), line)

        let again = try ChildProcess("fabricq", ["keygen", fixture.folder + "/admitted"])
        let code = try XCTUnwrap(again.wait(timeout: 30))
        XCTAssertEqual(ChildProcess.exitCode(code), 1)
        XCTAssertTrue(again.standardError.contains("File exists"), again.standardError)
        XCTAssertEqual(try RemoteSigningKey(contentsOf: FilePath(fixture.admittedKey)).publicKey, key.publicKey)

        XCTAssertEqual(chmod(fixture.admittedKey, 0o644), 0)
        XCTAssertThrowsError(try RemoteSigningKey(contentsOf: FilePath(fixture.admittedKey))) { error in
            guard case .tooOpen(_, 0o644)? = error as? RemoteKeyError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try AuthorizedKeys(contentsOf: FilePath(fixture.strangerKey))) { error in
            guard case .malformed? = error as? RemoteKeyError else { return XCTFail("\(error)") }
        }
    }

    /// Checked commands through a remote session: small ones (eager) and
    /// ones larger than a slot (a run of slots, sent by rendezvous), while a
    /// local controller uses the same daemon.
    func testCheckedCommandsOverARemoteSession() throws {
        let fixture = try RemoteDaemonFixture(self)
        try fixture.start(host: "127.0.0.1")
        defer { fixture.daemon?.stop() }
        let local = try ChildProcess("fabricq-test-helper", ["controller", fixture.socket, "2000", "1", "256"])
        for (count, size) in [(5000, 64), (200, 200_000)] {
            let remote = try ChildProcess(
                "fabricq-test-helper", ["controller", fixture.url, "\(count)", "1", "\(size)"],
                environment: ["FABRICQ_KEY": fixture.admittedKey])
            remote.assertSuccess(timeout: 120)
            XCTAssertTrue(remote.standardOutput.contains("ok \(count) "), remote.standardOutput + remote.standardError)
            let summary = remote.standardOutput.split(separator: "\n").last.map(String.init) ?? ""
            print("measured: remote session on loopback, \(size) B echo: \(summary)")
        }
        local.assertSuccess(timeout: 120)
        XCTAssertNotNil(fixture.waitForOutput("remoteSessionClosed", count: 2, timeout: 10), fixture.output)
        XCTAssertTrue(fixture.output.contains("closed by the peer"), fixture.output)
    }

    /// A daemon restarted on the port it listened on comes up at once, even
    /// though it closed its connections first (they wait in TIME_WAIT on
    /// that port: the listener binds with SO_REUSEADDR).
    func testADaemonRestartsOnItsPort() throws {
        let fixture = try RemoteDaemonFixture(self)
        try fixture.start(host: "127.0.0.1")
        let url = fixture.url
        let port = try XCTUnwrap(UCXAddress(url: url)).port
        let client = try ChildProcess(
            "fabricq-test-helper", ["session-pingpong", url, "200", "4"], environment: ["FABRICQ_KEY": fixture.admittedKey])
        client.assertSuccess(timeout: 60)
        // The daemon ends the session when the controller says goodbye, so
        // its side closes first; then it stops.
        XCTAssertNotNil(fixture.waitForOutput("remoteSessionClosed", timeout: 10), fixture.output)
        XCTAssertNotNil(fixture.daemon?.stop())
        try fixture.start(host: "127.0.0.1", port: port)
        defer { fixture.daemon?.stop() }
        XCTAssertEqual(fixture.url, url)
        let again = try ChildProcess(
            "fabricq-test-helper", ["controller", url, "100", "1", "64"], environment: ["FABRICQ_KEY": fixture.admittedKey])
        again.assertSuccess(timeout: 60)
    }

    /// A controller that stops (SIGSTOP: its connection stays up, it just
    /// never reads or answers) costs only its own session: the daemon ends
    /// it when its heartbeat stops, while another remote controller's
    /// checked commands all complete.
    func testAStalledControllerCostsOnlyItsOwnSession() throws {
        let fixture = try RemoteDaemonFixture(self)
        try fixture.start(host: "127.0.0.1")
        defer { fixture.daemon?.stop() }
        let key = ["FABRICQ_KEY": fixture.admittedKey]
        let stalled = try ChildProcess("fabricq-test-helper", ["controller", fixture.url, "0", "1", "65536"], environment: key)
        defer { stalled.terminate() }
        XCTAssertTrue(stalled.waitForOutput("first", timeout: 60), stalled.standardError)
        let steady = try ChildProcess("fabricq-test-helper", ["controller", fixture.url, "0", "1", "64"], environment: key)
        defer { steady.terminate() }
        XCTAssertTrue(steady.waitForOutput("first", timeout: 60), steady.standardError)
        kill(stalled.pid, SIGSTOP)
        let stopped = monotonicNanoseconds()
        let noticed = try XCTUnwrap(fixture.waitForOutput("remoteSessionClosed", timeout: 10), fixture.output)
        XCTAssertLessThan(noticed - stopped, 2_000_000_000)
        XCTAssertTrue(fixture.output.contains("peer silent") || fixture.output.contains("ucp_am_send_nbx"), fixture.output)
        usleep(500_000)
        XCTAssertTrue(steady.isRunning, "the other session went on: " + steady.standardError)
        XCTAssertEqual(fixture.output.components(separatedBy: "remoteSessionClosed").count - 1, 1, fixture.output)
        kill(stalled.pid, SIGCONT)
        let after = try ChildProcess("fabricq-test-helper", ["controller", fixture.url, "500", "1", "64"], environment: key)
        after.assertSuccess(timeout: 60)
    }

    /// A key not in the file, a replayed proof, a peer that skips the
    /// handshake and one that sends an oversized hello are each refused
    /// with a reason on both sides, and logged.
    func testWrongKeysReplaysAndUnauthenticatedPeersAreRefused() throws {
        let fixture = try RemoteDaemonFixture(self)
        try fixture.start(host: "127.0.0.1")
        defer { fixture.daemon?.stop() }

        let stranger = try ChildProcess(
            "fabricq-test-helper", ["controller", fixture.url, "10", "1", "64"],
            environment: ["FABRICQ_KEY": fixture.strangerKey])
        XCTAssertNotNil(stranger.wait(timeout: 30))
        XCTAssertTrue(stranger.standardError.contains("peer not allowed (key SHA256:"), stranger.standardError)
        XCTAssertTrue(stranger.standardError.contains("not authorized"), stranger.standardError)
        XCTAssertNotNil(fixture.waitForOutput("remoteConnectionRefused", timeout: 10), fixture.output)
        XCTAssertTrue(fixture.output.contains("not authorized"), fixture.output)

        let replay = try ChildProcess("fabricq-test-helper", ["remote-replay", fixture.url, fixture.admittedKey])
        replay.assertSuccess(timeout: 30)
        XCTAssertTrue(replay.standardOutput.contains("admitted\n"), replay.standardOutput)
        XCTAssertTrue(replay.standardOutput.contains("refused: rejected: peer not allowed (bad signature"), replay.standardOutput)
        XCTAssertNotNil(fixture.waitForOutput("remoteConnectionRefused", count: 2, timeout: 10), fixture.output)

        let rogue = try ChildProcess("fabricq-test-helper", ["remote-unauthenticated", fixture.url])
        rogue.assertSuccess(timeout: 30)
        XCTAssertTrue(
            rogue.standardOutput.contains("refused: rejected: peer not allowed (command before the handshake)"),
            rogue.standardOutput)
        XCTAssertNotNil(fixture.waitForOutput("remoteConnectionRefused", count: 3, timeout: 10), fixture.output)

        // A hello far longer than a hello is refused without being fetched.
        let oversized = try ChildProcess("fabricq-test-helper", ["remote-oversized", fixture.url])
        oversized.assertSuccess(timeout: 30)
        XCTAssertTrue(
            oversized.standardOutput.contains("refused: rejected: peer not allowed (a hello not received"),
            oversized.standardOutput)
        XCTAssertNotNil(fixture.waitForOutput("remoteConnectionRefused", count: 4, timeout: 10), fixture.output)

        // The daemon is unharmed: the admitted key still gets a session.
        let good = try ChildProcess(
            "fabricq-test-helper", ["controller", fixture.url, "100", "1", "64"],
            environment: ["FABRICQ_KEY": fixture.admittedKey])
        good.assertSuccess(timeout: 60)
    }
}

/// Remote sessions between two network namespaces joined by a veth pair
/// (UCX over TCP only, as between hosts): the daemon in one, controllers in
/// the other. Root only (CI is root); skipped otherwise.
final class RemoteSessionBetweenNamespacesTests: XCTestCase {
    let tcpOnly = ["UCX_TLS": "tcp"]

    private func start() throws -> (NetworkNamespacePair, RemoteDaemonFixture) {
        let pair = try NetworkNamespacePair()
        addTeardownBlock { pair.remove() }
        let fixture = try RemoteDaemonFixture(self)
        try fixture.start(host: pair.serverAddress) { name, arguments in
            try pair.spawn(in: pair.serverNamespace, name, arguments, environment: self.tcpOnly)
        }
        return (pair, fixture)
    }

    private func controller(_ pair: NetworkNamespacePair, _ fixture: RemoteDaemonFixture, count: Int) throws -> ChildProcess {
        try pair.spawn(
            in: pair.clientNamespace, "fabricq-test-helper", ["controller", fixture.url, "\(count)", "1", "64"],
            environment: tcpOnly.merging(["FABRICQ_KEY": fixture.admittedKey]) { a, _ in a })
    }

    /// 100,000 checked commands, none lost or duplicated: the controller
    /// checks every output against its input and fails on a completion for
    /// a command not in flight or one that never comes.
    func testOneHundredThousandCheckedCommands() throws {
        let (pair, fixture) = try start()
        let remote = try controller(pair, fixture, count: 100_000)
        remote.assertSuccess(timeout: 300)
        XCTAssertTrue(remote.standardOutput.contains("ok 100000 "), remote.standardOutput + remote.standardError)
        let summary = remote.standardOutput.split(separator: "\n").last.map(String.init) ?? ""
        print("measured: remote session between namespaces (UCX TCP), 64 B echo, 16 in flight: \(summary)")
    }

    /// A controller killed with SIGKILL is noticed by the daemon within a
    /// second; the daemon keeps serving (a local controller, and a new
    /// remote one: reconnecting works); a daemon killed with SIGKILL is
    /// noticed by its remote controller within a second, which fails its
    /// pending commands ("daemon gone") instead of hanging.
    func testKilledPeersAreNoticedWithinASecond() throws {
        let (pair, fixture) = try start()
        let doomed = try controller(pair, fixture, count: 0)
        XCTAssertTrue(doomed.waitForOutput("first", timeout: 60), doomed.standardError)
        usleep(100_000)
        let killed = monotonicNanoseconds()
        kill(doomed.pid, SIGKILL)
        let noticed = try XCTUnwrap(fixture.waitForOutput("remoteSessionClosed", timeout: 10), fixture.output)
        XCTAssertLessThan(noticed - killed, 1_000_000_000)
        print("measured: killed remote controller noticed by the daemon after \((noticed - killed) / 1_000_000) ms")

        let local = try ChildProcess("fabricq-test-helper", ["controller", fixture.socket, "1000", "1", "64"])
        local.assertSuccess(timeout: 60)
        let again = try controller(pair, fixture, count: 0)
        XCTAssertTrue(again.waitForOutput("first", timeout: 60), again.standardError)
        usleep(100_000)
        let daemonKilled = monotonicNanoseconds()
        kill(try XCTUnwrap(fixture.daemon).pid, SIGKILL)
        XCTAssertNotNil(again.wait(timeout: 10))
        let failed = monotonicNanoseconds()
        XCTAssertLessThan(failed - daemonKilled, 1_000_000_000, again.standardError)
        XCTAssertTrue(again.standardError.contains("daemon gone"), again.standardError)
        print("measured: killed daemon noticed by its remote controller after \((failed - daemonKilled) / 1_000_000) ms")
    }

    /// The link taken down under a running session (the veth end in the
    /// daemon's namespace: a cut cable, which UCX alone does not notice) is
    /// noticed on both sides within a second, by the heartbeat; once the
    /// link is back, a controller reconnects.
    func testACutLinkIsNoticedWithinASecondOnBothSides() throws {
        let (pair, fixture) = try start()
        let cut = try controller(pair, fixture, count: 0)
        XCTAssertTrue(cut.waitForOutput("first", timeout: 60), cut.standardError)
        usleep(100_000)
        let down = monotonicNanoseconds()
        try pair.setServerLink(up: false)
        let daemonNoticed = try XCTUnwrap(fixture.waitForOutput("remoteSessionClosed", timeout: 10), fixture.output)
        XCTAssertNotNil(cut.wait(timeout: 10))
        let controllerNoticed = monotonicNanoseconds()
        XCTAssertLessThan(daemonNoticed - down, 1_000_000_000, fixture.output)
        XCTAssertLessThan(controllerNoticed - down, 1_000_000_000, cut.standardError)
        XCTAssertTrue(cut.standardError.contains("daemon gone"), cut.standardError)
        XCTAssertTrue(fixture.output.contains("peer silent"), fixture.output)
        print(
            "measured: cut link noticed by the daemon after \((daemonNoticed - down) / 1_000_000) ms, "
                + "by the controller after \((controllerNoticed - down) / 1_000_000) ms")
        try pair.setServerLink(up: true)
        usleep(200_000)
        let back = try controller(pair, fixture, count: 1000)
        back.assertSuccess(timeout: 60)
    }
}
