import CFabricSystem
import FabricQueue
import FabricSession
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
        try sendRaw(over: a, descriptors: [first.fileDescriptor.rawValue, second.fileDescriptor.rawValue])
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
        try sendRaw(over: a, descriptors: [])
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

    /// sendmsg(2) of one byte with `descriptors` in one SCM_RIGHTS message.
    private func sendRaw(over socket: FileDescriptor, descriptors: [Int32]) throws {
        var byte: UInt8 = 9
        let payload = descriptors.count * 4
        let space = payload == 0 ? 0 : cfq_cmsg_space(payload)
        let control = UnsafeMutableRawPointer.allocate(byteCount: max(space, 1), alignment: 8)
        defer { control.deallocate() }
        memset(control, 0, max(space, 1))
        let sent = withUnsafeMutableBytes(of: &byte) { raw -> Int in
            var vector = iovec(iov_base: raw.baseAddress, iov_len: 1)
            return withUnsafeMutablePointer(to: &vector) { vectorPointer -> Int in
                var message = msghdr()
                message.msg_iov = vectorPointer
                message.msg_iovlen = 1
                if space > 0 {
                    message.msg_control = control
                    message.msg_controllen = space
                    let header = cfq_cmsg_firsthdr(&message)!
                    header.pointee.cmsg_level = SOL_SOCKET
                    header.pointee.cmsg_type = CFQ_SCM_RIGHTS
                    header.pointee.cmsg_len = cfq_cmsg_len(payload)
                    let data = UnsafeMutableRawPointer(cfq_cmsg_data(header)!)
                    for (i, fd) in descriptors.enumerated() { data.storeBytes(of: fd, toByteOffset: i * 4, as: Int32.self) }
                }
                return sendmsg(socket.rawValue, &message, 0)
            }
        }
        XCTAssertEqual(sent, 1)
    }
}
