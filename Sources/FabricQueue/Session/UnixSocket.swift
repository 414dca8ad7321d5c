import CFabricShims
import Glibc
import SystemPackage

/// Why a socket operation failed.
public enum SocketError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed; `operation` names it.
    case system(operation: String, errno: Errno)
    /// The peer closed the connection (end of stream, or `ECONNRESET`/`EPIPE`).
    case peerClosed
    /// Nothing arrived before the deadline.
    case timedOut

    public var description: String {
        switch self {
        case .system(let op, let e): "\(op) failed: \(e)"
        case .peerClosed: "peer closed the connection"
        case .timedOut: "timed out"
        }
    }
}

/// A Unix domain stream socket: the session control channel between a
/// controller and the daemon. It carries the handshake and the region and
/// doorbell descriptors (`SCM_RIGHTS`), nothing on the hot path. A closed
/// socket is how each side learns that the other died: the kernel closes it
/// when the process exits, however it exits.
///
/// Noncopyable: one owner, closed exactly once (on deinit).
public struct UnixSocket: ~Copyable {
    /// The socket's descriptor, owned by this value.
    public let fileDescriptor: FileDescriptor
    /// The path a listening socket is bound to (removed on deinit), or nil.
    public let boundPath: FilePath?

    init(_ fd: FileDescriptor, boundPath: FilePath? = nil) {
        fileDescriptor = fd
        self.boundPath = boundPath
    }

    deinit {
        try? fileDescriptor.close()
        if let boundPath { _ = Glibc.unlink(boundPath.string) }
    }

    /// Binds a listening socket at `path` (`socket`, `bind`, `listen`) and sets
    /// its file mode with `chmod(2)` (default 0600: only the owner may connect;
    /// `SO_PEERCRED` checks are a second line). A stale socket file at `path`
    /// is replaced only when `replaceExisting` is set.
    public static func listen(at path: FilePath, permissions: FilePermissions = [.ownerReadWrite],
                              replaceExisting: Bool = false, backlog: Int32 = 64) throws(SocketError) -> UnixSocket {
        if replaceExisting { _ = Glibc.unlink(path.string) }
        let fd = cfq_unix_listen(path.string, backlog)
        guard fd >= 0 else { throw .system(operation: "bind", errno: Errno(rawValue: errno)) }
        let socket = UnixSocket(FileDescriptor(rawValue: fd), boundPath: path)
        guard chmod(path.string, mode_t(permissions.rawValue)) == 0 else {
            throw .system(operation: "chmod", errno: Errno(rawValue: errno))
        }
        return socket
    }

    /// Connects to the listening socket at `path` (`connect(2)`).
    public static func connect(to path: FilePath) throws(SocketError) -> UnixSocket {
        let fd = cfq_unix_connect(path.string)
        guard fd >= 0 else { throw .system(operation: "connect", errno: Errno(rawValue: errno)) }
        return UnixSocket(FileDescriptor(rawValue: fd))
    }

    /// Waits up to `timeout` for a connection and accepts it (`accept4`,
    /// close-on-exec); nil when none arrived.
    public func accept(timeout: Duration) throws(SocketError) -> UnixSocket? {
        guard try waitReadable(timeout: timeout) else { return nil }
        let fd = cfq_unix_accept(fileDescriptor.rawValue)
        guard fd >= 0 else { throw .system(operation: "accept4", errno: Errno(rawValue: errno)) }
        return UnixSocket(FileDescriptor(rawValue: fd))
    }

    /// The connected peer's credentials (`getsockopt(SO_PEERCRED)`).
    public func peerCredentials() throws(SocketError) -> PeerCredentials {
        var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
        guard cfq_peer_credentials(fileDescriptor.rawValue, &pid, &uid, &gid) == 0 else {
            throw .system(operation: "getsockopt(SO_PEERCRED)", errno: Errno(rawValue: errno))
        }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    /// Whether data (or end of stream) can be read within `timeout` (`ppoll`).
    public func waitReadable(timeout: Duration) throws(SocketError) -> Bool {
        let r = cfq_poll_readable(fileDescriptor.rawValue, Int64(clamping: timeout.saturatingNanoseconds))
        guard r >= 0 else { throw .system(operation: "ppoll", errno: Errno(rawValue: errno)) }
        return r > 0
    }

    /// Whether the peer has closed its end or died (`poll(2)` with a zero
    /// timeout for `POLLHUP`/`POLLRDHUP`/`POLLERR`, then a `MSG_PEEK` read for
    /// end of stream). Never blocks. Bytes waiting to be read do not count as
    /// a hang-up.
    public func peerHasClosed() -> Bool {
        // POLLRDHUP (0x2000) is Linux-specific and not exported to Swift.
        let readHangUp: Int16 = 0x2000
        var entry = pollfd(fd: fileDescriptor.rawValue, events: Int16(POLLIN) | readHangUp, revents: 0)
        let r = Glibc.poll(&entry, 1, 0)
        if r < 0 { return errno != EINTR }
        if r == 0 { return false }
        if entry.revents & (Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL) | readHangUp) != 0 { return true }
        var byte: UInt8 = 0
        let n = recv(fileDescriptor.rawValue, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)
    }

    /// Reads and drops whatever bytes are waiting (non-blocking), at most 64 KiB.
    public func discardPendingBytes() {
        var scratch = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<16 {
            let n = scratch.withUnsafeMutableBytes { recv(fileDescriptor.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { return }
        }
    }

    /// Writes all of `bytes` (`send(2)` with `MSG_NOSIGNAL`: a dead peer is an
    /// error, never a SIGPIPE).
    public func send(_ bytes: [UInt8]) throws(SocketError) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return Glibc.send(fileDescriptor.rawValue, base + sent, buffer.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                let e = Errno(rawValue: errno)
                if e == .interrupted { continue }
                if e == .brokenPipe || e == .connectionReset { throw .peerClosed }
                throw .system(operation: "send", errno: e)
            }
            sent += n
        }
    }

    /// Reads exactly `count` bytes, waiting at most `timeout` in all.
    public func receive(exactly count: Int, timeout: Duration) throws(SocketError) -> [UInt8] {
        let end = deadline(after: timeout)
        var bytes = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let now = MonotonicClock.now()
            guard now < end, try waitReadable(timeout: .nanoseconds(Int64(clamping: end - now))) else { throw .timedOut }
            let n = bytes.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return recv(fileDescriptor.rawValue, base + got, count - got, 0)
            }
            if n == 0 { throw .peerClosed }
            if n < 0 {
                let e = Errno(rawValue: errno)
                if e == .interrupted || e == .resourceTemporarilyUnavailable { continue }
                if e == .connectionReset { throw .peerClosed }
                throw .system(operation: "recv", errno: e)
            }
            got += n
        }
        return bytes
    }
}
