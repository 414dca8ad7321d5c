/// The ResNet variants the builder knows.
public enum ResNetArchitecture: String, CaseIterable, Sendable {
    /// Basic blocks [2, 2, 2, 2].
    case resnet18
    /// Bottleneck blocks [3, 4, 6, 3] (stride on the 3×3, as torchvision's v1.5).
    case resnet50

    var blocks: [Int] { self == .resnet18 ? [2, 2, 2, 2] : [3, 4, 6, 3] }
    var bottleneck: Bool { self == .resnet50 }
}

/// Builds ResNet engines with deterministic seeded weights: **untrained**,
/// so their classes mean nothing; they exist to measure and verify the data
/// path. The rules, so any language can reproduce the file's tensors:
///
/// One ``SplitMix64`` stream seeded with `seed`; `u` below is its next
/// ``SplitMix64/nextUnit()``. For each convolution in layer order: its raw
/// weight, (Cout, Cin, kh, kw) row-major, each `(2u − 1)·√(6 / (Cin·kh·kw))`;
/// then batch norm γ, β, μ, σ² (Cout values each, in that order):
/// `γ = (0.5 + 0.5u)·s` with `s = 0.25` for the last convolution of a residual
/// branch and 1 otherwise, `β = 0.2u − 0.1`, `μ = 0.2u − 0.1`, `σ² = 0.5 + u`.
/// Folded in double precision with ε = 1e-5: `w' = w·γ/√(σ²+ε)`,
/// `b' = β − μ·γ/√(σ²+ε)`, stored as float32. Then the classifier: weight
/// (classes, C) each `(2u − 1)·√(3 / C)`, bias each `0.02u − 0.01`.
public struct ResNetBuilder {
    /// ResNet-18 or ResNet-50.
    public let architecture: ResNetArchitecture
    /// The splitmix64 seed.
    public let seed: UInt64
    /// Classifier outputs.
    public let classCount: Int
    /// 64 for the real networks; tests use narrower ones.
    public let baseWidth: Int
    /// Input geometry and normalization.
    public let input: InputSpecification

    /// A builder; the defaults give the engines `resnet-engine defaults` writes.
    public init(
        architecture: ResNetArchitecture, seed: UInt64 = 0x5EED_F00D, classCount: Int = 1000,
        baseWidth: Int = 64, input: InputSpecification = .imageNet
    ) {
        self.architecture = architecture
        self.seed = seed
        self.classCount = classCount
        self.baseWidth = baseWidth
        self.input = input
    }

    /// The manifest (its tensor table filled in when written) and the tensors.
    public func build() -> (manifest: EngineManifest, tensors: [NamedTensor]) {
        var g = SeededGraph(seed: seed)
        var x = g.convolution(
            "conv1", input: "input", inChannels: input.channels, outChannels: baseWidth,
            kernel: 7, stride: 2, padding: 3, activation: .relu)
        g.layers.append(
            LayerSpecification(
                op: .maxPool, input: x, output: "pool1", kernel: 3, stride: 2,
                padding: [1, 1, 1, 1]))
        x = "pool1"
        var channels = baseWidth
        let expansion = architecture.bottleneck ? 4 : 1
        for (stage, count) in architecture.blocks.enumerated() {
            let width = baseWidth << stage
            for block in 0..<count {
                let name = "layer\(stage + 1).\(block)"
                let stride = (stage > 0 && block == 0) ? 2 : 1
                let outChannels = width * expansion
                var shortcut = x
                if stride != 1 || channels != outChannels {
                    shortcut = g.convolution(
                        "\(name).downsample", input: x, inChannels: channels,
                        outChannels: outChannels, kernel: 1, stride: stride, padding: 0,
                        activation: .none)
                }
                if architecture.bottleneck {
                    let a = g.convolution(
                        "\(name).conv1", input: x, inChannels: channels, outChannels: width,
                        kernel: 1, stride: 1, padding: 0, activation: .relu)
                    let b = g.convolution(
                        "\(name).conv2", input: a, inChannels: width, outChannels: width,
                        kernel: 3, stride: stride, padding: 1, activation: .relu)
                    x = g.convolution(
                        "\(name).conv3", input: b, inChannels: width, outChannels: outChannels,
                        kernel: 1, stride: 1, padding: 0, activation: .relu, residual: shortcut)
                } else {
                    let a = g.convolution(
                        "\(name).conv1", input: x, inChannels: channels, outChannels: width,
                        kernel: 3, stride: stride, padding: 1, activation: .relu)
                    x = g.convolution(
                        "\(name).conv2", input: a, inChannels: width, outChannels: outChannels,
                        kernel: 3, stride: 1, padding: 1, activation: .relu, residual: shortcut)
                }
                channels = outChannels
            }
        }
        g.layers.append(LayerSpecification(op: .globalAveragePool, input: x, output: "pooled"))
        g.linear("fc", input: "pooled", inFeatures: channels, outFeatures: classCount)
        let name =
            baseWidth == 64 && classCount == 1000
            ? "\(architecture.rawValue)-seeded"
            : "\(architecture.rawValue)-w\(baseWidth)-c\(classCount)-seeded"
        let manifest = EngineManifest(
            name: name, architecture: architecture.rawValue, weights: .seededUntrained, seed: seed,
            description: "Deterministic splitmix64 weights (seed \(seed)), batch norm folded. UNTRAINED: the "
                + "predicted classes carry no meaning; this engine exists to measure and verify the data path.",
            input: input, classCount: classCount, labels: nil, tensors: [], layers: g.layers, output: "logits")
        return (manifest, g.tensors)
    }
}

/// Layers and seeded tensors, in the generator's order.
struct SeededGraph {
    var random: SplitMix64
    var layers: [LayerSpecification] = []
    var tensors: [NamedTensor] = []

    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    mutating func convolution(
        _ name: String, input: String, inChannels: Int, outChannels: Int, kernel: Int,
        stride: Int, padding: Int, activation: LayerSpecification.Activation,
        residual: String? = nil
    ) -> String {
        let fanIn = inChannels * kernel * kernel
        let bound = (6.0 / Double(fanIn)).squareRoot()
        var weight = (0..<(outChannels * fanIn)).map { _ in (2 * random.nextUnit() - 1) * bound }
        let scale = residual == nil ? 1.0 : 0.25
        let gamma = (0..<outChannels).map { _ in (0.5 + 0.5 * random.nextUnit()) * scale }
        let beta = (0..<outChannels).map { _ in 0.2 * random.nextUnit() - 0.1 }
        let mean = (0..<outChannels).map { _ in 0.2 * random.nextUnit() - 0.1 }
        let variance = (0..<outChannels).map { _ in 0.5 + random.nextUnit() }
        var bias = [Double](repeating: 0, count: outChannels)
        for o in 0..<outChannels {
            let k = gamma[o] / (variance[o] + 1e-5).squareRoot()
            for i in 0..<fanIn { weight[o * fanIn + i] *= k }
            bias[o] = beta[o] - mean[o] * k
        }
        tensors.append(
            NamedTensor(
                name: "\(name).weight", shape: [outChannels, inChannels, kernel, kernel],
                values: weight.map { Float($0) }))
        tensors.append(NamedTensor(name: "\(name).bias", shape: [outChannels], values: bias.map { Float($0) }))
        layers.append(
            LayerSpecification(
                op: .convolution, input: input, output: name, weight: "\(name).weight", bias: "\(name).bias",
                stride: stride, padding: [padding, padding, padding, padding], groups: 1, activation: activation,
                residual: residual))
        return name
    }

    mutating func linear(_ name: String, input: String, inFeatures: Int, outFeatures: Int) {
        let bound = (3.0 / Double(inFeatures)).squareRoot()
        let weight = (0..<(outFeatures * inFeatures)).map { _ in Float((2 * random.nextUnit() - 1) * bound) }
        let bias = (0..<outFeatures).map { _ in Float(0.02 * random.nextUnit() - 0.01) }
        tensors.append(NamedTensor(name: "\(name).weight", shape: [outFeatures, inFeatures], values: weight))
        tensors.append(NamedTensor(name: "\(name).bias", shape: [outFeatures], values: bias))
        layers.append(
            LayerSpecification(
                op: .linear, input: input, output: "logits", weight: "\(name).weight",
                bias: "\(name).bias"))
    }
}
