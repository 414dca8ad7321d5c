import FabricQueue
import FabricSystem
import SystemPackage

/// The session handshake on the control socket, version 2 (ABI version 2). All integers are
/// little-endian; both messages have a fixed size.
///
/// ```
/// client → daemon  Hello, 32 bytes:  magic "FQHELLO1" (u64) | protocolVersion u32 | purpose u32
///                                     | clientPID i32 | reserved 12 bytes
/// daemon → client  Reply, 64 bytes:  magic "FQREPLY1" (u64) | protocolVersion u32 (the daemon's)
///                                     | status u32 (0 accepted, else SessionRejection) | sessionID u64
///                                     | descriptorCount u32 | payloadSize u32 | reason, 32 bytes UTF-8, NUL-padded
/// then, if accepted, descriptorCount messages of one byte (a tag) carrying one SCM_RIGHTS descriptor each,
/// and payloadSize bytes of payload.
/// ```
///
/// The hello's ``Purpose`` says what the client wants: a session (0, the
/// default) with its descriptors, or a query (``Purpose/telemetry``, the
/// daemon's state; ``Purpose/models``, what it serves): JSON in the payload,
/// no descriptors, and the daemon closes the connection.
///
/// A rejected client gets a reply saying why before the daemon closes the
/// socket, so both sides report a clear error.
public enum SessionHandshake {
    /// The protocol version this build speaks.
    public static let protocolVersion: UInt32 = 2
    /// "FQHELLO1" read as a little-endian `UInt64`.
    public static let helloMagic: UInt64 = 0x314F_4C4C_4548_5146
    /// "FQREPLY1" read as a little-endian `UInt64`.
    public static let replyMagic: UInt64 = 0x3159_4C50_4552_5146
    /// Size of the hello message.
    public static let helloSize = 32
    /// Size of the reply message.
    public static let replySize = 64
    /// At most this many descriptors are passed in one grant.
    public static let maximumDescriptors = 16

    /// Room for the reason text in a reply.
    public static let reasonCapacity = 32

    /// `reason` as UTF-8, cut to ``reasonCapacity`` bytes at a character
    /// boundary (never half a character).
    static func reasonBytes(_ reason: String) -> [UInt8] {
        var bytes: [UInt8] = []
        for character in reason {
            let encoded = Array(String(character).utf8)
            guard bytes.count + encoded.count <= reasonCapacity else { break }
            bytes += encoded
        }
        return bytes
    }

    /// What a client asks for in its hello.
    public enum Purpose: UInt32, Sendable {
        /// A session: rings, data region, doorbells.
        case session = 0
        /// A read-only query: the daemon's telemetry as JSON, then the
        /// daemon closes the connection. What `fabricq top` and `fabricq ping` send.
        case telemetry = 1
        /// A read-only query: the models the daemon serves
        /// (``ModelDescription`` list as JSON). What `fabricq models` sends.
        case models = 2
    }

    /// The most payload a query reply may announce (16 MiB): a client
    /// refuses a larger announcement instead of allocating it.
    public static let maximumPayload = 16 << 20

    /// The accepting reply to a query, announcing `payloadSize` bytes of
    /// payload to follow.
    public static func queryReply(payloadSize: Int) -> [UInt8] {
        reply(status: 0, sessionID: 0, descriptorCount: 0, reason: "", payloadSize: payloadSize)
    }

    /// The purpose code of a complete `hello` (0 when it is too short).
    public static func purpose(of hello: [UInt8]) -> UInt32 {
        guard hello.count >= 16 else { return 0 }
        return UInt32(littleEndian: hello.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self) })
    }

    /// The hello a client sends.
    public static func hello(version: UInt32 = protocolVersion, purpose: Purpose = .session) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: helloSize)
        bytes.withUnsafeMutableBytes { b in
            b.storeBytes(of: helloMagic.littleEndian, toByteOffset: 0, as: UInt64.self)
            b.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt32.self)
            b.storeBytes(of: purpose.rawValue.littleEndian, toByteOffset: 12, as: UInt32.self)
            b.storeBytes(of: currentProcessID.littleEndian, toByteOffset: 16, as: Int32.self)
        }
        return bytes
    }

    static func reply(
        status: UInt32, sessionID: UInt64, descriptorCount: Int, reason: String, payloadSize: Int = 0
    ) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: replySize)
        bytes.withUnsafeMutableBytes { b in
            b.storeBytes(of: replyMagic.littleEndian, toByteOffset: 0, as: UInt64.self)
            b.storeBytes(of: protocolVersion.littleEndian, toByteOffset: 8, as: UInt32.self)
            b.storeBytes(of: status.littleEndian, toByteOffset: 12, as: UInt32.self)
            b.storeBytes(of: sessionID.littleEndian, toByteOffset: 16, as: UInt64.self)
            b.storeBytes(of: UInt32(descriptorCount).littleEndian, toByteOffset: 24, as: UInt32.self)
            b.storeBytes(of: UInt32(clamping: payloadSize).littleEndian, toByteOffset: 28, as: UInt32.self)
        }
        let text = SessionHandshake.reasonBytes(reason)
        bytes.replaceSubrange(32..<32 + text.count, with: text)
        return bytes
    }
}

/// Why the daemon refused a session (the reply's status field).
public enum SessionRejection: UInt32, Sendable, CustomStringConvertible {
    /// The client speaks another protocol version.
    case versionMismatch = 1
    /// The client's uid/gid is not in the daemon's allow-list.
    case notAllowed = 2
    /// The hello was not a FabricQueue hello.
    case malformed = 3
    /// The daemon cannot take another session now.
    case busy = 4

    public var description: String {
        switch self {
        case .versionMismatch: "protocol version mismatch"
        case .notAllowed: "peer not allowed"
        case .malformed: "malformed hello"
        case .busy: "daemon busy"
        }
    }
}

/// Why a handshake failed, on either side.
public enum SessionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The control socket failed (closed, timed out, system error).
    case socket(SocketError)
    /// Nothing accepts connections at the socket path (no file there, or a
    /// stale socket whose daemon is gone).
    case daemonUnreachable(path: String, SocketError)
    /// The two sides speak different protocol versions.
    case versionMismatch(daemon: UInt32, client: UInt32)
    /// The daemon refused the peer (`reason` is the daemon's text).
    case rejected(SessionRejection, reason: String)
    /// The other side sent something that is not this protocol.
    case malformed(String)
    /// A descriptor could not be passed.
    case descriptorPassing(SocketError)
    /// A remote session's transport (UCX) failed: the daemon is unreachable,
    /// the connection reset, or the handshake timed out.
    case transport(String)

    public var description: String {
        switch self {
        case .socket(let e): "session socket: \(e)"
        case .daemonUnreachable(let path, let e): "no daemon at \(path) (\(e)): is the daemon running?"
        case .versionMismatch(let daemon, let client): "protocol version mismatch (daemon speaks \(daemon), client \(client))"
        case .rejected(let why, let reason): "session rejected: \(why)\(reason.isEmpty ? "" : " (\(reason))")"
        case .malformed(let what): "malformed handshake: \(what)"
        case .descriptorPassing(let e): "passing descriptors: \(e)"
        case .transport(let why): "remote transport: \(why)"
        }
    }
}

/// What a daemon hands an accepted client: a session id and tagged
/// descriptors (the session's regions and doorbells).
public struct SessionGrant: Sendable {
    /// The session's id.
    public var sessionID: UInt64
    /// Descriptors with the tag the daemon gave each. The receiver owns them.
    public var descriptors: [(tag: UInt8, descriptor: FileDescriptor)]

    /// A grant.
    public init(sessionID: UInt64, descriptors: [(tag: UInt8, descriptor: FileDescriptor)]) {
        self.sessionID = sessionID
        self.descriptors = descriptors
    }
}

extension UnixSocket {
    /// Daemon side, in one call: reads the client's hello (within `timeout`),
    /// checks its version and the peer's kernel credentials against `policy`,
    /// and either sends a rejection and throws, or calls `grant` and sends the
    /// reply with its descriptors (the daemon keeps its own copies).
    ///
    /// This blocks the calling thread until the hello arrives. A server that
    /// talks to several clients at once (as `FabricDaemon` does) checks the
    /// credentials with ``refuseUnlessAdmitted(by:)`` at accept, collects the
    /// hello bytes as they arrive, and answers with ``answer(hello:from:grant:)``.
    public func serveHandshake(
        policy: PeerPolicy, timeout: Duration,
        grant: (PeerCredentials) throws(SessionError) -> SessionGrant
    ) throws(SessionError) -> (PeerCredentials, SessionGrant) {
        let credentials = try refuseUnlessAdmitted(by: policy)
        let hello: [UInt8]
        do { hello = try receive(exactly: SessionHandshake.helloSize, timeout: timeout) } catch {
            switch error {
            case .timedOut: refuse(.malformed, reason: "timed out waiting for hello")
            case .peerClosed: refuse(.malformed, reason: "truncated hello")
            case .system, .alreadyListening, .notASocket, .notAListeningSocket: break
            }
            throw .socket(error)
        }
        return (credentials, try answer(hello: hello, from: credentials, grant: grant))
    }

    /// Daemon side, at accept: the peer's kernel credentials (`SO_PEERCRED`)
    /// if `policy` admits them; otherwise the peer gets a
    /// ``SessionRejection/notAllowed`` reply at once (before it has sent
    /// anything) and this throws.
    public func refuseUnlessAdmitted(by policy: PeerPolicy) throws(SessionError) -> PeerCredentials {
        let credentials: PeerCredentials
        do { credentials = try peerCredentials() } catch { throw .socket(error) }
        guard policy.admits(credentials) else {
            refuse(.notAllowed, reason: "uid \(credentials.uid) gid \(credentials.gid)")
            throw .rejected(.notAllowed, reason: "\(credentials)")
        }
        return credentials
    }

    /// Daemon side, once the whole hello has arrived: checks its magic and
    /// version, then either sends a rejection and throws, or calls `grant`
    /// and sends the reply with its descriptors (the daemon keeps its own
    /// copies). A grant that fails still answers the client: with its own
    /// rejection (say, busy), or "busy" with the reason.
    public func answer(
        hello: [UInt8], from credentials: PeerCredentials,
        grant: (PeerCredentials) throws(SessionError) -> SessionGrant
    ) throws(SessionError) -> SessionGrant {
        try checkHello(hello, purpose: .session)
        let granted: SessionGrant
        do { granted = try grant(credentials) } catch {
            if case .rejected(let why, let reason) = error {
                refuse(why, reason: reason)
            } else {
                refuse(.busy, reason: "\(error)")
            }
            throw error
        }
        guard granted.descriptors.count <= SessionHandshake.maximumDescriptors else {
            throw .malformed("grant of \(granted.descriptors.count) descriptors exceeds \(SessionHandshake.maximumDescriptors)")
        }
        do {
            try send(
                SessionHandshake.reply(
                    status: 0, sessionID: granted.sessionID,
                    descriptorCount: granted.descriptors.count, reason: ""))
        } catch { throw .socket(error) }
        for (tag, descriptor) in granted.descriptors {
            do { try FileDescriptorPassing.send(descriptor, over: fileDescriptor, tag: tag) } catch {
                throw .descriptorPassing(error)
            }
        }
        return granted
    }

    /// Daemon side: refuses (and throws) unless `hello` is a whole hello of
    /// this protocol version asking for `purpose`.
    func checkHello(_ hello: [UInt8], purpose: SessionHandshake.Purpose) throws(SessionError) {
        _ = try checkHello(hello, oneOf: [purpose])
    }

    /// Daemon side: refuses (and throws) unless `hello` is a whole hello of
    /// this protocol version asking for one of `purposes`; returns which.
    func checkHello(
        _ hello: [UInt8], oneOf purposes: [SessionHandshake.Purpose]
    ) throws(SessionError) -> SessionHandshake.Purpose {
        guard hello.count == SessionHandshake.helloSize else {
            refuse(.malformed, reason: "hello of \(hello.count) bytes")
            throw .malformed("hello of \(hello.count) bytes, not \(SessionHandshake.helloSize)")
        }
        let magic = UInt64(littleEndian: hello.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self) })
        let version = UInt32(littleEndian: hello.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self) })
        guard magic == SessionHandshake.helloMagic else {
            refuse(.malformed, reason: "bad magic")
            throw .malformed("hello magic 0x\(String(magic, radix: 16))")
        }
        guard version == SessionHandshake.protocolVersion else {
            refuse(.versionMismatch, reason: "daemon speaks \(SessionHandshake.protocolVersion), client \(version)")
            throw .versionMismatch(daemon: SessionHandshake.protocolVersion, client: version)
        }
        let asked = SessionHandshake.purpose(of: hello)
        guard let purpose = SessionHandshake.Purpose(rawValue: asked), purposes.contains(purpose) else {
            refuse(.malformed, reason: "purpose \(asked)")
            throw .malformed("hello purpose \(asked), not one of \(purposes.map(\.rawValue))")
        }
        return purpose
    }

    /// Daemon side, once a whole hello has arrived: returns which query it
    /// is (``SessionHandshake/Purpose/telemetry`` or
    /// ``SessionHandshake/Purpose/models``) when it is one of this protocol
    /// version; otherwise refuses it (as ``answer(hello:from:grant:)`` would)
    /// and throws. The daemon then sends
    /// ``SessionHandshake/queryReply(payloadSize:)`` and the payload, as the
    /// socket takes them (``sendAvailable(_:from:)``: a tool that does not
    /// read cannot hold the daemon's thread).
    @discardableResult
    public func acceptQuery(hello: [UInt8]) throws(SessionError) -> SessionHandshake.Purpose {
        try checkHello(hello, oneOf: [.telemetry, .models])
    }

    /// Client side: sends a ``SessionHandshake/Purpose/telemetry`` hello and
    /// returns the payload of the daemon's reply, all within `timeout`.
    public func requestTelemetry(timeout: Duration) throws(SessionError) -> [UInt8] {
        try requestQuery(.telemetry, timeout: timeout)
    }

    /// Client side, in one call: connects to the daemon at `path` and returns
    /// the payload of its answer to a `purpose` query, all (connecting
    /// included) within `timeout`.
    ///
    /// - Throws: ``SessionError/daemonUnreachable(path:_:)`` when nothing
    ///   listens there, ``SessionError/socket(_:)`` with
    ///   ``SocketError/timedOut`` when it does not answer in time, or the
    ///   daemon's refusal.
    public static func query(
        _ purpose: SessionHandshake.Purpose, at path: FilePath, timeout: Duration
    ) throws(SessionError) -> [UInt8] {
        let end = deadline(after: timeout)
        let socket: UnixSocket
        // Bounded too: a wedged daemon's full backlog would block connect(2).
        do { socket = try UnixSocket.connect(to: path, timeout: timeout) } catch {
            if case .system(let failure) = error,
                failure.errno == .noSuchFileOrDirectory || failure.errno == .connectionRefused
            {
                throw .daemonUnreachable(path: path.string, error)
            }
            throw .socket(error)
        }
        let now = MonotonicClock.now()
        return try socket.requestQuery(purpose, timeout: .nanoseconds(Int64(clamping: end > now ? end - now : 0)))
    }

    /// Client side: sends a `purpose` query hello and returns the payload of
    /// the daemon's reply, all within `timeout`.
    public func requestQuery(_ purpose: SessionHandshake.Purpose, timeout: Duration) throws(SessionError) -> [UInt8] {
        let end = deadline(after: timeout)
        do { try send(SessionHandshake.hello(purpose: purpose)) } catch {
            guard case .peerClosed = error else { throw .socket(error) }
        }
        let reply = try receiveReply(timeout: timeout, version: SessionHandshake.protocolVersion)
        let size = Int(reply.payloadSize)
        guard size <= SessionHandshake.maximumPayload else { throw .malformed("payload of \(size) bytes announced") }
        let now = MonotonicClock.now()
        let left = end > now ? end - now : 0
        do { return try receive(exactly: size, timeout: .nanoseconds(Int64(clamping: left))) } catch { throw .socket(error) }
    }

    /// Daemon side: sends a rejection reply (`why`, and `reason` cut to the
    /// reply's 32 bytes on a character boundary). Best effort: a peer that is
    /// gone is not an error here.
    public func refuse(_ why: SessionRejection, reason: String) {
        try? send(SessionHandshake.reply(status: why.rawValue, sessionID: 0, descriptorCount: 0, reason: reason))
        // Closing with unread bytes makes the kernel reset the connection,
        // which can cost the peer the reply it has not read yet.
        discardPendingBytes()
    }

    /// Client side: sends the hello and waits (within `timeout`) for the
    /// daemon's verdict; returns the grant with its descriptors (now owned by
    /// the caller) or throws the daemon's reason.
    public func requestSession(
        timeout: Duration, version: UInt32 = SessionHandshake.protocolVersion
    ) throws(SessionError) -> SessionGrant {
        try sendSessionHello(version: version)
        let reader = SessionGrantReader(version: version)
        let end = deadline(after: timeout)
        while true {
            if let grant = try reader.advance(on: fileDescriptor) { return grant }
            let readable: Bool
            do { readable = try waitReadable(until: end) } catch { throw .socket(error) }
            guard readable else { throw .socket(.timedOut) }
        }
    }

    /// Client side, the first half of ``requestSession(timeout:version:)``
    /// for a caller that must not wait: sends the hello; a
    /// ``SessionGrantReader`` then reads the verdict as it arrives.
    public func sendSessionHello(version: UInt32 = SessionHandshake.protocolVersion) throws(SessionError) {
        // A daemon that refuses us at accept answers and closes before our
        // hello lands: the send then fails, and the answer is still there.
        do { try send(SessionHandshake.hello(version: version)) } catch {
            guard case .peerClosed = error else { throw .socket(error) }
        }
    }

    /// Client side: reads the daemon's 64-byte reply; throws its refusal.
    private func receiveReply(
        timeout: Duration, version: UInt32
    ) throws(SessionError) -> (sessionID: UInt64, descriptorCount: UInt32, payloadSize: UInt32) {
        let reply: [UInt8]
        do { reply = try receive(exactly: SessionHandshake.replySize, timeout: timeout) } catch { throw .socket(error) }
        return try SessionHandshake.parseReply(reply, version: version)
    }
}

extension SessionHandshake {
    /// The fields of a daemon's 64-byte reply (`reply.count` must be
    /// ``replySize``); throws its refusal.
    static func parseReply(
        _ reply: [UInt8], version: UInt32
    ) throws(SessionError) -> (sessionID: UInt64, descriptorCount: UInt32, payloadSize: UInt32) {
        func field<T: FixedWidthInteger>(_ offset: Int, _ type: T.Type) -> T {
            T(littleEndian: reply.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) })
        }
        guard field(0, UInt64.self) == SessionHandshake.replyMagic else {
            throw .malformed("reply magic 0x\(String(field(0, UInt64.self), radix: 16))")
        }
        let status = field(12, UInt32.self)
        let reason = String(decoding: reply[32..<64].prefix { $0 != 0 }, as: UTF8.self)
        if status != 0 {
            guard let why = SessionRejection(rawValue: status) else { throw .malformed("unknown status \(status)") }
            if why == .versionMismatch { throw .versionMismatch(daemon: field(8, UInt32.self), client: version) }
            throw .rejected(why, reason: reason)
        }
        return (field(16, UInt64.self), field(24, UInt32.self), field(28, UInt32.self))
    }
}

/// Reads a daemon's session grant, the second half of
/// `UnixSocket.requestSession(timeout:version:)`, without ever waiting (a
/// daemon's poll thread opening an in-process session for a remote
/// controller uses it directly; `requestSession` waits between calls): each ``advance(on:)``
/// reads only what has arrived on the socket (non-blocking reads of the
/// reply, then the descriptors, one by one) and returns the grant when all
/// of it is there. Descriptors it holds are closed if it is dropped before.
public final class SessionGrantReader {
    private let version: UInt32
    private var replyBytes: [UInt8] = []
    private var reply: (sessionID: UInt64, descriptorCount: Int)?
    private var descriptors: [(tag: UInt8, descriptor: FileDescriptor)] = []

    /// A reader with nothing read yet.
    public init(version: UInt32 = SessionHandshake.protocolVersion) {
        self.version = version
    }

    deinit { for entry in descriptors { try? entry.descriptor.close() } }

    /// Reads what has arrived on `socket`, the connection a
    /// `sendSessionHello(version:)` went out on; returns the grant once
    /// complete, nil while parts are missing. Never waits.
    ///
    /// - Throws: the daemon's refusal, a malformed reply, the peer closing,
    ///   or a socket error.
    public func advance(on socket: FileDescriptor) throws(SessionError) -> SessionGrant? {
        while reply == nil {
            var chunk = [UInt8](repeating: 0, count: SessionHandshake.replySize - replyBytes.count)
            let result = chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(SystemCallError) -> Int in try UnixDomainSocket.receive(socket, into: buffer, dontWait: true) }
            }
            switch result {
            case .success(0): throw .socket(.peerClosed)
            case .success(let n): replyBytes += chunk[0..<n]
            case .failure(let error):
                if error.errno == .resourceTemporarilyUnavailable { return nil }
                if error.errno == .connectionReset { throw .socket(.peerClosed) }
                throw .socket(.system(error))
            }
            guard replyBytes.count == SessionHandshake.replySize else { continue }
            let answer = try SessionHandshake.parseReply(replyBytes, version: version)
            let count = Int(answer.descriptorCount)
            guard count <= SessionHandshake.maximumDescriptors else { throw .malformed("\(count) descriptors announced") }
            reply = (answer.sessionID, count)
        }
        guard let reply else { return nil }
        while descriptors.count < reply.descriptorCount {
            let readable: Bool
            do { readable = try Poll.waitReadable(socket, timeoutNanoseconds: 0) } catch { throw .socket(.system(error)) }
            guard readable else { return nil }
            do {
                let (fd, tag) = try FileDescriptorPassing.receive(over: socket)
                descriptors.append((tag, fd))
            } catch { throw .descriptorPassing(error) }
        }
        let grant = SessionGrant(sessionID: reply.sessionID, descriptors: descriptors)
        descriptors = []
        return grant
    }
}
