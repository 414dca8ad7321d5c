// Daemons see the core types (Descriptor, Completion, SharedRegion, …) and
// the session layer (UnixSocket, PeerPolicy, DataRegion, SessionError, …)
// through this module.
@_exported import FabricQueue
@_exported import FabricRemote
@_exported import FabricSession
