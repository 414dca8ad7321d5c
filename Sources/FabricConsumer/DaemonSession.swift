import FabricSystem
import Synchronization

/// One controller's session as the daemon holds it: its control socket, its
/// two rings, its data region, and the doorbells between them.
///
/// Two threads share it. The control thread owns ``socket`` and decides when
/// the controller is gone; the poll thread owns the ring endpoints and is the
/// only one that touches them. A session ends in two steps: someone requests
/// the end (``requestEnd(_:)``: the control thread on a hang-up, the poll
/// thread on a protocol violation), then the poll thread retires it (drops it
/// from its list, so nothing touches its memory any more) and sets
/// ``isRetired``; the control thread then closes the socket and drops the
/// last reference, which unmaps the regions and closes their descriptors.
final class DaemonSession: @unchecked Sendable {
    // @unchecked: ring endpoints poll-thread only, socket control-thread only, flags atomic (see above)
    let id: UInt64
    let peer: PeerCredentials
    /// The control socket; set by the control thread once the handshake is
    /// done, and touched by it only.
    var socket: UnixSocket?
    let submissionRegion: SharedRegion
    let completionRegion: SharedRegion
    let data: DataRegion
    let sessionDoorbellFD: EventFD
    /// This session's eventfd towards the daemon: its controller signals it
    /// ("data on my submission ring", "space on my completion ring") and the
    /// poll thread sleeps on it among all sessions'. One per session, so a
    /// controller that reads or floods it affects no other session.
    let daemonDoorbellFD: EventFD
    /// Poll thread only.
    var submissions: SPSCConsumer<Descriptor>
    /// Poll thread only.
    var completions: SPSCProducer<Completion>
    /// Poll thread only: commands taken off the submission ring whose
    /// completion is not posted yet (queued or running). The poll thread
    /// takes a command only while the completion ring has room for all of
    /// them, so posting never waits.
    @exclusivity(unchecked) var outstanding = 0
    /// Poll thread only: a completion was posted and the controller's
    /// doorbell not rung yet.
    @exclusivity(unchecked) var needsDoorbell = false
    /// Poll thread only, while it sleeps: it announced itself on the
    /// completion ring (it waits for room there: commands are waiting).
    @exclusivity(unchecked) var waitsForCompletionRoom = false
    /// Poll thread only: where this session's queued commands are, for its
    /// cancel descriptors.
    @exclusivity(unchecked) var queuedCommands: QueuedCommandIndex
    let validator: DescriptorValidator
    /// Its telemetry (written by the poll thread).
    let counters = SessionCounters()
    /// When the session was created (`MonotonicClock`).
    let openedAt = MonotonicClock.now()
    /// Submission ring: data → this session's daemon eventfd, space → its session eventfd.
    let submissionDoorbell: Doorbell
    /// Completion ring: data → its session eventfd, space → its daemon eventfd.
    let completionDoorbell: Doorbell

    private let endRequested = Atomic<Bool>(false)
    private let retired = Atomic<Bool>(false)
    private let endReason = LockedBox<SessionEndReason?>(nil)

    /// Creates the session's rings, data region and doorbell; the daemon
    /// takes the consumer end of the submission ring and the producer end of
    /// the completion ring.
    init(
        id: UInt64, peer: PeerCredentials, limits: SessionLimits, requiredOutput: [UInt32: UInt32]
    ) throws(SessionError) {
        do {
            submissionRegion = try SharedRegion.createAnonymous(
                name: "fabricqueue-submissions", kind: .spsc,
                capacity: limits.submissionCapacity, of: Descriptor.self)
            completionRegion = try SharedRegion.createAnonymous(
                name: "fabricqueue-completions", kind: .spsc,
                capacity: limits.completionCapacity, of: Completion.self)
            data = try DataRegion.createAnonymous(slotSize: limits.slotSize, slotCount: limits.slotCount)
            submissions = try SPSCConsumer(region: submissionRegion)
            completions = try SPSCProducer(region: completionRegion)
        } catch {
            // The reply has 32 bytes for the reason: the call and its errno name fit.
            if case .system(let failure) = error { throw .rejected(.busy, reason: failure.brief) }
            throw .rejected(.busy, reason: "session resources: \(error)")
        }
        do {
            sessionDoorbellFD = try EventFD()
            daemonDoorbellFD = try EventFD()
        } catch {
            if case .system(let failure) = error { throw .rejected(.busy, reason: failure.brief) }
            throw .rejected(.busy, reason: "eventfd: \(error)")
        }
        self.id = id
        self.peer = peer
        socket = nil
        queuedCommands = QueuedCommandIndex(outstanding: limits.completionCapacity)
        validator = DescriptorValidator(slots: data.geometry, requiredOutput: requiredOutput)
        submissionDoorbell = SessionAttachment.submissionDoorbell(daemon: daemonDoorbellFD, session: sessionDoorbellFD)
        completionDoorbell = SessionAttachment.completionDoorbell(daemon: daemonDoorbellFD, session: sessionDoorbellFD)
    }

    /// The descriptors the controller gets, tagged (``SessionDescriptorTag``).
    func grant() -> SessionGrant {
        SessionGrant(
            sessionID: id,
            descriptors: [
                (SessionDescriptorTag.submissionRing.rawValue, submissionRegion.fileDescriptor),
                (SessionDescriptorTag.completionRing.rawValue, completionRegion.fileDescriptor),
                (SessionDescriptorTag.dataRegion.rawValue, data.fileDescriptor),
                (SessionDescriptorTag.daemonDoorbell.rawValue, daemonDoorbellFD.fileDescriptor),
                (SessionDescriptorTag.sessionDoorbell.rawValue, sessionDoorbellFD.fileDescriptor),
            ])
    }

    /// Asks the poll thread to retire the session; the first reason given wins.
    func requestEnd(_ reason: SessionEndReason) {
        endReason.withLock { if $0 == nil { $0 = reason } }
        // Release: the reason above is visible to whoever sees the flag.
        endRequested.store(true, ordering: .releasing)
    }

    /// Whether an end was requested. Relaxed: polled on every pass; the
    /// reason is read under the mutex.
    var isEndRequested: Bool { endRequested.load(ordering: .relaxed) }

    /// Why the session ends (nil while it has not been asked to).
    var reason: SessionEndReason? { endReason.withLock { $0 } }

    /// Called by the poll thread once it no longer touches the session.
    func markRetired() {
        // Release: the poll thread's last accesses to the rings happen before
        // the control thread, seeing the flag, unmaps them.
        retired.store(true, ordering: .releasing)
    }

    /// Whether the poll thread has let go. Acquire: pairs with ``markRetired()``.
    var isRetired: Bool { retired.load(ordering: .acquiring) }
}
