import Crypto
import Foundation

/// An Ed25519 key pair that signs engine files (swift-crypto). Keys are
/// stored as one line of hex: the private key file with mode 0600, the public
/// key beside it with the extension `.pub`.
public struct EngineSigningKey: Sendable {
    /// The 32-byte Ed25519 seed (kept as bytes: swift-crypto's key types are not `Sendable`).
    private let rawKey: [UInt8]
    /// The matching public key.
    public let publicKey: EnginePublicKey

    /// A fresh random key.
    public init() { self.init(Curve25519.Signing.PrivateKey()) }

    private init(_ key: Curve25519.Signing.PrivateKey) {
        rawKey = Array(key.rawRepresentation)
        publicKey = EnginePublicKey(validated: Array(key.publicKey.rawRepresentation))
    }

    /// Reads a private key written by ``write(to:)``.
    public init(contentsOf path: String) throws(EngineError) {
        let raw = try Self.readHex(path, expectedBytes: 32)
        guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
            throw .malformed("\(path) does not hold an Ed25519 private key")
        }
        self.init(key)
    }

    /// Signs `bytes` (the file's first `signedLength` bytes).
    public func signature(for bytes: UnsafeRawBufferPointer) throws(EngineError) -> [UInt8] {
        do {
            let key = try Curve25519.Signing.PrivateKey(rawRepresentation: rawKey)
            return Array(try key.signature(for: bytes))
        } catch { throw .malformed("signing failed: \(error)") }
    }

    /// Writes the private key (mode 0600) to `path` and the public key to `path + ".pub"`.
    public func write(to path: String) throws(EngineError) {
        try Self.writeText(rawKey.hexString + "\n", to: path, mode: 0o600)
        try Self.writeText(publicKey.hex + "\n", to: path + ".pub", mode: 0o644)
    }

    static func readHex(_ path: String, expectedBytes: Int) throws(EngineError) -> [UInt8] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw .io(operation: "read", path: path, errno: errno)
        }
        guard let bytes = [UInt8](hex: text.trimmingCharacters(in: .whitespacesAndNewlines)),
            bytes.count == expectedBytes
        else {
            throw .malformed("\(path) must hold \(expectedBytes) bytes as hex")
        }
        return bytes
    }

    static func writeText(_ text: String, to path: String, mode: mode_t) throws(EngineError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        let ok = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) == $0.count }
        guard ok else { throw .io(operation: "write", path: path, errno: errno) }
    }
}

/// The public half: what a daemon is configured to trust.
public struct EnginePublicKey: Sendable, Equatable {
    /// The 32 raw bytes.
    public let rawBytes: [UInt8]

    init(validated raw: [UInt8]) { rawBytes = raw }

    /// Reads a `.pub` file (hex).
    public init(contentsOf path: String) throws(EngineError) {
        let raw = try EngineSigningKey.readHex(path, expectedBytes: 32)
        try self.init(rawBytes: raw)
    }

    /// From the 32 raw bytes.
    public init(rawBytes: [UInt8]) throws(EngineError) {
        guard (try? Curve25519.Signing.PublicKey(rawRepresentation: rawBytes)) != nil else {
            throw .malformed("not an Ed25519 public key")
        }
        self.rawBytes = rawBytes
    }

    /// The key as 64 hex digits (the `.pub` file's content).
    public var hex: String { rawBytes.hexString }
    /// First 8 bytes of the key's SHA-256, for messages.
    public var fingerprint: String { Self.fingerprint(of: rawBytes) }

    static func fingerprint(of raw: [UInt8]) -> String { Array(SHA256.hash(data: raw).prefix(8)).hexString }

    /// Whether `signature` is this key's signature of `bytes`.
    public func isValidSignature(_ signature: [UInt8], for bytes: UnsafeRawBufferPointer) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: rawBytes) else { return false }
        return key.isValidSignature(signature, for: bytes)
    }
}

extension Sequence where Element == UInt8 {
    var hexString: String { map { String(format: "%02x", $0) }.joined() }
}

extension Array where Element == UInt8 {
    init?(hex: String) {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = Self.nibble(chars[i]), let lo = Self.nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        self = out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
}
