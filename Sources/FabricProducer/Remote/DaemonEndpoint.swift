import FabricRemote
import SystemPackage

/// Where a controller finds its daemon: a Unix socket on this host, or a
/// remote daemon at `ucx://HOST:PORT` with the key that admits this controller.
///
/// ```swift
/// let local = try DaemonEndpoint("/run/fabricqueue/daemon.sock")
/// let remote = try DaemonEndpoint("ucx://10.0.0.7:7300", key: RemoteSigningKey(contentsOf: "controller.key"))
/// var session = try ControllerSession.connect(to: remote)
/// ```
public enum DaemonEndpoint: Sendable, CustomStringConvertible {
    /// A daemon on this host, at its socket path.
    case socket(FilePath)
    /// A daemon on another host (`fabricq serve --listen ucx://…`), reached
    /// over UCX; `key` proves this controller is one it admits.
    case remote(UCXAddress, key: RemoteSigningKey)

    /// `ucx://HOST:PORT` (which needs `key`) or a socket path.
    ///
    /// - Throws: ``EndpointError``: a `ucx://` endpoint that does not parse,
    ///   or one without a key.
    public init(_ endpoint: String, key: RemoteSigningKey? = nil) throws(EndpointError) {
        guard endpoint.hasPrefix(UCXAddress.scheme) else {
            self = .socket(FilePath(endpoint))
            return
        }
        guard let address = UCXAddress(url: endpoint) else { throw .malformed(endpoint) }
        guard let key else { throw .keyRequired(endpoint) }
        self = .remote(address, key: key)
    }

    /// Whether `endpoint` names a remote daemon (`ucx://…`).
    public static func isRemote(_ endpoint: String) -> Bool { endpoint.hasPrefix(UCXAddress.scheme) }

    public var description: String {
        switch self {
        case .socket(let path): path.string
        case .remote(let address, let key): "\(address.url) (key \(key.publicKey.fingerprint))"
        }
    }

    /// Why an endpoint string was refused.
    public enum EndpointError: Error, Equatable, Sendable, CustomStringConvertible {
        /// Not `ucx://HOST:PORT` with a numeric IPv4 or IPv6 host.
        case malformed(String)
        /// A remote endpoint given without a key.
        case keyRequired(String)

        public var description: String {
            switch self {
            case .malformed(let text): "\(text) is not ucx://HOST:PORT (a numeric IPv4 or [IPv6] address)"
            case .keyRequired(let text): "\(text) is a remote daemon: give the controller's key (--key NAME.key)"
            }
        }
    }
}

extension SessionConnection {
    /// Connects to `endpoint`: a local socket, or a remote daemon through a
    /// ``RemoteSessionProxy``.
    static func connect(to endpoint: DaemonEndpoint, options: ControllerOptions) throws(SessionError) -> SessionConnection {
        switch endpoint {
        case .socket(let path): try SessionConnection(path: path, options: options)
        case .remote(let address, let key): try RemoteSessionProxy.connect(to: address, key: key, options: options)
        }
    }
}
