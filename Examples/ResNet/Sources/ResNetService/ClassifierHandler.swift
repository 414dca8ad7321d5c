import FabricConsumer
import InferenceEngine

/// Runs an image classifier engine on its model's instance thread: each command
/// is one image (float32 C×H×W, ``InputSpecification/byteCount`` bytes); the
/// commands of a batch run as one forward pass of up to
/// ``Network/maximumBatch`` images; each output receives a
/// ``ClassificationRecord`` (top-5 and the logits).
///
/// A command whose input has the wrong size fails with
/// ``FailureCode/inputSize``; one whose output is too small with
/// ``FailureCode/outputTooSmall``. The rest of its batch still runs.
///
/// To serve another backend (a TensorRT engine on a GPU, say) write a type
/// like this one: read the inputs in place, run, write the outputs, and call
/// `complete` or `fail` for each command. See Examples/ResNet/README.md.
public final class ClassifierHandler: CommandHandler, @unchecked Sendable {
    // @unchecked: the network's buffers and the scratch are used only from the
    // model's one instance thread (the daemon's default ModelConfiguration),
    // which calls handle(_:) one batch at a time; serve it with instances: 1.

    /// Codes of the `handlerFailed` completions this handler posts.
    public enum FailureCode: UInt32 {
        /// The input is not exactly one image of the engine's input size.
        case inputSize = 1
        /// The output buffer cannot hold a ``ClassificationRecord``.
        case outputTooSmall = 2
    }

    /// The compiled engine this handler runs.
    public let network: Network
    /// Bytes of one ``ClassificationRecord`` for the engine's classes; the daemon refuses smaller outputs.
    public let requiredOutputCapacity: UInt32
    private let probabilities: UnsafeMutableBufferPointer<Float>
    private let topScores: UnsafeMutableBufferPointer<ClassScore>
    private let selected: UnsafeMutablePointer<Int>

    /// The engine's name, for discovery (`fabricq models`).
    public var modelName: String { network.engine.manifest.name }

    /// One image per command: FP32 planes, channels × height × width.
    public var inputSpecification: TensorSpecification? {
        TensorSpecification(elementTypes: [.float32], shape: [network.input.channels, network.input.height, network.input.width])
    }

    /// Compiles `engine` for batches of up to `maximumBatch` images.
    public init(engine: EngineFile, maximumBatch: Int = 8) throws(EngineError) {
        network = try Network(engine: engine, maximumBatch: maximumBatch)
        requiredOutputCapacity = UInt32(ClassificationRecord.byteCount(classCount: network.classCount))
        probabilities = .allocate(capacity: network.classCount)
        probabilities.initialize(repeating: 0)
        topScores = .allocate(capacity: ClassificationRecord.topCount)
        topScores.initialize(repeating: ClassScore(index: 0, probability: 0))
        selected = .allocate(capacity: maximumBatch)
    }

    deinit {
        probabilities.deallocate()
        topScores.deallocate()
        selected.deallocate()
    }

    /// Runs the batch in chunks of at most ``Network/maximumBatch`` well-formed commands.
    public func handle(_ batch: borrowing CommandBatch) throws {
        let imageBytes = network.input.byteCount
        let recordBytes = Int(requiredOutputCapacity)
        var next = 0
        while next < batch.count {
            // Gather up to maximumBatch well-formed commands; fail the others.
            var n = 0
            while next < batch.count && n < network.maximumBatch {
                if batch.tensorData(next).count != imageBytes {
                    batch.fail(next, code: FailureCode.inputSize.rawValue)
                } else if batch.output(next).count < recordBytes {
                    batch.fail(next, code: FailureCode.outputTooSmall.rawValue)
                } else {
                    selected[n] = next
                    n += 1
                }
                next += 1
            }
            guard n > 0 else { continue }
            let probabilities = self.probabilities, topScores = self.topScores, selected = self.selected
            network.infer(
                batch: n, input: { batch.tensorData(selected[$0]) },
                output: { image, logits in
                    let command = selected[image]
                    let written = ClassificationRecord.write(
                        logits: logits, scratch: probabilities, top: topScores,
                        into: batch.output(command))
                    batch.complete(command, outputSize: written)
                })
        }
    }
}
