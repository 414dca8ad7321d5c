import FabricSystem

/// Something a consumer found wrong with a ring, which only a misbehaving or
/// dead peer can cause. Full and empty are not errors; they are normal results.
public enum RingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The shared indices contradict each other: the producer's head is behind
    /// the consumer's tail or more than `capacity` ahead of it. A peer wrote
    /// garbage into the control block; the consumer reads nothing more.
    case indicesCorrupted(head: UInt64, tail: UInt64, capacity: Int)
    /// MPSC: a producer reserved `position` and has not published it for
    /// longer than the consumer's stall timeout. It probably died between
    /// reserving and publishing. See ``MPSCConsumer/skipStalledSlot()``.
    case slotStalled(position: UInt64, stalledForNanoseconds: UInt64)

    public var description: String {
        switch self {
        case .indicesCorrupted(let head, let tail, let capacity):
            "ring indices corrupted: head \(head), tail \(tail), capacity \(capacity)"
        case .slotStalled(let position, let ns):
            "slot at position \(position) reserved but unpublished for \(ns / 1_000_000) ms (producer died mid-write?)"
        }
    }
}
