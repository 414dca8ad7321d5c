import InferenceEngine

/// What a controller knows about the model it submits to: how to prepare
/// images, how many classes come back, and their labels.
public struct ModelInfo: Sendable {
    /// The engine's name.
    public var name: String
    /// The engine's architecture.
    public var architecture: String
    /// Where the weights came from.
    public var weights: WeightsOrigin
    /// How to prepare images.
    public var input: InputSpecification
    /// Logits per image.
    public var classCount: Int
    /// Class names, when the engine carries them.
    public var labels: [String]?

    /// A model described by hand.
    public init(
        name: String, architecture: String, weights: WeightsOrigin, input: InputSpecification,
        classCount: Int, labels: [String]?
    ) {
        self.name = name
        self.architecture = architecture
        self.weights = weights
        self.input = input
        self.classCount = classCount
        self.labels = labels
    }

    /// From an engine file's manifest.
    public init(engine: EngineFile) {
        let m = engine.manifest
        self.init(
            name: m.name, architecture: m.architecture, weights: m.weights, input: m.input,
            classCount: m.classCount, labels: m.labels)
    }

    /// The label of class `index` ("class N" without labels).
    public func label(_ index: Int) -> String {
        if let labels, index >= 0, index < labels.count { return labels[index] }
        return "class \(index)"
    }
}
