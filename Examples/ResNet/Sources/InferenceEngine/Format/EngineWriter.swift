import Foundation

/// A tensor to be written: name, shape and row-major values.
public struct NamedTensor: Sendable {
    /// The tensor's name.
    public var name: String
    /// Dimensions, outermost first.
    public var shape: [Int]
    /// Row-major values.
    public var values: [Float]

    /// A tensor; `values.count` must equal the product of `shape`.
    public init(name: String, shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "tensor \(name): shape and value count differ")
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// Writes engine files: header, manifest, 64-byte-aligned tensors and, with
/// a key, the signature block. The output is a pure function of the inputs
/// (sorted-key JSON, zero padding; Ed25519 signatures are deterministic).
public enum EngineWriter {
    /// Writes `manifest` (its tensor table is replaced by the layout of
    /// `tensors`, in order) and the tensors to `path`.
    public static func write(
        manifest: EngineManifest, tensors: [NamedTensor], to path: String,
        signingKey: EngineSigningKey?
    ) throws(EngineError) {
        var manifest = manifest
        var offset = 0
        manifest.tensors = tensors.map { t in
            defer { offset = alignUp(offset + t.values.count * 4) }
            return TensorEntry(name: t.name, shape: t.shape, offset: offset)
        }
        let tensorsLength = offset
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json: Data
        do { json = try encoder.encode(manifest) } catch { throw .malformed("manifest does not encode: \(error)") }
        let tensorsOffset = alignUp(EngineHeader.size + json.count)
        let header = EngineHeader(
            manifestLength: UInt64(json.count), tensorsOffset: UInt64(tensorsOffset),
            tensorsLength: UInt64(tensorsLength), flags: signingKey == nil ? 0 : EngineHeader.signedFlag)
        let signedLength = Int(header.signedLength)
        let file = UnsafeMutableRawBufferPointer.allocate(byteCount: signedLength + SignatureBlock.size, alignment: 64)
        defer { file.deallocate() }
        file.initializeMemory(as: UInt8.self, repeating: 0)
        header.bytes.withUnsafeBytes { file.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        json.withUnsafeBytes { (file.baseAddress! + EngineHeader.size).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        for (t, entry) in zip(tensors, manifest.tensors) {
            let dst = (file.baseAddress! + tensorsOffset + entry.offset).assumingMemoryBound(to: UInt32.self)
            for (i, v) in t.values.enumerated() { dst[i] = v.bitPattern.littleEndian }
        }
        var length = signedLength
        if let key = signingKey {
            try appendSignature(to: file, signedLength: signedLength, key: key)
            length += SignatureBlock.size
        }
        try writeFile(UnsafeRawBufferPointer(rebasing: file[0..<length]), to: path)
    }

    /// Signs (or re-signs) the engine file at `path` in place with `key`.
    public static func sign(path: String, with key: EngineSigningKey) throws(EngineError) {
        let engine = try EngineFile(path: path, verification: .skipVerification)
        let signedLength = Int(engine.header.signedLength)
        let file = UnsafeMutableRawBufferPointer.allocate(byteCount: signedLength + SignatureBlock.size, alignment: 64)
        defer { file.deallocate() }
        file.copyMemory(from: engine.signedBytes)
        var header = engine.header
        header.flags |= EngineHeader.signedFlag
        header.bytes.withUnsafeBytes { file.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        try appendSignature(to: file, signedLength: signedLength, key: key)
        try writeFile(UnsafeRawBufferPointer(file), to: path)
    }

    static func appendSignature(
        to file: UnsafeMutableRawBufferPointer, signedLength: Int,
        key: EngineSigningKey
    ) throws(EngineError) {
        let signature = try key.signature(for: UnsafeRawBufferPointer(rebasing: file[0..<signedLength]))
        let block = SignatureBlock(publicKey: key.publicKey.rawBytes, signature: signature).bytes
        block.withUnsafeBytes { (file.baseAddress! + signedLength).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// Writes through a temporary file and renames it, so a reader never maps a half-written engine.
    static func writeFile(_ bytes: UnsafeRawBufferPointer, to path: String) throws(EngineError) {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(operation: "open", path: temporary, errno: errno) }
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let e = errno
                close(fd)
                unlink(temporary)
                throw .io(operation: "write", path: temporary, errno: e)
            }
            done += n
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw .io(operation: "rename", path: path, errno: errno) }
    }

    static func alignUp(_ n: Int) -> Int { (n + EngineHeader.tensorAlignment - 1) & ~(EngineHeader.tensorAlignment - 1) }
}
