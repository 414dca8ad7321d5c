import CFabricQueueABI
import FabricQueue
import FabricTestSupport
import SystemPackage
import XCTest

/// The C header (`Sources/CFabricQueueABI/include/fabricqueue.h`) and the
/// Swift implementation are two definitions of one ABI; they must agree.
final class CABITests: XCTestCase {
    func testDescriptorLayoutMatchesSwift() {
        let c = cABITable()
        XCTAssertEqual(c["sizeof.fq_descriptor"], MemoryLayout<Descriptor>.size)
        let swift: [(String, Int?)] = [
            ("command_id", MemoryLayout<Descriptor>.offset(of: \.commandID)),
            ("model_id", MemoryLayout<Descriptor>.offset(of: \.modelID)),
            ("flags", MemoryLayout<Descriptor>.offset(of: \.flags)),
            ("priority", MemoryLayout<Descriptor>.offset(of: \.priority)),
            ("opcode", MemoryLayout<Descriptor>.offset(of: \.opcode)),
            ("input_offset", MemoryLayout<Descriptor>.offset(of: \.inputOffset)),
            ("output_offset", MemoryLayout<Descriptor>.offset(of: \.outputOffset)),
            ("input_size", MemoryLayout<Descriptor>.offset(of: \.inputSize)),
            ("output_capacity", MemoryLayout<Descriptor>.offset(of: \.outputCapacity)),
            ("submit_timestamp", MemoryLayout<Descriptor>.offset(of: \.submitTimestamp)),
            ("producer_id", MemoryLayout<Descriptor>.offset(of: \.producerID)),
            ("deadline_us", MemoryLayout<Descriptor>.offset(of: \.deadlineMicroseconds)),
            ("user_data", MemoryLayout<Descriptor>.offset(of: \.userData)),
        ]
        for (field, offset) in swift { XCTAssertEqual(c["fq_descriptor.\(field)"], offset, field) }
    }

    func testRoleLocksAndAbandonedSequencesMatchSwift() {
        let c = cABITable()
        XCTAssertEqual(c["const.role_lock_producer"].map(Int64.init), RegionLayout.RoleLock.producerByte)
        XCTAssertEqual(c["const.role_lock_consumer"].map(Int64.init), RegionLayout.RoleLock.consumerByte)
        XCTAssertEqual(c["const.sequence_abandoned"].map { UInt64(bitPattern: Int64($0)) }, RegionLayout.abandonedSequenceBit)
    }

    func testCompletionLayoutMatchesSwift() {
        let c = cABITable()
        XCTAssertEqual(c["sizeof.fq_completion"], MemoryLayout<Completion>.size)
        XCTAssertEqual(MemoryLayout<Completion>.stride, 64)
        let swift: [(String, Int?)] = [
            ("command_id", MemoryLayout<Completion>.offset(of: \.commandID)),
            ("user_data", MemoryLayout<Completion>.offset(of: \.userData)),
            ("status", MemoryLayout<Completion>.offset(of: \.statusCode)),
            ("output_size", MemoryLayout<Completion>.offset(of: \.outputSize)),
            ("submit_timestamp", MemoryLayout<Completion>.offset(of: \.submitTimestamp)),
            ("pickup_timestamp", MemoryLayout<Completion>.offset(of: \.pickupTimestamp)),
            ("handler_start_timestamp", MemoryLayout<Completion>.offset(of: \.handlerStartTimestamp)),
            ("handler_end_timestamp", MemoryLayout<Completion>.offset(of: \.handlerEndTimestamp)),
            ("producer_id", MemoryLayout<Completion>.offset(of: \.producerID)),
            ("detail", MemoryLayout<Completion>.offset(of: \.detail)),
        ]
        for (field, offset) in swift { XCTAssertEqual(c["fq_completion.\(field)"], offset, field) }
    }

    func testCompletionRingsAreNotDescriptorRings() throws {
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 8, of: Completion.self)
        XCTAssertEqual(region.info.elementTag, 2)
        XCTAssertThrowsError(try SPSCConsumer<Descriptor>(region: region).capacity) {
            XCTAssertEqual($0 as? RegionError, .elementTypeMismatch(expected: 1, found: 2))
        }
        var producer = try SPSCProducer<Completion>(region: region)
        var consumer = try SPSCConsumer<Completion>(region: region)
        let d = Descriptor(commandID: 9, submitTimestamp: 5, producerID: 3, userData: 77)
        var done = Completion(for: d, status: .succeeded, outputSize: 4000)
        done.pickupTimestamp = 6
        XCTAssertTrue(producer.enqueue(done))
        let got = try XCTUnwrap(try consumer.dequeue())
        XCTAssertEqual(got, done)
        XCTAssertEqual(got.status, .succeeded)
        XCTAssertEqual(got.userData, 77)
        XCTAssertEqual(got.producerID, 3)
        var unknown = got
        unknown.statusCode = 99
        XCTAssertNil(unknown.status, "an unknown status is reported as unknown, never trapped on")
    }

    func testRegionHeaderAndControlMatchSwift() {
        let c = cABITable()
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
