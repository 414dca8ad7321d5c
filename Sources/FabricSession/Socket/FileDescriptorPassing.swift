import FabricQueue
import FabricSystem
import SystemPackage

/// Passing file descriptors between processes over Unix domain sockets with
/// `SCM_RIGHTS` (how a region's memfd and its eventfds reach the other side).
public enum FileDescriptorPassing {
    /// Sends `descriptor` with `sendmsg(2)`/`SCM_RIGHTS` and a one-byte `tag`.
    /// The sender keeps its own copy open.
    public static func send(_ descriptor: FileDescriptor, over socket: FileDescriptor, tag: UInt8 = 0) throws(SocketError) {
        do { try DescriptorPassing.send(descriptor, tag: tag, over: socket) } catch { throw .system(error) }
    }

    /// Receives one descriptor with `recvmsg(2)` (close-on-exec set). The
    /// caller owns it. Throws ``SocketError/peerClosed`` at end of stream, and
    /// `EBADMSG` for a message that does not carry exactly one descriptor
    /// (whatever it did carry is closed, never leaked).
    public static func receive(over socket: FileDescriptor) throws(SocketError) -> (FileDescriptor, tag: UInt8) {
        do { return try DescriptorPassing.receive(over: socket) } catch {
            if error.errno == .connectionReset { throw .peerClosed }
            throw .system(error)
        }
    }

    /// A connected pair of Unix stream sockets (`socketpair(2)`), close-on-exec
    /// unless `inheritable`.
    public static func socketPair(inheritable: Bool = false) throws(SocketError) -> (FileDescriptor, FileDescriptor) {
        do { return try UnixDomainSocket.pair(inheritable: inheritable) } catch { throw .system(error) }
    }
}
