import ArgumentParser
import FabricConsumer
import FabricDiagnostics
import Glibc
import SystemPackage

/// `fabricq serve`: a daemon with the diagnostic models, for smoke tests,
/// benchmarks and C controllers.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a daemon serving the diagnostic models until SIGINT/SIGTERM.",
        discussion: """
            Models: 1 echo (output = input), 2 checksum (FNV-1a 64 of the input, 8 bytes), \
            3 delay (sleeps `flags` µs, then echoes), 4 empty (succeeds, no output). \
            Prints "listening on PATH" once controllers may connect.
            """)

    @Option(help: "Unix socket path to listen on.")
    var socket: String

    @Option(help: "Idle strategy of the poll thread: poll, adaptive or sleep.")
    var idle: String = "adaptive"

    @Option(help: "Pin the poll thread to this CPU.")
    var cpu: Int?

    @Option(help: "Bytes per buffer slot (a multiple of 64).")
    var slotSize = 64 * 1024

    @Option(help: "Buffer slots per session.")
    var slots = 64

    @Option(help: "Submission and completion ring capacity (a power of two).")
    var ringCapacity = 256

    @Option(help: "Descriptors per burst (largest batch).")
    var burst = 32

    func run() throws {
        var configuration = DaemonConfiguration(socketPath: FilePath(socket))
        guard let idleStrategy = IdleStrategy(commandLineName: idle) else {
            throw ValidationError("--idle must be poll, adaptive or sleep")
        }
        configuration.idle = idleStrategy
        configuration.pollThreadPlacement = cpu.map { .cpu($0) }
        configuration.session = SessionLimits(
            submissionCapacity: ringCapacity, completionCapacity: ringCapacity,
            slotSize: slotSize, slotCount: slots)
        configuration.burstSize = burst
        let daemon = FabricDaemon(configuration: configuration, handlers: DiagnosticModel.allHandlers) { event in
            say("\(event)")
        }
        // Serves until SIGINT or SIGTERM, then ends every session and removes
        // the socket. "listening" is printed once a signal would stop it cleanly.
        do { try daemon.run { say("listening on \(socket)") } } catch {
            report("\(error)")
            throw ExitCode(1)
        }
        let s = daemon.statistics
        say("stopped: \(s.sessionsOpened) sessions, \(s.commandsReceived) commands, \(s.commandsFailed) failed")
    }
}

/// Prints a line on standard output, unbuffered (tests read it while we run).
func say(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}
