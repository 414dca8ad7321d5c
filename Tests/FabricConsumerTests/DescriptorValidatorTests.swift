import FabricConsumer
import FabricProducer
import FabricSession
import XCTest

final class DescriptorValidatorTests: XCTestCase {
    let validator = DescriptorValidator(dataRegionSize: 1 << 20, requiredOutput: [1: 4000, 2: 0])

    private func d(model: UInt32 = 1, input: (UInt64, UInt32) = (0, 1024), output: (UInt64, UInt32) = (4096, 4000)) -> Descriptor
    {
        Descriptor(
            commandID: 1, modelID: model, inputOffset: input.0, inputSize: input.1,
            outputOffset: output.0, outputCapacity: output.1)
    }

    private func violation(_ d: Descriptor) -> DescriptorViolation? {
        do {
            try validator.validate(d)
            return nil
        } catch { return error }
    }

    func testValidDescriptorPasses() {
        XCTAssertNil(violation(d()))
        XCTAssertNil(violation(d(input: ((1 << 20) - 8, 8), output: (0, 4000))), "ends exactly at the region end")
        XCTAssertNil(violation(d(model: 2, input: (0, 0), output: (0, 0))), "empty buffers are allowed")
    }

    func testEachViolationIsTyped() {
        XCTAssertEqual(violation(d(model: 9)), .unknownModel(9))
        XCTAssertEqual(violation(d(input: ((1 << 20) - 8, 9))), .inputOutOfBounds(offset: (1 << 20) - 8, size: 9))
        XCTAssertEqual(violation(d(output: (1 << 20, 4000))), .outputOutOfBounds(offset: 1 << 20, capacity: 4000))
        XCTAssertEqual(violation(d(output: (512, 4000))), .overlappingBuffers)
        XCTAssertEqual(violation(d(output: (8192, 100))), .outputTooSmall(capacity: 100, required: 4000))
        var cancel = d()
        cancel.opcode = 9
        XCTAssertEqual(violation(cancel), .unknownOpcode(9))
    }

    /// A session's slotted region (issue 16): inputs and outputs may span
    /// runs of slots; a span that leaves the slots, or one that overlaps
    /// the other buffer, is refused with its own error.
    func testSpansOfSlotsAreCheckedLikeOneSlot() throws {
        let slots = try DataRegionGeometry(slotSize: 1024, slotCount: 8)
        let slotted = DescriptorValidator(slots: slots, requiredOutput: [1: 16])
        func check(_ input: (UInt64, UInt32), _ output: (UInt64, UInt32)) -> DescriptorViolation? {
            do {
                try slotted.validate(d(input: input, output: output))
                return nil
            } catch { return error }
        }
        let slot = { (i: UInt64) in 4096 + 1024 * i }
        XCTAssertNil(check((slot(0), 3 * 1024), (slot(3), 5 * 1024)), "a 3-slot input, a 5-slot output to the last byte")
        XCTAssertNil(check((slot(0) + 100, 2000), (slot(4), 16)), "a span need not start at a slot boundary")
        XCTAssertEqual(check((slot(6), 3 * 1024), (slot(0), 16)), .inputOutOfBounds(offset: slot(6), size: 3 * 1024))
        XCTAssertEqual(check((4000, 1024), (slot(2), 16)), .inputOutOfBounds(offset: 4000, size: 1024), "from the header page")
        XCTAssertEqual(check((slot(0), 16), (slot(7), 1025)), .outputOutOfBounds(offset: slot(7), capacity: 1025))
        XCTAssertEqual(check((slot(0), 3 * 1024), (slot(2), 2 * 1024)), .overlappingBuffers, "runs sharing slot 2")
        XCTAssertEqual(check((slot(2) + 1000, 100), (slot(0), 3 * 1024)), .overlappingBuffers)
        XCTAssertNil(check((slot(0), 2 * 1024), (slot(2), 1024)), "adjacent runs do not overlap")
    }

    func testOverflowingOffsetsCannotWrapIntoBounds() {
        XCTAssertEqual(violation(d(input: (UInt64.max - 10, 1024))), .inputOutOfBounds(offset: UInt64.max - 10, size: 1024))
        XCTAssertEqual(
            violation(d(output: (UInt64.max, UInt32.max))), .outputOutOfBounds(offset: UInt64.max, capacity: UInt32.max))
    }

    func testRandomGarbageNeverPassesOutOfBounds() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<100_000 {
            var g = Descriptor()
            withUnsafeMutableBytes(of: &g) { bytes in
                for i in stride(from: 0, to: 64, by: 8) {
                    bytes.storeBytes(of: rng.next() as UInt64, toByteOffset: i, as: UInt64.self)
                }
            }
            if Bool.random() {
                g.modelID = 1
                g.opcode = 0
            }
            guard (try? validator.validate(g)) != nil else { continue }
            XCTAssertLessThanOrEqual(g.inputOffset + UInt64(g.inputSize), 1 << 20)
            XCTAssertLessThanOrEqual(g.outputOffset + UInt64(g.outputCapacity), 1 << 20)
        }
    }
}
