import ArgumentParser
import FabricConsumer
import FabricDiagnostics
import FabricPrometheus
import Glibc
import SystemPackage

/// `fabricq serve`: a daemon with the diagnostic models, for smoke tests,
/// benchmarks and C controllers.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a daemon serving diagnostic models until SIGINT/SIGTERM.",
        discussion: """
            Without --model: 1 echo (output = input), 2 checksum (FNV-1a 64 of the input, 8 bytes), \
            3 delay (sleeps `flags` ms per command, then echoes), 4 empty (succeeds, no output).

            --model ID:KIND[=VALUE][,OPTION=VALUE...] serves exactly the models given instead. \
            Kinds: echo, checksum, empty, delay=DURATION (holds each batch that long without a CPU, \
            like a GPU call, then echoes), spin=DURATION (burns a CPU that long per batch, then echoes). \
            Options: instances=N, max-batch=N, preferred=N/N..., max-queue-delay=DURATION, queue=N, \
            priorities=N, execution=threads|poll-thread, cpu=N, node=N. Durations: 500us, 20ms, 5s.
              fabricq serve --socket /tmp/fq.sock --model 1:delay=20ms --model 2:echo
              fabricq serve --socket /tmp/fq.sock --model 3:delay=5ms,instances=4,max-batch=8,max-queue-delay=500us

            --metrics [HOST:]PORT serves Prometheus metrics at http://HOST:PORT/metrics (loopback unless \
            a host is given; port 0 picks a free one) and prints "metrics on http://HOST:PORT/metrics". \
            --seccomp installs, once serving, a system-call filter that refuses (EPERM) every call the \
            serving path does not need (FabricDaemon.servingSystemCalls); --seccomp-log lets them \
            through and has the kernel log them instead.

            --listen ucx://ADDRESS:PORT --authorized-keys FILE also serves controllers on other hosts over UCX \
            (TCP, shared memory or RDMA, as UCX finds them), admitting those whose key is in FILE \
            (fabricq keygen NAME writes NAME.pub); it prints "remote controllers on ucx://ADDRESS:PORT". \
            UCX traffic is not encrypted.
              fabricq serve --socket /tmp/fq.sock --listen ucx://10.0.0.7:7300 --authorized-keys controllers.pub

            Prints "listening on PATH" once controllers may connect, and per-model batch counts on exit.
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

    @Option(help: "Descriptors taken from one session per pass.")
    var burst = 32

    @Option(name: .customLong("model"), help: "A model to serve: ID:KIND[=VALUE][,OPTION=VALUE...] (repeatable).")
    var models: [String] = []

    @Option(help: "Serve Prometheus metrics at [HOST:]PORT/metrics (loopback by default).")
    var metrics: String?

    @Option(help: "Also serve controllers on other hosts at ucx://ADDRESS:PORT (port 0: any free port).")
    var listen: String?

    @Option(help: "With --listen: the controllers' public keys admitted, one a line (fabricq keygen writes NAME.pub).")
    var authorizedKeys: String?

    @Flag(help: "Once serving, refuse (EPERM) every system call the serving path does not need.")
    var seccomp = false

    @Flag(help: "Like --seccomp, but let such calls through and have the kernel log them.")
    var seccompLog = false

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
        if let listen {
            guard let address = UCXAddress(url: listen) else {
                throw ValidationError("--listen: ucx://ADDRESS:PORT with a numeric IPv4 or [IPv6] address")
            }
            guard let authorizedKeys else { throw ValidationError("--listen needs --authorized-keys FILE") }
            guard !seccomp && !seccompLog else {
                throw ValidationError("--seccomp cannot be combined with --listen: UCX opens sockets for every remote controller")
            }
            do {
                configuration.remote = RemoteListening(
                    address: address, authorizedKeys: try AuthorizedKeys(contentsOf: FilePath(authorizedKeys)))
            } catch {
                report("\(error)")
                throw ExitCode(2)
            }
        } else if authorizedKeys != nil {
            throw ValidationError("--authorized-keys goes with --listen")
        }
        // Started by a systemd socket unit: serve on the socket it passed.
        let activated = configuration.adoptSocketActivation()
        var served: [UInt32: ServedModel] = [:]
        for text in models {
            let specification: ModelSpecification
            do { specification = try ModelSpecification.parse(text) } catch { throw ValidationError("--model \(error)") }
            guard let handler = specification.makeHandler() else { throw ValidationError("--model \(text): no handler") }
            guard served[specification.id] == nil else { throw ValidationError("model \(specification.id) given twice") }
            served[specification.id] = ServedModel(handler: handler, configuration: specification.configuration)
        }
        let violation: SystemCallViolation? = seccompLog ? .log : seccomp ? .refuse : nil
        let onEvent: @Sendable (DaemonEvent) -> Void = { event in say("\(event)") }
        let daemon =
            served.isEmpty
            ? FabricDaemon(configuration: configuration, handlers: DiagnosticModel.allHandlers, onEvent: onEvent)
            : FabricDaemon(configuration: configuration, models: served, onEvent: onEvent)
        let endpoint: PrometheusEndpoint?
        do {
            let started = try PrometheusEndpoint.start(daemon: daemon, option: metrics)
            if let bound = started?.bound { say("metrics on http://\(bound)/metrics") }
            endpoint = started?.endpoint
        } catch {
            report("\(error)")
            throw ExitCode(1)
        }
        defer { endpoint?.stop() }
        // Serves until SIGINT or SIGTERM, then ends every session and removes
        // the socket. "listening" is printed once a signal would stop it cleanly.
        do {
            try daemon.run {
                if let violation {
                    do {
                        try daemon.restrictSystemCalls(violation)
                        say("system calls restricted (\(violation))")
                    } catch {
                        report("\(error)")
                        daemon.stop()
                        Glibc.exit(1)
                    }
                }
                say("listening on \(socket)\(activated ? " (socket activated)" : "")")
                if let remote = daemon.remoteAddress { say("remote controllers on \(remote.url)") }
            }
        } catch {
            report("\(error)")
            throw ExitCode(1)
        }
        let s = daemon.statistics
        say("stopped: \(s.sessionsOpened) sessions, \(s.commandsReceived) commands, \(s.commandsFailed) failed")
        let mean = s.batchesStarted > 0 ? Double(s.commandsStarted) / Double(s.batchesStarted) : 0
        say(
            "batches: \(s.batchesStarted) (mean size \((mean * 100).rounded() / 100)), expired \(s.commandsExpired), "
                + "cancelled \(s.commandsCancelled), model queue full \(s.commandsRejectedQueueFull)")
    }
}

/// Prints a line on standard output, unbuffered (tests read it while we run).
func say(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}
