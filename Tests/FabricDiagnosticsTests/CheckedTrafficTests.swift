import FabricDiagnostics
import FabricQueue
import XCTest

final class CheckedTrafficTests: XCTestCase {
    func testEveryFieldIsCoveredByTheChecksum() {
        let good = CheckedTraffic.descriptor(producer: 3, sequence: 41, timestamp: 99)
        XCTAssertTrue(CheckedTraffic.isIntact(good))
        let edits: [(inout Descriptor) -> Void] = [
            { $0.commandID &+= 1 }, { $0.modelID ^= 1 }, { $0.flags ^= 1 }, { $0.inputOffset ^= 1 },
            { $0.inputSize ^= 1 }, { $0.outputOffset ^= 1 }, { $0.outputCapacity ^= 1 },
            { $0.submitTimestamp ^= 1 }, { $0.producerID ^= 1 }, { $0.userData ^= 1 },
        ]
        for (i, edit) in edits.enumerated() {
            var damaged = good
            edit(&damaged)
            XCTAssertFalse(CheckedTraffic.isIntact(damaged), "edit \(i) not caught")
        }
    }

    func testVerifierCountsLossDuplicationAndCorruptionPerProducer() {
        var verifier = StreamVerifier()
        for sequence in 0..<4 as Range<UInt64> {
            verifier.record(CheckedTraffic.descriptor(producer: 1, sequence: sequence))
            verifier.record(CheckedTraffic.descriptor(producer: 2, sequence: sequence))
        }
        XCTAssertTrue(verifier.isClean)
        XCTAssertEqual(verifier.nextSequence, [1: 4, 2: 4])
        verifier.record(CheckedTraffic.descriptor(producer: 1, sequence: 6))  // 4 and 5 lost
        verifier.record(CheckedTraffic.descriptor(producer: 2, sequence: 1))  // seen before
        var corrupt = CheckedTraffic.descriptor(producer: 2, sequence: 4)
        corrupt.inputSize ^= 0xFF
        verifier.record(corrupt)
        XCTAssertEqual(verifier.received, 11)
        XCTAssertEqual(verifier.lost, 2)
        XCTAssertEqual(verifier.duplicated, 1)
        XCTAssertEqual(verifier.corrupt, 1)
        XCTAssertFalse(verifier.isClean)
    }
}
