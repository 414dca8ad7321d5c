import FabricQueue
import SystemPackage

/// What one command's input tensor is: the element types a model takes
/// (preferred first) and the shape of one command's tensor, outermost
/// dimension first (a batch is several commands).
public struct TensorSpecification: Sendable, Codable, Equatable, CustomStringConvertible {
    /// The element types accepted, preferred first.
    public var elementTypes: [TensorElementType]
    /// One command's dimensions, outermost first (1 to 4 of them).
    public var shape: [Int]

    /// A specification.
    public init(elementTypes: [TensorElementType], shape: [Int]) {
        self.elementTypes = elementTypes
        self.shape = shape
    }

    /// Elements in one command's tensor (0 when the shape is empty or any
    /// dimension is not positive; saturating).
    public var elementCount: Int {
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else { return 0 }
        var count = 1
        for dimension in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            if overflow { return .max }
            count = product
        }
        return count
    }

    /// Bytes of one command's tensor in `type` (saturating).
    public func byteCount(as type: TensorElementType) -> Int {
        let (bytes, overflow) = elementCount.multipliedReportingOverflow(by: type.byteWidth)
        return overflow ? .max : bytes
    }

    private enum CodingKeys: String, CodingKey { case elementTypes, shape }

    /// Decodes a specification a daemon sent, strictly: 1 to 4 dimensions,
    /// each 1…2³²−1. Element types this build does not know are left out (a
    /// newer daemon's list still decodes).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        elementTypes = try container.decode([String].self, forKey: .elementTypes).compactMap(TensorElementType.init(name:))
        shape = try container.decode([Int].self, forKey: .shape)
        guard (1...TensorHeader.maximumRank).contains(shape.count), shape.allSatisfy({ $0 >= 1 && $0 <= Int(UInt32.max) })
        else {
            throw DecodingError.dataCorruptedError(
                forKey: .shape, in: container, debugDescription: "shape \(shape) does not fit the ABI")
        }
    }

    /// Encodes the element types by name and the shape.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(elementTypes.map(\.name), forKey: .elementTypes)
        try container.encode(shape, forKey: .shape)
    }

    /// `f32|f16 [3×224×224]`.
    public var description: String { TensorText.describe(elementTypes.map(\.name), shape) }
}

/// One model a daemon serves, as a controller discovers it
/// (``ModelDescription/fetch(from:timeout:)``, `fabricq models`).
public struct ModelDescription: Sendable, Codable, Equatable {
    /// The id commands address.
    public var id: UInt32
    /// The model's name (the engine's, or the handler's type).
    public var name: String
    /// What one command's input is; nil when the model does not say.
    public var input: TensorSpecification?
    /// The output capacity a command must carry (smaller is refused).
    public var outputBytes: UInt32
    /// The largest batch one handler call takes.
    public var maximumBatchSize: Int
    /// Batch sizes the batcher prefers (empty: any).
    public var preferredBatchSizes: [Int]
    /// How long the batcher may hold a command to fill a batch, in microseconds.
    public var maximumQueueDelayMicroseconds: Int
    /// The model's instances and how they run (`threads` or `pollThread`).
    public var instances: Int
    /// `threads` or `pollThread`.
    public var execution: String
    /// Priority levels (a command's priority is clamped to `0..<priorityLevels`).
    public var priorityLevels: Int
    /// Commands the model's queue holds before it refuses with `modelQueueFull`.
    public var queueCapacity: Int

    /// A description.
    public init(
        id: UInt32, name: String, input: TensorSpecification?, outputBytes: UInt32, maximumBatchSize: Int,
        preferredBatchSizes: [Int], maximumQueueDelayMicroseconds: Int, instances: Int, execution: String,
        priorityLevels: Int, queueCapacity: Int
    ) {
        self.id = id
        self.name = name
        self.input = input
        self.outputBytes = outputBytes
        self.maximumBatchSize = maximumBatchSize
        self.preferredBatchSizes = preferredBatchSizes
        self.maximumQueueDelayMicroseconds = maximumQueueDelayMicroseconds
        self.instances = instances
        self.execution = execution
        self.priorityLevels = priorityLevels
        self.queueCapacity = queueCapacity
    }

    /// A daemon's models as JSON (what a ``SessionHandshake/Purpose/models``
    /// query answers), by id.
    public static func encode(_ models: [ModelDescription]) -> [UInt8] {
        QueryPayload.encode(models.sorted { $0.id < $1.id }, fallback: "[]")
    }

    /// Models from their JSON.
    ///
    /// - Throws: ``SessionError/malformed(_:)`` when the bytes are not that.
    public static func decode(_ json: [UInt8]) throws(SessionError) -> [ModelDescription] {
        try QueryPayload.decode(json, as: [ModelDescription].self, what: "model list")
    }

    /// Asks the daemon listening at `socketPath` which models it serves (a
    /// ``SessionHandshake/Purpose/models`` query on its control socket: the
    /// same credential check as a session, no session opened), all within
    /// `timeout`.
    ///
    /// - Throws: ``SessionError/daemonUnreachable(path:_:)`` when nothing
    ///   listens there, ``SessionError/socket(_:)`` with
    ///   ``SocketError/timedOut`` when it does not answer in time, or the
    ///   daemon's refusal.
    public static func fetch(
        from socketPath: FilePath, timeout: Duration = .seconds(2)
    ) throws(SessionError)
        -> [ModelDescription]
    {
        try decode(UnixSocket.query(.models, at: socketPath, timeout: timeout))
    }
}
