import ArgumentParser
import FabricConsumer
import FabricDiagnostics
import Glibc
import SystemPackage

/// `fabricq ping`: is a daemon answering? For health checks.
struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that a daemon answers on its socket; print its version, models and uptime.",
        discussion: """
            Exit status 0 when the daemon answered a query handshake within --timeout, 1 otherwise \
            (no daemon, refused, timed out, wrong protocol version), with the reason on standard error. \
            Opens no session: usable as a container HEALTHCHECK or from a systemd timer.
              fabricq ping --socket /run/fabricqueue/daemon.sock --timeout 1s
            """)

    @Option(help: "The daemon's Unix socket.")
    var socket: String

    @Option(help: "How long to wait for the answer (500ms, 2s, ...).")
    var timeout = "2s"

    func run() throws {
        guard let limit = parseDuration(timeout), limit > .zero else {
            throw ValidationError("--timeout must be a positive duration (2s, 500ms)")
        }
        let telemetry: DaemonTelemetry
        do { telemetry = try DaemonTelemetry.fetch(from: FilePath(socket), timeout: limit) } catch {
            report("\(socket): \(error)")
            throw ExitCode(1)
        }
        let models = telemetry.models.map { "\($0.id) (\($0.instances)× \($0.execution))" }.joined(separator: ", ")
        say(
            "\(socket): fabricqueue \(telemetry.version), protocol \(telemetry.protocolVersion), "
                + "pid \(telemetry.processID), up \(TopFrame.uptime(telemetry.uptimeSeconds)), "
                + "\(telemetry.openSessions) sessions, models \(models.isEmpty ? "none" : models)")
    }
}
