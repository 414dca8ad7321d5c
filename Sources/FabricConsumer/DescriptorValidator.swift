import FabricQueue
import FabricSession
import FabricSystem

/// Why the daemon refuses a descriptor. The daemon answers such a command with
/// an error completion and keeps serving; it never reads or writes outside the
/// data region on the strength of a bad descriptor.
public enum DescriptorViolation: Error, Equatable, Sendable {
    /// No handler is registered for this model.
    case unknownModel(UInt32)
    /// The input range leaves the data region (or wraps around).
    case inputOutOfBounds(offset: UInt64, size: UInt32)
    /// The output range leaves the data region (or wraps around).
    case outputOutOfBounds(offset: UInt64, capacity: UInt32)
    /// Input and output ranges overlap: the handler would read what it writes.
    case overlappingBuffers
    /// Output capacity is below what the model needs.
    case outputTooSmall(capacity: UInt32, required: UInt32)
    /// The opcode is not one this ABI version defines.
    case unknownOpcode(UInt8)
    /// The input's tensor header was refused (descriptor flag
    /// `Descriptor.tensorHeaderFlag`).
    case tensor(TensorViolation)
}

/// Checks descriptors that arrive from another process before anything acts on
/// them: every offset and size must stay inside the data region, with
/// overflow-proof arithmetic. Validate a copy (as ring consumers hand out),
/// never the slot itself, so the producer cannot change it after the check.
public struct DescriptorValidator: Sendable {
    /// Size in bytes of the data region descriptors point into.
    public let dataRegionSize: UInt64
    /// Minimum output capacity per model id; a model missing here is unknown.
    public var requiredOutput: [UInt32: UInt32]
    /// When set, each buffer must lie inside the slots of the session's data
    /// region (one slot or a run of contiguous ones; never the header page).
    public var slots: DataRegionGeometry?

    /// A validator for a data region of `dataRegionSize` bytes and the given models.
    public init(dataRegionSize: UInt64, requiredOutput: [UInt32: UInt32]) {
        self.dataRegionSize = dataRegionSize
        self.requiredOutput = requiredOutput
        self.slots = nil
    }

    /// A validator for a session's slotted data region: every input and
    /// output must sit inside its slots; a buffer may span several
    /// contiguous slots (`BufferPool.acquire(bytes:)`), checked exactly as
    /// one slot is.
    public init(slots: DataRegionGeometry, requiredOutput: [UInt32: UInt32]) {
        self.dataRegionSize = slots.regionSize
        self.requiredOutput = requiredOutput
        self.slots = slots
    }

    /// Whether `offset..<offset+size` lies inside the data region.
    @inlinable
    func contains(offset: UInt64, size: UInt64) -> Bool {
        offset <= dataRegionSize && size <= dataRegionSize - offset
    }

    /// Throws the first violation found in `descriptor`.
    public func validate(_ descriptor: Descriptor) throws(DescriptorViolation) {
        guard descriptor.opcode == CommandOpcode.run.rawValue else { throw .unknownOpcode(descriptor.opcode) }
        guard let required = requiredOutput[descriptor.modelID] else { throw .unknownModel(descriptor.modelID) }
        guard contains(offset: descriptor.inputOffset, size: UInt64(descriptor.inputSize)) else {
            throw .inputOutOfBounds(offset: descriptor.inputOffset, size: descriptor.inputSize)
        }
        guard contains(offset: descriptor.outputOffset, size: UInt64(descriptor.outputCapacity)) else {
            throw .outputOutOfBounds(offset: descriptor.outputOffset, capacity: descriptor.outputCapacity)
        }
        if let slots {
            guard
                descriptor.inputSize == 0
                    || slots.slots(covering: descriptor.inputOffset, length: UInt64(descriptor.inputSize)) != nil
            else {
                throw .inputOutOfBounds(offset: descriptor.inputOffset, size: descriptor.inputSize)
            }
            guard
                descriptor.outputCapacity == 0
                    || slots.slots(covering: descriptor.outputOffset, length: UInt64(descriptor.outputCapacity)) != nil
            else {
                throw .outputOutOfBounds(offset: descriptor.outputOffset, capacity: descriptor.outputCapacity)
            }
        }
        let inputEnd = descriptor.inputOffset + UInt64(descriptor.inputSize)
        let outputEnd = descriptor.outputOffset + UInt64(descriptor.outputCapacity)
        if descriptor.inputSize > 0 && descriptor.outputCapacity > 0
            && descriptor.inputOffset < outputEnd && descriptor.outputOffset < inputEnd
        {
            throw .overlappingBuffers
        }
        guard descriptor.outputCapacity >= required else {
            throw .outputTooSmall(capacity: descriptor.outputCapacity, required: required)
        }
    }
}

extension DescriptorViolation {
    /// The status of the error completion the daemon posts for this violation.
    public var completionStatus: CompletionStatus {
        if case .unknownModel = self { return .unknownModel }
        return .invalidDescriptor
    }

    /// The completion's `Completion.detail`: an `InvalidDescriptorReason`
    /// raw value (0 for an unknown model).
    public var completionDetail: UInt32 {
        switch self {
        case .unknownModel: 0
        case .inputOutOfBounds: InvalidDescriptorReason.inputOutOfBounds.rawValue
        case .outputOutOfBounds: InvalidDescriptorReason.outputOutOfBounds.rawValue
        case .overlappingBuffers: InvalidDescriptorReason.overlappingBuffers.rawValue
        case .outputTooSmall: InvalidDescriptorReason.outputTooSmall.rawValue
        case .unknownOpcode: InvalidDescriptorReason.unknownOpcode.rawValue
        case .tensor(let violation): violation.reason.rawValue
        }
    }
}
