import CFabricShims
import Glibc
import SystemPackage

/// Passing file descriptors between processes over Unix domain sockets with
/// `SCM_RIGHTS` (how a region's memfd and its eventfds reach the other side).
public enum FileDescriptorPassing {
    /// Sends `descriptor` with `sendmsg(2)`/`SCM_RIGHTS` and a one-byte `tag`.
    /// The sender keeps its own copy open.
    public static func send(_ descriptor: FileDescriptor, over socket: FileDescriptor, tag: UInt8 = 0) throws(DoorbellError) {
        guard cfq_send_fd(socket.rawValue, descriptor.rawValue, tag) == 0 else {
            throw .socket(operation: "sendmsg", errno: Errno(rawValue: errno))
        }
    }

    /// Receives one descriptor with `recvmsg(2)` (close-on-exec set). The
    /// caller owns it. Throws on end of stream or a message without one.
    public static func receive(over socket: FileDescriptor) throws(DoorbellError) -> (FileDescriptor, tag: UInt8) {
        var tag: UInt8 = 0
        let fd = cfq_recv_fd(socket.rawValue, &tag)
        guard fd >= 0 else { throw .socket(operation: "recvmsg", errno: Errno(rawValue: errno)) }
        return (FileDescriptor(rawValue: fd), tag)
    }

    /// A connected pair of Unix stream sockets (`socketpair(2)`), close-on-exec
    /// unless `inheritable`.
    public static func socketPair(inheritable: Bool = false) throws(DoorbellError) -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [0, 0]
        let type = Int32(SOCK_STREAM.rawValue) | (inheritable ? 0 : Int32(SOCK_CLOEXEC.rawValue))
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else {
            throw .socket(operation: "socketpair", errno: Errno(rawValue: errno))
        }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }
}
