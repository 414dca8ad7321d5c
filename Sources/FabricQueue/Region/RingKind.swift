import FabricSystem

/// Which ring protocol a region holds. Stored as a `UInt32` in the region header.
public enum RingKind: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    /// One producer, one consumer: the producer publishes a shared head index.
    case spsc = 1
    /// Any number of producers (threads or processes), one consumer: producers
    /// reserve positions with a CAS on the head and publish each slot through a
    /// per-slot sequence number.
    case mpsc = 2

    public var description: String {
        switch self {
        case .spsc: "spsc"
        case .mpsc: "mpsc"
        }
    }
}
