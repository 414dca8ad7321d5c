import ArgumentParser
import FabricProducer
import Foundation
import ImagePipeline
import InferenceEngine
import SystemPackage

/// The controller: decodes and preprocesses images into FabricQueue buffer
/// slots, submits them to resnet-daemon in micro-batches, and reports top-5
/// and per-stage latency.
@main
struct ResNetController: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnet-controller",
        abstract: "Classify JPEG/PNG images through a running resnet-daemon and time every stage.",
        discussion: """
            --engine names the engine file the daemon serves as --model, for its input size, normalization and \
            labels (checked against --public-key when given); without it the controller assumes ImageNet's \
            224×224 input and 1000 unlabelled classes.
            """)

    @Option(help: "The daemon's socket.") var socket = "/tmp/resnet-daemon.sock"
    @Option(help: "Model id at the daemon.") var model: UInt32 = 1
    @Option(help: "Engine file of that model (input geometry, labels).") var engine: String?
    @Option(help: "Public key the engine file must be signed with.") var publicKey: String?
    @Option(help: "Images per micro-batch, 1...8.") var batch = 1
    @Option(help: "Micro-batches in flight.") var inFlight = 1
    @Option(help: "Images to submit (cycling through the files); default: each file once.") var count: Int?
    @Option(help: "Also write the report as JSON to this file.") var json: String?
    @Argument(help: "JPEG or PNG files.") var images: [String]

    func run() throws {
        var info = ModelInfo(
            name: "model \(model)", architecture: "unknown", weights: .seededUntrained,
            input: .imageNet, classCount: 1000, labels: nil)
        if let engine {
            let verification: EngineFile.Verification =
                try publicKey.map { .trusting(try EnginePublicKey(contentsOf: $0)) }
                ?? .skipVerification
            info = ModelInfo(engine: try EngineFile(path: engine, verification: verification))
        }
        var options = ControllerOptions()
        options.wait = .adaptive(spinFor: .microseconds(50))
        var session = try ControllerSession.connect(to: FilePath(socket), options: options)
        var progress = ProgressLine(label: info.name)
        let report = try ClassificationRun.run(
            RunConfiguration(modelID: model, images: images, imageCount: count, batchSize: batch, batchesInFlight: inFlight),
            model: info, session: &session, progress: { progress.update($0, $1) })
        print(formatPredictions(report.results))
        print(report.table)
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode([report]).write(to: URL(fileURLWithPath: json))
        }
        if report.failures > 0 { throw ExitCode(1) }
    }
}
