import FabricRemote

/// Remote sessions: where the daemon listens for controllers on other hosts
/// (`ucx://ADDRESS:PORT`), whose keys it admits, and the heartbeat.
///
/// Each remote controller's session is an ordinary session of this daemon
/// (same handlers, batching, priorities and limits), opened in process by
/// the daemon's poll thread, which also carries its commands and
/// completions over UCX (see `RemoteGateway`), never waiting for a peer.
/// UCX traffic is not encrypted: keep it on a network you trust, as you
/// would RDMA.
public struct RemoteListening: Sendable {
    /// The address to listen on (port 0: any free port; ``FabricDaemon/remoteAddress`` says which).
    public var address: UCXAddress
    /// The controllers' public keys admitted (`--authorized-keys FILE`).
    public var authorizedKeys: AuthorizedKeys
    /// Heartbeat interval and peer timeout, for both sides of every remote session.
    public var heartbeat = RemoteHeartbeat()
    /// How long a connecting controller has to finish the handshake.
    public var handshakeTimeout: Duration = .seconds(2)
    /// Remote sessions at once (beyond them a controller is refused "busy").
    public var maximumSessions = 32
    /// Connections still in their handshake at once; more are closed at
    /// once (they cost a little memory each until their deadline).
    public var maximumPendingHandshakes = 32

    /// Listens on `address`, admitting `authorizedKeys`.
    public init(address: UCXAddress, authorizedKeys: AuthorizedKeys) {
        self.address = address
        self.authorizedKeys = authorizedKeys
    }
}
