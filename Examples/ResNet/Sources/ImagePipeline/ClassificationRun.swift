import FabricProducer
import Foundation
import InferenceEngine

/// What one run does: which model, which images, how they are batched.
public struct RunConfiguration: Sendable {
    /// The daemon's model id.
    public var modelID: UInt32
    /// Image files (JPEG or PNG), used in turn until `imageCount` have been submitted.
    public var images: [String]
    /// How many images to submit in all.
    public var imageCount: Int
    /// Images per micro-batch (1...8): one `submit(batch:)`, one ring publication.
    public var batchSize: Int
    /// Micro-batches posted before waiting for the oldest (1: strictly one at a time).
    public var batchesInFlight: Int
    /// How long to wait for one completion before giving up.
    public var completionTimeout: Duration
    /// The element type images are preprocessed into (a typed tensor:
    /// header and elements in the input slot).
    public var precision: Precision

    /// A run over `images` (each once unless `imageCount` says otherwise).
    public init(
        modelID: UInt32, images: [String], imageCount: Int? = nil, batchSize: Int = 1,
        batchesInFlight: Int = 1, completionTimeout: Duration = .seconds(30), precision: Precision = .fp32
    ) {
        self.precision = precision
        self.modelID = modelID
        self.images = images
        self.imageCount = imageCount ?? images.count
        self.batchSize = batchSize
        self.batchesInFlight = batchesInFlight
        self.completionTimeout = completionTimeout
    }
}

/// Why a run stopped early.
public enum RunError: Error, CustomStringConvertible {
    case configuration(String)
    case image(ImageError)
    case submit(SubmitError)

    public var description: String {
        switch self {
        case let .configuration(why): why
        case let .image(e): "\(e)"
        case let .submit(e): "fabric: \(e)"
        }
    }
}

/// The controller's loop: decode, preprocess straight into a pool slot, post
/// micro-batches, wait for completions, post-process (softmax, top-5,
/// labels), and time every stage.
public enum ClassificationRun {
    /// Runs `configuration` on `session`; `progress(done, total)` is called after each completion.
    public static func run(
        _ configuration: RunConfiguration, model: ModelInfo, session: inout ControllerSession,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws(RunError) -> RunReport {
        let c = configuration
        guard !c.images.isEmpty, c.imageCount > 0 else { throw .configuration("no images") }
        guard (1...ControllerSession.maximumBatchSize).contains(c.batchSize) else {
            throw .configuration("batch size must be 1...\(ControllerSession.maximumBatchSize)")
        }
        let spec = model.input
        guard spec.channels == 3, spec.mean.count == 3, spec.std.count == 3, spec.std.allSatisfy({ $0 > 0 }),
            spec.height > 0, spec.width > 0, spec.resizeShorterSide >= max(spec.height, spec.width),
            (1...100_000).contains(model.classCount)
        else {
            throw .configuration(
                "model \(model.name): this controller prepares RGB images only, with a crop no larger "
                    + "than the resize and a positive std")
        }
        let recordBytes = ClassificationRecord.byteCount(classCount: model.classCount)
        let inputBytes = c.precision.inputBytes(elements: spec.channels * spec.height * spec.width)
        guard c.batchesInFlight >= 1, 2 * c.batchSize * c.batchesInFlight <= session.buffers.capacity else {
            throw .configuration(
                "\(c.batchesInFlight) batches of \(c.batchSize) need \(2 * c.batchSize * c.batchesInFlight) "
                    + "slots; the session has \(session.buffers.capacity)")
        }
        let preprocessor = Preprocessor(specification: model.input)
        let probabilities = UnsafeMutableBufferPointer<Float>.allocate(capacity: model.classCount)
        defer { probabilities.deallocate() }

        struct Pending {
            var image: Int
            var started: UInt64
            var decode: UInt64
            var preprocess: UInt64
            var endsBatch: Bool
        }
        var pending = [Pending]()  // in submission order, as completions arrive
        var samples = [PipelineStage: [UInt64]]()
        var results = [Int: ImageResult]()
        var fabric: UInt64 = 0, total: UInt64 = 0
        var failures = 0, disagreements = 0, submitted = 0, completed = 0, batchesOut = 0
        var skipped: [String] = [], warnings: [String] = []
        var requests = [CommandRequest]()
        requests.reserveCapacity(c.batchSize)
        let start = MonotonicClock.now()

        while completed < c.imageCount {
            // Post micro-batches while the window allows.
            while batchesOut < c.batchesInFlight && submitted < c.imageCount {
                requests.removeAll(keepingCapacity: true)
                let n = min(c.batchSize, c.imageCount - submitted)
                for k in 0..<n {
                    let index = (submitted + k) % c.images.count
                    guard let input = session.buffers.acquire() else { throw .configuration("buffer pool exhausted") }
                    guard let output = session.buffers.acquire() else {
                        session.buffers.release(input)
                        throw .configuration("buffer pool exhausted")
                    }
                    guard input.size >= inputBytes, output.size >= recordBytes else {
                        session.buffers.release(input)
                        session.buffers.release(output)
                        throw .configuration(
                            "the daemon's \(input.size)-byte slots cannot hold one \(model.input.height)×"
                                + "\(model.input.width) \(c.precision) image (\(inputBytes) bytes): is the engine given the one "
                                + "the daemon serves as model \(c.modelID)?")
                    }
                    let t0 = MonotonicClock.now()
                    let image: RGBImage
                    do { image = try ImageDecoder.decode(contentsOf: c.images[index]) } catch {
                        // One bad file costs its own image, not the run.
                        session.buffers.release(input)
                        session.buffers.release(output)
                        skipped.append("\(error)")
                        completed += 1
                        continue
                    }
                    if let warning = image.warning { warnings.append(warning) }
                    let t1 = MonotonicClock.now()
                    guard let tensor = preprocessor.write(image, as: c.precision, into: session.buffers.buffer(input)) else {
                        throw .configuration("no \(c.precision) tensor fits a \(input.size)-byte slot")
                    }
                    let t2 = MonotonicClock.now()
                    requests.append(
                        CommandRequest(
                            modelID: c.modelID, input: input, tensor: tensor, output: output, outputCapacity: recordBytes))
                    pending.append(Pending(image: index, started: t0, decode: t1 - t0, preprocess: t2 - t1, endsBatch: false))
                }
                submitted += n
                guard !requests.isEmpty else { continue }  // every image of this batch was skipped
                pending[pending.count - 1].endsBatch = true
                do { _ = try session.submit(batch: requests) } catch { throw .submit(error) }
                batchesOut += 1
            }

            let done: CommandCompletion
            do { done = try session.waitForCompletion(timeout: c.completionTimeout) } catch { throw .submit(error) }
            let t3 = MonotonicClock.now()
            let p = pending.removeFirst()
            var agrees = false
            if done.succeeded,
                let record = ClassificationRecord.parse(
                    UnsafeRawBufferPointer(rebasing: session.buffers.buffer(done.output).prefix(done.outputSize)),
                    classCount: model.classCount)
            {
                record.logits.withUnsafeBufferPointer { Classification.softmax($0, into: probabilities) }
                let top = Classification.top(ClassificationRecord.topCount, of: UnsafeBufferPointer(probabilities))
                agrees = top.map { $0.index } == record.top.map { $0.index }
                if !agrees { disagreements += 1 }
                if results[p.image] == nil {
                    results[p.image] = ImageResult(
                        image: (c.images[p.image] as NSString).lastPathComponent,
                        top5: top.map {
                            ImageResult.Prediction(index: $0.index, label: model.label($0.index), probability: $0.probability)
                        },
                        daemonAgrees: agrees)
                }
            } else {
                failures += 1
            }
            session.buffers.release(done.input)
            session.buffers.release(done.output)
            let t4 = MonotonicClock.now()

            let t = done.timings
            // The daemon's stages count only where the command went through
            // them: a failed command has no inference, and its stamps say so.
            let stageValues: [(PipelineStage, UInt64?)] = [
                (.decode, p.decode), (.preprocess, p.preprocess), (.queue, t.duration(of: .queue)),
                (.dispatch, t.duration(of: .dispatch)), (.inference, t.duration(of: .handler)),
                (.completion, t.duration(of: .completion)), (.postprocess, t4 - t3), (.endToEnd, t4 - p.started),
            ]
            for case (let stage, let value?) in stageValues { samples[stage, default: []].append(value) }
            if let queue = t.duration(of: .queue), let dispatch = t.duration(of: .dispatch),
                let completion = t.duration(of: .completion)
            {
                fabric += queue + dispatch + completion
                total += t4 - p.started
            }
            completed += 1
            // A micro-batch is done when its last command is (completions come in submission order).
            if p.endsBatch { batchesOut -= 1 }
            progress(completed, c.imageCount)
        }
        let seconds = Double(MonotonicClock.now() - start) / 1e9
        return RunReport(
            engine: model.name, architecture: model.architecture, weights: model.weights.rawValue, modelID: c.modelID,
            precision: c.precision, inputBytesPerImage: inputBytes,
            images: c.imageCount, batchSize: c.batchSize, batchesInFlight: c.batchesInFlight, seconds: seconds,
            imagesPerSecond: Double(c.imageCount) / seconds,
            stages: Dictionary(
                uniqueKeysWithValues: PipelineStage.allCases.map {
                    ($0.rawValue, StageStatistics(nanoseconds: samples[$0] ?? []))
                }),
            fabricShare: total > 0 ? Double(fabric) / Double(total) : 0, failures: failures, disagreements: disagreements,
            results: results.keys.sorted().compactMap { results[$0] }, skipped: skipped, warnings: warnings)
    }
}
