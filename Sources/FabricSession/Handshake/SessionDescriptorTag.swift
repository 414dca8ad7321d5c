import FabricSystem

/// What each descriptor in a session grant is: the one-byte tag sent with it
/// over `SCM_RIGHTS` (see ``SessionHandshake``). Part of the session protocol,
/// version 1; C peers use the same numbers (`FQ_SESSION_TAG_*` in
/// `fabricqueue.h`).
///
/// | tag | descriptor | controller's role |
/// |-----|------------|-------------------|
/// | 1 | submission ring region (SPSC of `Descriptor`) | producer |
/// | 2 | completion ring region (SPSC of `Completion`) | consumer |
/// | 3 | data region (``DataRegion``: the buffer slots) | fills inputs, reads outputs |
/// | 4 | this session's daemon doorbell eventfd (signal: work for the daemon) | signals |
/// | 5 | session doorbell eventfd (signal: work for this controller) | waits |
public enum SessionDescriptorTag: UInt8, Sendable, CaseIterable {
    /// The submission ring: the controller produces descriptors, the daemon consumes them.
    case submissionRing = 1
    /// The completion ring: the daemon produces completions, the controller consumes them.
    case completionRing = 2
    /// The data region holding the session's buffer slots.
    case dataRegion = 3
    /// This session's eventfd towards the daemon: "data available" on its
    /// submission ring, "space available" on its completion ring. One per
    /// session (never shared), so no controller can take or flood another
    /// session's wake-ups.
    case daemonDoorbell = 4
    /// This session's eventfd: "data available" on its completion ring,
    /// "space available" on its submission ring.
    case sessionDoorbell = 5
}
