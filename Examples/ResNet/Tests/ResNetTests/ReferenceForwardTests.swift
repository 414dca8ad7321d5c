import Foundation
import InferenceEngine
import XCTest

/// The Swift forward pass (im2col + OpenBLAS, float32) against an
/// independent numpy one (`Tools/fabric_engine.py`: a sum over kernel taps in
/// float64) on the same engine file and input tensor: logits must agree
/// within 1e-3 relative (max |swift − numpy| / max |numpy|).
final class ReferenceForwardTests: XCTestCase {
    func testResNet18MatchesNumpyAtBatch3() throws {
        let dir = Support.temporaryDirectory()
        let path = try Support.seededEngine(.resnet18, width: 64, classes: 1000, size: 224, in: dir, key: nil)
        try assertMatchesNumpy(engine: path, batch: 3)
    }

    func testResNet50MatchesNumpyAtBatch2() throws {
        // The real ResNet-50 graph (bottlenecks, strided 3×3, projection shortcuts) at a quarter width.
        let dir = Support.temporaryDirectory()
        let path = try Support.seededEngine(.resnet50, width: 16, classes: 100, size: 160, in: dir, key: nil)
        try assertMatchesNumpy(engine: path, batch: 2)
    }

    func testDepthwiseReLU6SamePaddingNetworkMatchesNumpy() throws {
        // An MBConv-shaped network (what the pretrained EfficientNet-Lite0 uses): expand 1×1, depthwise 5×5
        // stride 2 with asymmetric "same" padding, ReLU6, project 1×1 with a residual, then a head.
        var r = SplitMix64(seed: 9)
        func t(_ name: String, _ shape: [Int]) -> NamedTensor {
            NamedTensor(name: name, shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float(r.nextUnit() - 0.5) })
        }
        var input = InputSpecification.imageNet
        input.height = 33
        input.width = 33
        input.resizeShorterSide = 40
        let tensors = [
            t("stem.w", [8, 3, 3, 3]), t("stem.b", [8]), t("exp.w", [24, 8, 1, 1]), t("exp.b", [24]),
            t("dw.w", [24, 1, 5, 5]), t("dw.b", [24]), t("proj.w", [8, 24, 1, 1]), t("proj.b", [8]),
            t("dw2.w", [8, 1, 3, 3]), t("dw2.b", [8]), t("fc.w", [5, 8]), t("fc.b", [5]),
        ]
        let layers = [
            LayerSpecification(
                op: .convolution, input: "input", output: "stem", weight: "stem.w", bias: "stem.b", stride: 2,
                padding: [0, 0, 1, 1], groups: 1, activation: .relu6),
            LayerSpecification(
                op: .convolution, input: "stem", output: "exp", weight: "exp.w", bias: "exp.b", activation: .relu6),
            LayerSpecification(
                op: .convolution, input: "exp", output: "dw", weight: "dw.w", bias: "dw.b", stride: 2,
                padding: [1, 1, 2, 2], groups: 24, activation: .relu6),
            LayerSpecification(op: .convolution, input: "dw", output: "proj", weight: "proj.w", bias: "proj.b"),
            LayerSpecification(
                op: .convolution, input: "proj", output: "dw2", weight: "dw2.w", bias: "dw2.b", stride: 1,
                padding: [1, 1, 1, 1], groups: 8, activation: LayerSpecification.Activation.none, residual: "proj"),
            LayerSpecification(op: .maxPool, input: "dw2", output: "mp", kernel: 3, stride: 2, padding: [1, 1, 1, 1]),
            LayerSpecification(op: .globalAveragePool, input: "mp", output: "gap"),
            LayerSpecification(op: .linear, input: "gap", output: "logits", weight: "fc.w", bias: "fc.b"),
        ]
        let manifest = EngineManifest(
            name: "mbconv-test", architecture: "test", weights: .seededUntrained, seed: 9,
            description: "test", input: input, classCount: 5, labels: nil, tensors: [],
            layers: layers, output: "logits")
        let path = Support.temporaryDirectory() + "/mbconv.engine"
        try EngineWriter.write(manifest: manifest, tensors: tensors, to: path, signingKey: nil)
        try assertMatchesNumpy(engine: path, batch: 4)
    }

    func testSeededWeightsAreReproducibleFromTheDocumentedRules() throws {
        let dir = Support.temporaryDirectory()
        let path = try Support.seededEngine(.resnet18, in: dir, key: nil)
        let r = try Support.run("/usr/bin/env", ["python3", Support.tools + "/reference_forward.py", "--check-seeded", path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("match bit for bit"), r.stdout)
        // And the Swift writer is deterministic: the same seed gives the same bytes.
        let again = try Support.seededEngine(.resnet18, in: Support.temporaryDirectory("again"), key: nil)
        XCTAssertEqual(FileManager.default.contents(atPath: path), FileManager.default.contents(atPath: again))
    }
}
