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
}

/// Per-stage latency percentiles at one moment, with the histograms behind
/// them (HdrHistogram, 3 significant digits, 1 ns to 60 s).
public struct LatencySnapshot: Sendable {
    /// The histogram of each stage, in nanoseconds.
    public var histograms: [Stage: Histogram<UInt64>]

    /// p50/p99/p99.9/max of `stage`.
    public func summary(_ stage: Stage) -> StageSummary {
        guard let h = histograms[stage], h.totalCount > 0 else { return StageSummary(count: 0, p50: 0, p99: 0, p999: 0, max: 0) }
        return StageSummary(
            count: h.totalCount, p50: h.valueAtPercentile(50), p99: h.valueAtPercentile(99),
            p999: h.valueAtPercentile(99.9), max: h.max)
    }

    /// Every stage's summary.
    public var summaries: [Stage: StageSummary] {
        Dictionary(uniqueKeysWithValues: Stage.allCases.map { ($0, summary($0)) })
    }
}

/// Records each completed command's stage latencies into HDR histograms.
/// Recording touches preallocated counters only (no allocation).
struct LatencyRecorder {
    static let highest: UInt64 = 60_000_000_000
    var queue = LatencyRecorder.histogram()
    var dispatch = LatencyRecorder.histogram()
    var handler = LatencyRecorder.histogram()
    var completion = LatencyRecorder.histogram()
    var total = LatencyRecorder.histogram()

    static func histogram() -> Histogram<UInt64> {
        Histogram(lowestDiscernibleValue: 1, highestTrackableValue: highest, numberOfSignificantValueDigits: .three)
    }

    mutating func record(_ t: StageTimestamps) {
        // Values beyond the range (a daemon's garbage stamps) are clamped.
        _ = queue.record(min(t.queueNanoseconds, Self.highest))
        _ = dispatch.record(min(t.dispatchNanoseconds, Self.highest))
        _ = handler.record(min(t.handlerNanoseconds, Self.highest))
        _ = completion.record(min(t.completionNanoseconds, Self.highest))
        _ = total.record(min(t.totalNanoseconds, Self.highest))
    }

    var snapshot: LatencySnapshot {
        LatencySnapshot(histograms: [
            .queue: queue, .dispatch: dispatch, .handler: handler,
            .completion: completion, .total: total,
        ])
    }

    mutating func reset() { self = LatencyRecorder() }
}
