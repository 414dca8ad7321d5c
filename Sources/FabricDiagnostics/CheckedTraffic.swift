import FabricQueue
import FabricSystem

/// Descriptors that carry their own proof of integrity: a producer id, a
/// per-producer sequence number, and a checksum over every other field.
/// `fabricq produce` writes them and `fabricq consume` verifies them.
public enum CheckedTraffic {
    /// The descriptor a producer sends as its `sequence`th command.
    @inlinable
    public static func descriptor(producer: UInt32, sequence: UInt64, timestamp: UInt64 = 0) -> Descriptor {
        var d = Descriptor(
            commandID: sequence,
            modelID: UInt32(truncatingIfNeeded: mix(sequence ^ 0x5eed)),
            flags: UInt16(truncatingIfNeeded: sequence &* 2_654_435_761),
            inputOffset: sequence &* 64, inputSize: UInt32(truncatingIfNeeded: sequence | 1),
            outputOffset: ~sequence, outputCapacity: producer &+ 7,
            submitTimestamp: timestamp, producerID: producer,
            priority: UInt8(truncatingIfNeeded: sequence >> 3), deadlineMicroseconds: UInt32(truncatingIfNeeded: sequence >> 1))
        d.userData = checksum(d)
        return d
    }

    /// A checksum over every field but `userData`.
    @inlinable
    public static func checksum(_ d: Descriptor) -> UInt64 {
        var h = mix(d.commandID)
        h = mix(h ^ (UInt64(d.modelID) << 32 | UInt64(d.flags) << 16 | UInt64(d.priority) << 8 | UInt64(d.opcode)))
        h = mix(h ^ d.inputOffset)
        h = mix(h ^ d.outputOffset)
        h = mix(h ^ (UInt64(d.inputSize) << 32 | UInt64(d.outputCapacity)))
        h = mix(h ^ d.submitTimestamp)
        h = mix(h ^ (UInt64(d.producerID) << 32 | UInt64(d.deadlineMicroseconds)))
        return h
    }

    /// Whether `d` is exactly what its producer wrote.
    @inlinable
    public static func isIntact(_ d: Descriptor) -> Bool { d.userData == checksum(d) }

    /// splitmix64's finalizer.
    @inlinable
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
