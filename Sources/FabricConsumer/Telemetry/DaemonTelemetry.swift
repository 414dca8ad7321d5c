import FabricQueue
import FabricSession

/// A running daemon's state as an operator sees it: its totals, every
/// model's counts, queue and latency distributions, and every session with
/// its peer and ring fill. ``FabricDaemon/telemetry()`` takes one in process;
/// tools ask a daemon in another process for one over its control socket
/// (``fetch(from:timeout:)``), which is what `fabricq top`, `fabricq ping`
/// and the Prometheus endpoint show.
///
/// Latencies are in nanoseconds. The daemon measures three stages of each
/// command that ran: **queue wait** (taken off its ring → its batch handed
/// to an instance), **handler** (batch handed over → the handler's report of
/// the command) and **completion posting** (report → the poll thread
/// collecting it, which writes the completion to its ring in the same step). Commands answered without running (invalid, expired, cancelled,
/// queue full) are counted by status and are in no distribution.
public struct DaemonTelemetry: Sendable, Codable, Equatable {
    /// This build's FabricQueue version.
    public var version: String
    /// The session protocol (ABI) version the daemon speaks.
    public var protocolVersion: UInt32
    /// The daemon's process id.
    public var processID: Int32
    /// Seconds since the daemon started serving.
    public var uptimeSeconds: Double
    /// The control socket's path (empty when socket-activated and unnamed).
    public var socketPath: String
    /// The daemon-wide counters.
    public var totals: DaemonStatistics
    /// Sessions open now.
    public var openSessions: Int
    /// Every model served, by id.
    public var models: [Model]
    /// Every open session, oldest first.
    public var sessions: [Session]

    /// Completions by status.
    public struct StatusCounts: Sendable, Codable, Equatable {
        /// `CompletionStatus.succeeded`.
        public var succeeded: UInt64 = 0
        /// `CompletionStatus.invalidDescriptor`.
        public var invalidDescriptor: UInt64 = 0
        /// `CompletionStatus.unknownModel`.
        public var unknownModel: UInt64 = 0
        /// `CompletionStatus.handlerFailed`.
        public var handlerFailed: UInt64 = 0
        /// `CompletionStatus.cancelled`.
        public var cancelled: UInt64 = 0
        /// `CompletionStatus.expired`.
        public var expired: UInt64 = 0
        /// `CompletionStatus.modelQueueFull`.
        public var modelQueueFull: UInt64 = 0
        /// Any other status code a handler reported.
        public var other: UInt64 = 0

        /// Counts.
        public init(
            succeeded: UInt64 = 0, invalidDescriptor: UInt64 = 0, unknownModel: UInt64 = 0, handlerFailed: UInt64 = 0,
            cancelled: UInt64 = 0, expired: UInt64 = 0, modelQueueFull: UInt64 = 0, other: UInt64 = 0
        ) {
            self.succeeded = succeeded
            self.invalidDescriptor = invalidDescriptor
            self.unknownModel = unknownModel
            self.handlerFailed = handlerFailed
            self.cancelled = cancelled
            self.expired = expired
            self.modelQueueFull = modelQueueFull
            self.other = other
        }

        /// Every completion that did not succeed.
        public var failed: UInt64 {
            invalidDescriptor &+ unknownModel &+ handlerFailed &+ cancelled &+ expired &+ modelQueueFull &+ other
        }

        /// Each status with its Prometheus label value and count.
        public var labelled: [(status: String, count: UInt64)] {
            [
                ("succeeded", succeeded), ("invalid_descriptor", invalidDescriptor), ("unknown_model", unknownModel),
                ("handler_failed", handlerFailed), ("cancelled", cancelled), ("expired", expired),
                ("model_queue_full", modelQueueFull), ("other", other),
            ]
        }
    }

    /// One model.
    public struct Model: Sendable, Codable, Equatable {
        /// The model id controllers address.
        public var id: UInt32
        /// Its instances (``ModelConfiguration/instances``).
        public var instances: Int
        /// How they run: `threads` or `pollThread` (``ModelExecution``).
        public var execution: String
        /// Descriptors for it taken off the rings.
        public var commandsReceived: UInt64
        /// Its commands answered, by status (posted, unless the session had
        /// ended by then).
        public var completions: StatusCounts
        /// Queued commands dropped without an answer because their session
        /// ended first (received = completions + in flight + queued + dropped).
        public var commandsDropped: UInt64
        /// Commands handed to its instances.
        public var commandsStarted: UInt64
        /// Batches those commands went in.
        public var batchesStarted: UInt64
        /// Commands with its instances now (started, completion not yet posted).
        public var inFlight: UInt64
        /// Live commands waiting in its queue now.
        public var queueDepth: Int
        /// The queue's capacity (``ModelConfiguration/queueCapacity``).
        public var queueCapacity: Int
        /// Nanoseconds from pickup to the batch's start.
        public var queueWait: TelemetryDistribution
        /// Nanoseconds from the batch's start to the handler's report.
        public var handler: TelemetryDistribution
        /// Nanoseconds from the handler's report to the poll thread collecting
        /// it for the ring.
        public var completionPosting: TelemetryDistribution
        /// Commands per executed batch.
        public var batchSize: TelemetryDistribution
    }

    /// How full one of a session's rings is.
    public struct RingFill: Sendable, Codable, Equatable {
        /// Entries in the ring now (clamped to `0...capacity`: the peer
        /// writes one of the two indices).
        public var occupied: Int
        /// The ring's capacity.
        public var capacity: Int
    }

    /// One open session.
    public struct Session: Sendable, Codable, Equatable {
        /// The session id (as in the daemon's log and the controller's grant).
        public var id: UInt64
        /// The controller's process id (`SO_PEERCRED`).
        public var pid: Int32
        /// The controller's effective user id (`SO_PEERCRED`).
        public var uid: UInt32
        /// The controller's effective group id (`SO_PEERCRED`).
        public var gid: UInt32
        /// Seconds the session has been open.
        public var ageSeconds: Double
        /// Descriptors taken off its submission ring (cancels excluded).
        public var commandsReceived: UInt64
        /// Its commands answered with success.
        public var commandsSucceeded: UInt64
        /// Its commands answered with an error status.
        public var commandsFailed: UInt64
        /// Its commands taken and not yet answered.
        public var inFlight: UInt64
        /// Its submission ring: commands not yet taken.
        public var submissionRing: RingFill
        /// Its completion ring: completions not yet read.
        public var completionRing: RingFill
        /// Wake-up system calls made to its controller.
        public var doorbellRings: UInt64
    }
}
