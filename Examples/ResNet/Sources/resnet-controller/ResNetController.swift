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
            The controller asks the daemon what --model takes (a models query: input element type and \
            shape, output size) and preprocesses to that. --engine names the engine file the daemon serves as \
            --model, for its normalization and labels (checked against --public-key when given, and against \
            what the daemon says); without it the input is normalized as for ImageNet and the classes are \
            unlabelled.
            """)

    @Option(help: "The daemon's socket, or ucx://HOST:PORT for a remote daemon (with --key).")
    var socket = "/tmp/resnet-daemon.sock"
    @Option(help: "For a ucx:// daemon: this controller's private key (fabricq keygen NAME writes NAME.key).")
    var key: String?
    @Option(help: "Model id at the daemon.") var model: UInt32 = 1
    @Option(help: "Engine file of that model (input geometry, labels).") var engine: String?
    @Option(help: "Public key the engine file must be signed with.") var publicKey: String?
    @Option(help: "Images per micro-batch, 1...8.") var batch = 1
    @Option(help: "Element type images travel as: fp32, fp16 or int8 (per-tensor scaled).") var precision: Precision = .fp32
    @Option(help: "Micro-batches in flight.") var inFlight = 1
    @Option(help: "Images to submit (cycling through the files); default: each file once.") var count: Int?
    @Option(help: "Also write the report as JSON to this file.") var json: String?
    @Argument(help: "JPEG or PNG files.") var images: [String]

    func run() throws {
        var options = ControllerOptions()
        options.wait = .adaptive(spinFor: .microseconds(50))
        let endpoint = try DaemonEndpoint(socket, key: key.map { try RemoteSigningKey(contentsOf: FilePath($0)) })
        var session = try ControllerSession.connect(to: endpoint, options: options)
        // What the daemon says the model takes, instead of assuming.
        guard let served = try session.models().first(where: { $0.id == model }) else {
            throw ValidationError("the daemon at \(socket) serves no model \(model)")
        }
        guard let input = served.input, input.elementTypes.contains(precision.elementType), input.shape.count == 3,
            input.shape.allSatisfy({ $0 <= 16384 })
        else {
            throw ValidationError(
                "model \(model) (\(served.name)) does not take \(precision) images: \(served.input.map { "\($0)" } ?? "unstated")"
            )
        }
        var geometry = InputSpecification.imageNet
        (geometry.channels, geometry.height, geometry.width) = (input.shape[0], input.shape[1], input.shape[2])
        // As ImageNet's 256 for 224: the shorter side resized to 8/7 of the
        // crop's larger side (dimensions bounded above, so no overflow).
        geometry.resizeShorterSide = max(geometry.height, geometry.width) * 8 / 7
        let classes = max(0, (Int(served.outputBytes) - ClassificationRecord.byteCount(classCount: 0)) / 4)
        var info = ModelInfo(
            name: served.name, architecture: "unknown", weights: .seededUntrained, input: geometry,
            classCount: classes, labels: nil)
        if let engine {
            let verification: EngineFile.Verification =
                try publicKey.map { .trusting(try EnginePublicKey(contentsOf: $0)) }
                ?? .skipVerification
            info = ModelInfo(engine: try EngineFile(path: engine, verification: verification))
            guard info.input.channels == geometry.channels, info.input.height == geometry.height,
                info.input.width == geometry.width, info.classCount == classes
            else {
                throw ValidationError(
                    "\(engine) is \(info.input.channels)×\(info.input.height)×\(info.input.width), \(info.classCount) classes; "
                        + "model \(model) at the daemon is \(input), \(classes) classes")
            }
        }
        var progress = ProgressLine(label: info.name)
        let report = try ClassificationRun.run(
            RunConfiguration(
                modelID: model, images: images, imageCount: count, batchSize: batch, batchesInFlight: inFlight,
                precision: precision),
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

extension Precision: ExpressibleByArgument {}
