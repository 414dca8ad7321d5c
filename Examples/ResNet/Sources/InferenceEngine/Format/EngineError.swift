import Glibc

/// Why an engine file was refused. Every check that reads the file reports
/// one of these; nothing in a file can make the loader crash.
public enum EngineError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `open`, `fstat`, `mmap` or `read` failed; the errno is kept.
    case io(operation: String, path: String, errno: Int32)
    /// The file does not start with the engine magic.
    case notAnEngine(path: String)
    /// The path is a directory, FIFO, device or socket, not a file.
    case notARegularFile(path: String)
    /// The file is larger than the configured ceiling; nothing was read.
    case tooLarge(path: String, size: UInt64, limit: UInt64)
    /// A format version this build does not read.
    case unsupportedVersion(UInt32)
    /// The file is shorter than its header says it must be.
    case truncated(expected: UInt64, actual: UInt64)
    /// The file carries no signature block.
    case unsigned
    /// The signature block names a key other than the trusted one.
    case untrustedKey(fingerprint: String)
    /// The signature does not match the contents: the file was changed after signing.
    case signatureMismatch
    /// The header, the manifest or a tensor table entry is inconsistent.
    case malformed(String)
    /// The manifest describes a network this runtime cannot run.
    case unsupported(String)

    public var description: String {
        switch self {
        case let .io(operation, path, errno): "\(operation)(\(path)) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .notARegularFile(path): "\(path) is not a regular file"
        case let .tooLarge(path, size, limit): "\(path) is \(size) bytes, more than the \(limit)-byte limit for an engine file"
        case let .notAnEngine(path): "\(path) is not a FabricQueue engine file (bad magic)"
        case let .unsupportedVersion(v): "engine format version \(v) is not supported (this build reads 1)"
        case let .truncated(expected, actual):
            "engine file is truncated: its header needs \(expected) bytes, the file has \(actual)"
        case .unsigned: "engine file is not signed (no signature block); sign it with `resnet-engine sign`"
        case let .untrustedKey(fingerprint):
            "engine file is signed by key \(fingerprint), which is not the trusted key"
        case .signatureMismatch:
            "engine file signature does not match its contents: the file was modified after signing"
        case let .malformed(why): "engine file is malformed: \(why)"
        case let .unsupported(why): "engine not supported: \(why)"
        }
    }
}
