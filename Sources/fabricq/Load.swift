import ArgumentParser
import FabricDiagnostics
import FabricProducer
import Foundation
import Glibc
import Histogram

/// `fabricq load`: drives a daemon's model with checked requests and reports
/// throughput and latency percentiles.
struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit checked requests to a daemon's model and report throughput and latency.",
        discussion: """
            Closed loop (--concurrency N: N tasks, each submitting --batch requests at a time and \
            waiting for them) or open loop (--rate R/s: requests started on a fixed schedule, latency \
            counted from the scheduled time). Every output is verified (--expect); the exit status is 1 \
            if any output is wrong. Latency is end to end (submit called → result returned), with the \
            per-stage split from the completions' timestamps.
              fabricq load --socket /tmp/fq.sock --model 2 --concurrency 1 --duration 5s
              fabricq load --socket /tmp/fq.sock --model 1 --rate 2000/s --duration 10s --json
            """)

    @Option(help: "The daemon's Unix socket, or ucx://HOST:PORT for a remote daemon (with --key).")
    var socket: String

    @Option(help: "The model id to drive.")
    var model: UInt32

    @Option(help: "Tasks submitting in a closed loop (default 1 unless --rate is given).")
    var concurrency: Int?

    @Option(help: "Open-loop arrival rate, requests per second (as 2000/s or 2000).")
    var rate: String?

    @Option(help: "How long to run (500ms, 10s, ...).")
    var duration: String

    @Option(help: "Requests each closed-loop task submits at once.")
    var batch = 1

    @Option(help: "Input bytes per request (more than a slot travels in a run of slots).")
    var size = 64

    @Option(help: "What the model returns: echo (also delay and spin), checksum, empty, or none (status only).")
    var expect = "echo"

    @Option(help: "Priority of every request (0 is the lowest).")
    var priority: UInt8 = 0

    @Option(help: "Deadline of each request (also sent to the daemon).")
    var timeout = "5s"

    @Option(help: "How the client waits for completions: poll, adaptive or eventfd.")
    var wait = "adaptive"

    @Option(help: "For a ucx:// daemon: this controller's private key (fabricq keygen NAME writes NAME.key).")
    var key: String?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() async throws {
        guard let runFor = parseDuration(duration), runFor > .zero else {
            throw ValidationError("--duration: a duration such as 10s")
        }
        guard let deadline = parseDuration(timeout), deadline > .zero else {
            throw ValidationError("--timeout: a duration such as 5s")
        }
        guard expect == "none" || RequestShape.expectedKinds[expect] != nil else {
            throw ValidationError("--expect is echo, checksum, empty or none")
        }
        guard batch >= 1, size >= 0 else { throw ValidationError("--batch must be at least 1, --size at least 0") }
        var perSecond: Double?
        if let rate {
            let number = rate.hasSuffix("/s") ? String(rate.dropLast(2)) : rate
            guard let r = Double(number), r > 0 else { throw ValidationError("--rate: requests per second, as 2000/s") }
            perSecond = r
            if concurrency != nil { throw ValidationError("give --concurrency or --rate, not both") }
        }
        var options = ControllerOptions()
        switch wait {
        case "poll": options.wait = .busyPoll
        case "adaptive": options.wait = .adaptive(spinFor: .microseconds(20))
        case "eventfd": options.wait = .eventFD
        default: throw ValidationError("--wait is poll, adaptive or eventfd")
        }
        let endpoint: DaemonEndpoint
        do {
            endpoint = try DaemonEndpoint(socket, key: try key.map { try RemoteSigningKey(contentsOf: FilePath($0)) })
        } catch {
            report("\(error)")
            throw ExitCode(2)
        }
        let client: FabricClient
        do { client = try FabricClient.connect(to: endpoint, options: options) } catch {
            report("cannot connect to \(socket): \(error)")
            throw ExitCode(2)
        }
        defer { client.close() }
        let request = RequestShape(
            model: model, size: size, expect: expect, priority: priority, timeout: deadline,
            outputCapacity: max(size, 8))

        let start = MonotonicClock.now()
        let end = start &+ runFor.saturatingNanoseconds
        var total = Tally()
        if let perSecond {
            total = await Self.openLoop(client, request, start: start, end: end, perSecond: perSecond)
        } else {
            let tasks = max(concurrency ?? 1, 1)
            await withTaskGroup(of: Tally.self) { group in
                for worker in 0..<tasks {
                    group.addTask { await Self.closedLoop(client, request, worker: UInt64(worker), batch: batch, end: end) }
                }
                for await tally in group { total.merge(tally) }
            }
        }
        let elapsed = Double(MonotonicClock.now() &- start) / 1e9
        print(
            total.summary(
                elapsed: elapsed, model: model, json: json,
                mode: perSecond.map { "rate \($0)/s" } ?? "concurrency \(max(concurrency ?? 1, 1))"))
        if total.wrong > 0 {
            report("\(total.wrong) outputs were wrong")
            throw ExitCode(1)
        }
    }

    /// One closed-loop worker: submits `batch` requests at a time and waits
    /// for all of them, until `end`.
    static func closedLoop(_ client: FabricClient, _ shape: RequestShape, worker: UInt64, batch: Int, end: UInt64) async -> Tally
    {
        var tally = Tally()
        var sequence: UInt64 = 0
        while MonotonicClock.now() < end {
            if batch == 1 {
                tally.add(await shape.submit(client, seed: worker << 40 | sequence, scheduled: MonotonicClock.now()))
                sequence &+= 1
                continue
            }
            let first = sequence
            sequence &+= UInt64(batch)
            await withTaskGroup(of: Sample.self) { group in
                let now = MonotonicClock.now()
                for k in 0..<UInt64(batch) {
                    group.addTask { await shape.submit(client, seed: worker << 40 | (first &+ k), scheduled: now) }
                }
                for await sample in group { tally.add(sample) }
            }
        }
        return tally
    }

    /// Starts a request every `1/perSecond` seconds until `end`; latency
    /// counts from each request's scheduled start (no coordinated omission).
    static func openLoop(
        _ client: FabricClient, _ shape: RequestShape, start: UInt64, end: UInt64, perSecond: Double
    ) async -> Tally {
        let interval = max(UInt64(1e9 / perSecond), 1)
        return await withTaskGroup(of: Sample.self) { group in
            var tally = Tally()
            var index: UInt64 = 0
            var inFlight = 0
            while true {
                let scheduled = start &+ index &* interval
                guard scheduled < end else { break }
                let now = MonotonicClock.now()
                if scheduled > now { try? await Task.sleep(nanoseconds: scheduled - now) }
                let seed = index
                group.addTask { await shape.submit(client, seed: seed, scheduled: scheduled) }
                inFlight += 1
                index &+= 1
                // More than 4096 outstanding: wait for some to finish, so
                // memory stays bounded (the schedule slips; latency still
                // counts from each request's scheduled start).
                while inFlight > 4096, let sample = await group.next() {
                    tally.add(sample)
                    inFlight -= 1
                }
            }
            for await sample in group { tally.add(sample) }
            return tally
        }
    }
}

/// What every request of a run looks like.
struct RequestShape: Sendable {
    let model: UInt32
    let size: Int
    let expect: String
    let priority: UInt8
    let timeout: Duration
    let outputCapacity: Int

    /// Submits one request whose input derives from `seed`, and checks its output.
    func submit(_ client: FabricClient, seed: UInt64, scheduled: UInt64) async -> Sample {
        let input = Self.pattern(seed: seed, count: size)
        do {
            let result = try await client.submit(
                modelID: model, inputCapacity: input.count, outputCapacity: outputCapacity, priority: priority,
                timeout: timeout
            ) { buffer in
                buffer.copyBytes(from: input)
                return input.count
            }
            let seen = MonotonicClock.now()
            var sample = Sample(latency: seen &- scheduled, timings: result.timings)
            guard result.succeeded else {
                sample.outcome = .failed("\(result.failure.map { "\($0)" } ?? "status \(result.statusCode)")")
                return sample
            }
            sample.batchSize = Int(result.detail)
            if !isExpected(result.output, for: input) { sample.outcome = .wrong }
            return sample
        } catch {
            return Sample(latency: MonotonicClock.now() &- scheduled, timings: nil, outcome: .failed("\(error)"))
        }
    }

    func isExpected(_ output: [UInt8], for input: [UInt8]) -> Bool {
        guard let kind = Self.expectedKinds[expect], let expected = kind.expectedOutput(for: input) else { return true }
        return output == Array(expected.prefix(outputCapacity))
    }

    /// What `--expect` names (`none` checks only the status).
    static let expectedKinds: [String: ModelSpecification.Kind] = ["echo": .echo, "checksum": .checksum, "empty": .empty]

    /// Bytes from a splitmix64 stream seeded by `seed`.
    static func pattern(seed: UInt64, count: Int) -> [UInt8] {
        (0..<count).map { i in UInt8(truncatingIfNeeded: CheckedTraffic.mix(seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(i + 1))) }
    }
}

/// One request's result.
struct Sample: Sendable {
    enum Outcome: Sendable {
        case ok
        case wrong
        case failed(String)
    }
    var latency: UInt64
    var timings: StageTimestamps?
    var outcome: Outcome = .ok
    var batchSize = 0
}

/// What a worker measured: end-to-end and per-stage latencies in HDR
/// histograms (the client's own range and precision), counts, and why
/// requests failed.
struct Tally: Sendable {
    var endToEnd = LatencyRecorder.histogram()
    var stages = Dictionary(uniqueKeysWithValues: Tally.stageNames.map { ($0, LatencyRecorder.histogram()) })
    var completed = 0
    var failed = 0
    var wrong = 0
    var batchSizes = 0
    var failures: [String: Int] = [:]

    /// The stages reported, in order (`total` is `endToEnd`, measured here).
    static let stageNames: [Stage] = [.queue, .dispatch, .handler, .completion]

    mutating func add(_ sample: Sample) {
        switch sample.outcome {
        case .ok, .wrong:
            completed += 1
            _ = endToEnd.record(min(sample.latency, LatencyRecorder.highest))
            batchSizes += sample.batchSize
            if case .wrong = sample.outcome { wrong += 1 }
            if let timings = sample.timings {
                for stage in Self.stageNames {
                    if let d = timings.duration(of: stage) { _ = stages[stage]?.record(min(d, LatencyRecorder.highest)) }
                }
            }
        case .failed(let why):
            failed += 1
            failures[why, default: 0] += 1
        }
    }

    mutating func merge(_ other: Tally) {
        endToEnd.add(other.endToEnd)
        for (stage, histogram) in other.stages { stages[stage]?.add(histogram) }
        completed += other.completed
        failed += other.failed
        wrong += other.wrong
        batchSizes += other.batchSizes
        for (why, n) in other.failures { failures[why, default: 0] += n }
    }

    func summary(elapsed: Double, model: UInt32, json: Bool, mode: String) -> String {
        let throughput = elapsed > 0 ? Double(completed) / elapsed : 0
        let e2e = StageSummary(of: endToEnd)
        let meanBatch = completed > 0 ? Double(batchSizes) / Double(completed) : 0
        func stage(_ s: Stage) -> StageSummary { stages[s].map(StageSummary.init(of:)) ?? StageSummary(of: endToEnd) }
        func round2(_ x: Double) -> Double { (x * 100).rounded() / 100 }
        if json {
            func object(_ p: StageSummary) -> [String: UInt64] {
                ["count": p.count, "p50": p.p50, "p99": p.p99, "p999": p.p999, "max": p.max]
            }
            let report: [String: Any] = [
                "model": model, "mode": mode, "duration_s": round2(elapsed), "completed": completed,
                "failed": failed, "wrong": wrong, "throughput_per_s": round2(throughput),
                "mean_batch_size": round2(meanBatch), "latency_ns": object(e2e),
                "stages_ns": Dictionary(uniqueKeysWithValues: Self.stageNames.map { ($0.rawValue, object(stage($0))) }),
                "failures": failures,
            ]
            guard let data = try? JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]) else {
                return "{}"
            }
            return String(decoding: data, as: UTF8.self)
        }
        func us(_ ns: UInt64) -> String { "\(round2(Double(ns) / 1000)) µs" }
        func line(_ p: StageSummary) -> String { "p50 \(us(p.p50))  p99 \(us(p.p99))  p99.9 \(us(p.p999))  max \(us(p.max))" }
        var lines = [
            "model \(model), \(mode), \(round2(elapsed)) s: \(completed) completed, \(failed) failed, \(wrong) wrong",
            "throughput \(round2(throughput))/s, mean executed batch \(round2(meanBatch))",
            "end to end: \(line(e2e))",
        ]
        for s in Self.stageNames { lines.append("  \(s.rawValue): \(line(stage(s)))") }
        for (why, n) in failures.sorted(by: { $0.value > $1.value }) { lines.append("  failed \(n)×: \(why)") }
        return lines.joined(separator: "\n")
    }
}
