import FabricSystem
import Synchronization

/// The raw pointers an endpoint works with, taken once at attach time from a
/// validated region. Copyable and trivial so the hot loops keep it in registers.
@usableFromInline
struct RingView<Element: RingElement> {
    @usableFromInline let slots: UnsafeMutablePointer<Element>
    @usableFromInline let head: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let tail: UnsafeMutablePointer<Atomic<UInt64>>
    /// Per-slot publication sequence (MPSC only; dangling-free dummy for SPSC).
    @usableFromInline let sequences: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let capacity: UInt64
    @usableFromInline let mask: UInt64
    @usableFromInline let control: UnsafeMutableRawPointer

    /// Validates that `region` holds a `kind` ring of `Element` and takes its pointers.
    init(region: SharedRegion, kind: RingKind) throws(RegionError) {
        let info = region.info
        guard info.kind == kind else { throw .ringKindMismatch(expected: kind, found: info.kind) }
        guard info.elementTag == Element.ringElementTag else {
            throw .elementTypeMismatch(expected: Element.ringElementTag, found: info.elementTag)
        }
        guard info.slotSize == MemoryLayout<Element>.stride else {
            throw .slotSizeMismatch(expected: MemoryLayout<Element>.stride, found: info.slotSize)
        }
        control = region.base + RegionLayout.controlOffset
        slots = region.pointer(at: info.geometry.slotsOffset, as: Element.self)
        head = (control + RegionLayout.Control.head).assumingMemoryBound(to: Atomic<UInt64>.self)
        tail = (control + RegionLayout.Control.tail).assumingMemoryBound(to: Atomic<UInt64>.self)
        sequences = region.pointer(
            at: kind == .mpsc ? info.geometry.sequencesOffset : RegionLayout.controlOffset,
            as: Atomic<UInt64>.self)
        capacity = UInt64(info.capacity)
        mask = capacity - 1
    }

    /// `head - tail`, clamped to `0...capacity`, from relaxed loads: a snapshot
    /// for monitoring, stale by the time it is returned.
    @inlinable
    var approximateCount: Int {
        // Relaxed: an estimate; nothing is read on the strength of it.
        let t = tail.pointee.load(ordering: .relaxed)
        let h = head.pointee.load(ordering: .relaxed)
        let d = Int64(bitPattern: h &- t)
        return Int(min(max(d, 0), Int64(capacity)))
    }

    /// Throws if the shared indices contradict each other.
    func checkIndices() throws(RingError) {
        // Relaxed: a consistency check of two independent words, no data read.
        let t = tail.pointee.load(ordering: .relaxed)
        let h = head.pointee.load(ordering: .relaxed)
        if h &- t > capacity { throw .indicesCorrupted(head: h, tail: t, capacity: Int(capacity)) }
    }

    /// After taking over a dead endpoint's role: its sleeping announcement on
    /// `waitersOffset` is stale (it will never decrement it), so clear it.
    func clearStaleWaiters(_ waitersOffset: Int) {
        // Relaxed: only a hint that makes notifiers skip their syscall.
        (control + waitersOffset).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.store(0, ordering: .relaxed)
    }

    func ownerWord(_ offset: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (control + offset).assumingMemoryBound(to: Atomic<UInt32>.self)
    }
}
