import FabricDiagnostics
import FabricQueue
import Foundation
import Glibc
import Synchronization
import SystemPackage
import XCTest

final class DoorbellTests: XCTestCase {
    private func kinds() throws -> [(String, Doorbell)] {
        [
            ("busyPoll", .busyPoll), ("busyPollYielding", .busyPoll(yieldingEvery: 64)), ("futex", .futex),
            ("eventFD", .eventFD(dataAvailable: try EventFD(), spaceAvailable: try EventFD())),
            ("adaptive", .adaptive(spinFor: .microseconds(200), then: .futex)),
        ]
    }

    func testReceiveOnEmptyRingTimesOutWithinBounds() throws {
        for (name, doorbell) in try kinds() {
            let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 8)
            var consumer = try SPSCConsumer<Descriptor>(region: region)
            let start = MonotonicClock.now()
            XCTAssertThrowsError(try consumer.receive(doorbell: doorbell, timeout: .milliseconds(50)).commandID, name) {
                XCTAssertEqual($0 as? RingWaitError, .timedOut, name)
            }
            let elapsed = MonotonicClock.now() - start
            XCTAssertGreaterThanOrEqual(elapsed, 50_000_000, name)
            XCTAssertLessThan(elapsed, 1_000_000_000, "\(name) overslept: \(elapsed) ns")
            XCTAssertEqual(region.snapshot().dataWaiters, 0, "\(name) left its waiter announcement behind")
        }
    }

    func testSendOnFullRingTimesOut() throws {
        for (name, doorbell) in try kinds() {
            let region = try SharedRegion.createAnonymous(kind: .mpsc, capacity: 2)
            var producer = try MPSCProducer<Descriptor>(region: region)
            XCTAssertTrue(producer.enqueue(Descriptor()))
            XCTAssertTrue(producer.enqueue(Descriptor()))
            XCTAssertThrowsError(try producer.send(Descriptor(), doorbell: doorbell, timeout: .milliseconds(30)), name) {
                XCTAssertEqual($0 as? RingWaitError, .timedOut, name)
            }
        }
    }

    func testRingingWithNobodyAsleepMakesNoSyscall() throws {
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 8)
        let producer = try SPSCProducer<Descriptor>(region: region)
        XCTAssertFalse(try producer.ringConsumer(.futex))
        XCTAssertEqual(region.snapshot().dataAvailableFutex, 0, "the futex word only moves when someone sleeps")
    }

    func testSleepingConsumerIsWokenAndSpuriousWakeupsAreCounted() throws {
        for doorbell in [Doorbell.futex, .eventFD(dataAvailable: try EventFD(), spaceAvailable: try EventFD())] {
            let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 8)
            final class Box: @unchecked Sendable {
                // @unchecked: written by the thread before join, read after
                var wait: DoorbellWait?
                var error: Error?
            }
            let box = Box()
            runOnThreads([
                {
                    do {
                        var consumer = try SPSCConsumer<Descriptor>(region: region)
                        box.wait = try consumer.waitUntilReadable(doorbell: doorbell, timeout: .seconds(10))
                    } catch { box.error = error }
                },
                {
                    do {
                        var producer = try SPSCProducer<Descriptor>(region: region)
                        func awaitSleeper() {
                            let end = MonotonicClock.now() + 5_000_000_000
                            while region.snapshot().dataWaiters == 0 && MonotonicClock.now() < end { usleep(200) }
                            usleep(2_000)  // let it reach futex_wait / poll
                        }
                        awaitSleeper()
                        try producer.ringConsumer(doorbell)  // nothing posted: a spurious wake-up
                        awaitSleeper()
                        XCTAssertTrue(producer.enqueue(Descriptor(commandID: 1)))
                        XCTAssertTrue(try producer.ringConsumer(doorbell))
                    } catch { box.error = error }
                },
            ])
            XCTAssertNil(box.error)
            XCTAssertEqual(box.wait?.isReady, true)
            XCTAssertEqual(box.wait?.sleeps, 2)
            XCTAssertEqual(box.wait?.spuriousWakeups, 1)
            XCTAssertEqual(region.snapshot().dataWaiters, 0)
        }
    }

    func testClosedEventFDIsATypedError() throws {
        let data = try EventFD(), space = try EventFD()
        data.close()
        data.close()  // idempotent
        XCTAssertThrowsError(try data.signal()) {
            XCTAssertEqual($0 as? DoorbellError, .system(SystemCallError("write", .badFileDescriptor)))
        }
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 8)
        var consumer = try SPSCConsumer<Descriptor>(region: region)
        XCTAssertThrowsError(
            try consumer.receive(
                doorbell: .eventFD(dataAvailable: data, spaceAvailable: space),
                timeout: .seconds(5)
            ).commandID
        ) {
            XCTAssertEqual($0 as? RingWaitError, .doorbell(.system(SystemCallError("ppoll", .badFileDescriptor))))
        }
        XCTAssertEqual(region.snapshot().dataWaiters, 0)
    }

    func testAdoptingSomethingElseIsRefused() throws {
        XCTAssertThrowsError(try EventFD(adopting: FileDescriptor(rawValue: 987_654))) {
            XCTAssertEqual($0 as? DoorbellError, .system(SystemCallError("fcntl(F_GETFD)", .badFileDescriptor)))
        }
        let fd = open("/dev/null", O_RDONLY)
        XCTAssertThrowsError(try EventFD(adopting: FileDescriptor(rawValue: fd))) {
            XCTAssertEqual($0 as? DoorbellError, .notAnEventFD("/dev/null"))
        }
        close(fd)
    }

    func testEventFDCounterAndSemaphoreSemantics() throws {
        let counter = try EventFD()
        try counter.signal()
        try counter.signal(2)
        XCTAssertTrue(try counter.wait(timeoutNanoseconds: 0))
        XCTAssertEqual(try counter.consume(), 3)
        XCTAssertEqual(try counter.consume(), 0)
        XCTAssertFalse(try counter.wait(timeoutNanoseconds: 1_000_000))
        let semaphore = try EventFD(semaphore: true)
        try semaphore.signal(2)
        XCTAssertEqual(try semaphore.consume(), 1)
        XCTAssertEqual(try semaphore.consume(), 1)
        XCTAssertEqual(try semaphore.consume(), 0)
    }

    /// Issue 13, item 9: `close()` racing `signal()` on another thread used
    /// to be check-then-use: a signal could write to the closed descriptor's
    /// number after it was reused. Now the descriptor stays open until the
    /// last call in progress returns; nothing ever lands on the reused number.
    func testCloseWhileSignallingNeverTouchesAReusedDescriptor() throws {
        for _ in 0..<200 {
            let doorbell = try EventFD()
            let stop = Atomic<Bool>(false)
            let signaller = Thread {
                // Acquire: pairs with the main thread's release store below.
                while !stop.load(ordering: .acquiring) { _ = try? doorbell.signal() }
            }
            signaller.start()
            usleep(200)
            doorbell.close()
            // Take the freed number (and the next few) with pipes: a stray
            // 8-byte write would show up in one of them.
            var pipes: [(Int32, Int32)] = []
            for _ in 0..<4 {
                var fds: [Int32] = [0, 0]
                XCTAssertEqual(pipe(&fds), 0)
                _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
                pipes.append((fds[0], fds[1]))
            }
            usleep(200)
            // Release: the signaller stops after seeing it.
            stop.store(true, ordering: .releasing)
            while !signaller.isFinished { usleep(100) }
            for (read, write) in pipes {
                var byte: UInt8 = 0
                XCTAssertEqual(Glibc.read(read, &byte, 1), -1, "a write reached a reused descriptor")
                Glibc.close(read)
                Glibc.close(write)
            }
            XCTAssertThrowsError(try doorbell.signal())
        }
    }
}
