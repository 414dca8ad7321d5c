import FabricQueue
import FabricSystem

/// A buffer slot handed out by a ``BufferPool``.
public struct BufferSlot: Equatable, Hashable, Sendable {
    /// The slot's index in the data region.
    public let index: UInt32
    /// Its byte offset in the data region: what a descriptor carries.
    public let offset: UInt64
    /// Its size in bytes.
    public let size: Int

    @usableFromInline
    package init(index: UInt32, offset: UInt64, size: Int) {
        self.index = index
        self.offset = offset
        self.size = size
    }
}

/// The controller's allocator over a session's ``DataRegion``: fixed-size
/// slots handed out zero-copy (preprocess straight into
/// ``buffer(_:)``) and returned when their command completes. Acquire and
/// release only push and pop a preallocated stack: no allocation, no lock,
/// no syscall. An exhausted pool returns nil, which is backpressure.
///
/// Noncopyable: one owner per pool (the controller thread that submits).
public struct BufferPool: ~Copyable {
    /// The data region the slots live in.
    public let region: DataRegion
    @usableFromInline let free: UnsafeMutableBufferPointer<UInt32>
    @usableFromInline var freeCount: Int
    @usableFromInline let inUse: UnsafeMutableBufferPointer<Bool>

    /// A pool of every slot of `region`, all free.
    public init(region: DataRegion) {
        self.region = region
        let count = Int(region.geometry.slotCount)
        free = .allocate(capacity: count)
        inUse = .allocate(capacity: count)
        inUse.initialize(repeating: false)
        // Lowest index on top, so slots are handed out in order.
        for i in 0..<count { free[i] = UInt32(count - 1 - i) }
        freeCount = count
    }

    deinit {
        free.deallocate()
        inUse.deallocate()
    }

    /// Slots not handed out.
    public var availableCount: Int { freeCount }
    /// All slots.
    public var capacity: Int { free.count }

    /// Takes a free slot, or nil when all are in use.
    @inlinable
    public mutating func acquire() -> BufferSlot? {
        guard freeCount > 0 else { return nil }
        freeCount -= 1
        let index = free[freeCount]
        inUse[Int(index)] = true
        return BufferSlot(index: index, offset: region.geometry.offset(ofSlot: index), size: Int(region.geometry.slotSize))
    }

    /// Returns `slot` to the pool. Releasing a slot that is not in use is a
    /// programming error and traps (it would hand one buffer to two commands).
    @inlinable
    public mutating func release(_ slot: BufferSlot) {
        precondition(
            slot.index < region.geometry.slotCount && inUse[Int(slot.index)],
            "slot \(slot.index) released twice or never acquired")
        inUse[Int(slot.index)] = false
        free[freeCount] = slot.index
        freeCount += 1
    }

    /// The slot's memory, to fill in place. Valid while the pool exists.
    @inlinable
    public func buffer(_ slot: BufferSlot) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: region.base + Int(slot.offset), count: slot.size)
    }

    /// Writes `tensor`'s header at the start of `slot` and returns where its
    /// elements go (`dataBytes` at `dataOffset`), for a typed request
    /// (`CommandRequest(modelID:input:tensor:output:…)`); nil when the slot
    /// cannot hold header and elements.
    public func writeTensorHeader(_ tensor: TensorHeader, into slot: BufferSlot) -> UnsafeMutableRawBufferPointer? {
        let whole = buffer(slot)
        let end = UInt64(tensor.dataOffset) + UInt64(tensor.dataBytes)
        guard tensor.dataOffset >= UInt32(TensorHeader.size), end <= UInt64(whole.count) else { return nil }
        tensor.write(to: whole)
        return UnsafeMutableRawBufferPointer(rebasing: whole[Int(tensor.dataOffset)..<Int(end)])
    }
}
