import FabricQueue
import XCTest

/// The descriptor's layout is ABI: these numbers match `Docs/RingLayout.md`.
final class DescriptorLayoutTests: XCTestCase {
    func testSizeStrideAlignment() {
        XCTAssertEqual(MemoryLayout<Descriptor>.size, 64)
        XCTAssertEqual(MemoryLayout<Descriptor>.stride, 64)
        XCTAssertEqual(MemoryLayout<Descriptor>.alignment, 8)
    }

    func testFieldOffsets() {
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.commandID), 0)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.modelID), 8)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.flags), 12)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.priority), 14)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.opcode), 15)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.inputOffset), 16)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.outputOffset), 24)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.inputSize), 32)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.outputCapacity), 36)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.submitTimestamp), 40)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.producerID), 48)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.deadlineMicroseconds), 52)
        XCTAssertEqual(MemoryLayout<Descriptor>.offset(of: \.userData), 56)
    }

    func testLittleEndianBytes() {
        var d = Descriptor(commandID: 0x0102_0304_0506_0708, modelID: 0x0A0B_0C0D)
        withUnsafeBytes(of: &d) { bytes in
            XCTAssertEqual(Array(bytes[0..<8]), [8, 7, 6, 5, 4, 3, 2, 1])
            XCTAssertEqual(Array(bytes[8..<12]), [0x0D, 0x0C, 0x0B, 0x0A])
        }
    }

    func testRegionLayoutConstants() throws {
        XCTAssertEqual(RegionLayout.magic.littleEndianBytes, Array("FABRICQR".utf8))
        let spsc = try RingGeometry(kind: .spsc, capacity: 1024, slotSize: 64)
        XCTAssertEqual(spsc.slotsOffset, 640)
        XCTAssertEqual(spsc.sequencesOffset, 0)
        XCTAssertEqual(spsc.requiredSize, 640 + 64 * 1024)
        let mpsc = try RingGeometry(kind: .mpsc, capacity: 1024, slotSize: 64)
        XCTAssertEqual(mpsc.sequencesOffset, 640 + 64 * 1024)
        XCTAssertEqual(mpsc.requiredSize, 640 + 72 * 1024)
        XCTAssertEqual(RegionLayout.Control.tail - RegionLayout.Control.head, 128, "indices on separate cache-line pairs")
    }
}

extension UInt64 {
    var littleEndianBytes: [UInt8] { withUnsafeBytes(of: littleEndian) { Array($0) } }
}
