import FabricProducer
import Foundation
import InferenceEngine

/// How reduced-precision inputs compare with FP32 on the same images: each
/// image is classified by the daemon as an untyped FP32 input (the
/// reference, as controllers sent images before typed inputs), then as a
/// typed tensor of every precision in turn, one command at a time, and each
/// precision's logits are compared with the reference's (so the FP32 row
/// checks that the typed path changes nothing).
public struct PrecisionReport: Codable, Sendable {
    /// One precision's figures over all images.
    public struct Row: Codable, Sendable {
        /// The element type images travelled as.
        public var precision: Precision
        /// Bytes through the fabric per image (64-byte header and elements).
        public var inputBytesPerImage: Int
        /// Images whose most probable class equals FP32's.
        public var top1Agreement: Int
        /// Of them, the given images (not the generated variants).
        public var top1AgreementOnGiven: Int
        /// Images whose five most probable classes (as a set) equal FP32's.
        public var top5Agreement: Int
        /// The largest |logit − FP32 logit| over all images and classes.
        public var maxLogitError: Float
        /// The largest, per image, of max |logit − FP32 logit| / max |FP32 logit|.
        public var maxRelativeLogitError: Float
        /// Preprocess + submit + daemon + completion + parse, per image (µs).
        public var endToEnd: StageStatistics
        /// The preprocessing into the slot alone (µs).
        public var preprocess: StageStatistics
        /// The daemon's handler call (conversion and forward pass, µs).
        public var inference: StageStatistics
    }

    /// The engine's name.
    public var engine: String
    /// `pretrained` or `seeded-untrained`.
    public var weights: String
    /// Images compared (bundled and generated).
    public var images: Int
    /// Of them, generated from the others.
    public var generated: Int
    /// One row per precision, FP32 first.
    public var rows: [Row]

    /// The row of `precision`, if it was compared.
    public func row(_ precision: Precision) -> Row? { rows.first { $0.precision == precision } }

    /// The table the pipeline prints.
    public var table: String {
        var out =
            "precision comparison · \(engine) (\(weights == "pretrained" ? "pretrained" : "seeded, UNTRAINED")) · "
            + "\(images) images (\(images - generated) given, \(generated) generated) · batch 1\n"
        out +=
            "  precision  bytes/image  top-1 = fp32  (given)  top-5 = fp32  max |Δlogit|  max rel.  end-to-end p50  p99      inference p50\n"
        for r in rows {
            out += "  " + r.precision.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
            out += "\(r.inputBytesPerImage)".leftPadded(12)
            out += "\(r.top1Agreement)/\(images)".leftPadded(14) + "\(r.top1AgreementOnGiven)/\(images - generated)".leftPadded(9)
            out += "\(r.top5Agreement)/\(images)".leftPadded(14)
            out += String(format: "%13.5f %9.2e", r.maxLogitError, r.maxRelativeLogitError)
            out += RunReport.time(r.endToEnd.p50).leftPadded(16) + RunReport.time(r.endToEnd.p99).leftPadded(10)
            out += RunReport.time(r.inference.p50).leftPadded(16) + "\n"
        }
        return out
    }
}

/// Runs a ``PrecisionReport``.
public enum PrecisionComparison {
    /// `count` variants of `images`, the same for the same seed: each a
    /// crop (60–100 % of each side, anywhere in the image), mirrored half
    /// the time, with each channel scaled by 0.8–1.2 and shifted by ±20.
    public static func variants(of images: [RGBImage], count: Int, seed: UInt64 = 0xF00D) -> [RGBImage] {
        guard !images.isEmpty else { return [] }
        var random = SplitMix64(seed: seed)
        func uniform(_ range: ClosedRange<Double>) -> Double {
            range.lowerBound + (range.upperBound - range.lowerBound) * random.nextUnit()
        }
        return (0..<count).map { k in
            let source = images[k % images.count]
            let width = max(1, Int(Double(source.width) * uniform(0.6...1.0)))
            let height = max(1, Int(Double(source.height) * uniform(0.6...1.0)))
            let left = Int(uniform(0...1) * Double(source.width - width))
            let top = Int(uniform(0...1) * Double(source.height - height))
            let mirrored = random.next() & 1 == 1
            let gain = (0..<3).map { _ in Float(uniform(0.8...1.2)) }
            let shift = (0..<3).map { _ in Float(uniform(-20...20)) }
            var pixels = [UInt8](repeating: 0, count: width * height * 3)
            source.pixels.withUnsafeBufferPointer { from in
                for y in 0..<height {
                    for x in 0..<width {
                        let sx = left + (mirrored ? width - 1 - x : x)
                        let p = ((top + y) * source.width + sx) * 3, q = (y * width + x) * 3
                        for c in 0..<3 {
                            pixels[q + c] = UInt8(max(0, min(255, (Float(from[p + c]) * gain[c] + shift[c]).rounded())))
                        }
                    }
                }
            }
            return RGBImage(width: width, height: height, pixels: pixels)
        }
    }

    /// Classifies every image untyped and then in every precision of
    /// `precisions` (FP32 is added first when missing) through model
    /// `modelID` on `session`, one command at a time.
    public static func run(
        images: [RGBImage], generated: Int, precisions: [Precision], modelID: UInt32, model: ModelInfo,
        session: inout ControllerSession, completionTimeout: Duration = .seconds(30),
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws(RunError) -> PrecisionReport {
        let order = [Precision.fp32] + precisions.filter { $0 != .fp32 }
        let spec = model.input
        let elements = spec.channels * spec.height * spec.width
        let recordBytes = ClassificationRecord.byteCount(classCount: model.classCount)
        let preprocessor = Preprocessor(specification: spec)
        var rows = order.map {
            PrecisionReport.Row(
                precision: $0, inputBytesPerImage: $0.inputBytes(elements: elements), top1Agreement: 0,
                top1AgreementOnGiven: 0, top5Agreement: 0,
                maxLogitError: 0, maxRelativeLogitError: 0, endToEnd: StageStatistics(nanoseconds: []),
                preprocess: StageStatistics(nanoseconds: []), inference: StageStatistics(nanoseconds: []))
        }
        var endToEnd = [[UInt64]](repeating: [], count: order.count)
        var preprocess = endToEnd, inference = endToEnd
        /// One command: the record's logits and the command's timings (an
        /// untyped FP32 input when `precision` is nil).
        func classify(
            _ image: RGBImage, _ precision: Precision?, _ n: Int
        ) throws(RunError) -> (
            logits: [Float], preprocess: UInt64, endToEnd: UInt64, handler: UInt64?
        ) {
            guard let input = session.buffers.acquire() else { throw .configuration("buffer pool exhausted") }
            guard let output = session.buffers.acquire() else {
                session.buffers.release(input)
                throw .configuration("buffer pool exhausted")
            }
            // A command still in flight when this throws keeps its slots
            // the daemon may write; the comparison stops anyway.
            defer {
                session.buffers.release(input)
                session.buffers.release(output)
            }
            guard output.size >= recordBytes, input.size >= spec.byteCount else {
                throw .configuration(
                    "the daemon's \(output.size)-byte slots cannot hold an image and a \(recordBytes)-byte record")
            }
            let t0 = MonotonicClock.now()
            let request: CommandRequest
            if let precision {
                guard let tensor = preprocessor.write(image, as: precision, into: session.buffers.buffer(input)) else {
                    throw .configuration("no \(precision) image fits a \(input.size)-byte slot")
                }
                request = CommandRequest(
                    modelID: modelID, input: input, tensor: tensor, output: output, outputCapacity: recordBytes)
            } else {
                let size = preprocessor.write(image, into: session.buffers.buffer(input))
                request = CommandRequest(
                    modelID: modelID, input: input, inputSize: size, output: output, outputCapacity: recordBytes)
            }
            let t1 = MonotonicClock.now()
            let done: CommandCompletion
            do {
                _ = try session.submit(request)
                done = try session.waitForCompletion(timeout: completionTimeout)
            } catch { throw .submit(error) }
            guard done.succeeded,
                let record = ClassificationRecord.parse(
                    UnsafeRawBufferPointer(rebasing: session.buffers.buffer(done.output).prefix(done.outputSize)),
                    classCount: model.classCount)
            else {
                let name = precision.map { "\($0)" } ?? "untyped fp32"
                throw .configuration("image \(n) as \(name): \(done.failure.map { "\($0)" } ?? "no classification record")")
            }
            return (record.logits, t1 - t0, MonotonicClock.now() - t0, done.timings.duration(of: .handler))
        }

        for (n, image) in images.enumerated() {
            let reference = try classify(image, nil, n).logits
            for (p, precision) in order.enumerated() {
                let result = try classify(image, precision, n)
                endToEnd[p].append(result.endToEnd)
                preprocess[p].append(result.preprocess)
                if let handler = result.handler { inference[p].append(handler) }
                let logits = result.logits
                let given = n < images.count - generated
                if argmax(logits) == argmax(reference) {
                    rows[p].top1Agreement += 1
                    if given { rows[p].top1AgreementOnGiven += 1 }
                }
                if Set(topIndices(logits, 5)) == Set(topIndices(reference, 5)) { rows[p].top5Agreement += 1 }
                var worst: Float = 0, peak: Float = 0
                for (a, b) in zip(logits, reference) {
                    worst = max(worst, abs(a - b))
                    peak = max(peak, abs(b))
                }
                rows[p].maxLogitError = max(rows[p].maxLogitError, worst)
                if peak > 0 { rows[p].maxRelativeLogitError = max(rows[p].maxRelativeLogitError, worst / peak) }
            }
            progress(n + 1, images.count)
        }
        for p in rows.indices {
            rows[p].endToEnd = StageStatistics(nanoseconds: endToEnd[p])
            rows[p].preprocess = StageStatistics(nanoseconds: preprocess[p])
            rows[p].inference = StageStatistics(nanoseconds: inference[p])
        }
        return PrecisionReport(
            engine: model.name, weights: model.weights.rawValue, images: images.count, generated: generated, rows: rows)
    }

    static func argmax(_ values: [Float]) -> Int {
        values.indices.max { values[$0] < values[$1] } ?? 0
    }

    /// The indices of the `k` largest values (ties: lower index first).
    static func topIndices(_ values: [Float], _ k: Int) -> [Int] {
        Array(values.indices.sorted { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }.prefix(k))
    }
}
