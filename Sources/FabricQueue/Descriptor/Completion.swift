import FabricSystem

/// How a command ended, in a ``Completion``.
public enum CompletionStatus: UInt32, Sendable, CaseIterable {
    /// The handler ran and wrote ``Completion/outputSize`` bytes of output.
    case succeeded = 0
    /// The descriptor failed validation (see ``Completion/detail``); nothing ran.
    case invalidDescriptor = 1
    /// No handler is registered for the descriptor's model id.
    case unknownModel = 2
    /// The handler reported an error.
    case handlerFailed = 3
    /// The daemon dropped the command without running it: the controller
    /// cancelled it while it was queued, or the daemon is stopping.
    case cancelled = 4
    /// Its deadline (``Descriptor/deadlineMicroseconds``) passed before it
    /// could run; nothing ran.
    case expired = 5
    /// Its model's queue was full when it arrived (the daemon is overloaded
    /// for that model); nothing ran. Retry later or shed load.
    case modelQueueFull = 6
}

/// A 64-byte completion record: what the daemon posts back on a session's
/// completion ring for every command, successful or not.
///
/// Timestamps are `CLOCK_MONOTONIC` nanoseconds (``MonotonicClock``), the
/// same clock in both processes, so stage latencies are simple differences.
///
/// | offset | field                  | type   |
/// |--------|------------------------|--------|
/// | 0      | commandID              | UInt64 |
/// | 8      | userData               | UInt64 |
/// | 16     | status                 | UInt32 |
/// | 20     | outputSize             | UInt32 |
/// | 24     | submitTimestamp        | UInt64 |
/// | 32     | pickupTimestamp        | UInt64 |
/// | 40     | handlerStartTimestamp  | UInt64 |
/// | 48     | handlerEndTimestamp    | UInt64 |
/// | 56     | producerID             | UInt32 |
/// | 60     | detail                 | UInt32 |
@frozen
public struct Completion: RingElement, Equatable, Hashable {
    /// The command's id, from its descriptor.
    public var commandID: UInt64
    /// The descriptor's opaque user data, returned unchanged.
    public var userData: UInt64
    /// ``CompletionStatus`` raw value; unknown values mean a newer or broken peer.
    public var statusCode: UInt32
    /// Bytes of output the handler wrote (0 unless it succeeded).
    public var outputSize: UInt32
    /// When the controller submitted the command (from the descriptor).
    public var submitTimestamp: UInt64
    /// When the daemon took the descriptor off the submission ring.
    public var pickupTimestamp: UInt64
    /// When the handler started.
    public var handlerStartTimestamp: UInt64
    /// When the handler finished.
    public var handlerEndTimestamp: UInt64
    /// The producer id from the descriptor.
    public var producerID: UInt32
    /// Status-specific detail: for ``CompletionStatus/succeeded``, how many
    /// commands the batch it ran in held; for
    /// ``CompletionStatus/invalidDescriptor``, which check failed
    /// (``InvalidDescriptorReason``); for ``CompletionStatus/handlerFailed``,
    /// the handler's code or a ``HandlerFailure``.
    public var detail: UInt32

    /// The completion record's ring element tag.
    public static var ringElementTag: UInt32 { 2 }

    /// The status, or nil for a value this build does not know.
    @inlinable public var status: CompletionStatus? { CompletionStatus(rawValue: statusCode) }

    /// A completion for `descriptor`, stamped with its submit time; fill in
    /// the other timestamps as the stages happen.
    @inlinable
    public init(for descriptor: Descriptor, status: CompletionStatus, outputSize: UInt32 = 0, detail: UInt32 = 0) {
        commandID = descriptor.commandID
        userData = descriptor.userData
        statusCode = status.rawValue
        self.outputSize = outputSize
        submitTimestamp = descriptor.submitTimestamp
        pickupTimestamp = 0
        handlerStartTimestamp = 0
        handlerEndTimestamp = 0
        producerID = descriptor.producerID
        self.detail = detail
    }
}

/// Which check a descriptor failed: ``Completion/detail`` of a completion
/// with status ``CompletionStatus/invalidDescriptor``. Part of the ABI.
public enum InvalidDescriptorReason: UInt32, Sendable, CaseIterable {
    /// The input range is outside the session's buffer slots.
    case inputOutOfBounds = 1
    /// The output range is outside the session's buffer slots.
    case outputOutOfBounds = 2
    /// Input and output ranges overlap.
    case overlappingBuffers = 3
    /// The output buffer is smaller than the model needs.
    case outputTooSmall = 4
    /// The opcode is not a ``CommandOpcode`` this version defines.
    case unknownOpcode = 5
    /// The input's ``TensorHeader`` is not one (``TensorViolation/malformed``).
    case tensorHeaderMalformed = 6
    /// A scale or zero point on a float type, or a bad one on a quantized type.
    case tensorQuantization = 7
    /// The header's data size does not match its shape, or leaves the input.
    case tensorSize = 8
    /// The model does not take the tensor's element type; the output holds a
    /// ``TensorMismatch`` record saying what it takes.
    case tensorElementType = 9
    /// The model takes another shape; the output holds a ``TensorMismatch``.
    case tensorShape = 10
}

/// `Completion.detail` of a `CompletionStatus.handlerFailed` completion
/// that the handler did not report itself (a handler that reports a failure
/// chooses its own code; these two are reserved). Part of the ABI.
public enum HandlerFailure: UInt32, Sendable, CaseIterable {
    /// The handler returned without reporting this command.
    case unreported = 0xFFFF_FFFE
    /// The handler threw.
    case threw = 0xFFFF_FFFF
}

/// Why a command failed, decoded from a completion's status and detail.
public enum CommandFailure: Equatable, Sendable, CustomStringConvertible {
    /// The daemon refused the descriptor; `reason` is nil for a detail this
    /// build does not know.
    case invalidDescriptor(InvalidDescriptorReason?)
    /// No handler is registered for the command's model.
    case unknownModel
    /// The handler threw, or returned without reporting the command.
    case handler(HandlerFailure)
    /// The handler reported a failure with its own code.
    case handlerCode(UInt32)
    /// Cancelled while queued, or dropped by a stopping daemon.
    case cancelled
    /// The deadline passed before the command could run.
    case expired
    /// The model's queue was full.
    case modelQueueFull
    /// A status this build does not know.
    case other(statusCode: UInt32, detail: UInt32)

    /// The failure a completion with `statusCode` and `detail` reports; nil
    /// for a success.
    public init?(statusCode: UInt32, detail: UInt32) {
        switch CompletionStatus(rawValue: statusCode) {
        case .succeeded: return nil
        case .invalidDescriptor: self = .invalidDescriptor(InvalidDescriptorReason(rawValue: detail))
        case .unknownModel: self = .unknownModel
        case .handlerFailed:
            if let reserved = HandlerFailure(rawValue: detail) { self = .handler(reserved) } else { self = .handlerCode(detail) }
        case .cancelled: self = .cancelled
        case .expired: self = .expired
        case .modelQueueFull: self = .modelQueueFull
        case nil: self = .other(statusCode: statusCode, detail: detail)
        }
    }

    public var description: String {
        switch self {
        case .invalidDescriptor(let reason): "invalid descriptor: \(reason.map { "\($0)" } ?? "unknown reason")"
        case .unknownModel: "unknown model"
        case .handler(.threw): "the handler threw (the daemon's log says what)"
        case .handler(.unreported): "the handler returned without reporting the command"
        case .handlerCode(let code): "the handler failed with code \(code)"
        case .cancelled: "cancelled before it ran"
        case .expired: "its deadline passed before it could run"
        case .modelQueueFull: "the model's queue was full"
        case .other(let status, let detail): "status \(status), detail \(detail)"
        }
    }
}
