import FabricConsumer
import FabricProducer
import Foundation
import InferenceEngine
import ResNetService
import SystemPackage
import XCTest

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// resnet-daemon as an operator runs it (Deploy/systemd/resnet-daemon.service):
/// a real forward pass through OpenBLAS under its own system-call filter,
/// Prometheus metrics counting the commands, a clean stop on SIGTERM.
final class DaemonOperationsTests: XCTestCase {
    func testDaemonClassifiesUnderItsFilterAndCountsInItsMetrics() throws {
        let dir = Support.temporaryDirectory()
        let key = EngineSigningKey()
        let path = try Support.seededEngine(.resnet18, in: dir, key: key)
        try key.write(to: dir + "/trusted.key")
        let socket = dir + "/d.sock"

        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: Support.productsDirectory + "/resnet-daemon")
        daemon.arguments = [
            "--socket", socket, "--public-key", dir + "/trusted.key.pub", "--engine", "1=\(path)", "--max-batch", "4",
            "--metrics", "127.0.0.1:0", "--seccomp",
        ]
        let out = dir + "/daemon.out"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        daemon.standardOutput = FileHandle(forWritingAtPath: out)
        daemon.standardError = FileHandle(forWritingAtPath: dir + "/daemon.err")
        try daemon.run()
        defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) } }
        func output() -> String { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
        let end = Date().addingTimeInterval(60)
        while !output().contains("listening") && daemon.isRunning && Date() < end { usleep(20_000) }
        XCTAssertTrue(output().contains("system calls restricted"), output())
        let status = try String(contentsOfFile: "/proc/\(daemon.processIdentifier)/status", encoding: .utf8)
        XCTAssertTrue(status.contains("Seccomp:\t2"))

        let engine = try EngineFile(path: path, verification: .trusting(key.publicKey))
        var session = try ControllerSession.connect(to: FilePath(socket))
        let imageBytes = engine.manifest.input.byteCount
        let record = ClassificationRecord.byteCount(classCount: engine.manifest.classCount)
        let m = engine.manifest.input
        let tensor = try XCTUnwrap(TensorHeader(elementType: .float32, shape: [m.channels, m.height, m.width]))
        for k in 0..<6 {
            let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
            // Every other image typed: the handler reads the elements after the header.
            let typed = k % 2 == 1
            let target =
                typed ? try XCTUnwrap(session.buffers.writeTensorHeader(tensor, into: input)) : session.buffers.buffer(input)
            Support.randomFloats(imageBytes / 4, seed: UInt64(k)).withUnsafeBytes { target.copyMemory(from: $0) }
            try session.submit(
                typed
                    ? CommandRequest(modelID: 1, input: input, tensor: tensor, output: output, outputCapacity: record)
                    : CommandRequest(modelID: 1, input: input, inputSize: imageBytes, output: output, outputCapacity: record))
            let done = try session.waitForCompletion(timeout: .seconds(60))
            XCTAssertEqual(done.status, .succeeded, "image \(k)")
            XCTAssertNotNil(
                ClassificationRecord.parse(
                    UnsafeRawBufferPointer(rebasing: session.buffers.buffer(done.output).prefix(done.outputSize)),
                    classCount: engine.manifest.classCount))
            session.buffers.release(done.input)
            session.buffers.release(done.output)
        }

        // The controller asks the daemon what model 1 takes instead of assuming.
        let classified = try Support.run(
            Support.productsDirectory + "/resnet-controller",
            ["--socket", socket, "--model", "1", Support.sampleImages + "/coffee.jpg"], timeout: 120)
        XCTAssertEqual(classified.status, 0, classified.stdout + classified.stderr)
        XCTAssertTrue(classified.stdout.contains(engine.manifest.name), classified.stdout)
        let absent = try Support.run(
            Support.productsDirectory + "/resnet-controller",
            ["--socket", socket, "--model", "9", Support.sampleImages + "/coffee.jpg"], timeout: 120)
        XCTAssertNotEqual(absent.status, 0)
        XCTAssertTrue(absent.stderr.contains("serves no model 9"), absent.stderr)

        let line = try XCTUnwrap(output().split(separator: "\n").first { $0.hasPrefix("metrics on http://") })
        let url = try XCTUnwrap(URL(string: String(line.dropFirst("metrics on ".count))))
        let metrics = try Self.fetch(url)
        XCTAssertTrue(metrics.contains("fabricq_completions_total{model=\"1\",status=\"succeeded\"} 7"), metrics)
        XCTAssertTrue(metrics.contains("# TYPE fabricq_handler_seconds histogram"), metrics)
        XCTAssertTrue(metrics.contains("fabricq_handler_seconds_count{model=\"1\"} 7"), metrics)

        kill(daemon.processIdentifier, SIGTERM)
        let stopBy = Date().addingTimeInterval(20)
        while daemon.isRunning && Date() < stopBy { usleep(20_000) }
        daemon.waitUntilExit()
        XCTAssertEqual(daemon.terminationStatus, 0)
        XCTAssertTrue(output().contains("stopped: 3 sessions, 7 commands, 0 failed"), output())
    }

    /// `GET url` (within 10 s), as text.
    private static func fetch(_ url: URL) throws -> String {
        let done = DispatchSemaphore(value: 0)
        let result = Box()
        URLSession.shared.dataTask(with: url) { data, _, error in
            result.set(data.map { String(decoding: $0, as: UTF8.self) } ?? "error: \(String(describing: error))")
            done.signal()
        }.resume()
        guard done.wait(timeout: .now() + 10) == .success else { throw URLError(.timedOut) }
        return result.get()
    }

    private final class Box: @unchecked Sendable {
        // @unchecked: one write before the semaphore's signal, one read after its wait
        private var text = ""
        func set(_ value: String) { text = value }
        func get() -> String { text }
    }
}
