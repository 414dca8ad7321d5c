import Foundation
import ImagePipeline
import InferenceEngine
import XCTest

/// The imported EfficientNet-Lite0 (real ImageNet weights, scripts/import-pretrained):
/// the Swift runtime matches numpy on it, and it recognises the bundled photos.
/// Skipped, saying so, where it has not been imported (offline machines);
/// scripts/test imports it first.
final class PretrainedEngineTests: XCTestCase {
    func engine() throws -> EngineFile {
        let store = EngineStore()
        guard FileManager.default.fileExists(atPath: store.pretrainedPath) else {
            throw XCTSkip("no pretrained engine at \(store.pretrainedPath): run scripts/import-pretrained")
        }
        return try EngineFile(
            path: store.pretrainedPath, verification: .trusting(try EnginePublicKey(contentsOf: store.publicKeyPath)))
    }

    func testPretrainedEngineMatchesNumpy() throws {
        let path = try engine().path
        try assertMatchesNumpy(engine: path, batch: 2)
    }

    func testPretrainedEngineRecognisesThePhotos() throws {
        let engine = try engine()
        XCTAssertEqual(engine.manifest.weights, .pretrained)
        let network = try Network(engine: engine, maximumBatch: 3)
        let preprocessor = Preprocessor(specification: engine.manifest.input)
        let names = ["chelsea.png", "coffee.jpg", "rocket.jpg"]
        let buffers = try names.map { name -> UnsafeMutableRawBufferPointer in
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: engine.manifest.input.byteCount, alignment: 64)
            _ = preprocessor.write(try ImageDecoder.decode(contentsOf: Support.sampleImages + "/" + name), into: b)
            return b
        }
        defer { buffers.forEach { $0.deallocate() } }
        var top1 = [String](), confidence = [Float]()
        let probabilities = UnsafeMutableBufferPointer<Float>.allocate(capacity: network.classCount)
        defer { probabilities.deallocate() }
        network.infer(
            batch: 3, input: { UnsafeRawBufferPointer(buffers[$0]) },
            output: { _, logits in
                Classification.softmax(logits, into: probabilities)
                let best = Classification.top(1, of: UnsafeBufferPointer(probabilities))[0]
                top1.append(engine.manifest.labels?[best.index] ?? "?")
                confidence.append(best.probability)
            })
        XCTAssertEqual(top1[1], "espresso")
        XCTAssertGreaterThan(confidence[1], 0.9)
        XCTAssertTrue(["tabby cat", "Egyptian Mau", "tiger cat", "a cat having a striped coat"].contains(top1[0]), top1[0])
        XCTAssertTrue(["missile", "space shuttle", "projectile"].contains(top1[2]), top1[2])
        print("pretrained top-1: \(zip(top1, confidence).map { "\($0) \($1)" })")
    }
}
