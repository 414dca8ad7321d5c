import Dispatch
import FabricConsumer
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Where a ``PrometheusEndpoint`` listens: a host and a TCP port.
public struct MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    /// The host or IP address to bind (`127.0.0.1` unless told otherwise).
    public var host: String
    /// The TCP port (0: any free port, reported by ``PrometheusEndpoint/start()``).
    public var port: Int

    /// An address.
    public init(host: String = "127.0.0.1", port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `PORT`, `HOST:PORT` or `[IPv6]:PORT`; a bare port binds the
    /// loopback interface only. Nil when it is none of these.
    public init?(parsing text: String) {
        if let port = Int(text) {
            guard (0...65535).contains(port) else { return nil }
            self.init(port: port)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    /// `host:port`, with an IPv6 host in brackets.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Why a ``PrometheusEndpoint`` did not start.
public enum MetricsEndpointError: Error, Sendable, CustomStringConvertible {
    /// The HTTP server failed to bind or run (its error's description).
    case server(String)
    /// It did not report listening within 10 seconds.
    case timedOut
    /// ``PrometheusEndpoint/start()`` was called twice.
    case alreadyStarted
    /// A `--metrics` value that is not `PORT`, `HOST:PORT` or `[IPv6]:PORT`.
    case badAddress(String)

    /// What went wrong, in words.
    public var description: String {
        switch self {
        case .server(let what): "metrics endpoint: \(what)"
        case .timedOut: "metrics endpoint: not listening after 10 s"
        case .alreadyStarted: "metrics endpoint already started"
        case .badAddress(let text): "--metrics \(text): not PORT, HOST:PORT or [IPv6]:PORT"
        }
    }
}

/// Serves a ``FabricDaemon``'s telemetry at `GET /metrics` in the Prometheus
/// text format, on its own threads (a Hummingbird HTTP/1.1 server on
/// SwiftNIO's event loops).
///
/// Each scrape takes one ``FabricDaemon/telemetry()`` snapshot: relaxed loads
/// of the counters the poll thread writes, never a message to it, so a
/// scrape cannot slow serving beyond the CPU time it takes.
///
/// ```swift
/// let daemon = FabricDaemon(configuration: configuration, models: models)
/// let metrics = PrometheusEndpoint(daemon: daemon, address: MetricsAddress(port: 9464))
/// let bound = try metrics.start()     // 127.0.0.1:9464
/// try daemon.run()
/// metrics.stop()
/// ```
public final class PrometheusEndpoint: Sendable {
    /// The daemon served.
    public let daemon: FabricDaemon
    /// Where it was asked to listen.
    public let address: MetricsAddress
    private let exposition = PrometheusExposition()
    private let server = Mutex<(group: ServiceGroup, task: Task<Void, Never>)?>(nil)

    /// An endpoint for `daemon` at `address` (not listening until ``start()``).
    public init(daemon: FabricDaemon, address: MetricsAddress) {
        self.daemon = daemon
        self.address = address
    }

    deinit { stop() }

    /// For a daemon's `--metrics [HOST:]PORT` option: nil when `option` is
    /// nil; otherwise an endpoint for `daemon`, started, and the address it
    /// bound (what `fabricq serve` and `resnet-daemon` print as
    /// `metrics on http://ADDRESS/metrics`).
    public static func start(
        daemon: FabricDaemon, option: String?
    ) throws(MetricsEndpointError) -> (endpoint: PrometheusEndpoint, bound: MetricsAddress)? {
        guard let option else { return nil }
        guard let address = MetricsAddress(parsing: option) else { throw .badAddress(option) }
        let endpoint = PrometheusEndpoint(daemon: daemon, address: address)
        return (endpoint, try endpoint.start())
    }

    /// The text a scrape gets now.
    public func render() -> [UInt8] { exposition.render(daemon.telemetry()) }

    /// Starts listening; returns the address bound (the real port when
    /// ``MetricsAddress/port`` is 0). Waits up to 10 seconds for the server.
    @discardableResult
    public func start() throws(MetricsEndpointError) -> MetricsAddress {
        let outcome = StartOutcome()
        let ready = DispatchSemaphore(value: 0)
        let requested = address
        var logger = Logger(label: "fabricqueue.metrics")
        logger.logLevel = .warning
        let router = Router()
        router.get("metrics") { [self] _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: self.render())))
        }
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(requested.host, port: requested.port)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? requested.port
                outcome.value.withLock { $0 = .success(MetricsAddress(host: requested.host, port: port)) }
                ready.signal()
            },
            logger: logger)
        // A service group of one, for its graceful shutdown (``stop()``); it
        // takes no signals: the daemon's own `run` does.
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], cancellationSignals: [], logger: logger)
        try server.withLock { (running) throws(MetricsEndpointError) in
            guard running == nil else { throw .alreadyStarted }
            let task = Task {
                do { try await group.run() } catch {
                    outcome.value.withLock { if $0 == nil { $0 = .failure(.server("\(error)")) } }
                    ready.signal()
                }
            }
            running = (group, task)
        }
        guard ready.wait(timeout: .now() + 10) == .success, let result = outcome.value.withLock({ $0 }) else {
            stop()
            throw .timedOut
        }
        if case .failure = result { stop() }
        return try result.get()
    }

    /// Stops listening (idempotent); returns once the server has closed.
    public func stop() {
        guard
            let running = server.withLock({ r in
                defer { r = nil }
                return r
            })
        else { return }
        let done = DispatchSemaphore(value: 0)
        Task {
            await running.group.triggerGracefulShutdown()
            await running.task.value
            done.signal()
        }
        if done.wait(timeout: .now() + 10) == .timedOut { running.task.cancel() }
    }
}

/// How a start ended, shared between the server's task and ``PrometheusEndpoint/start()``.
private final class StartOutcome: Sendable {
    let value = Mutex<Result<MetricsAddress, MetricsEndpointError>?>(nil)
}
