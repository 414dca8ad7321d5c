import FabricQueue
import FabricSystem
import SystemPackage

extension EventFD {
    /// Sends this eventfd's descriptor over a connected Unix socket as
    /// `SCM_RIGHTS`, with a one-byte `tag` the receiver gets back.
    public func send(over socket: FileDescriptor, tag: UInt8 = 0) throws(SocketError) {
        try FileDescriptorPassing.send(fileDescriptor, over: socket, tag: tag)
    }

    /// Receives an eventfd sent with ``send(over:tag:)``. A descriptor that
    /// is not an eventfd is closed and reported as `EBADMSG`.
    public static func receive(over socket: FileDescriptor, semaphore: Bool = false) throws(SocketError) -> (EventFD, tag: UInt8)
    {
        let (fd, tag) = try FileDescriptorPassing.receive(over: socket)
        do {
            return (try EventFD(adopting: fd, semaphore: semaphore), tag)
        } catch {
            try? fd.close()
            throw .system(SystemCallError("recvmsg", .badMessage))
        }
    }
}
