import FabricSystem
import SystemPackage

/// A controller's connection to a daemon hosted in the same process ("Model
/// A"): one end of a connected socket pair (`socketpair(2)`) whose other end
/// the daemon serves as if it had accepted it. The handshake, rings, data
/// region and doorbells are exactly those of a daemon in another process, so
/// the controller code is the same.
///
/// Get one from `FabricDaemon.connectInProcess()` and hand it to
/// `ControllerSession.connect(to:)` or `FabricClient.connect(to:)`.
/// Noncopyable: it is consumed by the connect, which runs the handshake on it.
public struct InProcessConnection: ~Copyable, Sendable {
    /// Nil once taken.
    private var descriptor: FileDescriptor?
    /// The models the daemon serves (what a models query would answer).
    package let models: [ModelDescription]

    /// A connection over `descriptor`, a connected Unix stream socket, to a
    /// daemon serving `models`; closed with the value unless taken.
    package init(adopting descriptor: FileDescriptor, models: [ModelDescription] = []) {
        self.descriptor = descriptor
        self.models = models
    }

    deinit { try? descriptor?.close() }

    /// The controller's socket, taken out of the value.
    package consuming func takeSocket() -> UnixSocket {
        // Set at init and taken only here, once (the call consumes the value).
        let fd = descriptor ?? FileDescriptor(rawValue: -1)
        descriptor = nil
        return UnixSocket(fd)
    }
}
