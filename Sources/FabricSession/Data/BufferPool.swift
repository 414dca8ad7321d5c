import FabricQueue
import FabricSystem

/// A buffer handed out by a ``BufferPool``: one slot, or a run of
/// ``slotCount`` contiguous slots for inputs and outputs larger than a slot
/// (``BufferPool/acquire(bytes:)``). A descriptor names it by ``offset``;
/// the daemon checks only that the bytes lie inside the session's slots.
public struct BufferSlot: Equatable, Hashable, Sendable {
    /// The index of its first slot in the data region.
    public let index: UInt32
    /// How many contiguous slots it spans (1 for a single slot).
    public let slotCount: UInt32
    /// Its byte offset in the data region: what a descriptor carries.
    public let offset: UInt64
    /// Its size in bytes: `slotCount` times the slot size.
    public let size: Int

    @usableFromInline
    package init(index: UInt32, slotCount: UInt32 = 1, offset: UInt64, size: Int) {
        self.index = index
        self.slotCount = slotCount
        self.offset = offset
        self.size = size
    }

    /// The slot indices it covers.
    public var slots: Range<UInt32> { index..<(index + slotCount) }

    /// Whether it and `other` share a slot.
    public func overlaps(_ other: BufferSlot) -> Bool { slots.overlaps(other.slots) }
}

/// The controller's allocator over a session's ``DataRegion``: slots, or
/// runs of contiguous slots, handed out zero-copy (preprocess straight into
/// ``buffer(_:)``) and returned when their command completes.
///
/// Free slots are a bitmap; a single slot is the lowest free one (found with
/// a trailing-zero count from the lowest word that may have one), a run the
/// lowest gap wide enough (first fit). Acquire and release touch only memory
/// allocated with the pool: no allocation, no lock, no syscall. An exhausted
/// pool returns nil, which is backpressure; a run can also be refused while
/// enough slots are free but scattered (``largestRun``).
///
/// Noncopyable: one owner per pool (the controller thread that submits).
public struct BufferPool: ~Copyable {
    /// The data region the slots live in.
    public let region: DataRegion
    /// Bit `i % 64` of word `i / 64` is set while slot `i` is free; bits past
    /// the last slot stay clear, so they are never handed out. Updated with
    /// plain stores (`freeBits[w] = freeBits[w] | m`), never `|=`/`&=`:
    /// compound assignment through this subscript crashes the Swift 6.3
    /// compiler in an optimized ThreadSanitizer build ("Invalid bitcast",
    /// scripts/test-tsan).
    @usableFromInline let freeBits: UnsafeMutableBufferPointer<UInt64>
    /// At a handed-out buffer's first slot, its length in slots; 0 elsewhere.
    /// A release must name a buffer exactly as it was handed out.
    @usableFromInline let runLength: UnsafeMutableBufferPointer<UInt32>
    /// No word below this one has a free slot.
    @usableFromInline var lowestFreeWord: Int
    @usableFromInline var freeCount: Int

    /// A pool of every slot of `region`, all free.
    public init(region: DataRegion) {
        self.region = region
        let count = Int(region.geometry.slotCount)
        let words = (count + 63) / 64
        freeBits = .allocate(capacity: words)
        freeBits.initialize(repeating: ~0)
        if count % 64 != 0 { freeBits[words - 1] = (1 << UInt64(count % 64)) - 1 }
        runLength = .allocate(capacity: count)
        runLength.initialize(repeating: 0)
        lowestFreeWord = 0
        freeCount = count
    }

    deinit {
        freeBits.deallocate()
        runLength.deallocate()
    }

    /// Slots not handed out.
    public var availableCount: Int { freeCount }
    /// All slots.
    public var capacity: Int { runLength.count }
    /// Bytes per slot.
    public var slotSize: Int { Int(region.geometry.slotSize) }

    /// Slots a buffer of `bytes` bytes takes (at least one), or nil when
    /// `bytes` is negative or more than the whole region holds.
    @inlinable
    public func slotsNeeded(forBytes bytes: Int) -> Int? { region.geometry.slotsNeeded(forBytes: bytes) }

    /// The longest run of free slots (a scan of the bitmap: for diagnostics
    /// and for deciding whether to wait, not for the hot path).
    public var largestRun: Int {
        var best = 0
        var i = 0
        while let start = nextFree(from: i) {
            let end = nextUsed(from: start, limit: capacity)
            best = max(best, end - start)
            i = end
        }
        return best
    }

    /// Takes the lowest free slot, or nil when all are in use.
    @inlinable
    public mutating func acquire() -> BufferSlot? {
        guard freeCount > 0 else { return nil }
        var word = lowestFreeWord
        while freeBits[word] == 0 { word += 1 }
        lowestFreeWord = word
        let index = word << 6 | freeBits[word].trailingZeroBitCount
        let bits = freeBits[word]
        freeBits[word] = bits & (bits - 1)
        return take(index, slots: 1)
    }

    /// Takes a run of `slots` contiguous free slots (the lowest that fits),
    /// or nil when no run that long is free (or `slots` is below 1).
    @inlinable
    public mutating func acquire(slots: Int) -> BufferSlot? {
        if slots == 1 { return acquire() }
        guard slots >= 1, slots <= freeCount else { return nil }
        var i = lowestFreeWord << 6
        while let start = nextFree(from: i), start + slots <= capacity {
            let end = nextUsed(from: start, limit: start + slots)
            if end == start + slots {
                mark(start..<end, free: false)
                return take(start, slots: slots)
            }
            i = end
        }
        return nil
    }

    /// Takes the slots for `bytes` bytes (``slotsNeeded(forBytes:)``): one
    /// slot when they fit one, else the shortest run that holds them. A
    /// descriptor names at most `UInt32.max` bytes of a buffer, whatever
    /// its size.
    @inlinable
    public mutating func acquire(bytes: Int) -> BufferSlot? {
        guard let slots = slotsNeeded(forBytes: bytes) else { return nil }
        return acquire(slots: slots)
    }

    /// Returns `slot` to the pool. Releasing a buffer that is not in use, or
    /// naming a run other than as it was handed out, is a programming error
    /// and traps (it would hand one buffer to two commands).
    @inlinable
    public mutating func release(_ slot: BufferSlot) {
        let first = Int(slot.index)
        precondition(
            first < capacity && slot.slotCount > 0 && runLength[first] == slot.slotCount,
            "buffer at slot \(slot.index) (\(slot.slotCount) slots) released twice or never acquired")
        runLength[first] = 0
        if slot.slotCount == 1 {
            let word = first >> 6
            freeBits[word] = freeBits[word] | 1 << UInt64(first & 63)
        } else {
            mark(first..<(first + Int(slot.slotCount)), free: true)
        }
        freeCount += Int(slot.slotCount)
        if first >> 6 < lowestFreeWord { lowestFreeWord = first >> 6 }
    }

    /// The buffer's memory, to fill in place. Valid while the pool exists.
    @inlinable
    public func buffer(_ slot: BufferSlot) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: region.base + Int(slot.offset), count: slot.size)
    }

    /// Writes `tensor`'s header at the start of `slot` and returns where its
    /// elements go (`dataBytes` at `dataOffset`), for a typed request
    /// (`CommandRequest(modelID:input:tensor:output:…)`); nil when the
    /// buffer cannot hold header and elements (take a run for a larger
    /// tensor: `acquire(bytes: Int(tensor.dataOffset) + Int(tensor.dataBytes))`).
    public func writeTensorHeader(_ tensor: TensorHeader, into slot: BufferSlot) -> UnsafeMutableRawBufferPointer? {
        let whole = buffer(slot)
        let end = UInt64(tensor.dataOffset) + UInt64(tensor.dataBytes)
        guard tensor.dataOffset >= UInt32(TensorHeader.size), end <= UInt64(whole.count) else { return nil }
        tensor.write(to: whole)
        return UnsafeMutableRawBufferPointer(rebasing: whole[Int(tensor.dataOffset)..<Int(end)])
    }

    // MARK: Bitmap

    @inlinable
    mutating func take(_ index: Int, slots: Int) -> BufferSlot {
        freeCount -= slots
        runLength[index] = UInt32(slots)
        let geometry = region.geometry
        return BufferSlot(
            index: UInt32(index), slotCount: UInt32(slots), offset: geometry.offset(ofSlot: UInt32(index)),
            size: slots * Int(geometry.slotSize))
    }

    /// The first free slot at or after `index`, or nil.
    @inlinable
    func nextFree(from index: Int) -> Int? {
        guard index < capacity else { return nil }
        var word = index >> 6
        var bits = freeBits[word] & (~0 << UInt64(index & 63))
        while bits == 0 {
            word += 1
            guard word < freeBits.count else { return nil }
            bits = freeBits[word]
        }
        return word << 6 | bits.trailingZeroBitCount
    }

    /// The first slot in use at or after `index`, or `limit` when every slot
    /// in `index..<limit` is free.
    @inlinable
    func nextUsed(from index: Int, limit: Int) -> Int {
        var word = index >> 6
        var used = ~freeBits[word] & (~0 << UInt64(index & 63))
        while used == 0 {
            word += 1
            guard word << 6 < limit, word < freeBits.count else { return limit }
            used = ~freeBits[word]
        }
        return min(word << 6 | used.trailingZeroBitCount, limit)
    }

    /// Sets or clears the free bits of `range`, a word at a time.
    @inlinable
    mutating func mark(_ range: Range<Int>, free: Bool) {
        var i = range.lowerBound
        while i < range.upperBound {
            let low = i & 63
            let width = min(64 - low, range.upperBound - i)
            let mask: UInt64 = width == 64 ? ~0 : ((1 << UInt64(width)) - 1) << UInt64(low)
            let word = i >> 6
            freeBits[word] = free ? freeBits[word] | mask : freeBits[word] & ~mask
            i += width
        }
    }
}
