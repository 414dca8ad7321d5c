import Foundation
import XCTest

/// Two network namespaces joined by a veth pair, with addresses inside the
/// namespaces only, for tests of traffic between "hosts" (`ip netns`, which
/// needs root and `CAP_SYS_ADMIN`). Names carry this process's pid and a
/// random tag, so parallel runs never share one; the addresses exist only
/// inside the pair. ``remove()`` (also at deinit) kills the processes this
/// pair spawned and deletes both namespaces.
public final class NetworkNamespacePair {
    /// The namespace the server side runs in, and its address.
    public let serverNamespace: String, serverAddress: String
    /// The namespace the client side runs in, and its address.
    public let clientNamespace: String, clientAddress: String
    /// The veth end inside the server namespace.
    public let serverLink: String
    private var removed = false
    private var spawned: [ChildProcess] = []

    /// Creates the pair, or throws `XCTSkip` when this process cannot (not
    /// root, no `ip`).
    public init() throws {
        guard getuid() == 0 else { throw XCTSkip("network namespaces need root (CI runs as root)") }
        guard FileManager.default.isExecutableFile(atPath: Self.ip) else { throw XCTSkip("no \(Self.ip) (iproute2)") }
        // "fq" + pid (at most 7 digits) + 4 hex digits + a letter: within
        // the 15 characters an interface name may have.
        let tag = "\(getpid())" + String(UInt16.random(in: 0...UInt16.max), radix: 16).leftPadded(4)
        serverNamespace = "fq\(tag)s"
        clientNamespace = "fq\(tag)c"
        serverLink = "fq\(tag)a"
        let clientLink = "fq\(tag)b"
        serverAddress = "10.77.0.1"
        clientAddress = "10.77.0.2"
        do {
            try Self.run(["netns", "add", serverNamespace])
        } catch let error as NamespaceError where error.output.contains("Operation not permitted") {
            removed = true
            throw XCTSkip("network namespaces are not permitted here: \(error.output)")
        }
        do {
            try Self.run(["netns", "add", clientNamespace])
            try Self.run([
                "link", "add", serverLink, "netns", serverNamespace, "type", "veth", "peer", "name", clientLink,
                "netns", clientNamespace,
            ])
            try Self.run(["-n", serverNamespace, "addr", "add", serverAddress + "/30", "dev", serverLink])
            try Self.run(["-n", clientNamespace, "addr", "add", clientAddress + "/30", "dev", clientLink])
            for (namespace, link) in [(serverNamespace, serverLink), (clientNamespace, clientLink)] {
                try Self.run(["-n", namespace, "link", "set", link, "up"])
                try Self.run(["-n", namespace, "link", "set", "lo", "up"])
            }
            // A veth end reports carrier a moment after both ends are up.
            for (namespace, link) in [(serverNamespace, serverLink), (clientNamespace, clientLink)] {
                let end = Date().addingTimeInterval(5)
                while !(try Self.run(["-n", namespace, "-o", "link", "show", "dev", link])).contains("LOWER_UP") {
                    guard Date() < end else {
                        throw NamespaceError(command: "waiting for carrier on \(link)", output: "none within 5 s")
                    }
                    usleep(20_000)
                }
            }
        } catch {
            remove()
            throw error
        }
    }

    deinit { remove() }

    /// Spawns `executable` (a product name or a path) inside `namespace`.
    public func spawn(
        in namespace: String, _ executable: String, _ arguments: [String], environment: [String: String] = [:]
    ) throws -> ChildProcess {
        let path = executable.hasPrefix("/") ? executable : ChildProcess.executable(executable)
        let child = try ChildProcess(Self.ip, ["netns", "exec", namespace, path] + arguments, environment: environment)
        spawned.append(child)
        return child
    }

    /// Takes the server's end of the link down (a cut cable) or up again.
    public func setServerLink(up: Bool) throws {
        try Self.run(["-n", serverNamespace, "link", "set", serverLink, up ? "up" : "down"])
    }

    /// Stops the processes this pair spawned (only those: `ChildProcess`
    /// signals a child only while it has not been reaped) and deletes both
    /// namespaces. Idempotent.
    public func remove() {
        guard !removed else { return }
        removed = true
        for child in spawned { child.stop(timeout: 2) }
        spawned.removeAll()
        for namespace in [serverNamespace, clientNamespace] { _ = try? Self.run(["netns", "del", namespace]) }
    }

    static let ip = "/usr/sbin/ip"

    /// Runs `ip ARGUMENTS` to completion; returns its output, throws on failure.
    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let child = try ChildProcess(ip, arguments)
        guard let status = child.wait(timeout: 20), status == 0 else {
            throw NamespaceError(command: "ip " + arguments.joined(separator: " "), output: child.standardError)
        }
        return child.standardOutput
    }

    struct NamespaceError: Error, CustomStringConvertible {
        var command: String
        var output: String
        var description: String { "\(command): \(output)" }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
