import FabricSystem
import Synchronization

/// A point-in-time view of a ring's shared state, for operators and monitoring
/// (`fabricq inspect`). Read with relaxed loads; never used to make decisions.
public struct RingSnapshot: Equatable, Sendable {
    /// Next position producers will write (MPSC: next to be reserved).
    public var head: UInt64
    /// Next position the consumer will read.
    public var tail: UInt64
    /// `head - tail` as a signed number; outside `0...capacity` means corrupt.
    public var occupancy: Int64
    /// Whether `occupancy` is within `0...capacity`.
    public var indicesConsistent: Bool
    /// MPSC: positions in `tail..<head` reserved but not yet published.
    public var unpublished: Int
    /// Processes asleep waiting for data.
    public var dataWaiters: UInt32
    /// Processes asleep waiting for space.
    public var spaceWaiters: UInt32
    /// Doorbell futex word rung when data is posted.
    public var dataAvailableFutex: UInt32
    /// Doorbell futex word rung when space is freed.
    public var spaceAvailableFutex: UInt32
    /// Pid holding the producer role (SPSC), 0 if none.
    public var producerOwner: Int32
    /// Pid holding the consumer role, 0 if none.
    public var consumerOwner: Int32
}

extension SharedRegion {
    /// Reads the ring's shared state without attaching an endpoint.
    public func snapshot() -> RingSnapshot {
        let control = base + RegionLayout.controlOffset
        func u64(_ o: Int) -> UInt64 {
            // Relaxed: a monitoring snapshot.
            (control + o).assumingMemoryBound(to: Atomic<UInt64>.self).pointee.load(ordering: .relaxed)
        }
        func u32(_ o: Int) -> UInt32 {
            // Relaxed: a monitoring snapshot.
            (control + o).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .relaxed)
        }
        let head = u64(RegionLayout.Control.head)
        let tail = u64(RegionLayout.Control.tail)
        let occupancy = Int64(bitPattern: head &- tail)
        let consistent = occupancy >= 0 && occupancy <= Int64(info.capacity)
        var unpublished = 0
        if info.kind == .mpsc && consistent {
            let sequences = pointer(at: info.geometry.sequencesOffset, as: Atomic<UInt64>.self)
            let mask = UInt64(info.capacity - 1)
            var p = tail
            while p != head {
                // Relaxed: a monitoring snapshot.
                if sequences[Int(p & mask)].load(ordering: .relaxed) != p &+ 1 { unpublished += 1 }
                p &+= 1
            }
        }
        return RingSnapshot(
            head: head, tail: tail, occupancy: occupancy, indicesConsistent: consistent,
            unpublished: unpublished,
            dataWaiters: u32(RegionLayout.Control.dataWaiters),
            spaceWaiters: u32(RegionLayout.Control.spaceWaiters),
            dataAvailableFutex: u32(RegionLayout.Control.dataAvailableFutex),
            spaceAvailableFutex: u32(RegionLayout.Control.spaceAvailableFutex),
            producerOwner: Int32(bitPattern: u32(RegionLayout.Control.producerOwner)),
            consumerOwner: Int32(bitPattern: u32(RegionLayout.Control.consumerOwner)))
    }
}
