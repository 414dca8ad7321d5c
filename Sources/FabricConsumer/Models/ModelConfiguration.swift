import FabricSystem

/// A model the daemon serves: its handler and how it is scheduled.
public struct ServedModel: Sendable {
    /// Runs the model's batches.
    public var handler: any BatchHandler
    /// Instances, placement, batching and queueing.
    public var configuration: ModelConfiguration

    /// A model served by `handler` under `configuration`.
    public init(handler: any BatchHandler, configuration: ModelConfiguration = ModelConfiguration()) {
        self.handler = handler
        self.configuration = configuration
    }
}

/// How the daemon schedules one model, like an instance group and dynamic
/// batcher in an inference server: each model has its own queue, batcher and
/// execution instances, so a slow model never delays a fast one.
///
/// ```swift
/// var resnet = ModelConfiguration(instances: 2)
/// resnet.batching = DynamicBatching(maximumBatchSize: 8, preferredBatchSizes: [4, 8],
///                                   maximumQueueDelay: .microseconds(500))
/// let daemon = FabricDaemon(configuration: config, models: [1: ServedModel(handler: engine, configuration: resnet)])
/// ```
public struct ModelConfiguration: Sendable, Equatable {
    /// How many batches of this model may be in flight at once (1...64).
    /// With ``ModelExecution/threads`` each instance is a thread; with
    /// ``ModelExecution/pollThread`` each is a slot a deferred handler
    /// completes from elsewhere (a GPU stream, say).
    public var instances: Int { didSet { instances = Self.clamp(instances, 1, 64) } }
    /// Where ``BatchHandler/start(_:)`` runs.
    public var execution: ModelExecution
    /// Where the instance threads run (nil: wherever the scheduler puts them).
    public var placement: ThreadPlacement?
    /// How commands are gathered into batches.
    public var batching: DynamicBatching
    /// Commands that may wait for an instance, all priorities together
    /// (1...65536). A command that finds the queue full completes at once with
    /// `CompletionStatus.modelQueueFull`.
    public var queueCapacity: Int { didSet { queueCapacity = Self.clamp(queueCapacity, 1, 65536) } }
    /// Priority levels (1...16): a descriptor's `priority` is clamped to
    /// `0..<priorityLevels`, and a higher level is always dispatched first.
    public var priorityLevels: Int { didSet { priorityLevels = Self.clamp(priorityLevels, 1, 16) } }

    /// A configuration. Values out of their documented ranges are clamped,
    /// here and whenever a property is set.
    public init(
        instances: Int = 1, execution: ModelExecution = .threads, placement: ThreadPlacement? = nil,
        batching: DynamicBatching = DynamicBatching(), queueCapacity: Int = 1024, priorityLevels: Int = 2
    ) {
        self.instances = Self.clamp(instances, 1, 64)
        self.execution = execution
        self.placement = placement
        self.batching = batching
        self.queueCapacity = Self.clamp(queueCapacity, 1, 65536)
        self.priorityLevels = Self.clamp(priorityLevels, 1, 16)
    }

    static func clamp(_ value: Int, _ lowest: Int, _ highest: Int) -> Int { min(max(value, lowest), highest) }
}

/// Where a model's ``BatchHandler/start(_:)`` runs.
public enum ModelExecution: Sendable, Equatable {
    /// One thread per instance calls `start`; a synchronous ``CommandHandler``
    /// runs there to completion, so a slow one holds only its own instance.
    case threads
    /// The daemon's poll thread calls `start` as it forms the batch. Only for
    /// handlers that return at once: ones that hand the batch to other
    /// hardware or threads and complete it later (a GPU stream), or that are
    /// trivially cheap. A `start` that blocks here stalls every session.
    case pollThread
}

/// The daemon's batcher for one model: commands from every session are
/// queued per model and handed to a free instance in batches.
///
/// When an instance is free the batcher sends, in this order of preference:
/// `maximumBatchSize` commands if that many are queued; else the largest
/// preferred size that is queued; else everything queued once the oldest
/// command has waited `maximumQueueDelay` (at once when the delay is zero,
/// the default). Higher priorities go first; commands past their deadline
/// complete `expired` instead of running.
public struct DynamicBatching: Sendable, Equatable {
    /// The most commands in one batch (1...256).
    public var maximumBatchSize: Int {
        didSet {
            maximumBatchSize = ModelConfiguration.clamp(maximumBatchSize, 1, 256)
            preferredBatchSizes = Self.normalized(preferredBatchSizes, limit: maximumBatchSize)
        }
    }
    /// Batch sizes the model runs best at (each in 1...maximumBatchSize,
    /// kept sorted without repeats).
    public var preferredBatchSizes: [Int] {
        didSet { preferredBatchSizes = Self.normalized(preferredBatchSizes, limit: maximumBatchSize) }
    }
    /// How long the oldest queued command may wait for a fuller batch.
    public var maximumQueueDelay: Duration { didSet { maximumQueueDelay = max(maximumQueueDelay, .zero) } }

    /// A batcher. Sizes out of their ranges are clamped and a negative delay
    /// becomes zero, here and whenever a property is set.
    public init(maximumBatchSize: Int = 32, preferredBatchSizes: [Int] = [], maximumQueueDelay: Duration = .zero) {
        self.maximumBatchSize = ModelConfiguration.clamp(maximumBatchSize, 1, 256)
        self.preferredBatchSizes = Self.normalized(preferredBatchSizes, limit: self.maximumBatchSize)
        self.maximumQueueDelay = max(maximumQueueDelay, .zero)
    }

    private static func normalized(_ sizes: [Int], limit: Int) -> [Int] {
        Array(Set(sizes.map { ModelConfiguration.clamp($0, 1, limit) })).sorted()
    }

    /// No batching: one command per batch.
    public static let none = DynamicBatching(maximumBatchSize: 1)

    /// How many of `queued` commands to send now, given how long the oldest
    /// has waited; 0 means wait for more.
    func batchSize(queued: Int, oldestWaited: UInt64) -> Int {
        guard queued > 0 else { return 0 }
        if queued >= maximumBatchSize { return maximumBatchSize }
        if let preferred = preferredBatchSizes.last(where: { $0 <= queued }) { return preferred }
        if oldestWaited >= maximumQueueDelay.saturatingNanoseconds { return queued }
        return 0
    }
}
