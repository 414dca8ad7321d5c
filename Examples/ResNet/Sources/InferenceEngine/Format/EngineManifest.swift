/// The JSON manifest of an engine file: what the network is, how to feed it,
/// where each tensor lies, and the layers in execution order.
public struct EngineManifest: Codable, Equatable, Sendable {
    /// Always `"fabricqueue-engine"`.
    public var format: String = "fabricqueue-engine"
    /// Always 1 (the header carries the binary version too).
    public var formatVersion: Int = 1
    /// A short name, for reports (`resnet18-seeded`).
    public var name: String
    /// `resnet18`, `resnet50`, `efficientnet-lite0`, ….
    public var architecture: String
    /// Where the weights came from.
    public var weights: WeightsOrigin
    /// The splitmix64 seed of seeded weights.
    public var seed: UInt64?
    /// Free text: provenance, licence, the generator's rules.
    public var description: String
    /// What the network expects as input.
    public var input: InputSpecification
    /// Number of output classes (logits).
    public var classCount: Int
    /// Class names, `classCount` of them, when the weights carry meaning.
    public var labels: [String]?
    /// The tensor table.
    public var tensors: [TensorEntry]
    /// Layers in execution order.
    public var layers: [LayerSpecification]
    /// The value holding the logits, shape (classCount, 1, 1).
    public var output: String

    /// A manifest; ``EngineWriter`` fills in `tensors`.
    public init(
        name: String, architecture: String, weights: WeightsOrigin, seed: UInt64?, description: String,
        input: InputSpecification, classCount: Int, labels: [String]?, tensors: [TensorEntry],
        layers: [LayerSpecification], output: String
    ) {
        self.name = name
        self.architecture = architecture
        self.weights = weights
        self.seed = seed
        self.description = description
        self.input = input
        self.classCount = classCount
        self.labels = labels
        self.tensors = tensors
        self.layers = layers
        self.output = output
    }
}

/// Where an engine's weights came from.
public enum WeightsOrigin: String, Codable, Sendable {
    /// Deterministic splitmix64 weights: untrained, their classes mean nothing.
    case seededUntrained = "seeded-untrained"
    /// Trained weights imported from elsewhere.
    case pretrained
}

/// The input a network expects and how images are prepared for it.
public struct InputSpecification: Codable, Equatable, Sendable {
    /// Channels (3, RGB).
    public var channels: Int
    /// Height after the centre crop.
    public var height: Int
    /// Width after the centre crop.
    public var width: Int
    /// Shorter side after resizing, before the crop (256 for 224 crops).
    public var resizeShorterSide: Int
    /// Per-channel mean of pixels scaled to [0, 1].
    public var mean: [Float]
    /// Per-channel standard deviation of pixels scaled to [0, 1].
    public var std: [Float]

    /// ImageNet's 224×224 crop of a 256 resize with its mean and std.
    public static let imageNet = InputSpecification(
        channels: 3, height: 224, width: 224, resizeShorterSide: 256,
        mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    /// An input specification.
    public init(channels: Int, height: Int, width: Int, resizeShorterSide: Int, mean: [Float], std: [Float]) {
        self.channels = channels
        self.height = height
        self.width = width
        self.resizeShorterSide = resizeShorterSide
        self.mean = mean
        self.std = std
    }

    /// Bytes of one image as float32 CHW.
    public var byteCount: Int { channels * height * width * MemoryLayout<Float>.size }
}

/// One tensor: little-endian float32, row-major, at `offset` bytes from the
/// start of the tensor section (a multiple of 64).
public struct TensorEntry: Codable, Equatable, Sendable {
    /// The tensor's name, unique in the file.
    public var name: String
    /// Dimensions, outermost first.
    public var shape: [Int]
    /// Bytes from the start of the tensor section (a multiple of 64).
    public var offset: Int

    /// A tensor table entry.
    public init(name: String, shape: [Int], offset: Int) {
        self.name = name
        self.shape = shape
        self.offset = offset
    }

    /// Number of elements, or nil when a dimension is not positive or the product overflows.
    public var elementCount: Int? {
        var n = 1
        for d in shape {
            guard d > 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            guard !o else { return nil }
            n = p
        }
        return n
    }
}

/// One layer. Values are named tensors of shape (channels, height, width)
/// per image; `input` names the network input.
public struct LayerSpecification: Codable, Equatable, Sendable {
    /// What a layer does.
    public enum Operation: String, Codable, Sendable {
        /// `output = activation(conv(input, weight) + bias [+ residual])`; weight
        /// (Cout, Cin/groups, kh, kw); groups is 1 or Cin (depthwise).
        case convolution
        /// Max over a kernel×kernel window; padding never wins.
        case maxPool
        /// Mean over height and width, to (C, 1, 1).
        case globalAveragePool
        /// `output = weight · input + bias` on a (C, 1, 1) input; weight (classes, C).
        case linear
    }

    /// The activation applied after the bias and the residual.
    public enum Activation: String, Codable, Sendable {
        case none, relu, relu6
    }

    /// What the layer computes.
    public var op: Operation
    /// The value it reads.
    public var input: String
    /// The value it makes (each value is made once).
    public var output: String
    /// The weight tensor's name.
    public var weight: String?
    /// The bias tensor's name.
    public var bias: String?
    /// Pooling window (convolutions take it from the weight's shape).
    public var kernel: Int?
    /// Step of the window (default 1).
    public var stride: Int?
    /// Top, left, bottom, right (asymmetric "same" padding is allowed).
    public var padding: [Int]?
    /// 1, or the channel count for a depthwise convolution.
    public var groups: Int?
    /// Applied last (default none).
    public var activation: Activation?
    /// A value of the output's shape added before the activation.
    public var residual: String?

    /// A layer; unused parameters stay nil.
    public init(
        op: Operation, input: String, output: String, weight: String? = nil, bias: String? = nil,
        kernel: Int? = nil, stride: Int? = nil, padding: [Int]? = nil, groups: Int? = nil,
        activation: Activation? = nil, residual: String? = nil
    ) {
        self.op = op
        self.input = input
        self.output = output
        self.weight = weight
        self.bias = bias
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.groups = groups
        self.activation = activation
        self.residual = residual
    }
}
