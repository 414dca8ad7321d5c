import ArgumentParser
import COpenBLAS
import FabricConsumer
import FabricPrometheus
import Foundation
import InferenceEngine
import ResNetService
import SystemPackage

/// The inference daemon: verifies and maps engine files, registers each
/// under a model id, and serves controllers over FabricQueue sessions.
@main
struct ResNetDaemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnet-daemon",
        abstract: "Serve image-classifier engines to FabricQueue controllers until SIGINT/SIGTERM.",
        discussion: """
            Each --engine ID=PATH is verified against --public-key (Ed25519) before its weights are mapped; \
            an unsigned, tampered or truncated file stops the daemon with a message. Without --engine it \
            serves the store's engines: 1 resnet18-seeded, 2 resnet50-seeded, 3 efficientnet-lite0-pretrained \
            (when imported). Prints "listening on PATH" once controllers may connect.

            Under systemd (Type=notify) it reports READY=1 and feeds the watchdog (Deploy/systemd/\
            resnet-daemon.service). --metrics [HOST:]PORT serves Prometheus metrics at /metrics \
            (loopback unless a host is given); --seccomp restricts system calls once serving.
            """)

    @Option(help: "Unix socket path to listen on.")
    var socket = "/tmp/resnet-daemon.sock"

    @Option(name: .customLong("engine"), help: "Model id and engine file, ID=PATH (repeatable).")
    var engines: [String] = []

    @Option(help: "Trusted Ed25519 public key (.pub) that must have signed every engine.")
    var publicKey: String?

    @Option(help: "Engine directory for the defaults (default: $FABRICQUEUE_ENGINES or ~/.cache/fabricqueue/engines).")
    var engineDir: String?

    @Option(help: "Largest batch one forward pass takes (1...8).")
    var maxBatch = 8

    @Option(help: "OpenBLAS threads (default: OpenBLAS's own choice).")
    var blasThreads: Int?

    @Option(help: "Poll thread idle strategy: poll, adaptive or sleep.")
    var idle = "adaptive"

    @Option(help: "Buffer slots per session.")
    var slots = 48

    @Option(help: "Serve Prometheus metrics at [HOST:]PORT/metrics (loopback by default; 0 picks a port).")
    var metrics: String?

    @Flag(help: "Once serving, refuse (EPERM) every system call the serving path does not need.")
    var seccomp = false

    @Option(help: "Also serve controllers on other hosts at ucx://ADDRESS:PORT (port 0: any free port).")
    var listen: String?

    @Option(help: "With --listen: the controllers' public keys admitted, one a line (fabricq keygen writes NAME.pub).")
    var authorizedKeys: String?

    func run() throws {
        guard (1...8).contains(maxBatch) else { throw ValidationError("--max-batch must be 1...8") }
        let store = EngineStore(directory: engineDir)
        let trusted = try EnginePublicKey(contentsOf: publicKey ?? store.publicKeyPath)
        var plan = [(UInt32, String)]()
        for spec in engines {
            let parts = spec.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let id = UInt32(parts[0]), id > 0 else {
                throw ValidationError("--engine takes ID=PATH with ID > 0, got \(spec)")
            }
            plan.append((id, String(parts[1])))
        }
        if plan.isEmpty {
            plan = [(1, store.seededPath(.resnet18)), (2, store.seededPath(.resnet50))]
            if FileManager.default.fileExists(atPath: store.pretrainedPath) { plan.append((3, store.pretrainedPath)) }
        }
        if let blasThreads { openblas_set_num_threads(Int32(blasThreads)) }

        var handlers = [UInt32: any CommandHandler]()
        var largestInput = 0
        for (id, path) in plan {
            guard handlers[id] == nil else { throw ValidationError("model id \(id) given twice") }
            do {
                let engine = try EngineFile(path: path, verification: .trusting(trusted))
                let handler = try ClassifierHandler(engine: engine, maximumBatch: maxBatch)
                handlers[id] = handler
                largestInput = max(largestInput, engine.manifest.input.byteCount, Int(handler.requiredOutputCapacity))
                let m = engine.manifest
                say(
                    "model \(id): \(m.name) (\(m.architecture), \(m.weights == .pretrained ? "pretrained" : "seeded, untrained"), "
                        + "\(m.input.height)×\(m.input.width), \(m.classCount) classes), key \(trusted.fingerprint), \(path)")
            } catch {
                report("refusing engine \(path) for model \(id): \(error)")
                throw ExitCode(2)
            }
        }

        var configuration = DaemonConfiguration(socketPath: FilePath(socket))
        guard let idleStrategy = IdleStrategy(commandLineName: idle) else {
            throw ValidationError("--idle must be poll, adaptive or sleep")
        }
        configuration.idle = idleStrategy
        // One slot holds one image (input; room for a tensor header before it) or one classification record.
        configuration.session = SessionLimits(
            submissionCapacity: 64, completionCapacity: 64,
            slotSize: (largestInput + TensorHeader.size + 4095) & ~4095, slotCount: slots)
        configuration.burstSize = maxBatch
        if let listen {
            guard let address = UCXAddress(url: listen) else {
                throw ValidationError("--listen: ucx://ADDRESS:PORT with a numeric IPv4 or [IPv6] address")
            }
            guard let authorizedKeys else { throw ValidationError("--listen needs --authorized-keys FILE") }
            guard !seccomp else { throw ValidationError("--seccomp cannot be combined with --listen") }
            configuration.remote = RemoteListening(
                address: address, authorizedKeys: try AuthorizedKeys(contentsOf: FilePath(authorizedKeys)))
        }
        // Started by a systemd socket unit: serve on the socket it passed.
        let activated = configuration.adoptSocketActivation()
        let daemon = FabricDaemon(configuration: configuration, handlers: handlers)
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
        // Until SIGINT or SIGTERM (taken by Dispatch signal sources, whichever
        // thread, OpenBLAS's included, the kernel delivers them to), with
        // systemd's readiness and watchdog notifications when run by it.
        do {
            try daemon.run {
                if seccomp {
                    do { try daemon.restrictSystemCalls() } catch {
                        report("\(error)")
                        daemon.stop()
                        Glibc.exit(1)
                    }
                    say("system calls restricted")
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
    }
}

/// A line on standard output, unbuffered (the pipeline reads it while we run).
func say(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { _ = Glibc.write(1, $0.baseAddress, $0.count) }
}

/// A line on standard error.
func report(_ message: String) {
    var line = "resnet-daemon: " + message + "\n"
    line.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
}
