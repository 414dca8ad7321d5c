import FabricConsumer
import XCTest

final class IdleStrategyTests: XCTestCase {
    func testCommandLineNames() {
        XCTAssertEqual(IdleStrategy(commandLineName: "poll"), .busyPoll)
        XCTAssertEqual(IdleStrategy(commandLineName: "adaptive"), .adaptive(spinFor: .microseconds(50)))
        XCTAssertEqual(IdleStrategy(commandLineName: "sleep"), .sleep)
        XCTAssertNil(IdleStrategy(commandLineName: "busy"))
        XCTAssertNil(IdleStrategy(commandLineName: ""))
    }
}
