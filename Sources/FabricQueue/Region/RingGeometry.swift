import FabricSystem

/// Where each part of a ring lives inside a region: a pure function of the ring
/// kind, capacity and slot size, so an attaching process recomputes it and
/// compares it with what the header claims.
public struct RingGeometry: Equatable, Sendable {
    /// The ring protocol.
    public var kind: RingKind
    /// Number of slots, a power of two in `2...RingGeometry.maximumCapacity`.
    public var capacity: Int
    /// Bytes per slot (64 for ``Descriptor``).
    public var slotSize: Int
    /// Offset of the first slot.
    public var slotsOffset: Int
    /// Offset of the per-slot sequence array (MPSC), or 0.
    public var sequencesOffset: Int
    /// Bytes the ring needs, before rounding to pages.
    public var requiredSize: Int

    /// The largest capacity the ABI allows (2^24 slots, 1 GiB of descriptors).
    public static let maximumCapacity = 1 << 24

    /// Computes the geometry, or says why the parameters are not a valid ring.
    public init(kind: RingKind, capacity: Int, slotSize: Int) throws(RegionError) {
        guard capacity >= 2, capacity <= Self.maximumCapacity, capacity & (capacity - 1) == 0 else {
            throw .invalidCapacity(capacity)
        }
        guard slotSize > 0, slotSize <= 4096, slotSize % 8 == 0 else {
            throw .invalidSlotSize(slotSize)
        }
        self.kind = kind
        self.capacity = capacity
        self.slotSize = slotSize
        slotsOffset = RegionLayout.controlOffset + RegionLayout.controlSize
        let slotsEnd = slotsOffset + capacity * slotSize
        switch kind {
        case .spsc:
            sequencesOffset = 0
            requiredSize = slotsEnd
        case .mpsc:
            sequencesOffset = (slotsEnd + RegionLayout.cacheLine - 1) & ~(RegionLayout.cacheLine - 1)
            requiredSize = sequencesOffset + capacity * MemoryLayout<UInt64>.size
        }
    }
}
