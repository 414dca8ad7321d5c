import FabricSystem
import Histogram

/// The stages a command's latency is split into.
public enum Stage: String, Sendable, CaseIterable, Codable {
    /// Submit → daemon pickup (``StageTimestamps/queueNanoseconds``).
    case queue
    /// Pickup → handler start.
    case dispatch
    /// Handler start → end.
    case handler
    /// Handler end → completion seen by the controller.
    case completion
    /// Submit → completion seen.
    case total
}

/// Percentiles of one stage, in nanoseconds.
public struct StageSummary: Sendable, Equatable, Codable {
    /// Commands recorded.
    public var count: UInt64
    /// Median.
    public var p50: UInt64
    /// 99th percentile.
    public var p99: UInt64
    /// 99.9th percentile.
    public var p999: UInt64
    /// Largest.
    public var max: UInt64

    /// The summary of `histogram` (all zero when it is empty).
    public init(of histogram: Histogram<UInt64>) {
        guard histogram.totalCount > 0 else {
            self.init(count: 0, p50: 0, p99: 0, p999: 0, max: 0)
            return
        }
        self.init(
            count: histogram.totalCount, p50: histogram.valueAtPercentile(50), p99: histogram.valueAtPercentile(99),
            p999: histogram.valueAtPercentile(99.9), max: histogram.max)
    }

    /// A summary of the given figures.
    public init(count: UInt64, p50: UInt64, p99: UInt64, p999: UInt64, max: UInt64) {
        self.count = count
        self.p50 = p50
        self.p99 = p99
        self.p999 = p999
        self.max = max
    }
}

/// Per-stage latency percentiles at one moment, with the histograms behind
/// them (HdrHistogram, 3 significant digits, 1 ns to 60 s).
public struct LatencySnapshot: Sendable {
    /// The histogram of each stage, in nanoseconds.
    public var histograms: [Stage: Histogram<UInt64>]

    /// p50/p99/p99.9/max of `stage`.
    public func summary(_ stage: Stage) -> StageSummary {
        histograms[stage].map(StageSummary.init(of:)) ?? StageSummary(count: 0, p50: 0, p99: 0, p999: 0, max: 0)
    }

    /// Every stage's summary.
    public var summaries: [Stage: StageSummary] {
        Dictionary(uniqueKeysWithValues: Stage.allCases.map { ($0, summary($0)) })
    }
}

/// Records each completed command's stage latencies into HDR histograms.
/// Recording touches preallocated counters only (no allocation).
package struct LatencyRecorder {
    /// The largest value recorded; larger ones are clamped to it.
    package static let highest: UInt64 = 60_000_000_000
    var queue = LatencyRecorder.histogram()
    var dispatch = LatencyRecorder.histogram()
    var handler = LatencyRecorder.histogram()
    var completion = LatencyRecorder.histogram()
    var total = LatencyRecorder.histogram()

    /// An empty histogram of the recorder's range (1 ns to 60 s, 3 digits).
    package static func histogram() -> Histogram<UInt64> {
        Histogram(lowestDiscernibleValue: 1, highestTrackableValue: highest, numberOfSignificantValueDigits: .three)
    }

    /// Records every stage the command went through (see
    /// ``StageTimestamps/duration(of:)``): a failed command refused before
    /// its handler ran adds no dispatch, handler or completion sample, instead
    /// of an uptime-sized one. Values beyond the range are clamped.
    mutating func record(_ t: StageTimestamps) {
        if let ns = t.duration(of: .queue) { _ = queue.record(min(ns, Self.highest)) }
        if let ns = t.duration(of: .dispatch) { _ = dispatch.record(min(ns, Self.highest)) }
        if let ns = t.duration(of: .handler) { _ = handler.record(min(ns, Self.highest)) }
        if let ns = t.duration(of: .completion) { _ = completion.record(min(ns, Self.highest)) }
        if let ns = t.duration(of: .total) { _ = total.record(min(ns, Self.highest)) }
    }

    var snapshot: LatencySnapshot {
        LatencySnapshot(histograms: [
            .queue: queue, .dispatch: dispatch, .handler: handler,
            .completion: completion, .total: total,
        ])
    }

    mutating func reset() { self = LatencyRecorder() }
}
