import FabricQueue
import FabricSystem
import Glibc
import SystemPackage

/// Why a socket operation failed.
public enum SocketError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed; the error names it and keeps its errno.
    case system(SystemCallError)
    /// The peer closed the connection (end of stream, or `ECONNRESET`/`EPIPE`).
    case peerClosed
    /// Nothing arrived before the deadline.
    case timedOut
    /// Another process is listening at the path: it is not stale, so it is
    /// left alone.
    case alreadyListening(path: String)
    /// Something other than a socket is at the path; it is left alone.
    case notASocket(path: String, fileType: String)
    /// A descriptor handed over to listen on (socket activation) is not a
    /// listening `AF_UNIX` stream socket.
    case notAListeningSocket(descriptor: Int32)

    public var description: String {
        switch self {
        case .system(let error): "\(error)"
        case .peerClosed: "peer closed the connection"
        case .timedOut: "timed out"
        case .alreadyListening(let path): "a daemon is already listening on \(path)"
        case .notASocket(let path, let type): "\(path) is a \(type), not a socket: refusing to replace it"
        case .notAListeningSocket(let fd): "descriptor \(fd) is not a listening Unix stream socket"
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
    /// The path a listening socket is bound to, or nil. On deinit the path
    /// is removed only while it still names this socket's file.
    public let boundPath: FilePath?
    /// Device and inode of the socket file this value bound, to tell it from
    /// a file another process has since put at the same path.
    private let boundFile: (device: UInt64, inode: UInt64)?

    package init(_ fd: FileDescriptor, boundPath: FilePath? = nil, boundFile: (device: UInt64, inode: UInt64)? = nil) {
        fileDescriptor = fd
        self.boundPath = boundPath
        self.boundFile = boundFile
    }

    deinit {
        try? fileDescriptor.close()
        if let boundPath, let boundFile, let status = try? FileSystem.linkStatus(boundPath),
            UInt64(status.st_dev) == boundFile.device, UInt64(status.st_ino) == boundFile.inode
        {
            try? FileSystem.unlink(boundPath)
        }
    }

    /// Binds a listening socket at `path` (`socket`, `bind`, `listen`) and sets
    /// its file mode with `chmod(2)` (default 0600: only the owner may connect;
    /// `SO_PEERCRED` checks are a second line).
    ///
    /// With `replaceStale`, a socket file already at `path` is removed only
    /// when nothing listens on it (a `connect(2)` to it is refused: the
    /// daemon that bound it is gone). A live listener is
    /// ``SocketError/alreadyListening(path:)`` and anything that is not a
    /// socket is ``SocketError/notASocket(path:fileType:)``: both are left
    /// untouched. When the returned socket is released it removes `path`
    /// only if `path` still names the file it bound, never a successor's.
    public static func listen(
        at path: FilePath, permissions: FilePermissions = [.ownerReadWrite],
        replaceStale: Bool = false, backlog: Int32 = 64
    ) throws(SocketError) -> UnixSocket {
        if replaceStale { try removeStaleSocket(at: path) }
        let fd: FileDescriptor
        do { fd = try UnixDomainSocket.listen(at: path, backlog: backlog) } catch {
            if error.errno == .addressInUse, (try? isListening(path)) == true { throw .alreadyListening(path: path.string) }
            throw .system(error)
        }
        let bound = try? FileSystem.linkStatus(path)
        let socket = UnixSocket(
            fd, boundPath: path, boundFile: bound.map { (UInt64($0.st_dev), UInt64($0.st_ino)) })
        do { try FileSystem.changeMode(of: path, to: permissions) } catch { throw .system(error) }
        return socket
    }

    /// Whether a process accepts connections at `path` (a probe `connect(2)`).
    private static func isListening(_ path: FilePath) throws(SocketError) -> Bool {
        do {
            let probe = try UnixDomainSocket.connect(to: path)
            try? probe.close()
            return true
        } catch {
            switch error.errno {
            case .connectionRefused, .noSuchFileOrDirectory: return false
            default: throw .system(error)
            }
        }
    }

    /// Removes the socket file at `path` if nothing listens on it.
    private static func removeStaleSocket(at path: FilePath) throws(SocketError) {
        let status: Glibc.stat?
        do { status = try FileSystem.linkStatus(path) } catch { throw .system(error) }
        guard let status else { return }
        guard FileSystem.isSocket(status.st_mode) else {
            throw .notASocket(path: path.string, fileType: FileSystem.fileTypeName(status.st_mode))
        }
        if try isListening(path) { throw .alreadyListening(path: path.string) }
        do { try FileSystem.unlinkIfPresent(path) } catch { throw .system(error) }
    }

    /// Takes over `fd`, a listening socket someone else bound (the service
    /// manager's, with socket activation). It is closed when the value is
    /// released, but its file is never removed: it is not ours.
    ///
    /// - Throws: ``SocketError/notAListeningSocket(descriptor:)`` unless it
    ///   is a listening `AF_UNIX` stream socket; `fd` is closed then too.
    public static func adoptListener(_ fd: FileDescriptor) throws(SocketError) -> UnixSocket {
        guard UnixDomainSocket.isListeningStream(fd) else {
            try? fd.close()
            throw .notAListeningSocket(descriptor: fd.rawValue)
        }
        return UnixSocket(fd)
    }

    /// Connects to the listening socket at `path` (`connect(2)`). With
    /// `timeout`, a listener that does not take the connection in time (its
    /// backlog is full: a wedged daemon) fails with ``SocketError/timedOut``
    /// instead of blocking for ever.
    public static func connect(to path: FilePath, timeout: Duration? = nil) throws(SocketError) -> UnixSocket {
        do { return UnixSocket(try UnixDomainSocket.connect(to: path, timeout: timeout)) } catch {
            if timeout != nil && error.errno == .resourceTemporarilyUnavailable { throw .timedOut }
            throw .system(error)
        }
    }

    /// Waits up to `timeout` for a connection and accepts it (`accept4`,
    /// close-on-exec); nil when none arrived.
    public func accept(timeout: Duration) throws(SocketError) -> UnixSocket? {
        guard try waitReadable(timeout: timeout) else { return nil }
        do { return UnixSocket(try UnixDomainSocket.accept(fileDescriptor)) } catch { throw .system(error) }
    }

    /// The connected peer's credentials (`getsockopt(SO_PEERCRED)`).
    public func peerCredentials() throws(SocketError) -> PeerCredentials {
        do {
            let (pid, uid, gid) = try UnixDomainSocket.peerCredentials(fileDescriptor)
            return PeerCredentials(pid: pid, uid: uid, gid: gid)
        } catch { throw .system(error) }
    }

    /// Whether data (or end of stream) can be read before `deadline`
    /// (`MonotonicClock` nanoseconds), waiting again after a signal
    /// interrupts the wait, so only the deadline ends it early.
    public func waitReadable(until deadline: UInt64) throws(SocketError) -> Bool {
        while true {
            let now = MonotonicClock.now()
            guard now < deadline else { return false }
            if try waitReadable(timeout: .nanoseconds(Int64(clamping: deadline - now))) { return true }
        }
    }

    /// Whether data (or end of stream) can be read within `timeout` (`ppoll`;
    /// a signal that interrupts the wait returns `false` early: see
    /// ``waitReadable(until:)`` for a wait that only its deadline ends).
    public func waitReadable(timeout: Duration) throws(SocketError) -> Bool {
        do {
            return try Poll.waitReadable(fileDescriptor, timeoutNanoseconds: Int64(clamping: timeout.saturatingNanoseconds))
        } catch { throw .system(error) }
    }

    /// Whether the peer has closed its end or died (`ppoll(2)` with a zero
    /// timeout for `POLLHUP`/`POLLRDHUP`/`POLLERR`, then a `MSG_PEEK` read for
    /// end of stream). Never blocks. Bytes waiting to be read do not count as
    /// a hang-up.
    public func peerHasClosed() -> Bool {
        var entry = pollfd(fd: fileDescriptor.rawValue, events: Poll.readable | Poll.readHangUp, revents: 0)
        let ready: Int
        do {
            ready = try withUnsafeMutablePointer(to: &entry) { (pointer) throws(SystemCallError) -> Int in
                try Poll.wait(UnsafeMutableBufferPointer(start: pointer, count: 1), timeoutNanoseconds: 0)
            }
        } catch { return true }
        if ready == 0 { return false }
        if entry.revents & Poll.hangUpOrError != 0 { return true }
        var byte: UInt8 = 0
        let peeked = withUnsafeMutableBytes(of: &byte) { buffer in
            Result { () throws(SystemCallError) -> Int in
                try UnixDomainSocket.receive(fileDescriptor, into: buffer, peek: true, dontWait: true)
            }
        }
        switch peeked {
        case .success(let n): return n == 0
        case .failure(let error): return error.errno != .resourceTemporarilyUnavailable
        }
    }

    /// Reads and drops whatever bytes are waiting (non-blocking), at most 64 KiB.
    public func discardPendingBytes() {
        withUnsafeTemporaryAllocation(byteCount: 4096, alignment: 1) { scratch in
            for _ in 0..<16 {
                guard let n = try? UnixDomainSocket.receive(fileDescriptor, into: scratch, dontWait: true), n > 0 else { return }
            }
        }
    }

    /// Writes all of `bytes` (`send(2)` with `MSG_NOSIGNAL`: a dead peer is an
    /// error, never a SIGPIPE).
    public func send(_ bytes: [UInt8]) throws(SocketError) {
        var sent = 0
        while sent < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                Result { () throws(SystemCallError) -> Int in
                    try UnixDomainSocket.send(fileDescriptor, UnsafeRawBufferPointer(rebasing: buffer[sent...]))
                }
            }
            switch result {
            case .success(let n): sent += n
            case .failure(let error):
                if error.errno == .brokenPipe || error.errno == .connectionReset { throw .peerClosed }
                throw .system(error)
            }
        }
    }

    /// Writes as much of `bytes[offset...]` as the socket takes now, never
    /// waiting (`send(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL`); returns the
    /// offset reached (`bytes.count` when all went). Call again when the
    /// socket is writable (`POLLOUT`) to send the rest.
    ///
    /// - Throws: ``SocketError/peerClosed`` when the peer is gone.
    public func sendAvailable(_ bytes: [UInt8], from offset: Int) throws(SocketError) -> Int {
        var sent = max(0, min(offset, bytes.count))
        while sent < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                Result { () throws(SystemCallError) -> Int in
                    try UnixDomainSocket.send(fileDescriptor, UnsafeRawBufferPointer(rebasing: buffer[sent...]), dontWait: true)
                }
            }
            switch result {
            case .success(let n): sent += n
            case .failure(let error):
                if error.errno == .resourceTemporarilyUnavailable { return sent }
                if error.errno == .brokenPipe || error.errno == .connectionReset { throw .peerClosed }
                throw .system(error)
            }
        }
        return sent
    }

    /// Reads whatever has arrived, at most `maximum` bytes, without waiting
    /// (`recv(2)` with `MSG_DONTWAIT`): empty when nothing is there.
    ///
    /// - Throws: ``SocketError/peerClosed`` at end of stream.
    public func receiveAvailable(maximum: Int) throws(SocketError) -> [UInt8] {
        guard maximum > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: maximum)
        let result = bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemCallError) -> Int in
                try UnixDomainSocket.receive(fileDescriptor, into: buffer, dontWait: true)
            }
        }
        switch result {
        case .success(0): throw .peerClosed
        case .success(let n): return Array(bytes[0..<n])
        case .failure(let error):
            if error.errno == .resourceTemporarilyUnavailable { return [] }
            if error.errno == .connectionReset { throw .peerClosed }
            throw .system(error)
        }
    }

    /// Reads exactly `count` bytes, waiting at most `timeout` in all.
    public func receive(exactly count: Int, timeout: Duration) throws(SocketError) -> [UInt8] {
        let end = deadline(after: timeout)
        var bytes = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            guard try waitReadable(until: end) else { throw .timedOut }
            let result = bytes.withUnsafeMutableBytes { buffer in
                Result { () throws(SystemCallError) -> Int in
                    try UnixDomainSocket.receive(fileDescriptor, into: UnsafeMutableRawBufferPointer(rebasing: buffer[got...]))
                }
            }
            switch result {
            case .success(0): throw .peerClosed
            case .success(let n): got += n
            case .failure(let error):
                if error.errno == .resourceTemporarilyUnavailable { continue }
                if error.errno == .connectionReset { throw .peerClosed }
                throw .system(error)
            }
        }
        return bytes
    }
}
