import FabricSession

/// The remote session protocol: the FabricQueue session carried on UCX
/// active messages between a controller and a daemon on different hosts.
///
/// One UCX endpoint per session. All integers are little-endian.
///
/// ```
/// handshake (bytes in the message's data, no header)
///   controller → daemon  hello, 48 B:     magic "FQRHELLO" u64 | version u32 | reserved u32
///                                         | Ed25519 public key, 32 B
///   daemon → controller  challenge, 112 B: magic "FQRCHALL" u64 | version u32 | status u32
///                                         | nonce, 32 B | reason, 64 B UTF-8, NUL-padded
///   controller → daemon  proof, 72 B:     magic "FQRPROOF" u64 | Ed25519 signature, 64 B, of
///                                         "FabricQueue remote session 1" | nonce | public key
///   daemon → controller  verdict:         magic "FQRGRANT" u64 | version u32 | status u32
///                                         | sessionID u64 | submissionCapacity u32 | completionCapacity u32
///                                         | slotSize u64 | slotCount u32 | heartbeat interval ms u32
///                                         | peer timeout ms u32 | reserved u32 | reason, 64 B (120 B)
///                                         | then the models the daemon serves, JSON (ModelDescription)
/// session
///   controller → daemon  command:    header = the 64-byte Descriptor | data = its input bytes
///                                    (inputSize of them; none for a cancellation)
///   daemon → controller  completion: header = the 64-byte Completion | data = its output bytes
///                                    (outputSize of them)
///   both ways            heartbeat:  empty, every interval while nothing else was sent
///   both ways            goodbye:    empty, before a side closes the session on purpose
/// ```
///
/// A status other than 0 is a ``SessionRejection`` with the reason text, and
/// the sender closes the endpoint. The nonce is fresh for every connection,
/// so a recorded proof is worth nothing on the next one (no replay). Input
/// and output bytes travel eagerly when small and by rendezvous when large
/// (UCX decides by size); descriptor offsets name places in the session's
/// data region, which each side holds a copy of.
package enum RemoteProtocol {
    /// The version this build speaks.
    package static let version: UInt32 = 1
    package static let helloMagic: UInt64 = 0x4F4C_4C45_4852_5146  // "FQRHELLO"
    package static let challengeMagic: UInt64 = 0x4C4C_4148_4352_5146  // "FQRCHALL"
    package static let proofMagic: UInt64 = 0x464F_4F52_5052_5146  // "FQRPROOF"
    package static let verdictMagic: UInt64 = 0x544E_4152_4752_5146  // "FQRGRANT"
    package static let helloSize = 48
    package static let challengeSize = 112
    package static let proofSize = 72
    package static let verdictSize = 120
    package static let reasonCapacity = 64
    /// What the controller signs before the nonce and its key.
    package static let signedContext = Array("FabricQueue remote session 1".utf8)
    /// The most model JSON a verdict may carry (16 MiB, as for local queries).
    package static let largestVerdict = verdictSize + SessionHandshake.maximumPayload

    /// The most data a side takes in `message`: exactly the handshake sizes,
    /// nothing in a heartbeat or goodbye, and for a command or completion at
    /// most `sessionBytes` (the session's slots) when `receives` it, else
    /// nothing. Longer messages are not even received (see
    /// `UCXWorker.setMaximumLength(_:for:)`): a peer's claimed length is no
    /// reason to allocate.
    package static func maximumLength(of message: RemoteMessage, daemonSide: Bool, sessionBytes: Int) -> Int {
        switch message {
        case .hello: daemonSide ? helloSize : 0
        case .proof: daemonSide ? proofSize : 0
        case .challenge: daemonSide ? 0 : challengeSize
        case .verdict: daemonSide ? 0 : largestVerdict
        case .command: daemonSide ? sessionBytes : 0
        case .completion: daemonSide ? 0 : sessionBytes
        case .heartbeat, .goodbye: 0
        }
    }

    /// The longest peer timeout a controller accepts from a daemon (10 s).
    package static let largestPeerTimeoutMilliseconds: UInt32 = 10_000

    /// The message a proof signs.
    package static func signedMessage(nonce: [UInt8], key: RemotePublicKey) -> [UInt8] {
        signedContext + nonce + key.rawRepresentation
    }
}

/// The active-message ids of a remote session.
package enum RemoteMessage: UInt16, CaseIterable, Sendable {
    case hello = 1
    case challenge = 2
    case proof = 3
    case verdict = 4
    case command = 10
    case completion = 11
    case heartbeat = 12
    case goodbye = 13
}

/// What a daemon grants a remote controller: the session's geometry (the
/// controller builds the same rings and data region on its side), the
/// heartbeat both keep, and the models it serves.
package struct RemoteGrant: Equatable, Sendable {
    package var sessionID: UInt64
    package var submissionCapacity: Int
    package var completionCapacity: Int
    package var slotSize: Int
    package var slotCount: Int
    package var heartbeat: RemoteHeartbeat
    /// `ModelDescription` JSON.
    package var models: [UInt8]

    package init(
        sessionID: UInt64, submissionCapacity: Int, completionCapacity: Int, slotSize: Int, slotCount: Int,
        heartbeat: RemoteHeartbeat, models: [UInt8]
    ) {
        self.sessionID = sessionID
        self.submissionCapacity = submissionCapacity
        self.completionCapacity = completionCapacity
        self.slotSize = slotSize
        self.slotCount = slotCount
        self.heartbeat = heartbeat
        self.models = models
    }
}

/// How often each side of a remote session sends a heartbeat while it has
/// nothing else to send, and how long a side waits without hearing anything
/// before it declares the other gone.
///
/// UCX notices a peer process that dies (its connection resets) within
/// milliseconds, but not a link that goes down: TCP keeps retrying for
/// minutes (measured: nothing within 12 s, UCX keepalive at 200 ms
/// included). The heartbeat bounds that: a cut link is noticed after
/// ``peerTimeout`` (default 700 ms, inside the 1 s the project promises).
public struct RemoteHeartbeat: Equatable, Sendable {
    /// Between heartbeats while idle (default 100 ms).
    public var interval: Duration
    /// Silence after which the peer is gone (default 700 ms).
    public var peerTimeout: Duration

    /// A heartbeat; the timeout should be several intervals.
    public init(interval: Duration = .milliseconds(100), peerTimeout: Duration = .milliseconds(700)) {
        self.interval = interval
        self.peerTimeout = peerTimeout
    }

    package var intervalNanoseconds: UInt64 { max(interval.saturatingNanoseconds, 1_000_000) }
    var timeoutNanoseconds: UInt64 { max(peerTimeout.saturatingNanoseconds, 2 * intervalNanoseconds) }
}

/// Fixed-layout little-endian fields of handshake messages.
struct WireWriter {
    private(set) var bytes: [UInt8]

    init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }

    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self) }
    }

    mutating func put(_ data: [UInt8], at offset: Int) {
        bytes.replaceSubrange(offset..<offset + data.count, with: data)
    }

    /// `text` as UTF-8, cut at a character boundary to fit `capacity`.
    mutating func put(text: String, at offset: Int, capacity: Int) {
        var encoded: [UInt8] = []
        for character in text {
            let next = Array(String(character).utf8)
            guard encoded.count + next.count <= capacity else { break }
            encoded += next
        }
        put(encoded, at: offset)
    }
}

/// Reads a received message; every read is bounds-checked (the bytes are a peer's).
struct WireReader {
    let bytes: [UInt8]

    func get<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T? {
        guard offset >= 0, offset + MemoryLayout<T>.size <= bytes.count else { return nil }
        return T(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) })
    }

    func get(_ count: Int, at offset: Int) -> [UInt8]? {
        guard offset >= 0, count >= 0, offset + count <= bytes.count else { return nil }
        return Array(bytes[offset..<offset + count])
    }

    func text(at offset: Int, capacity: Int) -> String {
        guard let raw = get(capacity, at: offset) else { return "" }
        return String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
}
