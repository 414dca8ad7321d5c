import FabricQueue
import FabricSession
import FabricSystem
import FabricTestSupport
import Foundation
import Glibc
import SystemPackage
import XCTest

final class FileDescriptorPassingTests: XCTestCase {
    func testEventFDPassesOverUnixSocket() throws {
        let (a, b) = try FileDescriptorPassing.socketPair()
        defer {
            try? a.close()
            try? b.close()
        }
        let original = try EventFD()
        try original.send(over: a, tag: 7)
        let (received, tag) = try EventFD.receive(over: b)
        XCTAssertEqual(tag, 7)
        XCTAssertNotEqual(received.fileDescriptor, original.fileDescriptor)
        try original.signal(5)
        XCTAssertEqual(try received.consume(), 5, "both descriptors name one kernel counter")
        try a.close()
        XCTAssertThrowsError(try EventFD.receive(over: b)) {
            XCTAssertEqual($0 as? SocketError, .peerClosed)
        }
    }

    /// A message carrying two descriptors (a hostile or broken peer) is
    /// refused, and both descriptors the kernel installed here are closed.
    func testMessageWithTwoDescriptorsIsRefusedAndNothingLeaks() throws {
        let (a, b) = try FileDescriptorPassing.socketPair()
        defer {
            try? a.close()
            try? b.close()
        }
        let first = try EventFD(), second = try EventFD()
        let before = openDescriptorCount()
        try DescriptorPassing.send(descriptors: [first.fileDescriptor.rawValue, second.fileDescriptor.rawValue], tag: 9, over: a)
        XCTAssertThrowsError(try FileDescriptorPassing.receive(over: b)) {
            XCTAssertEqual($0 as? SocketError, .system(SystemCallError("recvmsg", .badMessage)))
        }
        XCTAssertEqual(openDescriptorCount(), before, "the received descriptors were closed")
    }

    /// A message with no descriptor at all is refused as malformed.
    func testMessageWithoutDescriptorIsRefused() throws {
        let (a, b) = try FileDescriptorPassing.socketPair()
        defer {
            try? a.close()
            try? b.close()
        }
        try DescriptorPassing.send(descriptors: [Int32](), tag: 9, over: a)
        XCTAssertThrowsError(try FileDescriptorPassing.receive(over: b)) {
            XCTAssertEqual($0 as? SocketError, .system(SystemCallError("recvmsg", .badMessage)))
        }
    }

    /// A descriptor that is not an eventfd, received as one, is closed.
    func testNonEventFDReceivedAsEventFDIsClosed() throws {
        let (a, b) = try FileDescriptorPassing.socketPair()
        defer {
            try? a.close()
            try? b.close()
        }
        let null = try FileDescriptor.open("/dev/null", .readOnly)
        defer { try? null.close() }
        let before = openDescriptorCount()
        try FileDescriptorPassing.send(null, over: a, tag: 1)
        XCTAssertThrowsError(try EventFD.receive(over: b))
        XCTAssertEqual(openDescriptorCount(), before)
    }
}
