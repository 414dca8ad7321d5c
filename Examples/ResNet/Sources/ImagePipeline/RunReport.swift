import Foundation

/// p50 / p99 / max of one stage over a run, in microseconds.
public struct StageStatistics: Codable, Sendable, Equatable {
    /// Median (µs).
    public var p50: Double
    /// 99th percentile (µs).
    public var p99: Double
    /// Largest (µs).
    public var max: Double
    /// Arithmetic mean (µs).
    public var mean: Double

    /// Nearest-rank percentiles of `nanoseconds` (empty → zeros).
    public init(nanoseconds: [UInt64]) {
        let s = nanoseconds.sorted()
        func rank(_ p: Double) -> Double {
            guard !s.isEmpty else { return 0 }
            return Double(s[Swift.max(0, Int((p * Double(s.count)).rounded(.up)) - 1)]) / 1000
        }
        p50 = rank(0.50)
        p99 = rank(0.99)
        max = Double(s.last ?? 0) / 1000
        mean = s.isEmpty ? 0 : Double(s.reduce(0, +)) / Double(s.count) / 1000
    }
}

/// The stages an image goes through, in order.
public enum PipelineStage: String, CaseIterable, Codable, Sendable {
    case decode
    case preprocess
    case queue = "submit→pickup"
    case dispatch = "pickup→handler"
    case inference
    case completion = "completion→controller"
    case postprocess
    case endToEnd = "end-to-end"

    /// Whether the stage is FabricQueue's own path (ring, wake-up, validation, completion).
    public var isFabricPath: Bool { self == .queue || self == .dispatch || self == .completion }
}

/// One image's classification, as the controller saw it.
public struct ImageResult: Codable, Sendable {
    /// A class with its label (when the engine carries labels) and probability.
    public struct Prediction: Codable, Sendable {
        /// Class index.
        public var index: Int
        /// Class label, or "class N" without labels.
        public var label: String
        /// Softmax probability.
        public var probability: Float
    }

    /// The image's file name.
    public var image: String
    /// The five most probable classes, most probable first.
    public var top5: [Prediction]
    /// Whether the daemon's top-5 (in the record) agreed with the controller's own softmax of the logits.
    public var daemonAgrees: Bool
}

/// Everything one run measured: the table the pipeline prints, and its JSON.
public struct RunReport: Codable, Sendable {
    /// The engine's name.
    public var engine: String
    /// The engine's architecture.
    public var architecture: String
    /// `pretrained` or `seeded-untrained`.
    public var weights: String
    /// The daemon's model id.
    public var modelID: UInt32
    /// The element type images travelled as.
    public var precision: Precision
    /// Bytes through the fabric per image (tensor header and elements).
    public var inputBytesPerImage: Int
    /// Images classified.
    public var images: Int
    /// Images per micro-batch.
    public var batchSize: Int
    /// Micro-batches posted before waiting.
    public var batchesInFlight: Int
    /// Wall-clock time of the run.
    public var seconds: Double
    /// `images / seconds`.
    public var imagesPerSecond: Double
    /// Per stage, per image (inference: the batch's forward pass each image waited for).
    public var stages: [String: StageStatistics]
    /// (submit→pickup + pickup→handler + completion→controller) / end-to-end, summed over images.
    public var fabricShare: Double
    /// Commands that completed with an error status.
    public var failures: Int
    /// Images whose daemon-side top-5 differed from the controller's.
    public var disagreements: Int
    /// The first result for each distinct image.
    public var results: [ImageResult]
    /// Images that could not be read or decoded, with why; the run went on
    /// without them.
    public var skipped: [String] = []
    /// Images decoded with a warning (a truncated JPEG, say): classified, but
    /// from partly made-up pixels.
    public var warnings: [String] = []

    /// The statistics of one stage (zeros if it was not recorded).
    public func stage(_ s: PipelineStage) -> StageStatistics { stages[s.rawValue] ?? StageStatistics(nanoseconds: []) }

    /// The human-readable table.
    public var table: String {
        var out = """
            engine \(engine) (\(architecture), \(weights == "pretrained" ? "pretrained" : "seeded, UNTRAINED")) · model \(modelID) · \
            \(precision) (\(inputBytesPerImage) bytes/image) · \(images) images · batch \(batchSize) · \(batchesInFlight) batch\(batchesInFlight == 1 ? "" : "es") in flight
            throughput \(String(format: "%.1f", imagesPerSecond)) images/s · per image end-to-end p50 \(Self.time(stage(.endToEnd).p50)) · \
            fabric path \(String(format: "%.3f", fabricShare * 100)) % of end-to-end\(failures > 0 ? " · \(failures) FAILED" : "")\
            \(disagreements > 0 ? " · \(disagreements) top-5 disagreements" : "")

            """
        out +=
            "  " + "stage".padding(toLength: 24, withPad: " ", startingAt: 0)
            + ["p50", "p99", "max"].map { $0.leftPadded(11) }.joined() + "\n"
        for s in PipelineStage.allCases {
            let st = stage(s)
            out +=
                "  " + (s.rawValue + (s.isFabricPath ? " *" : "")).padding(toLength: 24, withPad: " ", startingAt: 0)
                + [st.p50, st.p99, st.max].map { Self.time($0).leftPadded(11) }.joined() + "\n"
        }
        out += "  * fabric path (FabricQueue: ring, wake-up, validation, completion)\n"
        for line in skipped { out += "  SKIPPED \(line)\n" }
        for line in warnings { out += "  WARNING \(line)\n" }
        return out
    }

    static func time(_ microseconds: Double) -> String {
        microseconds >= 1000 ? String(format: "%.2f ms", microseconds / 1000) : String(format: "%.1f µs", microseconds)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
