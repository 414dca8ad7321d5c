import FabricSystem

/// Runs one model's batches, completing each command when it is done: now,
/// later, from any thread, in any order.
///
/// The daemon calls ``start(_:)`` with an ``InFlightBatch`` of validated
/// commands (possibly from several sessions) on one of the model's instances
/// (``ModelConfiguration``). The handler reads each input, writes each
/// output, and reports every command exactly once with
/// ``InFlightBatch/complete(_:outputSize:)`` or ``InFlightBatch/fail(_:code:)``.
/// The instance stays busy until every command of the batch is reported; the
/// daemon never waits for it, and other models and sessions go on.
///
/// A GPU handler, say, enqueues the batch's copies and kernels on the
/// instance's stream and returns; a host callback completes the commands when
/// the stream reaches them, so transfers and compute of successive batches
/// overlap across instances.
///
/// ```swift
/// final class Engine: BatchHandler {
///     let requiredOutputCapacity: UInt32 = 4000
///     func start(_ batch: InFlightBatch) {
///         streams[batch.instance].enqueue(batch) { batch.complete($0, outputSize: 4000) }
///     }
/// }
/// ```
///
/// For a handler that finishes its batch before returning, adopt
/// ``CommandHandler`` instead: it implements `start` on top of a
/// synchronous ``CommandHandler/handle(_:)``.
public protocol BatchHandler: AnyObject, Sendable {
    /// The smallest output buffer a command must carry; smaller ones are
    /// refused with `CompletionStatus.invalidDescriptor` before the handler runs.
    var requiredOutputCapacity: UInt32 { get }

    /// Takes a batch of 1 to `DynamicBatching.maximumBatchSize` commands of
    /// this model. Called on the model's instance thread, or on the poll
    /// thread for ``ModelExecution/pollThread`` (where it must return at once).
    func start(_ batch: InFlightBatch)
    /// The model's name, as controllers discover it (`ModelDescription`,
    /// `fabricq models`). Default: the handler's type name.
    var modelName: String { get }
    /// What one command's input is, as controllers discover it; nil (the
    /// default) when the model does not say.
    var inputSpecification: TensorSpecification? { get }
}

extension BatchHandler {
    /// The handler's type name.
    public var modelName: String { String(describing: type(of: self)) }
    /// Not stated.
    public var inputSpecification: TensorSpecification? { nil }
}

/// A batch a ``BatchHandler`` has taken: its commands' descriptors and
/// buffers, and the means to complete each one.
///
/// Copy it freely and hand it to another thread. Each command is completed at
/// most once: a second completion of a command, or one that arrives after
/// the daemon recycled the batch, is refused (`false`) and counted in
/// `DaemonStatistics.rejectedCompletions`, never posted. A command's
/// descriptor and buffers stay valid until it is completed, even if its
/// session ends meanwhile (its memory stays mapped until then); after that
/// they belong to the controller again.
public struct InFlightBatch: @unchecked Sendable {
    // @unchecked: the slot's memory is daemon-owned and kept alive by this reference; each command's state is claimed by one compare-and-swap
    let slot: BatchSlot
    let generation: UInt64
    /// Number of commands.
    public let count: Int

    init(slot: BatchSlot, generation: UInt64, count: Int) {
        self.slot = slot
        self.generation = generation
        self.count = count
    }

    /// Which of the model's instances runs this batch (`0..<instances`):
    /// pick the stream or buffer set that belongs to it.
    public var instance: Int { slot.instance }

    /// The `index`th command's descriptor (a validated copy).
    public func descriptor(_ index: Int) -> Descriptor {
        precondition(index >= 0 && index < count, "command index out of the batch")
        return slot.descriptors[index]
    }

    /// The `index`th command's input bytes (`inputSize` bytes at `inputOffset`).
    public func input(_ index: Int) -> UnsafeRawBufferPointer {
        precondition(index >= 0 && index < count, "command index out of the batch")
        return UnsafeRawBufferPointer(slot.inputs[index])
    }

    /// The `index`th command's tensor header, as the daemon checked it (a
    /// copy: never re-read the header in the input), or nil for an untyped
    /// input (no `Descriptor.tensorHeaderFlag`).
    public func tensor(_ index: Int) -> TensorHeader? {
        precondition(index >= 0 && index < count, "command index out of the batch")
        return slot.tensors[index]
    }

    /// The `index`th command's tensor elements (`dataBytes` at `dataOffset`
    /// of the checked header), or its whole input when untyped.
    public func tensorData(_ index: Int) -> UnsafeRawBufferPointer {
        let whole = input(index)
        guard let header = tensor(index) else { return whole }
        return UnsafeRawBufferPointer(rebasing: whole[Int(header.dataOffset)..<Int(header.dataOffset) + Int(header.dataBytes)])
    }

    /// The `index`th command's output buffer (`outputCapacity` bytes at `outputOffset`).
    public func output(_ index: Int) -> UnsafeMutableRawBufferPointer {
        precondition(index >= 0 && index < count, "command index out of the batch")
        return slot.outputs[index]
    }

    /// Reports that the `index`th command succeeded with `outputSize` bytes
    /// of output (clamped to its buffer). Returns false when the command was
    /// already completed.
    @discardableResult
    public func complete(_ index: Int, outputSize: Int) -> Bool {
        precondition(index >= 0 && index < count, "command index out of the batch")
        let size = UInt32(clamping: min(max(outputSize, 0), slot.outputs[index].count))
        return slot.finish(index, generation: generation, status: .succeeded, outputSize: size, detail: UInt32(count))
    }

    /// Reports that the `index`th command failed; `code` reaches the
    /// controller as `Completion.detail`. Returns false when the command was
    /// already completed.
    @discardableResult
    public func fail(_ index: Int, code: UInt32 = 0) -> Bool {
        precondition(index >= 0 && index < count, "command index out of the batch")
        return slot.finish(index, generation: generation, status: .handlerFailed, outputSize: 0, detail: code)
    }

    /// Whether the `index`th command has been completed (false as well once
    /// the batch has been recycled for another).
    public func isCompleted(_ index: Int) -> Bool {
        precondition(index >= 0 && index < count, "command index out of the batch")
        return slot.isFinished(index, generation: generation)
    }
}
