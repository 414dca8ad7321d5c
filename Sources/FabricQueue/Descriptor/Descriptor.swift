import FabricSystem

/// A 64-byte command descriptor: what the controller posts and the daemon runs.
///
/// Its layout is part of the ABI, version 2 (see `Docs/RingLayout.md`):
/// fixed-width little-endian fields at fixed offsets, exactly one cache line.
/// Buffers are referenced by offset and size inside a data region, never by
/// pointer, so the descriptor means the same in every process that maps the
/// region.
///
/// | offset | field                | type   |
/// |--------|----------------------|--------|
/// | 0      | commandID            | UInt64 |
/// | 8      | modelID              | UInt32 |
/// | 12     | flags                | UInt16 |
/// | 14     | priority             | UInt8  |
/// | 15     | opcode               | UInt8  |
/// | 16     | inputOffset          | UInt64 |
/// | 24     | outputOffset         | UInt64 |
/// | 32     | inputSize            | UInt32 |
/// | 36     | outputCapacity       | UInt32 |
/// | 40     | submitTimestamp      | UInt64 |
/// | 48     | producerID           | UInt32 |
/// | 52     | deadlineMicroseconds | UInt32 |
/// | 56     | userData             | UInt64 |
@frozen
public struct Descriptor: RingElement, Equatable, Hashable {
    /// Identifies the command; echoed in its completion. A
    /// ``CommandOpcode/cancel`` descriptor names the command to cancel here.
    public var commandID: UInt64
    /// Which model (engine) runs the command.
    public var modelID: UInt32
    /// Command options (e.g. precision, quantization); meaning set by the daemon.
    public var flags: UInt16
    /// Scheduling priority: higher values are served first. The daemon clamps
    /// it to the model's number of levels (0 is the default, lowest level).
    public var priority: UInt8
    /// What the descriptor asks for: a ``CommandOpcode`` raw value.
    public var opcode: UInt8
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
    /// The command's deadline, in microseconds after ``submitTimestamp``
    /// (0: none). A command still queued when it passes completes
    /// `CompletionStatus.expired` without running.
    public var deadlineMicroseconds: UInt32
    /// Opaque to FabricQueue; returned to the producer with the completion.
    public var userData: UInt64

    /// The descriptor's ring element tag.
    public static var ringElementTag: UInt32 { 1 }

    /// Creates a descriptor; unspecified fields are zero.
    @inlinable
    public init(
        commandID: UInt64 = 0, modelID: UInt32 = 0, flags: UInt16 = 0,
        inputOffset: UInt64 = 0, inputSize: UInt32 = 0,
        outputOffset: UInt64 = 0, outputCapacity: UInt32 = 0,
        submitTimestamp: UInt64 = 0, producerID: UInt32 = 0, userData: UInt64 = 0,
        priority: UInt8 = 0, deadlineMicroseconds: UInt32 = 0, opcode: CommandOpcode = .run
    ) {
        self.commandID = commandID
        self.modelID = modelID
        self.flags = flags
        self.priority = priority
        self.opcode = opcode.rawValue
        self.inputOffset = inputOffset
        self.outputOffset = outputOffset
        self.inputSize = inputSize
        self.outputCapacity = outputCapacity
        self.submitTimestamp = submitTimestamp
        self.producerID = producerID
        self.deadlineMicroseconds = deadlineMicroseconds
        self.userData = userData
    }

    /// The deadline as a `CLOCK_MONOTONIC` time, or nil when the command has
    /// none. Saturating: a peer's wild timestamp cannot wrap it around.
    @inlinable
    public var deadline: UInt64? {
        guard deadlineMicroseconds != 0 else { return nil }
        let (budget, _) = UInt64(deadlineMicroseconds).multipliedReportingOverflow(by: 1000)
        let (end, overflow) = submitTimestamp.addingReportingOverflow(budget)
        return overflow ? .max : end
    }

    /// A descriptor asking the daemon to cancel `commandID` of `modelID` (see
    /// ``CommandOpcode/cancel``).
    @inlinable
    public static func cancellation(of commandID: UInt64, modelID: UInt32, producerID: UInt32 = 0) -> Descriptor {
        Descriptor(commandID: commandID, modelID: modelID, producerID: producerID, opcode: .cancel)
    }
}

/// What a ``Descriptor`` asks the daemon to do (its `opcode` byte). Part of the ABI.
public enum CommandOpcode: UInt8, Sendable, CaseIterable {
    /// Run the command on its model; one completion answers it.
    case run = 0
    /// Cancel the earlier command `commandID` of model `modelID` on the same
    /// session. If it is still queued it is dropped and completes
    /// `CompletionStatus.cancelled`; if it already runs (or is done) nothing
    /// changes. A cancellation gets no completion of its own; its buffer fields
    /// are ignored.
    case cancel = 1
}
