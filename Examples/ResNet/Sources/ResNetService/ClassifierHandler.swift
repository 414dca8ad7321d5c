import FabricConsumer
import InferenceEngine

/// Runs an image classifier engine on its model's instance thread: each command
/// is one image, C×H×W, either untyped FP32 (``InputSpecification/byteCount``
/// bytes) or a typed tensor (`Descriptor.tensorHeaderFlag`) of FP32, FP16,
/// BF16 or per-tensor-quantized INT8/UINT8, which the engine converts to FP32
/// as it loads the image (`InputEncoding`); the
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
    private let encodings: UnsafeMutablePointer<InputEncoding>

    /// The engine's name, for discovery (`fabricq models`).
    public var modelName: String { network.engine.manifest.name }

    /// One image per command, channels × height × width, in any element
    /// type the engine converts (reduced precision halves or quarters the
    /// bytes through the fabric).
    public var inputSpecification: TensorSpecification? {
        TensorSpecification(
            elementTypes: [.float32, .float16, .bfloat16, .int8, .uint8],
            shape: [network.input.channels, network.input.height, network.input.width])
    }

    /// How a checked header's elements are stored.
    static func encoding(of header: TensorHeader) -> InputEncoding {
        switch header.elementType {
        case .float32: .float32
        case .float16: .float16
        case .bfloat16: .bfloat16
        case .int8: .int8(scale: header.scale, zeroPoint: header.zeroPoint)
        case .uint8: .uint8(scale: header.scale, zeroPoint: header.zeroPoint)
        }
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
        encodings = .allocate(capacity: maximumBatch)
        encodings.initialize(repeating: .float32, count: maximumBatch)
    }

    deinit {
        probabilities.deallocate()
        topScores.deallocate()
        selected.deallocate()
        encodings.deallocate()
    }

    /// Runs the batch in chunks of at most ``Network/maximumBatch`` well-formed commands.
    public func handle(_ batch: borrowing CommandBatch) throws {
        let elements = network.input.channels * network.input.height * network.input.width
        let recordBytes = Int(requiredOutputCapacity)
        var next = 0
        while next < batch.count {
            // Gather up to maximumBatch well-formed commands; fail the others.
            var n = 0
            while next < batch.count && n < network.maximumBatch {
                // The daemon checked a header's type and shape against the
                // specification; an untyped input is FP32 of the right size.
                let encoding = batch.tensor(next).map(Self.encoding(of:)) ?? .float32
                if batch.tensorData(next).count != elements * encoding.byteWidth {
                    batch.fail(next, code: FailureCode.inputSize.rawValue)
                } else if batch.output(next).count < recordBytes {
                    batch.fail(next, code: FailureCode.outputTooSmall.rawValue)
                } else {
                    selected[n] = next
                    encodings[n] = encoding
                    n += 1
                }
                next += 1
            }
            guard n > 0 else { continue }
            let probabilities = self.probabilities, topScores = self.topScores, selected = self.selected
            let encodings = self.encodings
            network.infer(
                batch: n, input: { (batch.tensorData(selected[$0]), encodings[$0]) },
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
