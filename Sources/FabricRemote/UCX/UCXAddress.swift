import Glibc

/// An IPv4 or IPv6 socket address for UCX's client-server connection
/// establishment (`ucp_listener_create`, `ucp_ep_create` with
/// `UCP_EP_PARAMS_FLAGS_CLIENT_SERVER`), from a numeric host and a port.
public struct UCXAddress: Sendable, Equatable, CustomStringConvertible {
    /// The numeric host, as given (`10.0.0.1`, `::1`, `0.0.0.0`).
    public let host: String
    /// The port (0 for a listener: any free port).
    public let port: UInt16
    private let storage: sockaddr_storage
    private let length: socklen_t

    /// The address `host:port`, or nil when `host` is not a numeric IPv4 or
    /// IPv6 address (names are not resolved: a deployment names its fabric
    /// interfaces by address).
    public init?(host: String, port: UInt16) {
        var storage = sockaddr_storage()
        var length = socklen_t(0)
        let parsed: Bool = withUnsafeMutableBytes(of: &storage) { raw in
            if host.contains(":") {
                var address = sockaddr_in6()
                address.sin6_family = sa_family_t(AF_INET6)
                address.sin6_port = port.bigEndian
                guard inet_pton(AF_INET6, host, &address.sin6_addr) == 1 else { return false }
                withUnsafeBytes(of: address) { raw.copyMemory(from: $0) }
                length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            } else {
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = port.bigEndian
                guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return false }
                withUnsafeBytes(of: address) { raw.copyMemory(from: $0) }
                length = socklen_t(MemoryLayout<sockaddr_in>.size)
            }
            return true
        }
        guard parsed else { return nil }
        self.host = host
        self.port = port
        self.storage = storage
        self.length = length
    }

    /// The same host with another port.
    public func with(port: UInt16) -> UCXAddress? { UCXAddress(host: host, port: port) }

    /// Calls `body` with the `sockaddr` and its length.
    func withSocketAddress<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(UCXError) -> R) throws(UCXError) -> R {
        var copy = storage
        let length = self.length
        return try withUnsafePointer(to: &copy) { (pointer) throws(UCXError) -> R in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(UCXError) -> R in
                try body(address, length)
            }
        }
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public static func == (a: UCXAddress, b: UCXAddress) -> Bool { a.host == b.host && a.port == b.port }
}

extension UCXAddress {
    /// The scheme of a remote endpoint: `ucx://HOST:PORT`.
    public static let scheme = "ucx://"

    /// Parses `ucx://HOST:PORT` (an IPv6 host in brackets: `ucx://[::1]:7000`);
    /// nil if `url` is not one.
    public init?(url: String) {
        guard url.hasPrefix(Self.scheme) else { return nil }
        let rest = url.dropFirst(Self.scheme.count)
        let host: Substring, port: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            port = rest[rest.index(close, offsetBy: 2)...]
        } else {
            guard let colon = rest.lastIndex(of: ":") else { return nil }
            host = rest[..<colon]
            port = rest[rest.index(after: colon)...]
        }
        guard let number = UInt16(port) else { return nil }
        self.init(host: String(host), port: number)
    }

    /// `ucx://HOST:PORT`.
    public var url: String { Self.scheme + description }
}
