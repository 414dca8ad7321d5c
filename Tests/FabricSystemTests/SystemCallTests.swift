import Foundation
import Glibc
import Synchronization
import SystemPackage
import XCTest

@testable import FabricSystem

/// The syscall funnel: EINTR policy, error shape, and the thin wrappers over
/// real kernel objects.
final class SystemCallTests: XCTestCase {
    func testInterruptedCallsAreRetriedUnlessTheCallerSaysNot() {
        var calls = 0
        func flaky() -> Int32 {
            calls += 1
            if calls < 3 {
                errno = EINTR
                return -1
            }
            return 42
        }
        XCTAssertEqual(try valueOrErrno(retryOnInterrupt: true, flaky).get(), 42)
        XCTAssertEqual(calls, 3)
        calls = 0
        XCTAssertEqual(valueOrErrno(retryOnInterrupt: false, flaky), .failure(.interrupted))
        XCTAssertEqual(calls, 1)
    }

    func testFailuresKeepTheOperationAndErrno() {
        XCTAssertThrowsError(try systemCall("close") { close(-1) }) {
            XCTAssertEqual($0 as? SystemCallError, SystemCallError("close", .badFileDescriptor))
            XCTAssertEqual("\($0)", "close failed: Bad file descriptor (errno 9)")
        }
        XCTAssertThrowsError(try systemCallReturningErrno("pthread_setaffinity_np") { EINVAL }) {
            XCTAssertEqual(($0 as? SystemCallError)?.errno, .invalidArgument)
        }
        XCTAssertThrowsError(try CurrentThread.pin(toCPU: 1 << 20)) {
            XCTAssertEqual(($0 as? SystemCallError)?.operation, "pthread_setaffinity_np")
        }
    }

    func testFutexWaitReportsAChangedWordAndATimeout() throws {
        let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        defer { word.deallocate() }
        word.pointee = 7
        XCTAssertEqual(try Futex.wait(on: word, expecting: 6, timeoutNanoseconds: 1_000_000_000), .valueChanged)
        XCTAssertEqual(try Futex.wait(on: word, expecting: 7, timeoutNanoseconds: 1_000_000), .timedOut)
        XCTAssertEqual(try Futex.wake(word, count: 1), 0, "nobody sleeps")
    }

    func testPollOnAClosedDescriptorIsBadFileDescriptor() throws {
        let counter = try EventCounter.create(initialValue: 0, semaphore: false, inheritable: false)
        XCTAssertFalse(try Poll.waitReadable(counter, timeoutNanoseconds: 0))
        try EventCounter.add(3, to: counter)
        XCTAssertTrue(try Poll.waitReadable(counter, timeoutNanoseconds: 0))
        XCTAssertEqual(try EventCounter.take(from: counter), 3)
        XCTAssertEqual(try EventCounter.take(from: counter), 0, "empty counter reads as 0, not EAGAIN")
        try counter.close()
        XCTAssertThrowsError(try Poll.waitReadable(counter, timeoutNanoseconds: 0)) {
            XCTAssertEqual(($0 as? SystemCallError)?.errno, .badFileDescriptor)
        }
    }

    func testSocketPathsThatDoNotFitAreRefusedBeforeAnyCall() {
        let long = FilePath("/tmp/" + String(repeating: "x", count: 200))
        XCTAssertThrowsError(try UnixDomainSocket.listen(at: long, backlog: 1)) {
            XCTAssertEqual($0 as? SystemCallError, SystemCallError("bind", .fileNameTooLong))
        }
        XCTAssertThrowsError(try UnixDomainSocket.connect(to: long)) {
            XCTAssertEqual($0 as? SystemCallError, SystemCallError("connect", .fileNameTooLong))
        }
    }

    func testListenConnectAcceptAndPeerCredentials() throws {
        let path = FilePath(NSTemporaryDirectory() + "fq-sys-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock")
        defer { try? FileSystem.unlink(path) }
        let listener = try UnixDomainSocket.listen(at: path, backlog: 4)
        defer { try? listener.close() }
        let client = try UnixDomainSocket.connect(to: path)
        defer { try? client.close() }
        XCTAssertTrue(try Poll.waitReadable(listener, timeoutNanoseconds: 1_000_000_000))
        let server = try UnixDomainSocket.accept(listener)
        defer { try? server.close() }
        let peer = try UnixDomainSocket.peerCredentials(server)
        XCTAssertEqual(peer.pid, getpid())
        XCTAssertEqual(peer.uid, geteuid())
        XCTAssertThrowsError(try FileSystem.unlink(FilePath(path.string + ".missing")))
        XCTAssertNoThrow(try FileSystem.unlinkIfPresent(FilePath(path.string + ".missing")))
    }
}

/// EINTR from real signals: a wait is not retried (it returns early and the
/// caller re-checks), a call that completes is.
final class InterruptPolicyTests: XCTestCase {
    private var previous = sigaction()

    override func setUp() {
        // A handler without SA_RESTART, so the kernel reports EINTR.
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGUSR1, &action, &previous)
    }

    override func tearDown() { sigaction(SIGUSR1, &previous, nil) }

    /// Runs `body` on a thread and signals it with SIGUSR1 every 5 ms until
    /// it returns (at most `bound` seconds), then `release()`.
    private func interrupting(bound: Double, release: @escaping () -> Void = {}, _ body: @escaping @Sendable () -> Void) {
        let thread = LockedBox<pthread_t?>(nil)
        let done = Atomic<Bool>(false)
        let worker = Thread {
            thread.withLock { $0 = pthread_self() }
            body()
            done.store(true, ordering: .releasing)
        }
        worker.start()
        let end = Date().addingTimeInterval(bound)
        var signals = 0
        while !done.load(ordering: .acquiring) && Date() < end {
            if let t = thread.withLock({ $0 }) {
                pthread_kill(t, SIGUSR1)
                signals += 1
            }
            usleep(5_000)
            if signals == 20 { release() }
        }
        XCTAssertTrue(done.load(ordering: .acquiring), "the call returned within \(bound) s")
    }

    func testPollIsNotRetriedOnInterrupt() throws {
        let counter = try EventCounter.create(initialValue: 0, semaphore: false, inheritable: false)
        defer { try? counter.close() }
        let readable = LockedBox<Result<Bool, SystemCallError>?>(nil)
        let start = monotonicNanoseconds()
        interrupting(bound: 20) {
            let result = Result { () throws(SystemCallError) -> Bool in
                try Poll.waitReadable(counter, timeoutNanoseconds: 30_000_000_000)
            }
            readable.withLock { $0 = result }
        }
        XCTAssertEqual(readable.withLock { $0 }, .success(false), "an interrupted wait reports 'not ready'")
        XCTAssertLessThan(monotonicNanoseconds() - start, 20_000_000_000, "it returned long before its 30 s timeout")
    }

    func testReceiveIsRetriedOnInterrupt() throws {
        let (a, b) = try UnixDomainSocket.pair(inheritable: false)
        defer {
            try? a.close()
            try? b.close()
        }
        let got = LockedBox<Result<Int, SystemCallError>?>(nil)
        interrupting(
            bound: 20,
            release: {
                var byte: UInt8 = 5
                _ = withUnsafeBytes(of: &byte) { try? UnixDomainSocket.send(a, $0) }
            }
        ) {
            var byte: UInt8 = 0
            let result = withUnsafeMutableBytes(of: &byte) { buffer in
                Result { () throws(SystemCallError) -> Int in try UnixDomainSocket.receive(b, into: buffer) }
            }
            got.withLock { $0 = result.map { _ in Int(byte) } }
        }
        XCTAssertEqual(got.withLock { $0 }, .success(5), "interrupted recv was retried and got the byte")
    }
}
