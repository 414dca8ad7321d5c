import DaemonTestSupport
import FabricConsumer
import FabricProducer
import FabricPrometheus
import FabricSession
import FabricTestSupport
import Foundation
import Glibc
import SystemPackage
import XCTest

/// Operating the daemon (issue 17), with real processes: `fabricq top`,
/// `fabricq ping` and the Prometheus endpoint against a `fabricq serve`
/// under a known `fabricq load`; the system-call filter refusing a call a
/// handler makes while serving goes on.
final class OperationsTests: XCTestCase {
    /// `fabricq serve` with `arguments`, once it listens.
    private func serve(_ arguments: [String]) throws -> (daemon: ChildProcess, socket: String) {
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess("fabricq", ["serve", "--socket", socket] + arguments)
        addTeardownBlock { daemon.terminate() }
        XCTAssertTrue(daemon.waitForOutput("listening", timeout: 30), daemon.standardError)
        return (daemon, socket)
    }

    /// The loopback port a `fabricq serve --metrics` printed
    /// ("metrics on http://127.0.0.1:PORT/metrics").
    private func metricsPort(of daemon: ChildProcess) throws -> Int {
        let line = try XCTUnwrap(
            daemon.standardOutput.split(separator: "\n").first { $0.hasPrefix("metrics on http://127.0.0.1:") },
            daemon.standardOutput)
        return try XCTUnwrap(Int(line.split(separator: ":").last?.split(separator: "/").first ?? ""))
    }

    /// `fabricq load --json` in the background.
    private func startLoad(_ socket: String, model: UInt32, duration: String) throws -> ChildProcess {
        let load = try ChildProcess(
            "fabricq",
            ["load", "--socket", socket, "--model", "\(model)", "--duration", duration, "--concurrency", "2", "--json"])
        addTeardownBlock { load.terminate() }
        return load
    }

    /// How many commands a finished load completed (all verified).
    private func completed(_ load: ChildProcess) throws -> Int {
        XCTAssertEqual(load.wait(timeout: 60).map(ChildProcess.exitCode), 0, load.standardError)
        let report = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(load.standardOutput.utf8)) as? [String: Any], load.standardOutput)
        XCTAssertEqual(report["wrong"] as? Int, 0)
        XCTAssertEqual(report["failed"] as? Int, 0)
        return try XCTUnwrap(report["completed"] as? Int)
    }

    /// `fabricq top --once --json`, decoded.
    private func top(_ socket: String) throws -> (telemetry: DaemonTelemetry, rates: [String: Any]) {
        let run = try ChildProcess("fabricq", ["top", "--socket", socket, "--once", "--json", "--interval", "100ms"])
        XCTAssertEqual(run.wait(timeout: 30).map(ChildProcess.exitCode), 0, run.standardError)
        let object = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any], run.standardOutput)
        let telemetry = try JSONSerialization.data(withJSONObject: try XCTUnwrap(object["telemetry"]))
        return (try DaemonTelemetry.decode(Array(telemetry)), try XCTUnwrap(object["modelRates"] as? [String: Any]))
    }

    func testTopShowsTheSessionsAndPerModelCountsOfAKnownLoad() throws {
        let (daemon, socket) = try serve(["--model", "1:echo", "--model", "2:checksum"])
        let load = try startLoad(socket, model: 1, duration: "1500ms")
        // While it runs: its session, with the load's pid and our uid, and a rate.
        var during: DaemonTelemetry?
        let end = Date().addingTimeInterval(20)
        while Date() < end {
            let (telemetry, rates) = try top(socket)
            if !telemetry.sessions.isEmpty && (rates["1"] as? Double ?? 0) > 0 {
                during = telemetry
                break
            }
        }
        let live = try XCTUnwrap(during, "top never showed the load's session moving")
        XCTAssertEqual(live.sessions.count, 1)
        XCTAssertEqual(live.sessions.first?.pid, load.pid)
        XCTAssertEqual(live.sessions.first?.uid, getuid())
        XCTAssertEqual(live.sessions.first?.submissionRing.capacity, 256)
        XCTAssertEqual(live.processID, daemon.pid)

        let n = UInt64(try completed(load))
        let (after, _) = try top(socket)
        let echo = try XCTUnwrap(after.models.first { $0.id == 1 })
        XCTAssertEqual(echo.completions.succeeded, n, "every command the load completed, counted once")
        XCTAssertEqual(echo.completions.failed, 0)
        XCTAssertEqual(echo.commandsReceived, n)
        XCTAssertEqual(echo.commandsStarted, n)
        XCTAssertEqual(echo.inFlight, 0)
        XCTAssertEqual(echo.queueDepth, 0)
        for stage in [echo.queueWait, echo.handler, echo.completionPosting] {
            XCTAssertEqual(stage.count, n)
            XCTAssertNotNil(stage.quantile(0.99))
        }
        XCTAssertEqual(echo.batchSize.sum, n, "batch sizes add up to the commands")
        XCTAssertEqual(echo.batchSize.count, echo.batchesStarted)
        let checksum = try XCTUnwrap(after.models.first { $0.id == 2 })
        XCTAssertEqual(checksum.commandsReceived, 0)
        XCTAssertTrue(after.sessions.isEmpty, "the load's session is gone")
        XCTAssertEqual(after.totals.sessionsOpened, 1, "queries open no session")
        XCTAssertEqual(after.totals.commandsSucceeded, n)

        // The table a person reads.
        let table = try ChildProcess("fabricq", ["top", "--socket", socket, "--once", "--interval", "100ms"])
        XCTAssertEqual(table.wait(timeout: 30).map(ChildProcess.exitCode), 0, table.standardError)
        XCTAssertTrue(table.standardOutput.contains("MODEL"), table.standardOutput)
        XCTAssertTrue(table.standardOutput.contains("\n1     1    "), table.standardOutput)
        XCTAssertTrue(table.standardOutput.contains("(no sessions)"), table.standardOutput)
        XCTAssertEqual(daemon.stop(timeout: 10).map(ChildProcess.exitCode), 0)
    }

    func testMetricsScrapedDuringALoadParseAndMatchWhatItSubmitted() throws {
        let (daemon, socket) = try serve(["--model", "1:echo", "--metrics", "127.0.0.1:0"])
        let port = try metricsPort(of: daemon)
        XCTAssertEqual(try httpGet(port: port, path: "/nothing").status, 404)

        let load = try startLoad(socket, model: 1, duration: "1500ms")
        var sawTraffic = false
        let end = Date().addingTimeInterval(20)
        while Date() < end && !sawTraffic {
            let (status, body) = try httpGet(port: port, path: "/metrics")
            XCTAssertEqual(status, 200)
            let scrape = try PrometheusText(parsing: body)
            sawTraffic =
                (scrape.value("fabricq_completions_total", ["model": "1", "status": "succeeded"]) ?? 0) > 0
                && scrape.value("fabricq_sessions_open") == 1
            usleep(100_000)
        }
        XCTAssertTrue(sawTraffic, "a scrape during the load saw it")
        let n = Double(try completed(load))

        let scrape = try PrometheusText(parsing: try httpGet(port: port, path: "/metrics").body)
        let model = ["model": "1"]
        XCTAssertEqual(scrape.types["fabricq_completions_total"], "counter")
        XCTAssertEqual(scrape.types["fabricq_handler_seconds"], "histogram")
        XCTAssertEqual(scrape.types["fabricq_queue_depth"], "gauge")
        XCTAssertEqual(scrape.value("fabricq_completions_total", ["model": "1", "status": "succeeded"]), n)
        XCTAssertEqual(scrape.value("fabricq_completions_total", ["model": "1", "status": "handler_failed"]), 0)
        XCTAssertEqual(scrape.value("fabricq_commands_received_total", model), n)
        XCTAssertEqual(scrape.value("fabricq_handler_seconds_count", model), n)
        XCTAssertEqual(scrape.value("fabricq_queue_wait_seconds_count", model), n)
        XCTAssertEqual(scrape.value("fabricq_completion_posting_seconds_count", model), n)
        XCTAssertEqual(scrape.value("fabricq_batch_size_sum", model), n)
        XCTAssertGreaterThan(scrape.value("fabricq_handler_seconds_sum", model) ?? 0, 0)
        XCTAssertEqual(scrape.value("fabricq_sessions_opened_total"), 1)
        XCTAssertEqual(scrape.value("fabricq_sessions_open"), 0)
        XCTAssertEqual(scrape.value("fabricq_in_flight", model), 0)
        XCTAssertEqual(daemon.stop(timeout: 10).map(ChildProcess.exitCode), 0)
    }

    func testPingAnswersWhileTheDaemonServesAndFailsOtherwise() throws {
        let (daemon, socket) = try serve(["--model", "1:echo", "--model", "7:delay=1ms,instances=2"])
        let ping = try ChildProcess("fabricq", ["ping", "--socket", socket, "--timeout", "2s"])
        XCTAssertEqual(ping.wait(timeout: 30).map(ChildProcess.exitCode), 0, ping.standardError)
        XCTAssertTrue(ping.standardOutput.contains("fabricqueue \(FabricQueueVersion.current), protocol 2"), ping.standardOutput)
        XCTAssertTrue(ping.standardOutput.contains("models 1 (1× threads), 7 (2× threads)"), ping.standardOutput)
        XCTAssertTrue(ping.standardOutput.contains("pid \(daemon.pid), up "), ping.standardOutput)
        XCTAssertEqual(daemon.stop(timeout: 10).map(ChildProcess.exitCode), 0)

        let gone = try ChildProcess("fabricq", ["ping", "--socket", socket, "--timeout", "500ms"])
        XCTAssertEqual(gone.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(gone.standardError.contains("no daemon at"), gone.standardError)

        // Something listens but never answers: the timeout holds.
        let silent = temporarySocketPath(self)
        let listener = try UnixSocket.listen(at: FilePath(silent))
        _ = listener
        let started = Date()
        let hung = try ChildProcess("fabricq", ["ping", "--socket", silent, "--timeout", "300ms"])
        XCTAssertEqual(hung.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
        XCTAssertTrue(hung.standardError.contains("timed out"), hung.standardError)

        // A wedged daemon whose backlog is full: connect(2) itself would
        // block for ever; the timeout still holds.
        var filling: [Int32] = []
        defer { filling.forEach { Glibc.close($0) } }
        while filling.count < 4096 {
            let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { bytes in
                for (i, byte) in silent.utf8.enumerated() { bytes[i] = byte }
            }
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            let full = result != 0 && errno == EAGAIN
            filling.append(fd)
            if full { break }
        }
        XCTAssertLessThan(filling.count, 4096, "the backlog filled")
        let blocked = Date()
        let wedged = try ChildProcess("fabricq", ["ping", "--socket", silent, "--timeout", "300ms"])
        XCTAssertEqual(wedged.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertLessThan(Date().timeIntervalSince(blocked), 10, "connect gave up at the timeout")
        XCTAssertTrue(wedged.standardError.contains("timed out"), wedged.standardError)
    }

    func testSeccompRefusesAForbiddenCallWhileServingGoesOn() throws {
        let socket = temporarySocketPath(self)
        let daemon = try ChildProcess("fabricq-test-helper", ["serve-models", socket, "--seccomp", "1:echo", "9:probe"])
        addTeardownBlock { daemon.terminate() }
        XCTAssertTrue(daemon.waitForOutput("listening", timeout: 30), daemon.standardError)
        XCTAssertTrue(daemon.standardOutput.contains("in-process echo ok"), "connectInProcess works under the filter")
        let status = try String(contentsOfFile: "/proc/\(daemon.pid)/status", encoding: .utf8)
        XCTAssertTrue(status.contains("Seccomp:\t2"), "a filter is installed")

        var session = try ControllerSession.connect(to: FilePath(socket))
        func run(model: UInt32, _ bytes: [UInt8]) throws -> [UInt8] {
            let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
            session.buffers.buffer(input).copyBytes(from: bytes)
            try session.submit(CommandRequest(modelID: model, input: input, inputSize: bytes.count, output: output))
            let completion = try session.waitForCompletion(timeout: .seconds(10))
            defer {
                session.buffers.release(completion.input)
                session.buffers.release(completion.output)
            }
            XCTAssertTrue(completion.succeeded)
            return Array(session.buffers.buffer(output).prefix(completion.outputSize))
        }
        let probe = try run(model: 9, [0])
        let errnos = probe.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
        XCTAssertEqual(errnos, [UInt32(EPERM), 0], "socket(AF_INET) refused, socket(AF_UNIX) allowed")
        for k in 0..<50 {
            XCTAssertEqual(try run(model: 1, [UInt8(k), 1, 2]), [UInt8(k), 1, 2], "serving goes on")
        }
        XCTAssertEqual(try run(model: 9, [1]), probe, "and refuses again")
        XCTAssertEqual(daemon.stop(timeout: 10).map(ChildProcess.exitCode), 0, daemon.standardError)
    }

    /// The real `fabricq serve --seccomp`, with its metrics endpoint: every
    /// operator path works under its own filter.
    func testServeUnderItsOwnFilterServesQueriesScrapesAndStopsCleanly() throws {
        let (daemon, socket) = try serve([
            "--model", "1:echo", "--model", "2:delay=1ms,instances=2", "--seccomp", "--metrics", "0",
        ])
        XCTAssertTrue(daemon.standardOutput.contains("system calls restricted (refuse)"), daemon.standardOutput)
        let status = try String(contentsOfFile: "/proc/\(daemon.pid)/status", encoding: .utf8)
        XCTAssertTrue(status.contains("Seccomp:\t2"))
        let port = try metricsPort(of: daemon)
        let one = try startLoad(socket, model: 1, duration: "300ms")
        let two = try startLoad(socket, model: 2, duration: "300ms")
        let n = try completed(one) + completed(two)
        XCTAssertGreaterThan(n, 0)
        let scrape = try PrometheusText(parsing: try httpGet(port: port, path: "/metrics").body)
        XCTAssertEqual(scrape.value("fabricq_sessions_opened_total"), 2)
        let (telemetry, _) = try top(socket)
        XCTAssertEqual(telemetry.totals.commandsSucceeded, UInt64(n))
        XCTAssertEqual(daemon.stop(timeout: 10).map(ChildProcess.exitCode), 0, daemon.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "the socket file is removed at stop")
    }

    func testModelsListsWhatTheDaemonRegistered() throws {
        let (daemon, socket) = try serve([
            "--model", "1:echo", "--model", "5:delay=1ms,instances=2,max-batch=4,preferred=2/4,max-queue-delay=500us",
            "--model", "6:checksum,priorities=3,queue=64",
        ])
        let run = try ChildProcess("fabricq", ["models", "--socket", socket, "--json"])
        XCTAssertEqual(run.wait(timeout: 30).map(ChildProcess.exitCode), 0, run.standardError)
        let listed = try ModelDescription.decode(Array(run.standardOutput.utf8))
        XCTAssertEqual(listed.map(\.id), [1, 5, 6])
        XCTAssertEqual(listed.map(\.name), ["echo", "delay", "checksum"])
        let delay = listed[1], checksum = listed[2]
        XCTAssertEqual(delay.maximumBatchSize, 4)
        XCTAssertEqual(delay.preferredBatchSizes, [2, 4])
        XCTAssertEqual(delay.maximumQueueDelayMicroseconds, 500)
        XCTAssertEqual(delay.instances, 2)
        XCTAssertEqual(delay.execution, "threads")
        XCTAssertEqual(checksum.outputBytes, 8, "the checksum's required output")
        XCTAssertEqual(checksum.priorityLevels, 3)
        XCTAssertEqual(checksum.queueCapacity, 64)
        XCTAssertNil(checksum.input, "the diagnostic models do not state their input")

        // The same through the controller API, and as a table.
        let session = try ControllerSession.connect(to: FilePath(socket))
        XCTAssertEqual(try session.models(), listed)
        let table = try ChildProcess("fabricq", ["models", "--socket", socket])
        XCTAssertEqual(table.wait(timeout: 30).map(ChildProcess.exitCode), 0, table.standardError)
        XCTAssertTrue(table.standardOutput.contains("ID    NAME"), table.standardOutput)
        XCTAssertTrue(table.standardOutput.contains("5     delay "), table.standardOutput)
        XCTAssertTrue(table.standardOutput.contains("2,4"), table.standardOutput)
        XCTAssertEqual(daemon.stop(timeout: 10).map(ChildProcess.exitCode), 0)

        let gone = try ChildProcess("fabricq", ["models", "--socket", socket, "--timeout", "300ms"])
        XCTAssertEqual(gone.wait(timeout: 30).map(ChildProcess.exitCode), 1)
    }

    func testMetricsAddressParsing() {
        XCTAssertEqual(MetricsAddress(parsing: "9464"), MetricsAddress(host: "127.0.0.1", port: 9464))
        XCTAssertEqual(MetricsAddress(parsing: "0.0.0.0:80"), MetricsAddress(host: "0.0.0.0", port: 80))
        XCTAssertEqual(MetricsAddress(parsing: "[::1]:9464"), MetricsAddress(host: "::1", port: 9464))
        XCTAssertEqual(MetricsAddress(parsing: "[::1]:9464")?.description, "[::1]:9464")
        for bad in ["", "host", ":80", "host:70000", "-1", "host:"] { XCTAssertNil(MetricsAddress(parsing: bad), bad) }
    }
}
