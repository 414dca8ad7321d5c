import Foundation

/// The directory where the example keeps its engines and signing key:
/// `$FABRICQUEUE_ENGINES`, else `$XDG_CACHE_HOME/fabricqueue/engines`, else
/// `~/.cache/fabricqueue/engines`. Nothing here is committed: the seeded
/// engines are rebuilt on first use, the pretrained one is imported by
/// `scripts/import-pretrained`.
public struct EngineStore: Sendable {
    /// The directory.
    public let directory: String

    /// The store at `directory`, or the default one.
    public init(directory: String? = nil) {
        if let directory {
            self.directory = directory
        } else if let env = ProcessInfo.processInfo.environment["FABRICQUEUE_ENGINES"], !env.isEmpty {
            self.directory = env
        } else {
            let cache =
                ProcessInfo.processInfo.environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
                ?? (NSHomeDirectory() + "/.cache")
            self.directory = cache + "/fabricqueue/engines"
        }
    }

    /// The private signing key (the public key is this path + ".pub").
    public var signingKeyPath: String { directory + "/engine-signing.key" }
    /// The public key daemons are given.
    public var publicKeyPath: String { signingKeyPath + ".pub" }
    /// The seeded engine of `architecture`.
    public func seededPath(_ architecture: ResNetArchitecture) -> String { directory + "/\(architecture.rawValue)-seeded.engine" }
    /// The imported pretrained engine.
    public var pretrainedPath: String { directory + "/efficientnet-lite0-pretrained.engine" }

    /// Creates the directory and the signing key if missing; returns the key.
    public func signingKey() throws(EngineError) -> EngineSigningKey {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw .io(operation: "mkdir", path: directory, errno: errno)
        }
        if FileManager.default.fileExists(atPath: signingKeyPath) { return try EngineSigningKey(contentsOf: signingKeyPath) }
        let key = EngineSigningKey()
        try key.write(to: signingKeyPath)
        return key
    }

    /// Builds and signs the seeded engine of `architecture` unless a valid one
    /// signed by this store's key is already there. Returns it, opened and
    /// verified (so callers need not check it again), and whether it was built now.
    @discardableResult
    public func ensureSeeded(_ architecture: ResNetArchitecture) throws(EngineError) -> (engine: EngineFile, built: Bool) {
        let key = try signingKey()
        let path = seededPath(architecture)
        if let existing = try? EngineFile(path: path, verification: .trusting(key.publicKey)),
            existing.manifest.seed == ResNetBuilder(architecture: architecture).seed
        {
            return (existing, false)
        }
        let (manifest, tensors) = ResNetBuilder(architecture: architecture).build()
        try EngineWriter.write(manifest: manifest, tensors: tensors, to: path, signingKey: key)
        return (try EngineFile(path: path, verification: .trusting(key.publicKey)), true)
    }
}
