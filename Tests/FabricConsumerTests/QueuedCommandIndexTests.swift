import XCTest

@testable import FabricConsumer

/// The per-session index that makes a cancel O(1): checked against a
/// dictionary over random inserts, moves and removals (backward-shift
/// deletion must keep every remaining id reachable).
final class QueuedCommandIndexTests: XCTestCase {
    func testAgreesWithADictionaryOverRandomOperations() {
        var index = QueuedCommandIndex(outstanding: 64)
        var model: [UInt64: QueuedCommandIndex.Location] = [:]
        var generator = SystemRandomNumberGenerator()
        for step in 0..<20_000 {
            // Ids from a small range so that inserts, moves and removals of
            // the same id interleave; at most 64 live at once, as a session's
            // outstanding commands.
            let id = UInt64.random(in: 0..<200, using: &generator)
            if model[id] == nil && model.count < 64 && Bool.random(using: &generator) {
                let location = QueuedCommandIndex.Location(lane: step % 3, level: step % 2, position: step % 1000)
                index.set(id, at: location)
                model[id] = location
            } else if model[id] != nil && Bool.random(using: &generator) {
                let location = QueuedCommandIndex.Location(lane: 1, level: 0, position: step % 777)
                index.set(id, at: location)  // moved by a compaction
                model[id] = location
            } else {
                index.remove(id, at: model[id] ?? .init(lane: 0, level: 0, position: 0))
                model[id] = nil
            }
            XCTAssertEqual(index.count, model.count)
        }
        for id in UInt64(0)..<200 { XCTAssertEqual(index.location(of: id), model[id], "id \(id)") }
    }

    func testIdsThatWereNeverQueuedAreNotFound() {
        var index = QueuedCommandIndex(outstanding: 8)
        index.set(7, at: .init(lane: 0, level: 1, position: 3))
        XCTAssertNil(index.location(of: 8))
        XCTAssertNil(index.location(of: .max))
        index.remove(12345, at: .init(lane: 0, level: 1, position: 3))  // absent: nothing happens
        XCTAssertEqual(index.location(of: 7), .init(lane: 0, level: 1, position: 3))
        // A peer reused id 7: the older command leaving from elsewhere keeps the newer entry.
        index.remove(7, at: .init(lane: 0, level: 1, position: 9))
        XCTAssertEqual(index.location(of: 7), .init(lane: 0, level: 1, position: 3))
        index.remove(7, at: .init(lane: 0, level: 1, position: 3))
        XCTAssertNil(index.location(of: 7))
        XCTAssertEqual(index.count, 0)
    }
}
