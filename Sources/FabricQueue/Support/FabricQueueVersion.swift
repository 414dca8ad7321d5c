/// This build's FabricQueue version, as the daemon reports it to tools
/// (`fabricq ping`, `fabricq top`, telemetry). The ring and session ABI have
/// their own numbers (`RegionLayout.abiVersion`, the session protocol version).
public enum FabricQueueVersion {
    /// The version string, semantic versioning.
    public static let current = "0.6.0-dev"
}
