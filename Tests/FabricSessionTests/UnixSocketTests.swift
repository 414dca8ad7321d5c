import FabricQueue
import FabricSession
import FabricTestSupport
import Glibc
import SystemPackage
import XCTest

/// The session control channel: Unix sockets, kernel-recorded peer
/// credentials, allow-lists, and noticing a dead peer. Peers are real
/// processes, some running as another user.
final class UnixSocketTests: XCTestCase {
    private func socketPath() -> FilePath {
        let path = NSTemporaryDirectory() + "fq-sock-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        addTeardownBlock { unlink(path) }
        return FilePath(path)
    }

    private func requireRoot() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to run a peer as another user (CI runs as root)") }
    }

    func testPeerCredentialsComeFromTheKernel() throws {
        try requireRoot()
        let path = socketPath()
        let listener = try UnixSocket.listen(at: path, permissions: [.ownerReadWrite, .groupReadWrite, .otherReadWrite])
        let peer = try ChildProcess("fabricq-test-helper", ["connect-as", path.string, "65534", "65534"])
        guard let connection = try listener.accept(timeout: .seconds(10)) else { return XCTFail("no connection") }
        let credentials = try connection.peerCredentials()
        XCTAssertEqual(credentials, PeerCredentials(pid: peer.pid, uid: 65534, gid: 65534))
        XCTAssertFalse(PeerPolicy.sameUser.admits(credentials), "root's default policy must refuse nobody")
        XCTAssertTrue(PeerPolicy(allowedUIDs: [65534]).admits(credentials))
        XCTAssertTrue(PeerPolicy(allowedGIDs: [65534]).admits(credentials))
        XCTAssertEqual(try connection.receive(exactly: 5, timeout: .seconds(10)), Array("hello".utf8))
        try connection.send(Array("ok".utf8))
        _ = consume connection
        peer.assertSuccess(timeout: 30)
        XCTAssertTrue(peer.standardOutput.contains("reply ok"))
    }

    func testOwnerOnlySocketRefusesOtherUsers() throws {
        try requireRoot()
        let path = socketPath()
        let listener = try UnixSocket.listen(at: path)  // 0600
        var st = stat()
        XCTAssertEqual(stat(path.string, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        let peer = try ChildProcess("fabricq-test-helper", ["connect-as", path.string, "65534", "65534"])
        XCTAssertEqual(peer.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(peer.standardError.contains("connect failed"), peer.standardError)
        XCTAssertNil(try listener.accept(timeout: .milliseconds(50))?.fileDescriptor)
    }

    func testSameUserIsAdmittedByDefault() throws {
        let path = socketPath()
        let listener = try UnixSocket.listen(at: path)
        let peer = try ChildProcess("fabricq-test-helper", ["connect-as", path.string, "\(geteuid())", "\(getegid())"])
        guard let connection = try listener.accept(timeout: .seconds(10)) else { return XCTFail("no connection") }
        XCTAssertTrue(PeerPolicy.sameUser.admits(try connection.peerCredentials()))
        XCTAssertEqual(try connection.receive(exactly: 5, timeout: .seconds(10)), Array("hello".utf8))
        try connection.send(Array("ok".utf8))
        _ = consume connection
        peer.assertSuccess(timeout: 30)
    }

    func testKilledPeerIsNoticedWithin100Milliseconds() throws {
        let path = socketPath()
        let listener = try UnixSocket.listen(at: path)
        let peer = try ChildProcess("fabricq-test-helper", ["connect-as", path.string, "\(geteuid())", "\(getegid())"])
        guard let connection = try listener.accept(timeout: .seconds(10)) else { return XCTFail("no connection") }
        XCTAssertEqual(try connection.receive(exactly: 5, timeout: .seconds(10)), Array("hello".utf8))
        kill(peer.pid, SIGKILL)
        let start = MonotonicClock.now()
        XCTAssertThrowsError(try connection.receive(exactly: 1, timeout: .seconds(5))) {
            XCTAssertEqual($0 as? SocketError, .peerClosed)
        }
        let noticed = MonotonicClock.now() - start
        XCTAssertLessThan(noticed, 100_000_000, "took \(noticed / 1_000_000) ms")
        peer.wait(timeout: 10)
        XCTAssertThrowsError(try connection.send(Array("x".utf8))) { XCTAssertEqual($0 as? SocketError, .peerClosed) }
    }

    func testReceiveTimesOutAndListenerCleansUp() throws {
        let path = socketPath()
        do {
            let listener = try UnixSocket.listen(at: path)
            let client = try UnixSocket.connect(to: path)
            guard let server = try listener.accept(timeout: .seconds(5)) else { return XCTFail("no connection") }
            let start = MonotonicClock.now()
            XCTAssertThrowsError(try server.receive(exactly: 4, timeout: .milliseconds(50))) {
                XCTAssertEqual($0 as? SocketError, .timedOut)
            }
            XCTAssertGreaterThanOrEqual(MonotonicClock.now() - start, 50_000_000)
            XCTAssertNil(try listener.accept(timeout: .milliseconds(10))?.fileDescriptor)
            _ = consume client
            _ = consume server
            XCTAssertThrowsError(try UnixSocket.listen(at: path).fileDescriptor) {  // still bound
                XCTAssertEqual($0 as? SocketError, .alreadyListening(path: path.string))
            }
        }
        XCTAssertNotEqual(access(path.string, F_OK), 0, "the socket file is removed with the listener")
        XCTAssertThrowsError(try UnixSocket.connect(to: path).fileDescriptor) {
            XCTAssertEqual($0 as? SocketError, .system(SystemCallError("connect", .noSuchFileOrDirectory)))
        }
    }
}
