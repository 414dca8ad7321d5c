import CFabricSystem
import Glibc
import SystemPackage

/// Unix domain stream sockets: `socket(2)`, `bind(2)`, `listen(2)`,
/// `connect(2)`, `accept4(2)`, `send(2)`, `recv(2)`, `socketpair(2)`,
/// `getsockopt(SO_PEERCRED)`. Descriptors are close-on-exec.
package enum UnixDomainSocket {
    /// A listening socket bound to `path`. `ENAMETOOLONG` for a path that does
    /// not fit `sun_path`.
    package static func listen(at path: FilePath, backlog: Int32) throws(SystemCallError) -> FileDescriptor {
        let fd = try newSocket()
        do throws(SystemCallError) {
            try withAddress(path, operation: "bind") { (address, length) throws(SystemCallError) in
                _ = try systemCall("bind") { bind(fd.rawValue, address, length) }
            }
            _ = try systemCall("listen") { Glibc.listen(fd.rawValue, backlog) }
            return fd
        } catch {
            try? fd.close()
            throw error
        }
    }

    /// A socket connected to the listener at `path`. With `timeout`, a
    /// listener whose backlog is full makes `connect(2)` fail with `EAGAIN`
    /// after that long instead of waiting for ever (`SO_SNDTIMEO`, which
    /// `AF_UNIX` connects honour; cleared again once connected).
    package static func connect(to path: FilePath, timeout: Duration? = nil) throws(SystemCallError) -> FileDescriptor {
        let fd = try newSocket()
        do throws(SystemCallError) {
            if let timeout { try setSendTimeout(fd, timeout, operation: "connect") }
            try withAddress(path, operation: "connect") { (address, length) throws(SystemCallError) in
                _ = try systemCall("connect") { Glibc.connect(fd.rawValue, address, length) }
            }
            if timeout != nil { try setSendTimeout(fd, .zero, operation: "connect") }
            return fd
        } catch {
            try? fd.close()
            throw error
        }
    }

    /// Whether `fd` is a listening `AF_UNIX` stream socket
    /// (`getsockopt(SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN)`).
    package static func isListeningStream(_ fd: FileDescriptor) -> Bool {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd.rawValue, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        return option(SO_DOMAIN) == AF_UNIX && option(SO_TYPE) == Int32(SOCK_STREAM.rawValue) && option(SO_ACCEPTCONN) == 1
    }

    /// `accept4(2)` with `SOCK_CLOEXEC`.
    package static func accept(_ listener: FileDescriptor) throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(rawValue: try systemCall("accept4") { cfq_accept4(listener.rawValue, Int32(SOCK_CLOEXEC.rawValue)) })
    }

    /// A connected pair (`socketpair(2)`), close-on-exec unless `inheritable`.
    package static func pair(inheritable: Bool) throws(SystemCallError) -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        let type = Int32(SOCK_STREAM.rawValue) | (inheritable ? 0 : Int32(SOCK_CLOEXEC.rawValue))
        _ = try systemCall("socketpair") { socketpair(AF_UNIX, type, 0, &fds) }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }

    /// The connected peer's pid, uid and gid as the kernel recorded them.
    package static func peerCredentials(_ fd: FileDescriptor) throws(SystemCallError) -> (pid: Int32, uid: UInt32, gid: UInt32) {
        var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
        _ = try systemCall("getsockopt(SO_PEERCRED)") { cfq_getsockopt_peercred(fd.rawValue, &pid, &uid, &gid) }
        return (pid, uid, gid)
    }

    /// `send(2)` with `MSG_NOSIGNAL` (a dead peer is `EPIPE`, never SIGPIPE),
    /// and `MSG_DONTWAIT` with `dontWait` (a full buffer is `EAGAIN`);
    /// returns the bytes sent.
    package static func send(
        _ fd: FileDescriptor, _ bytes: UnsafeRawBufferPointer, dontWait: Bool = false
    ) throws(SystemCallError) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        let flags = CFQ_MSG_NOSIGNAL | (dontWait ? Int32(MSG_DONTWAIT) : 0)
        return try systemCall("send") { Glibc.send(fd.rawValue, base, bytes.count, flags) }
    }

    /// `recv(2)`: the bytes read, 0 at end of stream. With `dontWait`
    /// (`MSG_DONTWAIT`) and nothing waiting it fails with `EAGAIN`.
    package static func receive(
        _ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, peek: Bool = false, dontWait: Bool = false
    ) throws(SystemCallError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var flags: Int32 = 0
        if peek { flags |= Int32(MSG_PEEK) }
        if dontWait { flags |= Int32(MSG_DONTWAIT) }
        return try systemCall("recv") { recv(fd.rawValue, base, buffer.count, flags) }
    }

    /// Sends `bytes` as one datagram to the `AF_UNIX` datagram socket at
    /// `path` (`socket(SOCK_DGRAM)`, `sendto(2)`); a path starting with `@`
    /// names the abstract namespace. Returns the bytes sent.
    package static func sendDatagram(to path: String, _ bytes: UnsafeRawBufferPointer) throws(SystemCallError) -> Int {
        let fd = try newSocket(type: SOCK_DGRAM)
        defer { try? fd.close() }
        var sent = 0
        try withAddress(path, operation: "sendto") { (address, length) throws(SystemCallError) in
            sent = try systemCall("sendto") {
                sendto(fd.rawValue, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), address, length)
            }
        }
        return sent
    }

    /// `setsockopt(SO_SNDTIMEO)`; zero means no limit.
    private static func setSendTimeout(_ fd: FileDescriptor, _ timeout: Duration, operation: String) throws(SystemCallError) {
        let (seconds, attoseconds) = timeout.components
        // At least a microsecond: a zero timeval means "no limit".
        var value = timeval(tv_sec: Int(max(seconds, 0)), tv_usec: Int(max(attoseconds, 0) / 1_000_000_000_000))
        if timeout > .zero && value.tv_sec == 0 && value.tv_usec == 0 { value.tv_usec = 1 }
        _ = try systemCall("setsockopt(SO_SNDTIMEO)") {
            setsockopt(fd.rawValue, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    private static func newSocket(type: __socket_type = SOCK_STREAM) throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(
            rawValue: try systemCall("socket") {
                socket(AF_UNIX, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            })
    }

    /// Calls `body` with a `sockaddr_un` for `path`.
    private static func withAddress(
        _ path: FilePath, operation: String,
        _ body: (UnsafePointer<sockaddr>, socklen_t) throws(SystemCallError) -> Void
    ) throws(SystemCallError) {
        try withAddress(path.string, operation: operation, body)
    }

    /// Calls `body` with a `sockaddr_un` for `path`: a file path (NUL
    /// terminated), or `@name` for the abstract namespace (a leading NUL,
    /// the length exact).
    private static func withAddress(
        _ path: String, operation: String,
        _ body: (UnsafePointer<sockaddr>, socklen_t) throws(SystemCallError) -> Void
    ) throws(SystemCallError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        // One byte stays for the terminating NUL.
        guard !bytes.dropFirst(abstract ? 1 : 0).contains(0) else { throw SystemCallError(operation, .invalidArgument) }
        guard bytes.count < capacity else { throw SystemCallError(operation, .fileNameTooLong) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let length =
            abstract
            ? socklen_t(MemoryLayout<sa_family_t>.size + bytes.count) : socklen_t(MemoryLayout<sockaddr_un>.size)
        try withUnsafePointer(to: &address) { (pointer) throws(SystemCallError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (raw) throws(SystemCallError) in
                try body(raw, length)
            }
        }
    }
}
