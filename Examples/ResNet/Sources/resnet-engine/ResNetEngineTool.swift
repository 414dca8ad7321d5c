import ArgumentParser
import Foundation
import InferenceEngine

/// Builds, signs and inspects FabricQueue engine files.
@main
struct ResNetEngineTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnet-engine",
        abstract: "Build, sign and inspect engine files for resnet-daemon.",
        discussion: """
            Seeded engines carry deterministic splitmix64 weights: they are UNTRAINED, so the classes they \
            predict mean nothing; they exist to measure and verify the data path. Real ImageNet weights come \
            from scripts/import-pretrained (EfficientNet-Lite0).
            """,
        subcommands: [Defaults.self, Build.self, KeyGen.self, Sign.self, Inspect.self])
}

struct StoreOption: ParsableArguments {
    @Option(help: "Engine directory (default: $FABRICQUEUE_ENGINES or ~/.cache/fabricqueue/engines).")
    var engineDir: String?

    var store: EngineStore { EngineStore(directory: engineDir) }
}

extension ResNetEngineTool {
    struct Defaults: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the signing key and the seeded ResNet-18 and ResNet-50 engines if missing.")
        @OptionGroup var store: StoreOption

        func run() throws {
            let store = store.store
            for architecture in ResNetArchitecture.allCases {
                let start = Date()
                let (engine, built) = try store.ensureSeeded(architecture)
                let path = engine.path
                print(
                    built
                        ? "built \(path) in \(String(format: "%.1f", Date().timeIntervalSince(start))) s (seeded, untrained)"
                        : "kept \(path) (valid, signed by \(store.publicKeyPath))")
            }
            print("public key: \(store.publicKeyPath)")
        }
    }

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Build one seeded ResNet engine.")
        @Option(help: "resnet18 or resnet50.") var architecture: String = "resnet18"
        @Option(help: "splitmix64 seed.") var seed: UInt64 = 0x5EED_F00D
        @Option(help: "Width of the first stage (64 for the real network).") var width: Int = 64
        @Option(help: "Output classes.") var classes: Int = 1000
        @Option(help: "Input height and width.") var inputSize: Int = 224
        @Option(help: "Signing key (omit with --unsigned).") var key: String?
        @Flag(help: "Write without a signature (the daemon refuses such files).") var unsigned = false
        @Option(help: "Output file.") var out: String

        func run() throws {
            guard let arch = ResNetArchitecture(rawValue: architecture) else {
                throw ValidationError("unknown architecture \(architecture) (resnet18, resnet50)")
            }
            guard unsigned || key != nil else { throw ValidationError("give --key, or --unsigned") }
            var input = InputSpecification.imageNet
            input.height = inputSize
            input.width = inputSize
            input.resizeShorterSide = max(inputSize, inputSize * 8 / 7)
            let (manifest, tensors) = ResNetBuilder(
                architecture: arch, seed: seed, classCount: classes,
                baseWidth: width, input: input
            ).build()
            try EngineWriter.write(
                manifest: manifest, tensors: tensors, to: out,
                signingKey: unsigned ? nil : try EngineSigningKey(contentsOf: key!))
            print(
                "wrote \(out): \(manifest.name), \(tensors.reduce(0) { $0 + $1.values.count }) parameters, "
                    + (unsigned ? "unsigned" : "signed") + "; seeded weights are untrained")
        }
    }

    struct KeyGen: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "keygen", abstract: "Create an Ed25519 signing key.")
        @Option(help: "Private key path (the public key goes to PATH.pub).") var out: String

        func run() throws {
            let key = EngineSigningKey()
            try key.write(to: out)
            print("wrote \(out) and \(out).pub (fingerprint \(key.publicKey.fingerprint))")
        }
    }

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sign (or re-sign) an engine file in place.")
        @Option(help: "Private key.") var key: String
        @Argument(help: "Engine file.") var file: String

        func run() throws {
            let key = try EngineSigningKey(contentsOf: key)
            try EngineWriter.sign(path: file, with: key)
            print("signed \(file) with key \(key.publicKey.fingerprint)")
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print an engine's manifest summary and check its signature.")
        @Option(help: "Trusted public key (.pub); without it the signature is not checked.") var publicKey: String?
        @Argument(help: "Engine file.") var file: String

        func run() throws {
            let engine: EngineFile
            if let publicKey {
                engine = try EngineFile(path: file, verification: .trusting(try EnginePublicKey(contentsOf: publicKey)))
            } else {
                engine = try EngineFile(path: file, verification: .skipVerification)
            }
            let m = engine.manifest
            let network = try Network(engine: engine, maximumBatch: 1)
            print(
                """
                \(file)
                  name: \(m.name)  architecture: \(m.architecture)  weights: \(m.weights.rawValue)\(m.seed.map { "  seed: \($0)" } ?? "")
                  input: \(m.input.channels)×\(m.input.height)×\(m.input.width), resize \(m.input.resizeShorterSide), mean \(m.input.mean), std \(m.input.std)
                  classes: \(m.classCount)\(m.labels == nil ? " (no labels)" : " (labelled)")  layers: \(m.layers.count)  tensors: \(m.tensors.count)
                  parameters: \(m.tensors.reduce(0) { $0 + ($1.elementCount ?? 0) })  scratch at batch 1: \(network.scratchFloatCount * 4 / 1_048_576) MiB
                  signature: \(publicKey == nil ? (engine.signer.map { "present (key \($0.fingerprint)), not verified" } ?? "none") : "valid (key \(engine.signer?.fingerprint ?? "?"))")
                  \(m.description)
                """)
        }
    }
}
