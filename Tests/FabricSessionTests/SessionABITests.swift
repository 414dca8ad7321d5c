import CFabricQueueABI
import FabricSession
import FabricTestSupport
import XCTest

/// The session protocol as `fabricqueue.h` defines it for C peers and as the
/// Swift session layer speaks it: one protocol, two definitions that must agree.
final class SessionABITests: XCTestCase {
    func testSessionProtocolConstantsMatchSwift() {
        let c = cABITable()
        XCTAssertEqual(c["const.hello_magic"].map { UInt64($0) }, SessionHandshake.helloMagic)
        XCTAssertEqual(c["const.reply_magic"].map { UInt64($0) }, SessionHandshake.replyMagic)
        XCTAssertEqual(c["const.data_magic"].map { UInt64($0) }, DataRegion.magic)
        XCTAssertEqual(c["const.session_version"].map { UInt32($0) }, SessionHandshake.protocolVersion)
        XCTAssertEqual(c["sizeof.fq_hello"], SessionHandshake.helloSize)
        XCTAssertEqual(c["sizeof.fq_reply"], SessionHandshake.replySize)
        // Field offsets as SessionHandshake writes them.
        XCTAssertEqual(c["fq_hello.protocol_version"], 8)
        XCTAssertEqual(c["fq_hello.purpose"], 12)
        XCTAssertEqual(c["fq_hello.client_pid"], 16)
        XCTAssertEqual(c["fq_reply.status"], 12)
        XCTAssertEqual(c["fq_reply.session_id"], 16)
        XCTAssertEqual(c["fq_reply.descriptor_count"], 24)
        XCTAssertEqual(c["fq_reply.payload_size"], 28)
        XCTAssertEqual(c["fq_reply.reason"], 32)
        XCTAssertEqual(c["tag.submission_ring"].map { UInt8($0) }, SessionDescriptorTag.submissionRing.rawValue)
        XCTAssertEqual(c["tag.completion_ring"].map { UInt8($0) }, SessionDescriptorTag.completionRing.rawValue)
        XCTAssertEqual(c["tag.data_region"].map { UInt8($0) }, SessionDescriptorTag.dataRegion.rawValue)
        XCTAssertEqual(c["tag.daemon_doorbell"].map { UInt8($0) }, SessionDescriptorTag.daemonDoorbell.rawValue)
        XCTAssertEqual(c["tag.session_doorbell"].map { UInt8($0) }, SessionDescriptorTag.sessionDoorbell.rawValue)
        XCTAssertEqual(c["const.data_header_page"], DataRegion.headerPage)
        // DataRegion's header, as its doc comment gives it.
        XCTAssertEqual(c["fq_data_header.slot_size"], 24)
        XCTAssertEqual(c["fq_data_header.slot_count"], 32)
        XCTAssertEqual(c["fq_data_header.epoch"], 40)
        XCTAssertEqual(c["fq_data_header.checksum"], 48)
    }
}
