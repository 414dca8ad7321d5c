/// The fixed 64-byte header at offset 0 of an engine file (all integers
/// little-endian). See `Examples/ResNet/Docs/EngineFormat.md`.
///
/// ```
///  0  magic           "FQENGINE"
///  8  formatVersion   u32 = 1
/// 12  headerSize      u32 = 64
/// 16  manifestOffset  u64 = 64
/// 24  manifestLength  u64        JSON, UTF-8
/// 32  tensorsOffset   u64        64-byte aligned
/// 40  tensorsLength   u64
/// 48  signedLength    u64 = tensorsOffset + tensorsLength
/// 56  flags           u64        bit 0: signed (a signature block follows); others 0
/// ```
/// A 128-byte ``SignatureBlock`` follows at `signedLength`.
public struct EngineHeader: Equatable, Sendable {
    /// The first 8 bytes of every engine file.
    public static let magic: [UInt8] = Array("FQENGINE".utf8)
    /// Bytes of the header.
    public static let size = 64
    /// The format version this build reads and writes.
    public static let currentVersion: UInt32 = 1
    /// Tensor alignment in the file (and so in the mapping).
    public static let tensorAlignment = 64

    /// ``flags`` bit 0: the file is meant to end in a ``SignatureBlock``. It is
    /// itself signed, so a signed file cut at the block reads as truncated, not unsigned.
    public static let signedFlag: UInt64 = 1

    /// Bytes of manifest JSON at offset 64.
    public var manifestLength: UInt64
    /// Header flags (``signedFlag``).
    public var flags: UInt64 = 0
    /// Where the tensor section starts (64-byte aligned).
    public var tensorsOffset: UInt64
    /// Bytes of the tensor section.
    public var tensorsLength: UInt64
    /// Bytes covered by the signature: everything before the signature block.
    public var signedLength: UInt64 { tensorsOffset &+ tensorsLength }
    /// Whether the header says a signature block follows.
    public var isSigned: Bool { flags & Self.signedFlag != 0 }

    /// A header for the given sections.
    public init(manifestLength: UInt64, tensorsOffset: UInt64, tensorsLength: UInt64, flags: UInt64 = 0) {
        self.manifestLength = manifestLength
        self.flags = flags
        self.tensorsOffset = tensorsOffset
        self.tensorsLength = tensorsLength
    }

    /// Parses and checks the header; `fileSize` bounds every offset.
    public init(parsing bytes: UnsafeRawBufferPointer, path: String) throws(EngineError) {
        guard bytes.count >= Self.size else {
            if bytes.count >= 8, !bytes.prefix(8).elementsEqual(Self.magic) { throw .notAnEngine(path: path) }
            throw .truncated(expected: UInt64(Self.size), actual: UInt64(bytes.count))
        }
        guard bytes.prefix(8).elementsEqual(Self.magic) else { throw .notAnEngine(path: path) }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        guard u32(8) == Self.currentVersion else { throw .unsupportedVersion(u32(8)) }
        guard u32(12) == UInt32(Self.size), u64(16) == UInt64(Self.size) else {
            throw .malformed("header size or manifest offset is not 64")
        }
        guard u64(56) & ~Self.signedFlag == 0 else { throw .malformed("unknown header flags") }
        flags = u64(56)
        manifestLength = u64(24)
        tensorsOffset = u64(32)
        tensorsLength = u64(40)
        let (manifestEnd, o1) = UInt64(Self.size).addingReportingOverflow(manifestLength)
        let (end, o2) = tensorsOffset.addingReportingOverflow(tensorsLength)
        guard !o1, !o2, manifestEnd <= tensorsOffset, tensorsOffset % UInt64(Self.tensorAlignment) == 0,
            u64(48) == end, end <= UInt64(Int.max / 2)
        else {
            throw .malformed("section offsets are inconsistent")
        }
    }

    /// The 64 header bytes.
    public var bytes: [UInt8] {
        var out = Self.magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        put(Self.currentVersion)
        put(UInt32(Self.size))
        put(UInt64(Self.size))
        put(manifestLength)
        put(tensorsOffset)
        put(tensorsLength)
        put(signedLength)
        put(flags)
        return out
    }
}

/// The 128-byte block after the signed bytes:
///
/// ```
///   0  magic      "FQSIGN01"
///   8  algorithm  u32 = 1 (Ed25519, RFC 8032, over bytes [0, signedLength))
///  12  reserved   u32 = 0
///  16  publicKey  32 bytes
///  48  signature  64 bytes
/// 112  reserved   16 bytes = 0
/// ```
public struct SignatureBlock: Equatable, Sendable {
    /// The first 8 bytes of a signature block.
    public static let magic: [UInt8] = Array("FQSIGN01".utf8)
    /// Bytes of a signature block.
    public static let size = 128
    /// The algorithm field for Ed25519.
    public static let ed25519: UInt32 = 1

    /// The signer's 32-byte Ed25519 public key.
    public var publicKey: [UInt8]
    /// The 64-byte signature.
    public var signature: [UInt8]

    /// A block for `signature` by `publicKey`.
    public init(publicKey: [UInt8], signature: [UInt8]) {
        self.publicKey = publicKey
        self.signature = signature
    }

    /// Parses the block, or `nil` when the bytes are not a signature block.
    public init?(parsing bytes: UnsafeRawBufferPointer) {
        guard bytes.count == Self.size, bytes.prefix(8).elementsEqual(Self.magic),
            UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) == Self.ed25519
        else {
            return nil
        }
        publicKey = Array(bytes[16..<48])
        signature = Array(bytes[48..<112])
    }

    /// The 128 bytes of the block.
    public var bytes: [UInt8] {
        var out = Self.magic
        withUnsafeBytes(of: Self.ed25519.littleEndian) { out.append(contentsOf: $0) }
        out += [0, 0, 0, 0]
        out += publicKey
        out += signature
        out += [UInt8](repeating: 0, count: 16)
        return out
    }
}
