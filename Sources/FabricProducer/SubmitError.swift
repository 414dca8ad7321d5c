import FabricSystem

/// Why a submission or a wait for a completion did not succeed.
public enum SubmitError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The submission ring is full: backpressure. Reap completions and retry.
    case queueFull
    /// The daemon is gone (its socket closed: it exited, crashed, or ended
    /// the session). Commands in flight will not complete; reconnect.
    case peerGone
    /// The wait or the command's deadline passed.
    case timedOut
    /// The awaiting task was cancelled. The daemon is asked to drop the
    /// command; one that already runs still finishes, and its buffers are
    /// reclaimed when its completion arrives.
    case cancelled
    /// The request itself is wrong (the reason says how); nothing was posted.
    case invalidRequest(String)
    /// The daemon sent a completion that matches no command in flight.
    case protocolViolation(String)
    /// The ring reported a fault.
    case ring(RingError)
    /// A doorbell failed.
    case doorbell(DoorbellError)

    public var description: String {
        switch self {
        case .queueFull: "submission ring full"
        case .peerGone: "daemon gone"
        case .timedOut: "timed out"
        case .cancelled: "cancelled"
        case .invalidRequest(let why): "invalid request: \(why)"
        case .protocolViolation(let why): "protocol violation: \(why)"
        case .ring(let e): "ring: \(e)"
        case .doorbell(let e): "doorbell: \(e)"
        }
    }
}
