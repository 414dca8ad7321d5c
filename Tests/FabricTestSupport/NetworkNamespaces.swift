import Foundation
import XCTest

/// Two network namespaces joined by a veth pair, with addresses inside the
/// namespaces only, for tests of traffic between "hosts" (`ip netns`, which
/// needs root). Names and addresses derive from this process's pid, so
/// parallel runs do not collide; ``remove()`` (also at deinit) kills what
/// still runs inside them, which is only what the test started there, and
/// deletes them.
public final class NetworkNamespacePair {
    /// The namespace the server side runs in, and its address.
    public let serverNamespace: String, serverAddress: String
    /// The namespace the client side runs in, and its address.
    public let clientNamespace: String, clientAddress: String
    /// The veth end inside the server namespace.
    public let serverLink: String
    private var removed = false

    /// Creates the pair, or throws `XCTSkip` when this process cannot (not
    /// root, no `ip`).
    public init() throws {
        guard getuid() == 0 else { throw XCTSkip("network namespaces need root (CI runs as root)") }
        guard FileManager.default.isExecutableFile(atPath: Self.ip) else { throw XCTSkip("no \(Self.ip) (iproute2)") }
        let tag = Int(getpid()) % 60_000
        serverNamespace = "fq\(tag)s"
        clientNamespace = "fq\(tag)c"
        serverLink = "fq\(tag)a"
        let clientLink = "fq\(tag)b"
        // 10.200.0.0/13 split by pid: one /30-like pair per run.
        let subnet = (200 + tag / 16_384, (tag / 64) % 256, (tag % 64) * 4)
        let prefix = "10.\(subnet.0).\(subnet.1)."
        serverAddress = prefix + "\(subnet.2 + 1)"
        clientAddress = prefix + "\(subnet.2 + 2)"
        _ = try? Self.run(["netns", "del", serverNamespace])
        _ = try? Self.run(["netns", "del", clientNamespace])
        do {
            try Self.run(["netns", "add", serverNamespace])
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
                while !(try Self.run(["-n", namespace, "-o", "link", "show", "dev", link])).contains("LOWER_UP"),
                    Date() < end
                {
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
        return try ChildProcess(Self.ip, ["netns", "exec", namespace, path] + arguments, environment: environment)
    }

    /// Takes the server's end of the link down (a cut cable) or up again.
    public func setServerLink(up: Bool) throws {
        try Self.run(["-n", serverNamespace, "link", "set", serverLink, up ? "up" : "down"])
    }

    /// Kills every process still inside the namespaces (all started by
    /// this test) and deletes them. Idempotent.
    public func remove() {
        guard !removed else { return }
        removed = true
        for namespace in [serverNamespace, clientNamespace] {
            if let pids = try? Self.run(["netns", "pids", namespace]) {
                for pid in pids.split(separator: "\n").compactMap({ pid_t($0) }) { kill(pid, SIGKILL) }
            }
            _ = try? Self.run(["netns", "del", namespace])
        }
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
