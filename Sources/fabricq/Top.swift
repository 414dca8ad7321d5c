import ArgumentParser
import FabricConsumer
import FabricDiagnostics
import Foundation
import Glibc
import SystemPackage

/// `fabricq top`: a live view of a running daemon, from telemetry queries on
/// its control socket (the control thread answers them; the poll thread
/// never hears of a tool).
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch a running daemon: sessions, per-model rates, latency percentiles, queues and rings.",
        discussion: """
            Asks the daemon for its telemetry every --interval and redraws (plain text, works over SSH; \
            the screen is cleared only when standard output is a terminal). Rates are over the last \
            interval; latencies are the daemon's own stages since it started: queue wait (pickup → batch \
            start), handler (batch start → report), posting (report → completion on the ring).
              fabricq top --socket /run/fabricqueue/daemon.sock
              fabricq top --socket /tmp/fq.sock --once --json | jq '.telemetry.models'
            """)

    @Option(help: "The daemon's Unix socket.")
    var socket: String

    @Option(help: "Time between samples (1s, 250ms, ...).")
    var interval = "1s"

    @Flag(help: "Print one frame (two samples an interval apart) and exit.")
    var once = false

    @Flag(help: "Print JSON (one object per sample) instead of the table.")
    var json = false

    @Option(help: "Stop after this many frames (0: until interrupted).")
    var count = 0

    func run() throws {
        guard let every = parseDuration(interval), every > .zero else {
            throw ValidationError("--interval must be a positive duration (1s, 250ms)")
        }
        guard count >= 0 else { throw ValidationError("--count must be 0 (no limit) or more") }
        let path = FilePath(socket)
        var previous = try sample(path)
        var previousAt = ContinuousClock.now
        let frames = once ? 1 : count
        var shown = 0
        let terminal = isatty(1) == 1 && !json && !once
        while frames == 0 || shown < frames {
            sleep(for: every)
            let current = try sample(path)
            let now = ContinuousClock.now
            let elapsed = (now - previousAt).seconds
            let frame = TopFrame(current: current, previous: previous, seconds: elapsed)
            if json {
                say(frame.json)
            } else {
                say((terminal ? "\u{1B}[H\u{1B}[2J" : "") + frame.table)
            }
            previous = current
            previousAt = now
            shown += 1
        }
    }

    private func sample(_ path: FilePath) throws -> DaemonTelemetry {
        do { return try DaemonTelemetry.fetch(from: path, timeout: .seconds(2)) } catch {
            report("\(error)")
            throw ExitCode(1)
        }
    }

    private func sleep(for duration: Duration) {
        var request = timespec(
            tv_sec: Int(duration.components.seconds), tv_nsec: Int(duration.components.attoseconds / 1_000_000_000))
        var left = timespec()
        while nanosleep(&request, &left) != 0 && errno == EINTR { request = left }
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// One frame of `fabricq top`: the latest telemetry and the rates since the
/// sample before it.
struct TopFrame: Encodable {
    let telemetry: DaemonTelemetry
    let intervalSeconds: Double
    /// Completions per second over the interval, by model id.
    let modelRates: [String: Double]
    /// Completions per second over the interval, by session id.
    let sessionRates: [String: Double]

    init(current: DaemonTelemetry, previous: DaemonTelemetry, seconds: Double) {
        telemetry = current
        intervalSeconds = seconds
        func rate(_ now: UInt64, _ before: UInt64?) -> Double {
            guard seconds > 0 else { return 0 }
            let delta = now >= (before ?? 0) ? now - (before ?? 0) : now
            return Double(delta) / seconds
        }
        var models: [String: Double] = [:]
        for model in current.models {
            let before = previous.models.first { $0.id == model.id }
            models["\(model.id)"] = rate(
                model.completions.succeeded &+ model.completions.failed,
                before.map { $0.completions.succeeded &+ $0.completions.failed })
        }
        modelRates = models
        var sessions: [String: Double] = [:]
        for session in current.sessions {
            let before = previous.sessions.first { $0.id == session.id }
            sessions["\(session.id)"] = rate(
                session.commandsSucceeded &+ session.commandsFailed,
                before.map { $0.commandsSucceeded &+ $0.commandsFailed } ?? 0)
        }
        sessionRates = sessions
    }

    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    var table: String {
        let t = telemetry
        let totals = t.totals
        var lines: [String] = []
        lines.append(
            "fabricq top  \(t.socketPath.isEmpty ? "(socket activated)" : t.socketPath)  pid \(t.processID)  "
                + "fabricqueue \(t.version)  up \(Self.uptime(t.uptimeSeconds))  sessions \(t.openSessions)")
        lines.append(
            "commands \(totals.commandsReceived)  succeeded \(totals.commandsSucceeded)  failed \(totals.commandsFailed)  "
                + "expired \(totals.commandsExpired)  cancelled \(totals.commandsCancelled)  "
                + "queue full \(totals.commandsRejectedQueueFull)  poll sleeps \(totals.sleeps) "
                + "(doorbell \(totals.pollWakeups))  doorbells rung \(totals.doorbellRings)")
        lines.append("")
        lines.append(
            Self.row(
                [
                    "MODEL", "INST", "RATE/s", "SUCCEEDED", "FAILED", "QUEUE", "INFLIGHT", "BATCH", "QWAIT p50/p99",
                    "HANDLER p50/p99", "POST p99",
                ], widths: Self.modelWidths))
        for model in t.models {
            let mean = model.batchesStarted > 0 ? Double(model.commandsStarted) / Double(model.batchesStarted) : 0
            lines.append(
                Self.row(
                    [
                        "\(model.id)", "\(model.instances)", Self.number(modelRates["\(model.id)"] ?? 0),
                        "\(model.completions.succeeded)", "\(model.completions.failed)",
                        "\(model.queueDepth)/\(model.queueCapacity)", "\(model.inFlight)", String(format: "%.1f", mean),
                        Self.pair(model.queueWait), Self.pair(model.handler),
                        Self.latency(model.completionPosting.quantile(0.99)),
                    ], widths: Self.modelWidths))
        }
        lines.append("")
        lines.append(
            Self.row(
                ["SESSION", "PID", "UID", "RATE/s", "RECEIVED", "FAILED", "INFLIGHT", "SUBMIT RING", "COMPL RING", "AGE"],
                widths: Self.sessionWidths))
        for session in t.sessions {
            lines.append(
                Self.row(
                    [
                        "\(session.id)", "\(session.pid)", "\(session.uid)",
                        Self.number(sessionRates["\(session.id)"] ?? 0), "\(session.commandsReceived)",
                        "\(session.commandsFailed)", "\(session.inFlight)", Self.fill(session.submissionRing),
                        Self.fill(session.completionRing), Self.uptime(session.ageSeconds),
                    ], widths: Self.sessionWidths))
        }
        if t.sessions.isEmpty { lines.append("(no sessions)") }
        return lines.joined(separator: "\n")
    }

    static let modelWidths = [6, 5, 10, 12, 8, 11, 9, 6, 18, 18, 9]
    static let sessionWidths = [8, 8, 6, 10, 11, 8, 9, 12, 12, 8]

    static func row(_ cells: [String], widths: [Int]) -> String {
        zip(cells, widths).map { cell, width in
            cell.count >= width ? cell + " " : cell + String(repeating: " ", count: width - cell.count)
        }.joined()
    }

    static func number(_ value: Double) -> String {
        value >= 100 ? String(format: "%.0f", value) : String(format: "%.1f", value)
    }

    static func latency(_ nanoseconds: UInt64?) -> String {
        guard let ns = nanoseconds else { return "-" }
        switch ns {
        case ..<10_000: return String(format: "%.1fus", Double(ns) / 1e3)
        case ..<1_000_000: return String(format: "%.0fus", Double(ns) / 1e3)
        case ..<1_000_000_000: return String(format: "%.1fms", Double(ns) / 1e6)
        default: return String(format: "%.2fs", Double(ns) / 1e9)
        }
    }

    static func pair(_ distribution: TelemetryDistribution) -> String {
        "\(latency(distribution.quantile(0.5)))/\(latency(distribution.quantile(0.99)))"
    }

    static func fill(_ ring: DaemonTelemetry.RingFill) -> String {
        // Doubles: the numbers come from another process and must not trap.
        let percent = ring.capacity > 0 ? Int((100 * Double(ring.occupied) / Double(ring.capacity)).rounded(.down)) : 0
        return "\(ring.occupied)/\(ring.capacity) \(percent)%"
    }

    static func uptime(_ seconds: Double) -> String {
        // Clamped: the number comes from another process and must not trap.
        let seconds = seconds.isFinite ? min(max(seconds, 0), 1e12) : 0
        let s = Int(seconds)
        if s < 60 { return String(format: "%.1fs", seconds) }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s / 3600)h\(String(format: "%02d", s / 60 % 60))m"
    }
}
