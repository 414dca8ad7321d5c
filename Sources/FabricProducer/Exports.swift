// Controllers see the core types (Descriptor, Completion, SharedRegion, …)
// and the session layer (BufferPool, BufferSlot, BatchingPolicy,
// SessionError, …) through this module.
@_exported import FabricQueue
@_exported import FabricRemote
@_exported import FabricSession
