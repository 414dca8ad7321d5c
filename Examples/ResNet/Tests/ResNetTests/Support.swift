import Foundation
import InferenceEngine
import XCTest

/// Shared helpers: temporary directories, small engines, child processes with deadlines.
enum Support {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let tools = packageRoot + "/Tools"
    static let sampleImages = packageRoot + "/Sources/resnet-pipeline/SampleImages"

    /// The directory holding the built executables (beside the test bundle).
    static let productsDirectory: String = {
        var dir = ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "") as NSString
        while dir.length > 1, !FileManager.default.fileExists(atPath: dir.appendingPathComponent("resnet-daemon")) {
            dir = dir.deletingLastPathComponent as NSString
        }
        return dir as String
    }()

    static func temporaryDirectory(_ name: String = #function) -> String {
        let path = NSTemporaryDirectory() + "resnet-tests-\(getpid())-\(name.filter { $0.isLetter || $0.isNumber })"
        try? FileManager.default.removeItem(atPath: path)
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Writes a seeded ResNet engine (narrow unless `width` says otherwise) and returns its path.
    static func seededEngine(
        _ architecture: ResNetArchitecture, width: Int = 8, classes: Int = 10, size: Int = 64,
        in dir: String, key: EngineSigningKey?
    ) throws -> String {
        var input = InputSpecification.imageNet
        input.height = size
        input.width = size
        input.resizeShorterSide = size * 8 / 7
        let (manifest, tensors) = ResNetBuilder(
            architecture: architecture, seed: 7, classCount: classes,
            baseWidth: width, input: input
        ).build()
        let path = dir + "/\(manifest.name).engine"
        try EngineWriter.write(manifest: manifest, tensors: tensors, to: path, signingKey: key)
        return path
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a process to completion; kills it and fails the test after `timeout` seconds.
    static func run(
        _ executable: String, _ arguments: [String], timeout: Double = 120,
        environment: [String: String] = [:]
    ) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let dir = temporaryDirectory("out\(UInt32.random(in: 0...UInt32.max))")
        let out = dir + "/stdout", err = dir + "/stderr"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: err)
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            XCTFail("\(executable) \(arguments) did not finish within \(timeout) s")
        }
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }

    /// Deterministic pseudo-random floats in [-1, 1).
    static func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
        var r = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float(2 * r.nextUnit() - 1) }
    }
}

/// Runs the Swift forward pass and Tools/reference_forward.py (numpy) on the same engine and input;
/// asserts max |swift − numpy| / max |numpy| ≤ 1e-3.
func assertMatchesNumpy(engine path: String, batch: Int, file: StaticString = #filePath, line: UInt = #line) throws {
    let engine = try EngineFile(path: path, verification: .skipVerification)
    let network = try Network(engine: engine, maximumBatch: batch)
    let spec = engine.manifest.input
    let floats = spec.byteCount / 4
    let input = Support.randomFloats(floats * batch, seed: 42).map { $0 * 2 }
    var swift = [Float](repeating: .nan, count: batch * network.classCount)
    input.withUnsafeBytes { raw in
        network.infer(
            batch: batch, input: { UnsafeRawBufferPointer(rebasing: raw[($0 * floats * 4)..<(($0 + 1) * floats * 4)]) },
            output: { image, logits in
                for k in 0..<logits.count { swift[image * network.classCount + k] = logits[k] }
            })
    }
    let dir = Support.temporaryDirectory()
    let inputPath = dir + "/input.f32", outputPath = dir + "/logits.f32"
    try input.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: inputPath)) }
    let r = try Support.run(
        "/usr/bin/env", ["python3", Support.tools + "/reference_forward.py", path, inputPath, "\(batch)", outputPath],
        timeout: 300)
    XCTAssertEqual(r.status, 0, "reference failed: \(r.stderr)", file: file, line: line)
    let data = try Data(contentsOf: URL(fileURLWithPath: outputPath))
    let reference = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    XCTAssertEqual(reference.count, swift.count, file: file, line: line)
    let scale = reference.map { abs($0) }.max() ?? 0
    let worst = zip(swift, reference).map { abs($0 - $1) }.max() ?? .nan
    XCTAssertGreaterThan(scale, 0, file: file, line: line)
    XCTAssertLessThanOrEqual(
        worst / scale, 1e-3, "\(engine.manifest.name): max |Δ| \(worst) for max |logit| \(scale)",
        file: file, line: line)
    // The logits must also differ between images (a broken batch layout would repeat one).
    if batch > 1 {
        XCTAssertNotEqual(
            Array(swift[0..<network.classCount]), Array(swift[network.classCount..<(2 * network.classCount)]),
            file: file, line: line)
    }
    print("\(engine.manifest.name) batch \(batch): max |Δ| / max |logit| = \(worst / scale)")
}
