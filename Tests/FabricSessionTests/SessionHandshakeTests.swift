import FabricQueue
import FabricSession
import FabricTestSupport
import Foundation
import Glibc
import SystemPackage
import XCTest

/// The versioned session handshake between a daemon (this process) and a
/// client (a real child process): every refusal is a clear error on both sides.
final class SessionHandshakeTests: XCTestCase {
    private func socketPath() -> String {
        let path = NSTemporaryDirectory() + "fq-session-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        addTeardownBlock { unlink(path) }
        return path
    }

    private func client(
        _ path: String, version: UInt32 = SessionHandshake.protocolVersion,
        uid: UInt32 = UInt32(geteuid()), gid: UInt32 = UInt32(getegid())
    ) throws -> ChildProcess {
        try ChildProcess("fabricq-test-helper", ["session-client", path, "\(version)", "\(uid)", "\(gid)"])
    }

    /// Accepts one connection and runs the daemon side of the handshake.
    private func serve(
        _ listener: borrowing UnixSocket, policy: PeerPolicy = .sameUser,
        grant: (PeerCredentials) throws(SessionError) -> SessionGrant = { _ in SessionGrant(sessionID: 1, descriptors: []) }
    )
        throws -> Result<(PeerCredentials, SessionGrant), SessionError>
    {
        guard let connection = try listener.accept(timeout: .seconds(10)) else { throw SocketError.timedOut }
        do throws(SessionError) {
            let result = try connection.serveHandshake(policy: policy, timeout: .seconds(5), grant: grant)
            _ = try? connection.receive(exactly: 1, timeout: .seconds(5))  // until the client hangs up
            return .success(result)
        } catch {
            return .failure(error)
        }
    }

    func testAcceptedClientGetsWorkingDescriptors() throws {
        let path = socketPath()
        let listener = try UnixSocket.listen(at: FilePath(path))
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 128)
        let bell = try EventFD()
        let peer = try client(path)
        let result = try serve(listener) { credentials in
            SessionGrant(sessionID: 42, descriptors: [(0, region.fileDescriptor), (1, bell.fileDescriptor)])
        }
        guard case .success(let (credentials, grant)) = result else { return XCTFail("\(result)") }
        XCTAssertEqual(credentials.pid, peer.pid)
        XCTAssertEqual(grant.sessionID, 42)
        peer.assertSuccess(timeout: 30)
        XCTAssertTrue(
            peer.standardOutput.contains("granted session 42 with 2 descriptors; region capacity 128; eventfd signalled"),
            peer.standardOutput + peer.standardError)
        XCTAssertEqual(try bell.consume(), 7, "the client signalled the very eventfd the daemon holds")
    }

    func testVersionOnePeerIsToldBothVersions() throws {
        let path = socketPath()
        let listener = try UnixSocket.listen(at: FilePath(path))
        let peer = try client(path, version: 1)
        let result = try serve(listener)
        guard case .failure(let error) = result else { return XCTFail("accepted a version-1 client") }
        XCTAssertEqual(error, .versionMismatch(daemon: 2, client: 1))
        XCTAssertEqual(peer.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(peer.standardError.contains("protocol version mismatch (daemon speaks 2, client 1)"), peer.standardError)
    }

    func testVersionMismatchIsClearOnBothSides() throws {
        let path = socketPath()
        let listener = try UnixSocket.listen(at: FilePath(path))
        let peer = try client(path, version: 99)
        let result = try serve(listener)
        guard case .failure(let error) = result else { return XCTFail("accepted a version-99 client") }
        XCTAssertEqual(error, .versionMismatch(daemon: 2, client: 99))
        XCTAssertEqual(peer.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(peer.standardError.contains("protocol version mismatch (daemon speaks 2, client 99)"), peer.standardError)
    }

    func testPeerOutsideTheAllowListIsRejectedOnBothSides() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to run the client as another user (CI runs as root)") }
        let path = socketPath()
        let listener = try UnixSocket.listen(
            at: FilePath(path), permissions: [.ownerReadWrite, .groupReadWrite, .otherReadWrite])
        let peer = try client(path, uid: 65534, gid: 65534)
        let result = try serve(listener)
        guard case .failure(.rejected(.notAllowed, let reason)) = result else { return XCTFail("\(result)") }
        XCTAssertTrue(reason.contains("uid 65534"), reason)
        XCTAssertEqual(peer.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(peer.standardError.contains("session rejected: peer not allowed (uid 65534 gid 65534)"), peer.standardError)
    }

    func testMalformedHelloEarlyHangUpAndSilenceAreTypedErrors() throws {
        let path = socketPath()
        let listener = try UnixSocket.listen(at: FilePath(path))
        // Garbage instead of a hello: the daemon refuses, and says so to the client.
        do {
            let garbage = try UnixSocket.connect(to: FilePath(path))
            try garbage.send([UInt8](repeating: 0xAB, count: SessionHandshake.helloSize))
            guard let connection = try listener.accept(timeout: .seconds(5)) else { return XCTFail("no connection") }
            XCTAssertThrowsError(
                try connection.serveHandshake(policy: .sameUser, timeout: .seconds(5)) { _ in
                    SessionGrant(sessionID: 1, descriptors: [])
                }.1.sessionID
            ) { XCTAssertEqual($0 as? SessionError, .malformed("hello magic 0xabababababababab")) }
            let reply = try garbage.receive(exactly: SessionHandshake.replySize, timeout: .seconds(5))
            XCTAssertEqual(reply[12], UInt8(SessionRejection.malformed.rawValue))
        }
        // A client that connects and hangs up before its hello.
        do {
            _ = try UnixSocket.connect(to: FilePath(path))
            guard let connection = try listener.accept(timeout: .seconds(5)) else { return XCTFail("no connection") }
            XCTAssertThrowsError(
                try connection.serveHandshake(policy: .sameUser, timeout: .seconds(5)) { _ in
                    SessionGrant(sessionID: 1, descriptors: [])
                }.1.sessionID
            ) { XCTAssertEqual($0 as? SessionError, .socket(.peerClosed)) }
        }
        // A client that says nothing: the daemon gives up at its deadline.
        do {
            let silent = try UnixSocket.connect(to: FilePath(path))
            guard let connection = try listener.accept(timeout: .seconds(5)) else { return XCTFail("no connection") }
            XCTAssertThrowsError(
                try connection.serveHandshake(policy: .sameUser, timeout: .milliseconds(50)) { _ in
                    SessionGrant(sessionID: 1, descriptors: [])
                }.1.sessionID
            ) { XCTAssertEqual($0 as? SessionError, .socket(.timedOut)) }
            _ = consume silent
        }
    }

    /// A telemetry query: the purpose word travels in the hello, the payload
    /// after the reply; a session hello is refused where a query is
    /// expected and the other way round, and so is an unknown purpose.
    func testQueryPurposeCarriesItsPayloadAndIsNeverMistakenForASession() throws {
        XCTAssertEqual(SessionHandshake.purpose(of: SessionHandshake.hello()), 0)
        XCTAssertEqual(SessionHandshake.purpose(of: SessionHandshake.hello(purpose: .telemetry)), 1)
        XCTAssertEqual(SessionHandshake.purpose(of: [1, 2]), 0, "a short hello has no purpose")

        // 1 MiB: more than a socket buffer, so the answer goes out in parts,
        // each as the socket takes it (never waiting inside a send).
        let payload = Array("{\"models\":[]}".utf8) + (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let (client, daemon) = try FileDescriptorPassing.socketPair()
        let clientSocket = UnixSocket(client)
        let parts = Counter()
        let answered = Thread.detachNewThreadAndWait {
            let daemonSocket = UnixSocket(daemon)
            guard let hello = try? daemonSocket.receive(exactly: SessionHandshake.helloSize, timeout: .seconds(5)),
                (try? daemonSocket.acceptQuery(hello: hello)) != nil
            else { return }
            let answer = SessionHandshake.queryReply(payloadSize: payload.count) + payload
            var offset = 0
            let end = Date().addingTimeInterval(10)
            while offset < answer.count && Date() < end {
                guard let reached = try? daemonSocket.sendAvailable(answer, from: offset) else { return }
                if reached > offset { parts.add() }
                offset = reached
                if offset < answer.count { usleep(500) }
            }
        }
        XCTAssertEqual(try clientSocket.requestTelemetry(timeout: .seconds(5)), payload)
        answered()

        // Nobody reading: the call returns with what fitted instead of waiting.
        let (writer, reader) = try FileDescriptorPassing.socketPair()
        let unread = UnixSocket(writer), idle = UnixSocket(reader)
        let first = try unread.sendAvailable(payload, from: 0)
        XCTAssertGreaterThan(first, 0)
        XCTAssertLessThan(first, payload.count, "1 MiB does not fit a socket buffer")
        XCTAssertEqual(try unread.sendAvailable(payload, from: first), first, "still full: nothing more, no wait")
        _ = idle

        // The purpose a query asks for, as the daemon reads it.
        do {
            let (c, d) = try FileDescriptorPassing.socketPair()
            let peer = UnixSocket(c), server = UnixSocket(d)
            try peer.send(SessionHandshake.hello(purpose: .models))
            let bytes = try server.receive(exactly: SessionHandshake.helloSize, timeout: .seconds(5))
            XCTAssertEqual(try server.acceptQuery(hello: bytes), .models)
        }

        // A session hello or an unknown purpose where a query is expected, and
        // an unknown purpose where a session is.
        for (hello, asQuery) in [(SessionHandshake.hello(), true), (purposeHello(7), true), (purposeHello(7), false)] {
            let (c, d) = try FileDescriptorPassing.socketPair()
            let peer = UnixSocket(c), server = UnixSocket(d)
            try peer.send(hello)
            let bytes = try server.receive(exactly: SessionHandshake.helloSize, timeout: .seconds(5))
            if asQuery {
                XCTAssertThrowsError(try server.acceptQuery(hello: bytes))
            } else {
                XCTAssertThrowsError(
                    try server.answer(hello: bytes, from: PeerCredentials(pid: 1, uid: 0, gid: 0)) { _ in
                        XCTFail("no grant for purpose 7")
                        return SessionGrant(sessionID: 1, descriptors: [])
                    })
            }
            let reply = try peer.receive(exactly: SessionHandshake.replySize, timeout: .seconds(5))
            XCTAssertEqual(reply[12], UInt8(SessionRejection.malformed.rawValue), "refused as malformed")
        }
    }

    private func purposeHello(_ purpose: UInt32) -> [UInt8] {
        var hello = SessionHandshake.hello()
        withUnsafeBytes(of: purpose.littleEndian) { hello.replaceSubrange(12..<16, with: $0) }
        return hello
    }
}

/// A count shared with the answering thread.
private final class Counter: @unchecked Sendable {
    // @unchecked: written by one thread, read after it is joined
    private(set) var value = 0
    func add() { value += 1 }
}

extension Thread {
    /// Runs `body` on a new thread; the returned function waits for it.
    fileprivate static func detachNewThreadAndWait(_ body: @escaping @Sendable () -> Void) -> () -> Void {
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            body()
            done.signal()
        }
        return { _ = done.wait(timeout: .now() + 10) }
    }
}
