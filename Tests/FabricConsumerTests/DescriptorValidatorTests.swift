import FabricConsumer
import FabricProducer
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

    func testSlottedRegionKeepsEachBufferInsideOneSlot() throws {
        let slots = try DataRegionGeometry(slotSize: 8192, slotCount: 4)
        let v = DescriptorValidator(slots: slots, requiredOutput: [1: 4000])
        func check(_ input: (UInt64, UInt32), _ output: (UInt64, UInt32)) -> DescriptorViolation? {
            do {
                try v.validate(d(input: input, output: output))
                return nil
            } catch { return error }
        }
        XCTAssertNil(check((4096, 8192), (4096 + 8192, 4000)), "whole slot 0 in, slot 1 out")
        XCTAssertEqual(check((4096 + 8000, 1024), (4096 + 8192, 4000)), .inputOutOfBounds(offset: 4096 + 8000, size: 1024))
        XCTAssertEqual(check((0, 64), (4096 + 8192, 4000)), .inputOutOfBounds(offset: 0, size: 64), "the header page")
        XCTAssertEqual(
            check((4096, 64), (4096 + 4 * 8192 - 100, 4000)), .outputOutOfBounds(offset: 4096 + 4 * 8192 - 100, capacity: 4000))
    }
}
