import FabricQueue
import FabricSystem

/// Checks a stream of ``CheckedTraffic`` descriptors from any number of
/// producers: each producer's sequence must arrive complete, once, in order.
public struct StreamVerifier: Sendable {
    /// Descriptors seen.
    public private(set) var received = 0
    /// Sequence numbers skipped (a gap in a producer's order).
    public private(set) var lost = 0
    /// Descriptors whose sequence was already passed (seen twice, or out of order).
    public private(set) var duplicated = 0
    /// Descriptors whose checksum does not match their contents.
    public private(set) var corrupt = 0
    /// Next expected sequence number per producer id.
    public private(set) var nextSequence: [UInt32: UInt64] = [:]

    /// An empty verifier.
    public init() {}

    /// Checks one descriptor.
    public mutating func record(_ d: Descriptor) {
        received += 1
        guard CheckedTraffic.isIntact(d) else {
            corrupt += 1
            return
        }
        let expected = nextSequence[d.producerID, default: 0]
        if d.commandID == expected {
            nextSequence[d.producerID] = expected &+ 1
        } else if d.commandID > expected {
            lost += Int(d.commandID - expected)
            nextSequence[d.producerID] = d.commandID &+ 1
        } else {
            duplicated += 1
        }
    }

    /// Whether every descriptor so far was intact, unique and in order.
    public var isClean: Bool { lost == 0 && duplicated == 0 && corrupt == 0 }
}
