import FabricQueue
import FabricSystem

/// Where a data region's buffer slots are: `slotCount` slots of `slotSize`
/// bytes from `dataOffset`. Descriptors name buffers by offset into the data
/// region; this is what the daemon checks them against.
public struct DataRegionGeometry: Equatable, Sendable {
    /// Offset of slot 0 (one page: the header lives before it).
    public var dataOffset: UInt64
    /// Bytes per slot, a multiple of 64.
    public var slotSize: UInt64
    /// Number of slots.
    public var slotCount: UInt32

    /// The largest slot size (1 GiB) and slot count (2^20) a header may claim.
    public static let maximumSlotSize: UInt64 = 1 << 30
    /// The largest slot count.
    public static let maximumSlotCount: UInt32 = 1 << 20

    /// Validates and creates a geometry.
    public init(dataOffset: UInt64 = UInt64(DataRegion.headerPage), slotSize: UInt64, slotCount: UInt32) throws(RegionError) {
        guard slotSize >= 64, slotSize <= Self.maximumSlotSize, slotSize % 64 == 0 else {
            throw .invalidSlotSize(Int(clamping: slotSize))
        }
        guard slotCount >= 1, slotCount <= Self.maximumSlotCount else { throw .invalidCapacity(Int(slotCount)) }
        self.dataOffset = dataOffset
        self.slotSize = slotSize
        self.slotCount = slotCount
    }

    /// Bytes the region spans: header page plus all slots (cannot overflow:
    /// both factors are bounded).
    public var regionSize: UInt64 { dataOffset + slotSize * UInt64(slotCount) }

    /// Offset of slot `index`.
    @inlinable
    public func offset(ofSlot index: UInt32) -> UInt64 { dataOffset + slotSize * UInt64(index) }

    /// The slot that wholly contains `offset..<offset+length`, or nil when the
    /// range starts before the slots, runs past the region, or straddles two
    /// slots. Overflow-proof for any 64-bit input a peer may send.
    @inlinable
    public func slot(containing offset: UInt64, length: UInt64) -> UInt32? {
        guard offset >= dataOffset else { return nil }
        let relative = offset - dataOffset
        let index = relative / slotSize
        guard index < UInt64(slotCount) else { return nil }
        let within = relative - index * slotSize
        guard length <= slotSize - within else { return nil }
        return UInt32(index)
    }

    /// Slots a buffer of `bytes` bytes takes (at least one), or nil when
    /// `bytes` is negative or more than all the slots hold.
    @inlinable
    public func slotsNeeded(forBytes bytes: Int) -> Int? {
        guard bytes >= 0 else { return nil }
        let slots = bytes == 0 ? 1 : 1 + (bytes - 1) / Int(slotSize)
        return slots <= Int(slotCount) ? slots : nil
    }

    /// The slots `offset..<offset+length` covers, or nil when the range
    /// starts before the slots (in the header page) or runs past the last
    /// one. A buffer may span a run of contiguous slots
    /// (`BufferPool.acquire(bytes:)`); an empty range covers no slot but
    /// must still start inside them. Overflow-proof for any 64-bit input a
    /// peer may send.
    @inlinable
    public func slots(covering offset: UInt64, length: UInt64) -> Range<UInt32>? {
        guard offset >= dataOffset, offset < regionSize, length <= regionSize - offset else { return nil }
        let first = (offset - dataOffset) / slotSize
        guard length > 0 else { return UInt32(first)..<UInt32(first) }
        let last = (offset - dataOffset + length - 1) / slotSize
        return UInt32(first)..<UInt32(last + 1)
    }
}
