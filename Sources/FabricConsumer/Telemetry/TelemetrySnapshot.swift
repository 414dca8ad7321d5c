import FabricQueue
import FabricSession
import FabricSystem
import SystemPackage

extension DaemonCore {
    /// Queries within this many nanoseconds of the last one get its answer
    /// again (10 ms).
    static var telemetryReuseInterval: UInt64 { 10_000_000 }

    /// The daemon's state now, read from the single-writer counters with
    /// relaxed loads (any thread; the poll thread is never asked).
    func telemetry() -> DaemonTelemetry {
        let now = MonotonicClock.now()
        let started = startedAt.load(ordering: .relaxed)
        let models = self.models.sorted { $0.key < $1.key }.compactMap { id, model -> DaemonTelemetry.Model? in
            guard let counters = modelCounters[id] else { return nil }
            // Relaxed: a monitoring snapshot. `finished` first: it never
            // passes `started`, so the difference stays meaningful.
            let finished = counters.finished.load(ordering: .relaxed)
            let startedCommands = counters.started.load(ordering: .relaxed)
            return DaemonTelemetry.Model(
                id: id, instances: model.configuration.instances,
                execution: model.configuration.execution == .threads ? "threads" : "pollThread",
                commandsReceived: counters.received.load(ordering: .relaxed),
                completions: counters.completions,
                commandsDropped: counters.dropped.load(ordering: .relaxed),
                commandsStarted: startedCommands,
                batchesStarted: counters.batches.load(ordering: .relaxed),
                inFlight: startedCommands > finished ? startedCommands - finished : 0,
                queueDepth: max(0, counters.queueDepth.load(ordering: .relaxed)),
                queueCapacity: model.configuration.queueCapacity,
                queueWait: counters.queueWait.snapshot(),
                handler: counters.handler.snapshot(),
                completionPosting: counters.posting.snapshot(),
                batchSize: counters.batchSize.snapshot())
        }
        // The copy keeps every session (and so its mapped rings) alive while it is read.
        let sessions = liveSessions.withLock { $0 }.map { session -> DaemonTelemetry.Session in
            let c = session.counters
            // Relaxed: a monitoring snapshot; failures and successes before
            // receipts, so in-flight is never overstated by a late read.
            let succeeded = c.succeeded.load(ordering: .relaxed)
            let failed = c.failed.load(ordering: .relaxed)
            let received = c.received.load(ordering: .relaxed)
            let answered = succeeded &+ failed
            return DaemonTelemetry.Session(
                id: session.id, pid: session.peer.pid, uid: session.peer.uid, gid: session.peer.gid,
                ageSeconds: Double(now &- session.openedAt) / 1e9,
                commandsReceived: received, commandsSucceeded: succeeded, commandsFailed: failed,
                inFlight: received > answered ? received - answered : 0,
                submissionRing: fill(of: session.submissionRegion),
                completionRing: fill(of: session.completionRegion),
                doorbellRings: c.doorbellRings.load(ordering: .relaxed))
        }
        return DaemonTelemetry(
            version: FabricQueueVersion.current, protocolVersion: SessionHandshake.protocolVersion,
            processID: currentProcessID,
            uptimeSeconds: started == 0 ? 0 : Double(now &- started) / 1e9,
            socketPath: configuration.inheritedListener == nil ? configuration.socketPath.string : "",
            // Relaxed: a statistic (the control thread's count of sessions).
            totals: counters.snapshot, openSessions: activeSessions.load(ordering: .relaxed),
            models: models, sessions: sessions)
    }

    /// How full a session ring is; the controller writes one index, so the
    /// count is clamped to the ring.
    private func fill(of region: SharedRegion) -> DaemonTelemetry.RingFill {
        let capacity = region.info.capacity
        let occupancy = region.snapshot().occupancy
        return DaemonTelemetry.RingFill(occupied: Int(clamping: min(max(occupancy, 0), Int64(capacity))), capacity: capacity)
    }

    /// Control thread: the JSON answer to a telemetry query (the cached one
    /// when it is recent).
    func telemetryAnswer() -> [UInt8] {
        let now = MonotonicClock.now()
        if let cached = telemetryCache.withLock({ $0 }), now &- cached.at < Self.telemetryReuseInterval {
            return cached.bytes
        }
        let bytes = DaemonTelemetry.encode(telemetry())
        telemetryCache.withLock { $0 = (now, bytes) }
        return bytes
    }
}

extension DaemonTelemetry {
    /// The telemetry as JSON (what a query answers).
    public static func encode(_ telemetry: DaemonTelemetry) -> [UInt8] {
        QueryPayload.encode(telemetry, fallback: "{}")
    }

    /// Telemetry from its JSON.
    ///
    /// - Throws: `SessionError.malformed(_:)` when the bytes are not it.
    public static func decode(_ json: [UInt8]) throws(SessionError) -> DaemonTelemetry {
        try QueryPayload.decode(json, as: DaemonTelemetry.self, what: "telemetry")
    }

    /// Asks the daemon listening at `socketPath` for its telemetry (a
    /// `SessionHandshake.Purpose.telemetry` query on its control socket:
    /// the same credential check as a session, no session opened, no ring
    /// touched), all within `timeout`.
    ///
    /// - Throws: `SessionError.daemonUnreachable(path:_:)` when nothing
    ///   listens there, the daemon's refusal, `SessionError.socket(.timedOut)`
    ///   when it does not answer within `timeout` (connecting included), or
    ///   a socket error.
    public static func fetch(
        from socketPath: FilePath, timeout: Duration = .seconds(2)
    ) throws(SessionError)
        -> DaemonTelemetry
    {
        try decode(UnixSocket.query(.telemetry, at: socketPath, timeout: timeout))
    }
}
