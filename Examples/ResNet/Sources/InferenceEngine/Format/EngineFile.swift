import Foundation

/// An engine file mapped read-only, its signature checked against a trusted
/// key before anything else in it is believed.
///
/// Order of checks (each failure is an ``EngineError``): header magic and
/// version; section offsets; file size against the header (`truncated`,
/// `unsigned`); the signature block's key against the trusted key; the
/// Ed25519 signature over every byte before the block; then the manifest
/// JSON and its tensor table (every tensor inside the tensor section,
/// 64-byte aligned, sized by its shape). The layers are checked when a
/// ``Network`` is built from the file.
///
/// The file must not change while it is mapped: keep engine directories
/// writable only by their owner (the signature is checked once, at open).
public final class EngineFile: @unchecked Sendable {
    // @unchecked: immutable after init; the mapping is read-only.
    /// Where the file was opened from.
    public let path: String
    /// The decoded, checked manifest.
    public let manifest: EngineManifest
    /// The checked header.
    public let header: EngineHeader
    /// The key that signed the file, or nil for files opened with `.skipVerification`.
    public let signer: EnginePublicKey?
    private let mapping: UnsafeRawBufferPointer
    private let tensorIndex: [String: TensorEntry]

    /// How to treat the signature.
    public enum Verification: Sendable {
        /// Require a valid signature by this key.
        case trusting(EnginePublicKey)
        /// Do not check the signature (tools that only inspect or re-sign).
        case skipVerification
    }

    /// The largest engine file opened by default (2 GiB; ResNet-50 in
    /// float32 is about 100 MB).
    public static let defaultMaximumSize = 2 << 30

    /// Maps `path` and checks it.
    ///
    /// Before anything is read: the path must be a regular file (opened
    /// non-blocking, so a FIFO or device cannot hang the caller) of at most
    /// `maximumSize` bytes, so a huge or sparse file is refused instead of
    /// being hashed in full. Its size must then match what its header says.
    public init(path: String, verification: Verification, maximumSize: Int = EngineFile.defaultMaximumSize) throws(EngineError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(operation: "fstat", path: path, errno: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .notARegularFile(path: path) }
        let size = Int(st.st_size)
        guard size > 0 else { throw .truncated(expected: UInt64(EngineHeader.size), actual: 0) }
        guard size <= maximumSize else { throw .tooLarge(path: path, size: UInt64(size), limit: UInt64(maximumSize)) }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw .io(operation: "mmap", path: path, errno: errno)
        }
        let bytes = UnsafeRawBufferPointer(start: base, count: size)
        do {
            (header, signer, manifest, tensorIndex) = try Self.check(bytes, path: path, verification: verification)
        } catch {
            munmap(base, size)
            throw error
        }
        mapping = bytes
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: mapping.baseAddress), mapping.count) }

    /// The bytes covered by the signature.
    public var signedBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: mapping[0..<Int(header.signedLength)]) }

    /// A tensor's elements, in place in the mapping (64-byte aligned).
    public func tensor(_ name: String) -> (entry: TensorEntry, values: UnsafeBufferPointer<Float>)? {
        guard let entry = tensorIndex[name], let count = entry.elementCount else { return nil }
        let start = mapping.baseAddress! + Int(header.tensorsOffset) + entry.offset
        return (entry, UnsafeBufferPointer(start: start.assumingMemoryBound(to: Float.self), count: count))
    }

    private static func check(
        _ bytes: UnsafeRawBufferPointer, path: String, verification: Verification
    )
        throws(EngineError) -> (EngineHeader, EnginePublicKey?, EngineManifest, [String: TensorEntry])
    {
        let header = try EngineHeader(parsing: bytes, path: path)
        let size = UInt64(bytes.count)
        let signedLength = header.signedLength
        let expected = signedLength + UInt64(SignatureBlock.size)
        var signer: EnginePublicKey?
        switch verification {
        case let .trusting(trusted):
            guard size >= signedLength else { throw .truncated(expected: expected, actual: size) }
            guard size != signedLength || header.isSigned else { throw .unsigned }
            guard size >= expected else { throw .truncated(expected: expected, actual: size) }
            guard size == expected else { throw .malformed("\(size - expected) bytes after the signature block") }
            guard let block = SignatureBlock(parsing: UnsafeRawBufferPointer(rebasing: bytes[Int(signedLength)...])) else {
                throw .unsigned
            }
            guard block.publicKey == trusted.rawBytes else {
                throw .untrustedKey(fingerprint: EnginePublicKey.fingerprint(of: block.publicKey))
            }
            guard trusted.isValidSignature(block.signature, for: UnsafeRawBufferPointer(rebasing: bytes[0..<Int(signedLength)]))
            else {
                throw .signatureMismatch
            }
            signer = trusted
        case .skipVerification:
            guard size >= signedLength else { throw .truncated(expected: expected, actual: size) }
            if size == expected,
                let block = SignatureBlock(parsing: UnsafeRawBufferPointer(rebasing: bytes[Int(signedLength)...]))
            {
                signer = try? EnginePublicKey(rawBytes: block.publicKey)
            }
        }
        let json = Data(bytes[EngineHeader.size..<(EngineHeader.size + Int(header.manifestLength))])
        let manifest: EngineManifest
        do { manifest = try JSONDecoder().decode(EngineManifest.self, from: json) } catch {
            throw .malformed("manifest is not valid JSON for format 1: \(error)")
        }
        guard manifest.format == "fabricqueue-engine", manifest.formatVersion == 1 else {
            throw .malformed("manifest format is \(manifest.format) v\(manifest.formatVersion)")
        }
        var index = [String: TensorEntry]()
        for entry in manifest.tensors {
            guard let count = entry.elementCount, entry.offset >= 0,
                entry.offset % EngineHeader.tensorAlignment == 0
            else {
                throw .malformed("tensor \(entry.name) has a bad shape or an unaligned offset")
            }
            let (bytesNeeded, o1) = count.multipliedReportingOverflow(by: 4)
            let (end, o2) = entry.offset.addingReportingOverflow(bytesNeeded)
            guard !o1, !o2, UInt64(end) <= header.tensorsLength else {
                throw .malformed("tensor \(entry.name) lies outside the tensor section")
            }
            guard index.updateValue(entry, forKey: entry.name) == nil else {
                throw .malformed("tensor \(entry.name) appears twice")
            }
        }
        if let labels = manifest.labels, labels.count != manifest.classCount {
            throw .malformed("\(labels.count) labels for \(manifest.classCount) classes")
        }
        return (header, signer, manifest, index)
    }
}
