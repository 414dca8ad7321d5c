import FabricSystem

/// Why a doorbell could not ring or wait.
public enum DoorbellError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed: an eventfd `read`/`write`/`ppoll` (`EBADF` for a
    /// closed or invalid descriptor), `eventfd(2)` itself, or `futex(2)`.
    case system(SystemCallError)
    /// A descriptor handed over as an eventfd is something else.
    case notAnEventFD(String)

    public var description: String {
        switch self {
        case .system(let error): "doorbell: \(error)"
        case .notAnEventFD(let what): "descriptor is not an eventfd (it is \(what))"
        }
    }
}
