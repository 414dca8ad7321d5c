import CUCX

/// A UCX call that failed: which one, and UCX's status (`ucs_status_t`,
/// negative) with its text (`ucs_status_string`).
public struct UCXError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The UCX function, or what was being waited for.
    public var operation: String
    /// The `ucs_status_t` code (`UCS_ERR_…`, negative).
    public var status: Int32

    /// An error for `operation` with `status`.
    public init(_ operation: String, status: Int32) {
        self.operation = operation
        self.status = status
    }

    init(_ operation: String, _ status: ucs_status_t) {
        self.init(operation, status: Int32(status.rawValue))
    }

    /// `UCS_ERR_TIMED_OUT`: a wait ran past its deadline.
    public static func timedOut(_ operation: String) -> UCXError { UCXError(operation, UCS_ERR_TIMED_OUT) }

    /// Whether the peer is gone (`UCS_ERR_CONNECTION_RESET`, `UCS_ERR_ENDPOINT_TIMEOUT`,
    /// `UCS_ERR_UNREACHABLE`, `UCS_ERR_CANCELED` after a failure, …).
    public var isPeerFailure: Bool {
        [UCS_ERR_CONNECTION_RESET, UCS_ERR_ENDPOINT_TIMEOUT, UCS_ERR_UNREACHABLE, UCS_ERR_CANCELED, UCS_ERR_REJECTED]
            .map { Int32($0.rawValue) }.contains(status)
    }

    /// UCX's text for the status.
    public var message: String {
        guard let text = ucs_status_string(ucs_status_t(rawValue: Int8(clamping: status))) else { return "status \(status)" }
        return String(cString: text)
    }

    public var description: String { "\(operation): \(message)" }
}

/// Throws unless `status` is `UCS_OK`.
@inline(__always)
func check(_ status: ucs_status_t, _ operation: @autoclosure () -> String) throws(UCXError) {
    guard status == UCS_OK else { throw UCXError(operation(), status) }
}
