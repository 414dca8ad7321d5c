import Crypto
import FabricSystem
import Foundation
import SystemPackage

/// A controller's private key for remote sessions: an Ed25519 signing key
/// (swift-crypto's `Curve25519.Signing.PrivateKey`).
///
/// The daemon admits a remote controller only if it proves, in the
/// handshake, that it holds a key whose public half is in the daemon's
/// ``AuthorizedKeys`` file. `fabricq keygen NAME` writes a pair:
///
/// ```
/// NAME.key  (mode 0600)  fabricq-ed25519-private <base64 of the 32-byte seed>
/// NAME.pub               fabricq-ed25519 <base64 of the 32-byte public key> NAME
/// ```
public struct RemoteSigningKey: Sendable {
    /// The 32-byte seed (swift-crypto's key types are not `Sendable` in every version we build with).
    private let seed: [UInt8]
    /// The public half, derived once.
    public let publicKey: RemotePublicKey

    private var key: Curve25519.Signing.PrivateKey {
        // The seed was a valid key when this value was made.
        (try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)) ?? Curve25519.Signing.PrivateKey()
    }

    /// The first word of a private key file.
    public static let privateKeyTag = "fabricq-ed25519-private"

    /// A new random key.
    public static func generate() -> RemoteSigningKey { RemoteSigningKey(key: .init()) }

    init(key: Curve25519.Signing.PrivateKey) {
        seed = Array(key.rawRepresentation)
        publicKey = RemotePublicKey(key: key.publicKey)
    }

    /// Reads a private key file. Like ssh, it refuses a file that its group
    /// or others may read (a key others can read proves nothing).
    ///
    /// - Throws: ``RemoteKeyError``.
    public init(contentsOf path: FilePath) throws(RemoteKeyError) {
        let text = try RemoteKeyFile.read(path, privateKey: true)
        let words = text.split(whereSeparator: \.isWhitespace)
        guard words.count == 2, words[0] == Self.privateKeyTag,
            let seed = Data(base64Encoded: String(words[1])), seed.count == 32,
            let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)
        else { throw .malformed(path: path.string, "expected \"\(Self.privateKeyTag) BASE64\"") }
        self.init(key: key)
    }

    /// The private key file's contents.
    public var privateKeyFileContents: String {
        "\(Self.privateKeyTag) \(Data(seed).base64EncodedString())\n"
    }

    /// Writes `NAME.key` (mode 0600, created new: an existing file is not
    /// overwritten) and `NAME.pub` (mode 0644) for `name` (a path without
    /// the extension); the public line's comment is the file name.
    ///
    /// - Throws: ``RemoteKeyError``.
    public func write(to name: String) throws(RemoteKeyError) {
        let comment = FilePath(name).lastComponent?.string ?? name
        let privatePath = FilePath(name + ".key"), publicPath = FilePath(name + ".pub")
        // Neither is overwritten, and no lone half is left behind.
        if case .some(.some) = try? FileSystem.linkStatus(publicPath) {
            throw .file(path: publicPath.string, SystemCallError("open", .fileExists))
        }
        try RemoteKeyFile.create(privatePath, privateKeyFileContents, permissions: [.ownerReadWrite])
        do {
            try RemoteKeyFile.create(
                publicPath, publicKey.line(comment: comment) + "\n", permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch {
            try? FileSystem.unlink(privatePath)
            throw error
        }
    }

    /// The Ed25519 signature of `message`.
    func signature(for message: [UInt8]) throws(RemoteKeyError) -> [UInt8] {
        do { return Array(try key.signature(for: message)) } catch { throw .signing("\(error)") }
    }
}

/// An Ed25519 public key: one line of an ``AuthorizedKeys`` file.
public struct RemotePublicKey: Hashable, Sendable, CustomStringConvertible {
    /// The 32 bytes of the key.
    public let rawRepresentation: [UInt8]

    /// The first word of a public key line.
    public static let tag = "fabricq-ed25519"

    init(key: Curve25519.Signing.PublicKey) { rawRepresentation = Array(key.rawRepresentation) }

    /// A key from its 32 raw bytes; nil if they are not an Ed25519 public key.
    public init?(rawRepresentation bytes: some Collection<UInt8>) {
        guard bytes.count == 32, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: Array(bytes)) else {
            return nil
        }
        self.init(key: key)
    }

    /// A key from a line `fabricq-ed25519 BASE64 [COMMENT]`; nil if it is not one.
    public init?(line: some StringProtocol) {
        let words = line.split(whereSeparator: \.isWhitespace)
        guard words.count >= 2, words[0] == Self.tag, let bytes = Data(base64Encoded: String(words[1])) else {
            return nil
        }
        self.init(rawRepresentation: Array(bytes))
    }

    /// The line for an authorized-keys file.
    public func line(comment: String = "") -> String {
        let base = "\(Self.tag) \(Data(rawRepresentation).base64EncodedString())"
        return comment.isEmpty ? base : "\(base) \(comment)"
    }

    /// `SHA256:` and the first 16 hex digits of the key's SHA-256: what logs
    /// and errors name a key by.
    public var fingerprint: String {
        "SHA256:"
            + SHA256.hash(data: rawRepresentation).prefix(8).map { byte in
                let hex = String(byte, radix: 16)
                return byte < 16 ? "0" + hex : hex
            }.joined()
    }

    public var description: String { fingerprint }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    func isValidSignature(_ signature: some Collection<UInt8>, for message: [UInt8]) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: rawRepresentation) else { return false }
        return key.isValidSignature(Array(signature), for: message)
    }
}

/// The public keys a daemon admits for remote sessions: a file with one
/// ``RemotePublicKey`` line each (`fabricq-ed25519 BASE64 COMMENT`, what
/// `fabricq keygen` writes to `NAME.pub`); blank lines and lines starting
/// with `#` are skipped.
public struct AuthorizedKeys: Sendable {
    /// The keys, in file order.
    public let keys: [RemotePublicKey]
    private let set: Set<RemotePublicKey>

    /// Exactly these keys.
    public init(_ keys: [RemotePublicKey]) {
        self.keys = keys
        set = Set(keys)
    }

    /// Reads an authorized-keys file.
    ///
    /// - Throws: ``RemoteKeyError/malformed(path:_:)`` naming the first line
    ///   that is not a key (a typo must not silently lock a key out).
    public init(contentsOf path: FilePath) throws(RemoteKeyError) {
        let text = try RemoteKeyFile.read(path, privateKey: false)
        var keys: [RemotePublicKey] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.drop { $0.isWhitespace }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let key = RemotePublicKey(line: trimmed) else {
                throw .malformed(path: path.string, "line \(number + 1) is not \"\(RemotePublicKey.tag) BASE64 [COMMENT]\"")
            }
            keys.append(key)
        }
        self.init(keys)
    }

    /// Whether `key` is admitted.
    public func contains(_ key: RemotePublicKey) -> Bool { set.contains(key) }
}

/// Why a key file could not be used.
public enum RemoteKeyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be opened, read or written.
    case file(path: String, SystemCallError)
    /// The file is not a key file of this format.
    case malformed(path: String, String)
    /// A private key file its group or others may read.
    case tooOpen(path: String, mode: UInt32)
    /// The key could not sign (swift-crypto's reason).
    case signing(String)

    public var description: String {
        switch self {
        case .file(let path, let error): "key file \(path): \(error)"
        case .malformed(let path, let why): "key file \(path): \(why)"
        case .tooOpen(let path, let mode):
            "private key file \(path) has mode \(String(mode, radix: 8)): readable by others (chmod 600 \(path))"
        case .signing(let why): "signing: \(why)"
        }
    }
}

/// Small key files, read and written whole.
enum RemoteKeyFile {
    /// At most this much is read: key files are a line each.
    static let largest = 1 << 20

    static func read(_ path: FilePath, privateKey: Bool) throws(RemoteKeyError) -> String {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.openFile(path, .readOnly, options: [.closeOnExec]) } catch {
            throw .file(path: path.string, error)
        }
        defer { try? fd.close() }
        do {
            let status = try fd.status()
            if privateKey && status.st_mode & 0o077 != 0 {
                throw RemoteKeyError.tooOpen(path: path.string, mode: UInt32(status.st_mode & 0o777))
            }
            let bytes = try fd.readPrefix(largest)
            return String(decoding: bytes, as: UTF8.self)
        } catch let error as RemoteKeyError {
            throw error
        } catch let error as SystemCallError {
            throw .file(path: path.string, error)
        } catch {
            throw .malformed(path: path.string, "\(error)")
        }
    }

    static func create(_ path: FilePath, _ contents: String, permissions: FilePermissions) throws(RemoteKeyError) {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.openFile(
                path, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec], permissions: permissions)
        } catch { throw .file(path: path.string, error) }
        defer { try? fd.close() }
        // The umask may have narrowed the mode; set exactly what was asked.
        do { try fd.changeMode(to: permissions) } catch { throw .file(path: path.string, error) }
        do { _ = try fd.writeAll(Array(contents.utf8)) } catch {
            throw .file(path: path.string, SystemCallError("write", (error as? Errno) ?? .ioError))
        }
    }
}
