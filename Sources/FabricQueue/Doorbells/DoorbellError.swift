import SystemPackage

/// Why a doorbell could not ring or wait.
public enum DoorbellError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An eventfd call failed (`EBADF` for a closed or invalid descriptor).
    case eventFD(operation: String, errno: Errno)
    /// A descriptor handed over as an eventfd is something else.
    case notAnEventFD(String)
    /// `futex(2)` failed with an unexpected error.
    case futex(errno: Errno)
    /// Passing a descriptor over a socket failed.
    case socket(operation: String, errno: Errno)

    public var description: String {
        switch self {
        case .eventFD(let op, let e): "eventfd \(op) failed: \(e)"
        case .notAnEventFD(let what): "descriptor is not an eventfd (it is \(what))"
        case .futex(let e): "futex failed: \(e)"
        case .socket(let op, let e): "\(op) failed: \(e)"
        }
    }
}
