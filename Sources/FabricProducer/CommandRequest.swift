import FabricSystem

/// One command to post: which model, which buffers.
///
/// Buffers are slots of the session's `BufferPool`, or runs of contiguous
/// slots for data larger than one (`BufferPool.acquire(bytes:)`): fill the
/// input in place (``ControllerSession/buffers``), name it here with how
/// many bytes you wrote, and give an output buffer for the daemon to write
/// into.
public struct CommandRequest: Sendable, Equatable {
    /// The model to run (a handler id on the daemon).
    public var modelID: UInt32
    /// The buffer (a slot or a run) holding the input.
    public var input: BufferSlot
    /// Bytes of input at the start of the buffer (at most `UInt32.max`:
    /// the descriptor's field).
    public var inputSize: Int
    /// The buffer the output goes to.
    public var output: BufferSlot
    /// Bytes of it the daemon may fill (at most `UInt32.max`).
    public var outputCapacity: Int
    /// Command options, passed to the handler.
    public var flags: UInt16
    /// Returned with the completion.
    public var userData: UInt64
    /// Scheduling priority: higher is served first (0, the default, is the
    /// lowest; the daemon clamps to the model's `priorityLevels`).
    public var priority: UInt8
    /// How long after submission the command is still worth running (nil:
    /// no deadline). The daemon completes a command still queued past it as
    /// `CompletionStatus.expired` without running it. Carried in the
    /// descriptor in whole microseconds (rounded up, at most about 71 minutes).
    public var deadline: Duration?

    /// A request; `outputCapacity` defaults to the whole output buffer (up
    /// to `UInt32.max` bytes, what a descriptor can say).
    public init(
        modelID: UInt32, input: BufferSlot, inputSize: Int, output: BufferSlot,
        outputCapacity: Int? = nil, flags: UInt16 = 0, userData: UInt64 = 0,
        priority: UInt8 = 0, deadline: Duration? = nil
    ) {
        self.modelID = modelID
        self.input = input
        self.inputSize = inputSize
        self.output = output
        self.outputCapacity = outputCapacity ?? min(output.size, Int(UInt32.max))
        self.flags = flags
        self.userData = userData
        self.priority = priority
        self.deadline = deadline
    }

    /// A typed request: the input slot starts with `tensor`'s header (write
    /// it, and get where the elements go, with
    /// `BufferPool.writeTensorHeader(_:into:)`), the descriptor carries
    /// `Descriptor.tensorHeaderFlag`, and the input size is header and
    /// elements. The daemon checks the header against what the model takes
    /// (`ModelDescription.input`) before the handler runs.
    public init(
        modelID: UInt32, input: BufferSlot, tensor: TensorHeader, output: BufferSlot, outputCapacity: Int? = nil,
        flags: UInt16 = 0, userData: UInt64 = 0, priority: UInt8 = 0, deadline: Duration? = nil
    ) {
        self.init(
            modelID: modelID, input: input, inputSize: Int(tensor.dataOffset) + Int(tensor.dataBytes), output: output,
            outputCapacity: outputCapacity, flags: flags | Descriptor.tensorHeaderFlag, userData: userData,
            priority: priority, deadline: deadline)
    }

    /// Throws unless the sizes fit the buffers and the buffers share no slot.
    func check() throws(SubmitError) {
        guard inputSize >= 0, inputSize <= input.size, inputSize <= Int(UInt32.max) else {
            throw .invalidRequest(
                "input size \(inputSize) does not fit a \(input.size)-byte buffer and a 32-bit descriptor field")
        }
        guard outputCapacity >= 0, outputCapacity <= output.size, outputCapacity <= Int(UInt32.max) else {
            throw .invalidRequest(
                "output capacity \(outputCapacity) does not fit a \(output.size)-byte buffer and a 32-bit descriptor field")
        }
        guard !input.overlaps(output) || inputSize == 0 || outputCapacity == 0 else {
            throw .invalidRequest("input (slots \(input.slots)) and output (slots \(output.slots)) share a slot")
        }
    }

    func descriptor(commandID: UInt64, producerID: UInt32, now: UInt64) -> Descriptor {
        Descriptor(
            commandID: commandID, modelID: modelID, flags: flags,
            inputOffset: input.offset, inputSize: UInt32(inputSize),
            outputOffset: output.offset, outputCapacity: UInt32(outputCapacity),
            submitTimestamp: now, producerID: producerID, userData: userData,
            priority: priority, deadlineMicroseconds: deadline.map(Self.microseconds) ?? 0)
    }

    /// `budget` in whole microseconds, rounded up, at least 1 (0 would mean
    /// "no deadline"), at most `UInt32.max`.
    static func microseconds(_ budget: Duration) -> UInt32 {
        let ns = max(budget.saturatingNanoseconds, 1)
        return UInt32(clamping: (ns + 999) / 1000)
    }
}

/// A finished command, as the controller sees it.
public struct CommandCompletion: Sendable, Equatable {
    /// The command's id (as ``ControllerSession/submit(_:)`` returned it).
    public var commandID: UInt64
    /// How it ended; nil for a status code this build does not know.
    public var status: CompletionStatus?
    /// The raw status code.
    public var statusCode: UInt32
    /// Status detail (`InvalidDescriptorReason` for an invalid descriptor,
    /// the handler's code for a handler failure); ``failure`` decodes it.
    public var detail: UInt32
    /// Bytes of output written to ``output``.
    public var outputSize: Int
    /// The request's user data.
    public var userData: UInt64
    /// The request's input slot (release it when done).
    public var input: BufferSlot
    /// The request's output slot, holding ``outputSize`` bytes (release it when done).
    public var output: BufferSlot
    /// When each stage happened.
    public var timings: StageTimestamps

    /// Why the command failed, decoded from ``statusCode`` and ``detail``
    /// (nil when it succeeded).
    public var failure: CommandFailure? { CommandFailure(statusCode: statusCode, detail: detail) }

    /// Whether the command succeeded.
    public var succeeded: Bool { status == .succeeded }
}

/// The moments a command passed through, `CLOCK_MONOTONIC` nanoseconds
/// (`MonotonicClock`), the same clock in both processes. Submit and seen
/// are the controller's; pickup and the handler's are the daemon's.
public struct StageTimestamps: Sendable, Equatable {
    /// The controller posted the command.
    public var submitted: UInt64
    /// The daemon took it off the ring.
    public var pickedUp: UInt64
    /// Its handler started.
    public var handlerStarted: UInt64
    /// Its handler finished.
    public var handlerFinished: UInt64
    /// The controller saw the completion.
    public var seen: UInt64

    /// Nanoseconds from `a` to `b`, 0 if the daemon's stamps are out of order.
    @inlinable
    static func span(_ a: UInt64, _ b: UInt64) -> UInt64 { b >= a ? b - a : 0 }

    /// How long `stage` took, or nil when the command did not go through it
    /// or its stamps cannot be trusted: a stage is measured only when both of
    /// its stamps are set (a command refused before its handler ran has no
    /// handler stamps), in order, and within submit…seen (the daemon's
    /// stamps come from another process). The latency snapshots record only
    /// what this returns.
    public func duration(of stage: Stage) -> UInt64? {
        func measured(_ a: UInt64, _ b: UInt64) -> UInt64? {
            guard a != 0, b != 0, a <= b, a >= submitted, b <= seen else { return nil }
            return b - a
        }
        switch stage {
        case .queue: return measured(submitted, pickedUp)
        case .dispatch: return measured(pickedUp, handlerStarted)
        case .handler: return measured(handlerStarted, handlerFinished)
        case .completion: return measured(handlerFinished, seen)
        case .total: return measured(submitted, seen)
        }
    }

    /// Submit → pickup: time in the submission ring.
    public var queueNanoseconds: UInt64 { Self.span(submitted, pickedUp) }
    /// Pickup → handler start: validation and batching in the daemon.
    public var dispatchNanoseconds: UInt64 { Self.span(pickedUp, handlerStarted) }
    /// Handler start → end.
    public var handlerNanoseconds: UInt64 { Self.span(handlerStarted, handlerFinished) }
    /// Handler end → seen by the controller: completion ring and wake-up.
    public var completionNanoseconds: UInt64 { Self.span(handlerFinished, seen) }
    /// Submit → seen.
    public var totalNanoseconds: UInt64 { Self.span(submitted, seen) }
}
