import FabricSystem

/// Dynamic batching on the controller: requests are gathered and posted
/// together (one ring publication, one doorbell) when `maximumBatchSize` have
/// gathered or the oldest has waited `maximumWait`, whichever comes first.
/// The daemon receives them in one burst, so one handler call runs them as a
/// batch.
///
/// Both controller paths (`FabricClient` and `ControllerSession.stage(_:)`)
/// apply it through the same accumulator, with the same rules:
/// - a batch is posted as soon as it holds `maximumBatchSize` requests (or as
///   many as the submission ring holds, if that is fewer);
/// - with `maximumWait` zero (or a size of 1) every request is posted at once,
///   and one that finds the ring full is refused (`queueFull`), exactly as an
///   unbatched submit is;
/// - otherwise a partial batch is posted once its first request has waited
///   `maximumWait`; a post that finds the ring full keeps the batch gathered
///   (its requests are accepted and have ids) and is retried as the daemon
///   frees room: by the next submit, flush or wait on `ControllerSession`, by
///   the reaper after the next completion on `FabricClient`.
public struct BatchingPolicy: Sendable, Equatable {
    /// The most requests one batch can hold.
    public static let largestBatch = 8

    /// Requests per batch, `1...largestBatch`.
    public var maximumBatchSize: Int
    /// How long the first request of a batch may wait for company.
    public var maximumWait: Duration

    /// No batching: every request is posted at once.
    public static let immediate = BatchingPolicy(maximumBatchSize: 1, maximumWait: .zero)

    /// A policy; the size is clamped to `1...largestBatch` and a negative wait to zero.
    public init(maximumBatchSize: Int, maximumWait: Duration) {
        self.maximumBatchSize = min(max(maximumBatchSize, 1), Self.largestBatch)
        self.maximumWait = max(maximumWait, .zero)
    }

    /// Whether every request is posted as it comes (size 1 or no wait).
    public var postsImmediately: Bool { maximumBatchSize == 1 || maximumWait == .zero }
}
