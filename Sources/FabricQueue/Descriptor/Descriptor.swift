import FabricSystem

/// A 64-byte command descriptor: what the controller posts and the daemon runs.
///
/// Its layout is part of the ABI (see `Docs/RingLayout.md`): fixed-width
/// little-endian fields at fixed offsets, exactly one cache line. Buffers are
/// referenced by offset and size inside a data region, never by pointer, so
/// the descriptor means the same in every process that maps the region.
///
/// | offset | field            | type   |
/// |--------|------------------|--------|
/// | 0      | commandID        | UInt64 |
/// | 8      | modelID          | UInt32 |
/// | 12     | flags            | UInt32 |
/// | 16     | inputOffset      | UInt64 |
/// | 24     | outputOffset     | UInt64 |
/// | 32     | inputSize        | UInt32 |
/// | 36     | outputCapacity   | UInt32 |
/// | 40     | submitTimestamp  | UInt64 |
/// | 48     | producerID       | UInt32 |
/// | 52     | reserved         | UInt32 |
/// | 56     | userData         | UInt64 |
@frozen
public struct Descriptor: RingElement, Equatable, Hashable {
    /// Identifies the command; echoed in its completion.
    public var commandID: UInt64
    /// Which model (engine) runs the command.
    public var modelID: UInt32
    /// Command options (e.g. precision, quantization); meaning set by the daemon.
    public var flags: UInt32
    /// Byte offset of the input in the data region.
    public var inputOffset: UInt64
    /// Byte offset of the output buffer in the data region.
    public var outputOffset: UInt64
    /// Bytes of input.
    public var inputSize: UInt32
    /// Bytes the output buffer can hold.
    public var outputCapacity: UInt32
    /// When the command was submitted, `CLOCK_MONOTONIC` nanoseconds
    /// (see ``MonotonicClock``).
    public var submitTimestamp: UInt64
    /// Which producer (session, thread, process) posted the command.
    public var producerID: UInt32
    /// Zero in ABI version 1; consumers ignore it.
    public var reserved: UInt32
    /// Opaque to FabricQueue; returned to the producer with the completion.
    public var userData: UInt64

    /// The descriptor's ring element tag.
    public static var ringElementTag: UInt32 { 1 }

    /// Creates a descriptor; unspecified fields are zero.
    @inlinable
    public init(
        commandID: UInt64 = 0, modelID: UInt32 = 0, flags: UInt32 = 0,
        inputOffset: UInt64 = 0, inputSize: UInt32 = 0,
        outputOffset: UInt64 = 0, outputCapacity: UInt32 = 0,
        submitTimestamp: UInt64 = 0, producerID: UInt32 = 0, userData: UInt64 = 0
    ) {
        self.commandID = commandID
        self.modelID = modelID
        self.flags = flags
        self.inputOffset = inputOffset
        self.outputOffset = outputOffset
        self.inputSize = inputSize
        self.outputCapacity = outputCapacity
        self.submitTimestamp = submitTimestamp
        self.producerID = producerID
        self.reserved = 0
        self.userData = userData
    }
}
