import FabricSystem

/// The validated, immutable facts of a region's header.
public struct RegionInfo: Equatable, Sendable {
    /// Ring protocol held by the region.
    public var kind: RingKind
    /// Element type tag of the slots (``Descriptor/ringElementTag`` = 1).
    public var elementTag: UInt32
    /// Slot geometry.
    public var geometry: RingGeometry
    /// Bytes the header says the region spans (page-rounded).
    public var regionSize: Int
    /// Process id of the creator.
    public var creatorPID: Int32
    /// Random 64-bit incarnation id chosen at creation; a re-created region at
    /// the same path has another.
    public var epoch: UInt64
    /// Creation time, nanoseconds since the Unix epoch.
    public var createdAt: UInt64
    /// ``RegionLayout/Flags`` bits.
    public var flags: UInt32

    /// Number of slots.
    public var capacity: Int { geometry.capacity }
    /// Bytes per slot.
    public var slotSize: Int { geometry.slotSize }
}
