import FabricTestSupport
import XCTest

/// Two processes ping-pong 200,000 times per doorbell kind, with random spins
/// and sleeps on both sides so that every interleaving of "check, announce,
/// sleep" against "publish, check, ring" occurs. A lost wake-up shows up as a
/// round trip that does not complete within 10 s (the helper then exits 1);
/// the whole run also has a deadline.
final class LostWakeupTests: XCTestCase {
    private func hunt(_ kind: String, count: Int = 200_000) throws {
        let run = try ChildProcess("fabricq-test-helper", ["pingpong", kind, "\(count)", "1"])
        run.assertSuccess(timeout: 240)
        XCTAssertTrue(run.standardOutput.contains("kind=\(kind) count=\(count)"), run.standardOutput + run.standardError)
    }

    func testBusyPoll() throws { try hunt("poll") }
    func testFutex() throws { try hunt("futex") }
    func testEventFDPassedOverSocket() throws { try hunt("eventfd") }
    func testAdaptive() throws { try hunt("adaptive") }
}
