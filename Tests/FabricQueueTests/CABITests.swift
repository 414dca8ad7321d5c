import CFabricQueueABI
import FabricQueue
import SystemPackage
import XCTest

/// The C header (`Sources/CFabricQueueABI/include/fabricqueue.h`) and the
/// Swift implementation are two definitions of one ABI; they must agree.
final class CABITests: XCTestCase {
    private func cOffsets() -> [String: Int] {
        var table: [String: Int] = [:]
        for i in 0..<fq_abi_entry_count() {
            guard let entry = fq_abi_entry_at(i), let name = entry.pointee.name else { continue }
            table[String(cString: name)] = entry.pointee.value
        }
        return table
    }

    func testDescriptorLayoutMatchesSwift() {
        let c = cOffsets()
        XCTAssertEqual(c["sizeof.fq_descriptor"], MemoryLayout<Descriptor>.size)
        let swift: [(String, Int?)] = [
            ("command_id", MemoryLayout<Descriptor>.offset(of: \.commandID)),
            ("model_id", MemoryLayout<Descriptor>.offset(of: \.modelID)),
            ("flags", MemoryLayout<Descriptor>.offset(of: \.flags)),
            ("input_offset", MemoryLayout<Descriptor>.offset(of: \.inputOffset)),
            ("output_offset", MemoryLayout<Descriptor>.offset(of: \.outputOffset)),
            ("input_size", MemoryLayout<Descriptor>.offset(of: \.inputSize)),
            ("output_capacity", MemoryLayout<Descriptor>.offset(of: \.outputCapacity)),
            ("submit_timestamp", MemoryLayout<Descriptor>.offset(of: \.submitTimestamp)),
            ("producer_id", MemoryLayout<Descriptor>.offset(of: \.producerID)),
            ("reserved", MemoryLayout<Descriptor>.offset(of: \.reserved)),
            ("user_data", MemoryLayout<Descriptor>.offset(of: \.userData)),
        ]
        for (field, offset) in swift { XCTAssertEqual(c["fq_descriptor.\(field)"], offset, field) }
    }

    func testRegionHeaderAndControlMatchSwift() {
        let c = cOffsets()
        typealias H = RegionLayout.Header
        typealias C = RegionLayout.Control
        XCTAssertEqual(c["sizeof.fq_region_header"], RegionLayout.headerSize)
        XCTAssertEqual(c["sizeof.fq_control"], RegionLayout.controlSize)
        let header: [(String, Int)] = [
            ("magic", H.magic), ("abi_version", H.abiVersion), ("header_size", H.headerSize),
            ("region_size", H.regionSize), ("ring_kind", H.ringKind), ("element_tag", H.elementTag),
            ("slot_size", H.slotSize), ("capacity", H.capacity), ("control_offset", H.controlOffset),
            ("slots_offset", H.slotsOffset), ("sequences_offset", H.sequencesOffset),
            ("creator_pid", H.creatorPID), ("flags", H.flags), ("epoch", H.epoch),
            ("created_at", H.createdAt), ("checksum", H.checksum),
        ]
        for (field, offset) in header { XCTAssertEqual(c["fq_region_header.\(field)"], offset, field) }
        let control: [(String, Int)] = [
            ("head", C.head), ("tail", C.tail), ("data_waiters", C.dataWaiters), ("space_waiters", C.spaceWaiters),
            ("data_futex", C.dataAvailableFutex), ("space_futex", C.spaceAvailableFutex),
            ("producer_owner", C.producerOwner), ("consumer_owner", C.consumerOwner),
        ]
        for (field, offset) in control { XCTAssertEqual(c["fq_control.\(field)"], offset, field) }
    }

    func testCValidatesSwiftRegionsAndAgreesOnTheChecksum() throws {
        for kind in RingKind.allCases {
            for capacity in [2, 1024, 1 << 16] {
                let region = try SharedRegion.createAnonymous(kind: kind, capacity: capacity)
                region.withUnsafeMutableBytes { bytes in
                    let stored = bytes.load(fromByteOffset: RegionLayout.Header.checksum, as: UInt64.self)
                    XCTAssertEqual(fq_abi_checksum(bytes.baseAddress), stored)
                    XCTAssertEqual(fq_abi_attach_status(bytes.baseAddress, bytes.count), 0, "\(kind) \(capacity)")
                    XCTAssertNotEqual(fq_abi_attach_status(bytes.baseAddress, 100), 0, "truncated")
                }
            }
        }
    }
}
