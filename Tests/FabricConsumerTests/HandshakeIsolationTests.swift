import DaemonTestSupport
import FabricConsumer
import FabricProducer
import FabricSystem
import Foundation
import Glibc
import SystemPackage
import XCTest

/// Issue 13, items 2 and 13: handshakes never wait for one another, the peer
/// policy is applied at accept, and every refusal (late, truncated, refused
/// peer, failed resources) gets a reply that says why.
final class HandshakeIsolationTests: XCTestCase {
    /// Opens `count` connections that never send a hello; returns their
    /// descriptors (the caller closes them).
    private func silentClients(_ count: Int, to socket: String) throws -> [FileDescriptor] {
        try (0..<count).map { _ in try UnixDomainSocket.connect(to: FilePath(socket)) }
    }

    /// Fifty connected-but-silent clients used to serialize behind one
    /// another (1 s each on the control thread): a good controller then
    /// timed out, and a dead controller's session was torn down seconds late.
    func testSilentClientsDelayNeitherHandshakesNorTeardown() throws {
        let socket = temporarySocketPath(self), log = EventLog()
        _ = try startDaemon(self, socket: socket, log: log) { $0.handshakeTimeout = .seconds(3) }
        let silent = try silentClients(50, to: socket)
        defer { for fd in silent { try? fd.close() } }
        usleep(50_000)  // let the daemon accept them all

        let spawned = monotonicNanoseconds()
        let good = try ChildProcess("fabricq-test-helper", ["controller", socket, "0", "1", "64"])
        XCTAssertTrue(good.waitForOutput("first", timeout: 20), good.standardError)
        let opened = try XCTUnwrap(log.wait(timeout: 5) { if case .sessionOpened = $0 { true } else { false } })
        let handshakeMs = Double(opened - spawned) / 1e6
        print("measured: handshake beside 50 silent clients completed \(handshakeMs) ms after spawn")
        XCTAssertLessThan(handshakeMs, 2_000, "the handshake waited behind silent clients")

        let killedAt = monotonicNanoseconds()
        kill(good.pid, SIGKILL)
        let closedAt = try XCTUnwrap(log.wait(timeout: 5) { if case .sessionClosed = $0 { true } else { false } })
        XCTAssertLessThan(Double(closedAt - killedAt) / 1e6, 100, "teardown waited behind silent clients")
        good.wait(timeout: 5)

        // Each silent client is answered (not just dropped) once its time is up.
        XCTAssertTrue(try Poll.waitReadable(silent[0], timeoutNanoseconds: 10_000_000_000))
        var reply = [UInt8](repeating: 0, count: SessionHandshake.replySize)
        let got = try reply.withUnsafeMutableBytes { try UnixDomainSocket.receive(silent[0], into: $0) }
        XCTAssertEqual(got, SessionHandshake.replySize)
        let status = reply.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) }
        XCTAssertEqual(status, SessionRejection.malformed.rawValue)
        XCTAssertEqual(String(decoding: reply[32..<64].prefix { $0 != 0 }, as: UTF8.self), "timed out waiting for hello")
    }

    /// A peer the policy refuses is answered at accept, before it sends
    /// anything (it used to be read first, and then dropped without a reply).
    func testRefusedPeerIsAnsweredAtAccept() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to connect as another user") }
        let socket = temporarySocketPath(self), log = EventLog()
        _ = try startDaemon(self, socket: socket, log: log) { $0.socketPermissions = [.ownerReadWrite, .otherReadWrite] }
        let other = try ChildProcess("fabricq-test-helper", ["await-verdict", socket, "65534", "65534"])
        other.assertSuccess(timeout: 20)
        XCTAssertTrue(
            other.standardOutput.contains("status \(SessionRejection.notAllowed.rawValue) reason uid 65534 gid 65534"),
            other.standardOutput + other.standardError)
    }

    /// A hello cut short by the peer closing gets a reply naming it.
    func testTruncatedHelloGetsAReply() throws {
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess("fabricq", ["serve", "--socket", socket])
        XCTAssertTrue(daemon.waitForOutput("listening on", timeout: 20), daemon.standardError)
        defer { daemon.stop() }
        let client = try UnixSocket.connect(to: FilePath(socket))
        try client.send(Array(SessionHandshake.hello().prefix(10)))
        XCTAssertEqual(shutdown(client.fileDescriptor.rawValue, Int32(SHUT_WR)), 0)
        let reply = try client.receive(exactly: SessionHandshake.replySize, timeout: .seconds(5))
        let status = reply.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) }
        XCTAssertEqual(status, SessionRejection.malformed.rawValue)
        XCTAssertEqual(String(decoding: reply[32..<64].prefix { $0 != 0 }, as: UTF8.self), "truncated hello (10 of 32)")
    }

    /// A session the daemon cannot create (here: out of descriptors) is
    /// refused with the call and its errno in the 32-byte reason, not a cut
    /// "session resources: memfd_create " with the errno lost.
    func testResourceFailureReasonKeepsTheErrno() throws {
        let socket = temporarySocketPath(self)
        let serve = ChildProcess.executable("fabricq")
        // Room for the daemon's own descriptors and a few sessions, not ten.
        let daemon = try ChildProcess("/bin/sh", ["-c", "ulimit -n 40 && exec \(serve) serve --socket \(socket)"])
        XCTAssertTrue(daemon.waitForOutput("listening on", timeout: 20), daemon.standardError)
        defer { daemon.stop() }
        final class Open {
            let socket: UnixSocket
            let grant: SessionGrant
            init(_ socket: consuming UnixSocket, _ grant: SessionGrant) {
                self.socket = socket
                self.grant = grant
            }
            deinit { for (_, fd) in grant.descriptors { try? fd.close() } }
        }
        var rejection: SessionError?
        var open: [Open] = []  // sessions stay open, so the daemon's descriptors run out
        for _ in 0..<10 where rejection == nil {
            let connection = try UnixSocket.connect(to: FilePath(socket))
            do {
                let grant = try connection.requestSession(timeout: .seconds(5))
                open.append(Open(connection, grant))
            } catch { rejection = error }
        }
        defer { open.removeAll() }
        guard case .rejected(.busy, let reason) = try XCTUnwrap(rejection, "the daemon never ran out of descriptors") else {
            return XCTFail("\(String(describing: rejection)); daemon: \(daemon.standardError)")
        }
        XCTAssertTrue(reason.hasSuffix(": EMFILE"), "reason \(reason)")
    }
}
