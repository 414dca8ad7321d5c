import ArgumentParser
import FabricProducer
import Foundation
import ImagePipeline
import InferenceEngine
import SystemPackage

/// The whole example in one command: engines (built on first run), a
/// resnet-daemon process, the controller over the bundled photos, a report.
@main
struct ResNetPipeline: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnet-pipeline",
        abstract:
            "Run the ResNet example end to end: start resnet-daemon, classify the sample images, stop it, print the results.",
        discussion: """
            Builds the seeded ResNet-18 and ResNet-50 engines on first use (signed with a key created in the \
            engine directory). Seeded weights are UNTRAINED: their classes mean nothing; they measure and verify \
            the data path. When scripts/import-pretrained has imported EfficientNet-Lite0 (real ImageNet \
            weights), it runs first and its top-5 carry meaning.
            """)

    @Option(help: "Engine directory (default: $FABRICQUEUE_ENGINES or ~/.cache/fabricqueue/engines).")
    var engineDir: String?
    @Option(help: "Comma-separated engines to run: pretrained, resnet18, resnet50.")
    var engines = "pretrained,resnet18,resnet50"
    @Option(help: "Comma-separated micro-batch sizes (1...8).")
    var batchSizes = "1,8"
    @Option(help: "Images per run (the sample images in turn).")
    var imagesPerRun = 16
    @Option(help: "Micro-batches in flight (1 measures latency; 2 overlaps preprocessing with inference).")
    var inFlight = 1
    @Option(help: "OpenBLAS threads in the daemon.")
    var blasThreads: Int?
    @Option(help: "The daemon's idle strategy: adaptive (spin 50 µs, then sleep), poll (never sleep) or sleep.")
    var daemonIdle = "adaptive"
    @Option(help: "Element type images travel as: fp32, fp16 (half the bytes) or int8 (a quarter, per-tensor scaled).")
    var precision: Precision = .fp32
    @Flag(
        help: """
            Instead of the timed runs, compare fp16 and int8 with fp32 on the images and --generated variants \
            of them (crops, flips, colour shifts): bytes per image, top-1/top-5 agreement, logit error, latency.
            """)
    var comparePrecisions = false
    @Option(help: "Variants of the images generated for --compare-precisions.")
    var generated = 200
    @Option(help: "Write every run's report as JSON to this file.")
    var json: String?
    @Option(help: "The resnet-daemon executable (default: beside this one).")
    var daemon: String?
    @Argument(help: "JPEG/PNG images (default: the bundled samples).")
    var images: [String] = []

    func run() throws {
        let store = EngineStore(directory: engineDir)
        let wanted = engines.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let batches = try batchSizes.split(separator: ",").map { s -> Int in
            guard let b = Int(s), (1...8).contains(b) else { throw ValidationError("batch sizes must be 1...8") }
            return b
        }
        let photos = images.isEmpty ? try Self.sampleImages() : images

        // Engines: seeded ones built if missing; the pretrained one only if imported. Each is opened
        // and its signature checked once here, for the controller's input geometry and labels.
        let trusted = try store.signingKey().publicKey
        var plan = [(id: UInt32, engine: EngineFile)]()
        for name in wanted {
            switch name {
            case "pretrained":
                if FileManager.default.fileExists(atPath: store.pretrainedPath) {
                    plan.append((3, try EngineFile(path: store.pretrainedPath, verification: .trusting(trusted))))
                } else {
                    say(
                        "pretrained engine not imported (run scripts/import-pretrained for real ImageNet labels); "
                            + "running the seeded, untrained engines only")
                }
            case "resnet18", "resnet50":
                let arch = ResNetArchitecture(rawValue: name)!
                let started = Date()
                let (engine, built) = try store.ensureSeeded(arch)
                if built {
                    say(
                        "built \(engine.path) (seeded, untrained) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s"
                    )
                }
                plan.append((arch == .resnet18 ? 1 : 2, engine))
            default:
                throw ValidationError("unknown engine \(name) (pretrained, resnet18, resnet50)")
            }
        }
        guard !plan.isEmpty else { throw ValidationError("no engine to run") }
        let models = plan.map { ($0.id, ModelInfo(engine: $0.engine)) }

        // The daemon, as its own process.
        let socket = "/tmp/resnet-pipeline-\(getpid()).sock"
        var arguments = ["--socket", socket, "--public-key", store.publicKeyPath, "--max-batch", "8", "--idle", daemonIdle]
        for (id, engine) in plan { arguments += ["--engine", "\(id)=\(engine.path)"] }
        if let blasThreads { arguments += ["--blas-threads", "\(blasThreads)"] }
        let daemonProcess = try DaemonProcess(executable: daemon ?? Self.sibling("resnet-daemon"), arguments: arguments)
        defer { daemonProcess.stop() }
        try daemonProcess.waitUntilListening(timeout: 120)

        var options = ControllerOptions()
        options.wait = .adaptive(spinFor: .microseconds(50))
        var session = try ControllerSession.connect(to: FilePath(socket), options: options)
        if comparePrecisions {
            try compare(models: models, photos: photos, session: &session)
            return
        }
        var reports = [RunReport]()
        for (id, info) in models {
            say(
                "\n== \(info.name): \(info.weights == .pretrained ? "pretrained ImageNet weights" : "seeded weights, UNTRAINED (classes carry no meaning)") =="
            )
            // Warm-up: fault in the daemon's weights and buffers once, untimed.
            _ = try ClassificationRun.run(
                RunConfiguration(modelID: id, images: photos, imageCount: 1),
                model: info, session: &session)
            for batch in batches {
                var progress = ProgressLine(label: "\(info.name) batch \(batch)")
                let report = try ClassificationRun.run(
                    RunConfiguration(
                        modelID: id, images: photos, imageCount: imagesPerRun, batchSize: batch,
                        batchesInFlight: inFlight, precision: precision),
                    model: info, session: &session, progress: { progress.update($0, $1) })
                if reports.last?.engine != info.name { say(formatPredictions(report.results)) }
                say(report.table)
                reports.append(report)
            }
        }
        say(Self.summary(reports))
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(reports).write(to: URL(fileURLWithPath: json))
            say("wrote \(json)")
        }
        let failed = reports.reduce(0) { $0 + $1.failures + $1.disagreements }
        if failed > 0 { throw ExitCode(1) }
    }

    /// `--compare-precisions`: every engine, every precision, on the photos
    /// and their generated variants.
    func compare(models: [(UInt32, ModelInfo)], photos: [String], session: inout ControllerSession) throws {
        let decoded = try photos.map { try ImageDecoder.decode(contentsOf: $0) }
        let images = decoded + PrecisionComparison.variants(of: decoded, count: max(0, generated))
        var reports = [PrecisionReport]()
        for (id, info) in models {
            _ = try ClassificationRun.run(
                RunConfiguration(modelID: id, images: photos, imageCount: 1), model: info, session: &session)
            var progress = ProgressLine(label: "\(info.name) precisions")
            let report = try PrecisionComparison.run(
                images: images, generated: images.count - decoded.count, precisions: Precision.allCases, modelID: id,
                model: info, session: &session, progress: { progress.update($0, $1) })
            say(report.table)
            reports.append(report)
        }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(reports).write(to: URL(fileURLWithPath: json))
            say("wrote \(json)")
        }
    }

    /// One line per run: the figures to compare.
    static func summary(_ reports: [RunReport]) -> String {
        var out = "summary (per image, p50):\n"
        out +=
            "  " + "engine".padding(toLength: 34, withPad: " ", startingAt: 0)
            + "batch   images/s   end-to-end    inference   fabric path\n"
        for r in reports {
            let fabric = r.stage(.queue).p50 + r.stage(.dispatch).p50 + r.stage(.completion).p50
            out +=
                "  " + r.engine.padding(toLength: 34, withPad: " ", startingAt: 0)
                + String(
                    format: "%5d %10.1f %9.1f ms %9.1f ms %9.1f µs (%.3f %%)\n", r.batchSize, r.imagesPerSecond,
                    r.stage(.endToEnd).p50 / 1000, r.stage(.inference).p50 / 1000, fabric, r.fabricShare * 100)
        }
        return out
    }

    static func sampleImages() throws -> [String] {
        guard let dir = Bundle.module.url(forResource: "SampleImages", withExtension: nil) else {
            throw ValidationError("the bundled sample images are missing; pass image files")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { [".jpg", ".jpeg", ".png"].contains(where: $0.lowercased().hasSuffix) }.sorted()
        return files.map { dir.appendingPathComponent($0).path }
    }

    static func sibling(_ name: String) -> String {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return ((me as NSString).deletingLastPathComponent as NSString).appendingPathComponent(name)
    }
}

/// A resnet-daemon child process whose output is relayed with a prefix.
final class DaemonProcess {
    let process = Process()
    let output = Pipe()

    init(executable: String, arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = output
        try process.run()
    }

    /// Reads the daemon's lines until "listening on"; fails if it exits or the time runs out.
    func waitUntilListening(timeout seconds: Double) throws {
        let fd = output.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8]()
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) >= 0 else { continue }
            if p.revents == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { break }
            buffer += chunk[0..<n]
            while let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                say("[daemon] \(line)")
                if line.hasPrefix("listening on") { return }
            }
        }
        process.waitUntilExit()
        throw ValidationError("resnet-daemon did not start (exit status \(process.terminationStatus))")
    }

    /// SIGTERM, then wait (the daemon prints its totals).
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
        let rest = output.fileHandleForReading.readDataToEndOfFile()
        for line in String(decoding: rest, as: UTF8.self).split(separator: "\n") { say("[daemon] \(line)") }
    }
}

/// A line on standard output, flushed.
func say(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}

extension Precision: ExpressibleByArgument {}
