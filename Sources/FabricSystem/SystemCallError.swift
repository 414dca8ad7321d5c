import CFabricSystem
import SystemPackage

/// A system call that failed: which one, and the `errno` it returned.
///
/// Every error enum in the package that reports a kernel failure carries one
/// of these (``SystemCallError/operation`` names the call as the man page
/// does: `"mmap"`, `"fcntl(F_ADD_SEALS)"`, `"recvmsg"`), so the errno is never
/// lost and the message always names the call.
public struct SystemCallError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The call that failed, e.g. `"memfd_create"` or `"getsockopt(SO_PEERCRED)"`.
    public var operation: String
    /// The error number it returned.
    public var errno: Errno

    /// An error for `operation` failing with `errno`.
    @inlinable
    public init(_ operation: String, _ errno: Errno) {
        self.operation = operation
        self.errno = errno
    }

    /// `"mmap failed: Cannot allocate memory (errno 12)"`.
    public var description: String { "\(operation) failed: \(errno) (errno \(errno.rawValue))" }

    /// The short form, `"memfd_create: ENOMEM"`, for places with little room
    /// (a session reply's 32-byte reason).
    public var brief: String { "\(operation): \(errnoName)" }

    /// The errno's symbolic name (`"ENOMEM"`), or `"errno N"` for one glibc
    /// does not name.
    public var errnoName: String {
        guard let name = cfq_errno_name(errno.rawValue) else { return "errno \(errno.rawValue)" }
        return String(cString: name)
    }
}
