import CFabricSystem
import Glibc
import SystemPackage

/// Passing file descriptors over a Unix domain socket with `sendmsg(2)` /
/// `recvmsg(2)` and `SCM_RIGHTS`, one descriptor and a one-byte tag a message.
///
/// Receiving parses the control messages here, in Swift, so that whatever the
/// kernel installed in this process is closed again when the message is not
/// exactly one descriptor: a peer that sends two descriptors, a truncated
/// control buffer (`MSG_CTRUNC`) or a malformed header never leaks one.
package enum DescriptorPassing {
    /// The most descriptors one received message may carry before it is
    /// refused; sized so that a peer sending a few extra gets all of them
    /// closed (descriptors beyond the buffer are never installed by the kernel).
    package static let receiveCapacity = 8

    /// Sends `descriptor` with a one-byte `tag`. The sender keeps its copy.
    package static func send(_ descriptor: FileDescriptor, tag: UInt8, over socket: FileDescriptor) throws(SystemCallError) {
        try send(descriptors: CollectionOfOne(descriptor.rawValue), tag: tag, over: socket)
    }

    /// Sends one message: a one-byte `tag` with `descriptors` in one
    /// `SCM_RIGHTS` control message (none: no control message). The protocol
    /// sends one a message; tests and diagnostics send other counts to play a
    /// hostile peer. At most ``receiveCapacity`` descriptors.
    package static func send(
        descriptors: some Collection<Int32>, tag: UInt8, over socket: FileDescriptor
    ) throws(SystemCallError) {
        guard descriptors.count <= receiveCapacity else { throw SystemCallError("sendmsg", .invalidArgument) }
        var tagByte = tag
        let payload = MemoryLayout<Int32>.size * descriptors.count
        let space = descriptors.isEmpty ? 0 : cfq_cmsg_space(payload)
        try withUnsafeTemporaryAllocation(byteCount: max(space, 1), alignment: MemoryLayout<cmsghdr>.alignment) {
            (control) throws(SystemCallError) in
            control.initializeMemory(as: UInt8.self, repeating: 0)
            try withUnsafeMutableBytes(of: &tagByte) { (tagBytes) throws(SystemCallError) in
                var vector = iovec(iov_base: tagBytes.baseAddress, iov_len: 1)
                try withUnsafeMutablePointer(to: &vector) { (vectorPointer) throws(SystemCallError) in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    if space > 0 {
                        message.msg_control = control.baseAddress
                        message.msg_controllen = space
                        guard let header = cfq_cmsg_firsthdr(&message), let data = cfq_cmsg_data(header) else {
                            throw SystemCallError("sendmsg", .noBufferSpace)
                        }
                        header.pointee.cmsg_level = SOL_SOCKET
                        header.pointee.cmsg_type = CFQ_SCM_RIGHTS
                        header.pointee.cmsg_len = cfq_cmsg_len(payload)
                        for (i, fd) in descriptors.enumerated() {
                            UnsafeMutableRawPointer(data).storeBytes(of: fd, toByteOffset: i * 4, as: Int32.self)
                        }
                    }
                    let sent = try systemCall("sendmsg") { sendmsg(socket.rawValue, &message, CFQ_MSG_NOSIGNAL) }
                    guard sent == 1 else { throw SystemCallError("sendmsg", .ioError) }
                }
            }
        }
    }

    /// Receives one descriptor and its tag (`MSG_CMSG_CLOEXEC`: close-on-exec
    /// from the start). The caller owns it.
    ///
    /// - Throws: `ECONNRESET` at end of stream; `EBADMSG` for a message that
    ///   does not carry exactly one descriptor (every descriptor it did carry
    ///   is closed first).
    package static func receive(over socket: FileDescriptor) throws(SystemCallError) -> (FileDescriptor, tag: UInt8) {
        var tagByte: UInt8 = 0
        let space = cfq_cmsg_space(MemoryLayout<Int32>.size * receiveCapacity)
        return try withUnsafeTemporaryAllocation(byteCount: space, alignment: MemoryLayout<cmsghdr>.alignment) {
            (control) throws(SystemCallError) -> (FileDescriptor, tag: UInt8) in
            control.initializeMemory(as: UInt8.self, repeating: 0)
            var received: [Int32] = []
            var flags: Int32 = 0
            let count: Int = try withUnsafeMutableBytes(of: &tagByte) { (payload) throws(SystemCallError) -> Int in
                var vector = iovec(iov_base: payload.baseAddress, iov_len: 1)
                return try withUnsafeMutablePointer(to: &vector) { (vectorPointer) throws(SystemCallError) -> Int in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = control.baseAddress
                    message.msg_controllen = space
                    let n = try systemCall("recvmsg") { recvmsg(socket.rawValue, &message, CFQ_MSG_CMSG_CLOEXEC) }
                    flags = message.msg_flags
                    received = descriptors(in: &message)
                    return n
                }
            }
            let wellFormed = count == 1 && received.count == 1 && flags & CFQ_MSG_CTRUNC == 0
            guard wellFormed else {
                for fd in received { try? FileDescriptor(rawValue: fd).close() }
                throw SystemCallError("recvmsg", count == 0 && received.isEmpty ? .connectionReset : .badMessage)
            }
            return (FileDescriptor(rawValue: received[0]), tagByte)
        }
    }

    /// Every descriptor in every `SCM_RIGHTS` control message of `message`,
    /// bounded by the control buffer (a `cmsg_len` that claims more than the
    /// buffer holds stops the walk).
    private static func descriptors(in message: inout msghdr) -> [Int32] {
        var found: [Int32] = []
        guard let controlBase = message.msg_control else { return found }
        let controlEnd = UnsafeRawPointer(controlBase) + message.msg_controllen
        var header = cfq_cmsg_firsthdr(&message)
        while let current = header {
            let headerLength = current.pointee.cmsg_len
            guard let dataPointer = cfq_cmsg_data(current) else { break }
            let data = UnsafeRawPointer(dataPointer)
            let dataOffset = data - UnsafeRawPointer(current)
            guard headerLength >= dataOffset, UnsafeRawPointer(current) + Int(headerLength) <= controlEnd else { break }
            if current.pointee.cmsg_level == SOL_SOCKET && current.pointee.cmsg_type == CFQ_SCM_RIGHTS {
                let count = (Int(headerLength) - dataOffset) / MemoryLayout<Int32>.size
                for i in 0..<count { found.append(data.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
            }
            header = cfq_cmsg_nxthdr(&message, current)
        }
        return found
    }
}
