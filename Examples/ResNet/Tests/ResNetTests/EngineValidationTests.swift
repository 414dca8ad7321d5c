import Foundation
import InferenceEngine
import XCTest

/// Whatever bytes an engine file holds, opening it (without a signature, as
/// `resnet-engine inspect` and a controller's `--engine` do) and compiling a
/// network from it give a typed error or a valid network: never a crash.
final class EngineValidationTests: XCTestCase {
    func testMutatedHeadersAndManifestsGiveTypedErrors() throws {
        let dir = Support.temporaryDirectory()
        let path = try Support.seededEngine(.resnet18, width: 4, classes: 5, size: 32, in: dir, key: nil)
        let original = [UInt8](FileManager.default.contents(atPath: path)!)
        let manifestEnd = 64 + Int(original.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 24, as: UInt64.self) })
        var random = SplitMix64(seed: 2026)
        var outcomes = [String: Int]()
        let digits = Array("0123456789".utf8)
        for round in 0..<400 {
            var bytes = original
            for _ in 0..<(1 + Int(random.next() % 3)) {
                let target = Int(random.next() % UInt64(round % 4 == 0 ? 64 : manifestEnd))
                // Half the time swap in a digit, which keeps the JSON valid more often and changes numbers.
                bytes[target] =
                    random.next() % 2 == 0 && target >= 64
                    ? digits[Int(random.next() % 10)] : UInt8(truncatingIfNeeded: random.next())
            }
            if round % 10 == 9 { bytes.removeLast(Int(random.next() % UInt64(bytes.count))) }
            let mutated = dir + "/mutated.engine"
            _ = FileManager.default.createFile(atPath: mutated, contents: Data(bytes))
            do {
                let engine = try EngineFile(path: mutated, verification: .skipVerification)
                let network = try Network(engine: engine, maximumBatch: 2)
                // Whatever validated must also run: the checks are what keep the kernels in bounds.
                let image = [UInt8](repeating: 0, count: network.input.byteCount)
                var classes = 0
                image.withUnsafeBytes { x in network.infer(batch: 2, input: { _ in x }, output: { _, l in classes = l.count }) }
                XCTAssertEqual(classes, network.classCount)
                outcomes["accepted and ran", default: 0] += 1
            } catch {
                outcomes["\(error)".prefix(while: { $0 != ":" }).description, default: 0] += 1
            }
        }
        print("mutation outcomes: \(outcomes.sorted { $0.value > $1.value })")
        XCTAssertGreaterThan(outcomes.filter { $0.key != "accepted and ran" }.values.reduce(0, +), 200)
    }

    func testHostileLayerParametersAreRefused() throws {
        let dir = Support.temporaryDirectory()
        let base = ResNetBuilder(
            architecture: .resnet18, seed: 1, classCount: 3, baseWidth: 2,
            input: InputSpecification(
                channels: 3, height: 16, width: 16, resizeShorterSide: 18,
                mean: [0, 0, 0], std: [1, 1, 1])
        ).build()
        func refused(_ edit: (inout EngineManifest) -> Void) -> EngineError? {
            var manifest = base.manifest
            edit(&manifest)
            let path = dir + "/edited.engine"
            do {
                try EngineWriter.write(manifest: manifest, tensors: base.tensors, to: path, signingKey: nil)
                _ = try Network(engine: try EngineFile(path: path, verification: .skipVerification), maximumBatch: 1)
                return nil
            } catch { return error }
        }
        XCTAssertNil(refused { _ in })
        XCTAssertNotNil(refused { $0.layers[0].stride = 0 })
        XCTAssertNotNil(refused { $0.layers[0].padding = [9, 9, 9, 9] })  // padding ≥ kernel
        XCTAssertNotNil(refused { $0.layers[0].padding = [1, 1] })
        XCTAssertNotNil(refused { $0.layers[1].kernel = 99 })
        XCTAssertNotNil(refused { $0.layers[2].input = "nowhere" })
        XCTAssertNotNil(refused { $0.layers[2].residual = "conv1" })  // wrong shape
        XCTAssertNotNil(refused { $0.layers[2].output = "conv1" })  // made twice
        XCTAssertNotNil(refused { $0.layers[0].groups = 2 })
        XCTAssertNotNil(refused { $0.layers[0].weight = "fc.weight" })  // wrong shape
        XCTAssertNotNil(refused { $0.output = "pooled" })
        XCTAssertNotNil(refused { $0.classCount = 4 })
        XCTAssertNotNil(refused { $0.labels = ["a", "b"] })
        XCTAssertNotNil(refused { $0.input.std = [1, 0, 1] })
        XCTAssertNotNil(refused { $0.input.height = 1_000_000 })
        XCTAssertNotNil(
            refused { m in
                m.layers[1].residual = "conv1"
                m.layers[1].activation = .relu
            })  // pool with residual
    }
}
