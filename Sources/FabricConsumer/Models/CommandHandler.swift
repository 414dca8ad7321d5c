import FabricSystem

/// Runs one model's batches synchronously: ``handle(_:)`` reports every
/// command before it returns. The simple case of ``BatchHandler``.
///
/// The daemon calls ``handle(_:)`` on one of the model's instance threads
/// (``ModelConfiguration``) with a ``CommandBatch``: every command in it has
/// passed ``DescriptorValidator`` against its session's data region, so its
/// input and output buffers are inside that session's slots and do not
/// overlap. The handler reads each input, writes each output and reports,
/// per command, ``CommandBatch/complete(_:outputSize:)`` or
/// ``CommandBatch/fail(_:code:)``. A command it leaves unreported fails with
/// `CompletionStatus.handlerFailed`; if it throws, every unreported command
/// does. A slow handler holds only its own instance: other models, and other
/// instances of this one, go on.
///
/// ```swift
/// final class Echo: CommandHandler {
///     let requiredOutputCapacity: UInt32 = 0
///     func handle(_ batch: borrowing CommandBatch) throws {
///         for i in 0..<batch.count {
///             let input = batch.input(i), output = batch.output(i)
///             let n = min(input.count, output.count)
///             output.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[..<n]))
///             batch.complete(i, outputSize: n)
///         }
///     }
/// }
/// ```
///
/// The buffers are shared with the controller's process: they are valid only
/// during the call, and a misbehaving controller could change an input while
/// it is read. Copy what must not change before acting on it.
public protocol CommandHandler: BatchHandler {
    /// Runs a batch of 1 to `DynamicBatching.maximumBatchSize` commands of
    /// this handler's model, and reports each before returning.
    func handle(_ batch: borrowing CommandBatch) throws
}

extension CommandHandler {
    /// Runs ``handle(_:)`` and completes every command from what it reported.
    public func start(_ batch: InFlightBatch) {
        let slot = batch.slot
        for k in 0..<batch.count { slot.results[k] = .unreported }
        var threw = false
        do {
            try handle(
                CommandBatch(
                    descriptors: slot.descriptors, inputs: slot.inputs, outputs: slot.outputs,
                    results: slot.results, tensors: slot.tensors, count: batch.count, instance: batch.instance))
        } catch {
            threw = true
            slot.reportHandlerError(error)
        }
        for k in 0..<batch.count {
            switch slot.results[k] {
            case .succeeded(let size):
                slot.finish(k, generation: batch.generation, status: .succeeded, outputSize: size, detail: UInt32(batch.count))
            case .failed(let code):
                slot.finish(k, generation: batch.generation, status: .handlerFailed, outputSize: 0, detail: code)
            case .unreported:
                let why = threw ? HandlerFailure.threw : HandlerFailure.unreported
                slot.finish(k, generation: batch.generation, status: .handlerFailed, outputSize: 0, detail: why.rawValue)
            }
        }
    }
}

/// A batch of validated commands for one ``CommandHandler`` call: their
/// descriptors, input and output buffers, and a result slot for each.
///
/// Backed by the daemon's preallocated buffers: building one allocates nothing.
/// Valid only during the ``CommandHandler/handle(_:)`` call.
public struct CommandBatch: ~Copyable {
    @usableFromInline let descriptors: UnsafePointer<Descriptor>
    @usableFromInline let inputs: UnsafePointer<UnsafeMutableRawBufferPointer>
    @usableFromInline let outputs: UnsafePointer<UnsafeMutableRawBufferPointer>
    @usableFromInline let results: UnsafeMutablePointer<CommandOutcome>
    @usableFromInline let tensors: UnsafePointer<TensorHeader?>
    /// Number of commands.
    public let count: Int
    /// Which of the model's instances runs this batch
    /// (`0..<ModelConfiguration.instances`): with several instances,
    /// ``CommandHandler/handle(_:)`` runs on several threads at once, so keep
    /// per-instance state (scratch buffers, streams) indexed by this.
    public let instance: Int

    @usableFromInline
    init(
        descriptors: UnsafePointer<Descriptor>, inputs: UnsafePointer<UnsafeMutableRawBufferPointer>,
        outputs: UnsafePointer<UnsafeMutableRawBufferPointer>, results: UnsafeMutablePointer<CommandOutcome>,
        tensors: UnsafePointer<TensorHeader?>, count: Int, instance: Int = 0
    ) {
        self.instance = instance
        self.tensors = tensors
        self.descriptors = descriptors
        self.inputs = inputs
        self.outputs = outputs
        self.results = results
        self.count = count
    }

    /// The `index`th command's descriptor (a validated copy).
    @inlinable
    public func descriptor(_ index: Int) -> Descriptor {
        precondition(index >= 0 && index < count, "command index out of the batch")
        return descriptors[index]
    }

    /// The `index`th command's input bytes (`inputSize` bytes at `inputOffset`).
    @inlinable
    public func input(_ index: Int) -> UnsafeRawBufferPointer {
        precondition(index >= 0 && index < count, "command index out of the batch")
        return UnsafeRawBufferPointer(inputs[index])
    }

    /// The `index`th command's tensor header, as the daemon checked it (a
    /// copy: never re-read the header in the input), or nil for an untyped
    /// input (no `Descriptor.tensorHeaderFlag`).
    @inlinable
    public func tensor(_ index: Int) -> TensorHeader? {
        precondition(index >= 0 && index < count, "command index out of the batch")
        return tensors[index]
    }

    /// The `index`th command's tensor elements (`dataBytes` at `dataOffset`
    /// of the checked header), or its whole input when untyped.
    @inlinable
    public func tensorData(_ index: Int) -> UnsafeRawBufferPointer {
        let whole = input(index)
        guard let header = tensor(index) else { return whole }
        return UnsafeRawBufferPointer(rebasing: whole[Int(header.dataOffset)..<Int(header.dataOffset) + Int(header.dataBytes)])
    }

    /// The `index`th command's output buffer (`outputCapacity` bytes at `outputOffset`).
    @inlinable
    public func output(_ index: Int) -> UnsafeMutableRawBufferPointer {
        precondition(index >= 0 && index < count, "command index out of the batch")
        return outputs[index]
    }

    /// Reports that the `index`th command succeeded with `outputSize` bytes of
    /// output (clamped to the buffer's capacity).
    @inlinable
    public func complete(_ index: Int, outputSize: Int) {
        precondition(index >= 0 && index < count, "command index out of the batch")
        results[index] = .succeeded(outputSize: UInt32(clamping: min(max(outputSize, 0), outputs[index].count)))
    }

    /// Reports that the `index`th command failed; `code` reaches the
    /// controller as `Completion.detail`.
    @inlinable
    public func fail(_ index: Int, code: UInt32 = 0) {
        precondition(index >= 0 && index < count, "command index out of the batch")
        results[index] = .failed(code: code)
    }
}

/// What a handler reported for one command.
@usableFromInline
enum CommandOutcome {
    case unreported
    case succeeded(outputSize: UInt32)
    case failed(code: UInt32)
}
