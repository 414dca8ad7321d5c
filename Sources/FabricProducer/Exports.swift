// Controllers see the core types (BufferSlot, Descriptor, Completion, …) through this module.
@_exported import FabricQueue
