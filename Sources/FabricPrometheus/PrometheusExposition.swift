import FabricConsumer
import Prometheus
import Synchronization

/// Renders a daemon's ``DaemonTelemetry`` in the Prometheus text exposition
/// format (version 0.0.4).
///
/// Counters and gauges live in a swift-prometheus
/// `PrometheusCollectorRegistry`, which also writes them out; each scrape
/// moves them to the daemon's current values. The daemon's latency and
/// batch-size histograms are already aggregated (the poll thread counts
/// observations into fixed buckets without a lock); swift-prometheus's
/// `Histogram` takes one observation per call under its lock, so replaying
/// them would cost a scrape one call per command served. They are written
/// here instead, as `histogram` families with cumulative `_bucket{le=…}`,
/// `_sum` and `_count` series, in seconds for latencies.
///
/// Per-session series are left out on purpose: a session id per connection
/// is an unbounded label. Sessions are counted (`fabricq_sessions_open`,
/// `…_opened_total`); `fabricq top` shows them one by one.
public final class PrometheusExposition: Sendable {
    private let registry = PrometheusCollectorRegistry()
    /// What each counter was last moved to, by series key (swift-prometheus
    /// counters only go up, by increments).
    private let reported = Mutex<[String: UInt64]>([:])

    /// An exposition with an empty registry.
    public init() {}

    /// The text for `telemetry`: counters and gauges from the registry,
    /// then the histograms.
    public func render(_ telemetry: DaemonTelemetry) -> [UInt8] {
        // One scrape at a time: counters, gauges and histograms of one body
        // all come from the same snapshot.
        reported.withLock { last in
            update(telemetry, &last)
            return renderLocked(telemetry)
        }
    }

    private func renderLocked(_ telemetry: DaemonTelemetry) -> [UInt8] {
        var buffer = registry.emitToBuffer()
        // One family per stage, every model's series under its one TYPE line.
        let families: [(String, String, Bool, (DaemonTelemetry.Model) -> TelemetryDistribution)] = [
            (
                "fabricq_queue_wait_seconds", "Time from pickup off the ring to the start of the command's batch.", true,
                \.queueWait
            ),
            (
                "fabricq_handler_seconds", "Time from the start of the batch to the handler's report of the command.", true,
                \.handler
            ),
            (
                "fabricq_completion_posting_seconds",
                "Time from the handler's report to the completion on the session's ring.", true, \.completionPosting
            ),
            ("fabricq_batch_size", "Commands per executed batch.", false, \.batchSize),
        ]
        for (name, help, seconds, distribution) in families where !telemetry.models.isEmpty {
            var text = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
            for model in telemetry.models {
                histogram(name, "model=\"\(model.id)\"", distribution(model), seconds: seconds, into: &text)
            }
            buffer.append(contentsOf: text.utf8)
        }
        return buffer
    }

    private func update(_ t: DaemonTelemetry, _ last: inout [String: UInt64]) {
        // `fabricq_NAME_total`.
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = [], _ value: UInt64) {
            let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
            let before = last[key] ?? 0
            let descriptor = MetricNameDescriptor(namespace: "fabricq", metricName: name, unitName: "total", helpText: help)
            let c =
                labels.isEmpty
                ? registry.makeCounter(descriptor: descriptor)
                : registry.makeCounter(descriptor: descriptor, labels: labels)
            if value > before { c.increment(by: Int64(clamping: value - before)) }
            last[key] = max(value, before)
        }
        // `fabricq_NAME` (`fabricq_NAME_UNIT` with a unit).
        func gauge(
            _ name: String, unit: String = "", _ help: String, _ labels: [(String, String)] = [], _ value: Double
        ) {
            let descriptor = MetricNameDescriptor(namespace: "fabricq", metricName: name, unitName: unit, helpText: help)
            let g =
                labels.isEmpty
                ? registry.makeGauge(descriptor: descriptor)
                : registry.makeGauge(descriptor: descriptor, labels: labels)
            g.set(value)
        }
        let s = t.totals
        gauge(
            "build_info", "The daemon's FabricQueue and protocol versions.",
            [("version", t.version), ("protocol", "\(t.protocolVersion)")], 1)
        gauge("uptime", unit: "seconds", "Seconds since the daemon started serving.", [], t.uptimeSeconds)
        gauge("sessions_open", "Controller sessions open now.", [], Double(t.openSessions))
        counter("sessions_opened", "Sessions accepted.", [], s.sessionsOpened)
        counter("sessions_closed", "Sessions ended.", [], s.sessionsClosed)
        counter(
            "connections_refused", "Connections refused (policy, version, malformed, busy).", [],
            s.connectionsRefused)
        counter("invalid_descriptors", "Descriptors that failed validation.", [], s.invalidDescriptors)
        counter("doorbell_rings", "Wake-up system calls made to controllers.", [], s.doorbellRings)
        counter("poll_sleeps", "Times the poll thread slept.", [], s.sleeps)
        counter("poll_wakeups", "Poll-thread sleeps ended by a doorbell.", [], s.pollWakeups)
        counter(
            "rejected_completions", "Completions a handler reported twice or too late.", [],
            s.rejectedCompletions)
        for model in t.models {
            let id = ("model", "\(model.id)")
            counter(
                "commands_received", "Descriptors for the model taken off the rings.", [id],
                model.commandsReceived)
            for (status, count) in model.completions.labelled {
                counter("completions", "Completions posted, by status.", [id, ("status", status)], count)
            }
            counter(
                "commands_started", "Commands handed to the model's instances.", [id],
                model.commandsStarted)
            counter("batches", "Batches handed to the model's instances.", [id], model.batchesStarted)
            counter(
                "commands_dropped", "Queued commands dropped because their session ended first.", [id],
                model.commandsDropped)
            gauge("queue_depth", "Commands waiting in the model's queue.", [id], Double(model.queueDepth))
            gauge("queue_capacity", "The model's queue capacity.", [id], Double(model.queueCapacity))
            gauge("in_flight", "Commands with the model's instances now.", [id], Double(model.inFlight))
            gauge("model_instances", "The model's instances.", [id], Double(model.instances))
        }
    }

    /// The buckets Prometheus gets: octaves (every fourth daemon bucket for
    /// latencies, 1 µs … 2²⁴ µs; powers of two for batch sizes), each an
    /// exact cumulative count because each is a boundary of the daemon's buckets.
    private static let latencyBounds: [UInt64] = (0...24).map { 1_000 << UInt64($0) }
    private static let sizeBounds: [UInt64] = (0...12).map { 1 << UInt64($0) }

    private func histogram(
        _ name: String, _ labels: String, _ d: TelemetryDistribution, seconds: Bool, into text: inout String
    ) {
        for bound in seconds ? Self.latencyBounds : Self.sizeBounds {
            let le = seconds ? Self.seconds(bound) : "\(bound)"
            text += "\(name)_bucket{\(labels),le=\"\(le)\"} \(d.count(atMost: bound))\n"
        }
        text += "\(name)_bucket{\(labels),le=\"+Inf\"} \(d.count)\n"
        text += "\(name)_sum{\(labels)} \(seconds ? Self.seconds(d.sum) : "\(d.sum)")\n"
        text += "\(name)_count{\(labels)} \(d.count)\n"
    }

    /// Nanoseconds as seconds, exactly (no floating-point rounding).
    static func seconds(_ nanoseconds: UInt64) -> String {
        let whole = nanoseconds / 1_000_000_000, fraction = nanoseconds % 1_000_000_000
        guard fraction > 0 else { return "\(whole)" }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 9 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }
}
