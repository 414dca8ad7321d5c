import FabricConsumer
import FabricProducer
import Foundation
import ImagePipeline
import InferenceEngine
import ResNetService
import SystemPackage
import XCTest

/// The example end to end: the real resnet-pipeline executable (which starts
/// resnet-daemon as a child process) and the handler's error completions.
final class PipelineTests: XCTestCase {
    func testPipelineRunsEndToEndAndWritesJSON() throws {
        let store = Support.temporaryDirectory()
        let json = store + "/report.json"
        let r = try Support.run(
            Support.productsDirectory + "/resnet-pipeline",
            [
                "--engine-dir", store, "--engines", "pretrained,resnet18", "--batch-sizes", "1,3",
                "--images-per-run", "4", "--json", json,
            ], timeout: 300)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("pretrained engine not imported"), r.stdout)
        XCTAssertTrue(r.stdout.contains("seeded, UNTRAINED"), r.stdout)
        XCTAssertTrue(r.stdout.contains("submit→pickup"), r.stdout)
        XCTAssertTrue(r.stdout.contains("[daemon] stopped: 1 sessions"), r.stdout)
        let reports = try JSONDecoder().decode([RunReport].self, from: Data(contentsOf: URL(fileURLWithPath: json)))
        XCTAssertEqual(reports.map(\.batchSize), [1, 3])
        for report in reports {
            XCTAssertEqual(report.engine, "resnet18-seeded")
            XCTAssertEqual(report.images, 4)
            XCTAssertEqual(report.failures, 0)
            XCTAssertEqual(report.disagreements, 0)
            XCTAssertEqual(report.results.count, 3)  // three sample images
            XCTAssertTrue(report.results.allSatisfy { $0.top5.count == 5 && $0.daemonAgrees })
            XCTAssertGreaterThan(report.stage(.inference).p50, 1000)  // a real forward pass: > 1 ms
            XCTAssertGreaterThan(report.stage(.queue).p50, 0)
            XCTAssertGreaterThan(report.fabricShare, 0)
            XCTAssertLessThan(report.fabricShare, 1)
        }
        // Different photos give different logits, hence (almost surely) different top-5 orders or scores.
        let tops = reports[0].results.map { $0.top5.map(\.probability) }
        XCTAssertNotEqual(tops[0], tops[1])
    }

    /// Issue 16: FP16 and INT8 inputs (typed tensors, a half and a quarter
    /// of the bytes) give the same top-1 as FP32 on the bundled photos with
    /// the pretrained engine, through the real daemon (skipped, saying so,
    /// where it has not been imported: `scripts/test` imports it).
    func testReducedPrecisionKeepsThePretrainedTop1OnTheBundledPhotos() throws {
        let store = EngineStore(directory: nil)
        guard FileManager.default.fileExists(atPath: store.pretrainedPath) else {
            throw XCTSkip("pretrained engine not imported (scripts/import-pretrained)")
        }
        let report = try comparePrecisions(["--engines", "pretrained", "--generated", "6"])
        XCTAssertEqual(report.engine, "efficientnet-lite0-pretrained")
        for row in report.rows {
            XCTAssertEqual(row.top1AgreementOnGiven, 3, "\(row.precision): top-1 as FP32 on every bundled photo")
        }
        XCTAssertLessThan(try XCTUnwrap(report.row(.fp16)).maxRelativeLogitError, 1e-2)
        XCTAssertLessThan(try XCTUnwrap(report.row(.int8)).maxRelativeLogitError, 1e-1)
    }

    /// The comparison itself, on the seeded ResNet-18 (always available):
    /// the bytes each precision puts through the fabric, FP16 keeping the
    /// top-1 of every bundled photo, errors that are real and bounded, INT8
    /// coarser than FP16. (INT8's top-1 is not asserted here: the untrained
    /// network's two best classes for coffee.jpg are 0.47 % and 0.47 %, closer
    /// than INT8's rounding; Examples/ResNet/README.md.)
    func testPrecisionComparisonReportsBytesAgreementAndError() throws {
        let store = Support.temporaryDirectory()
        let report = try comparePrecisions(["--engine-dir", store, "--engines", "resnet18", "--generated", "6"])
        XCTAssertEqual(report.engine, "resnet18-seeded")
        XCTAssertEqual([report.images, report.generated], [9, 6])
        XCTAssertEqual(report.rows.map(\.precision), [.fp32, .fp16, .int8])
        XCTAssertEqual(report.rows.map(\.inputBytesPerImage), [64 + 602_112, 64 + 301_056, 64 + 150_528])
        for row in report.rows { XCTAssertGreaterThan(row.inference.p50, 1000, "a real forward pass: > 1 ms") }
        let fp32 = try XCTUnwrap(report.row(.fp32)), fp16 = try XCTUnwrap(report.row(.fp16))
        let int8 = try XCTUnwrap(report.row(.int8))
        XCTAssertEqual([fp32.top1Agreement, fp32.top5Agreement, fp16.top1AgreementOnGiven], [9, 9, 3])
        XCTAssertEqual(fp32.maxLogitError, 0)
        XCTAssertGreaterThan(fp16.maxLogitError, 0, "FP16 is not FP32 in disguise")
        XCTAssertLessThan(fp16.maxRelativeLogitError, 1e-2)
        XCTAssertGreaterThan(int8.maxLogitError, fp16.maxLogitError, "INT8 is coarser than FP16")
        XCTAssertLessThan(int8.maxRelativeLogitError, 5e-2)
    }

    /// Runs `resnet-pipeline --compare-precisions` with `arguments` and returns its one report.
    private func comparePrecisions(_ arguments: [String]) throws -> PrecisionReport {
        let json = Support.temporaryDirectory("precision\(UInt32.random(in: 0...UInt32.max))") + "/precision.json"
        let r = try Support.run(
            Support.productsDirectory + "/resnet-pipeline", arguments + ["--compare-precisions", "--json", json], timeout: 300)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("precision comparison"), r.stdout)
        let reports = try JSONDecoder().decode([PrecisionReport].self, from: Data(contentsOf: URL(fileURLWithPath: json)))
        return try XCTUnwrap(reports.first)
    }

    /// Issue 13, item 17: a bad file among the images costs that image, not
    /// the run: it is reported as skipped with the reason in words, and the
    /// good images are classified.
    func testABadImageIsSkippedAndTheRunGoesOn() throws {
        let store = Support.temporaryDirectory()
        let directory = Support.temporaryDirectory("not-an-image")
        let json = store + "/report.json"
        let r = try Support.run(
            Support.productsDirectory + "/resnet-pipeline",
            [
                "--engine-dir", store, "--engines", "resnet18", "--batch-sizes", "2", "--images-per-run", "3",
                "--json", json, Support.sampleImages + "/coffee.jpg", directory, Support.sampleImages + "/chelsea.png",
            ], timeout: 300)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("SKIPPED cannot read \(directory): Is a directory"), r.stdout)
        let reports = try JSONDecoder().decode([RunReport].self, from: Data(contentsOf: URL(fileURLWithPath: json)))
        XCTAssertEqual(reports.first?.skipped, ["cannot read \(directory): Is a directory"])
        XCTAssertEqual(reports.first?.results.count, 2)
        XCTAssertEqual(reports.first?.failures, 0)
    }

    func testExecutablesHaveHelp() throws {
        for tool in ["resnet-pipeline", "resnet-daemon", "resnet-controller", "resnet-engine"] {
            let r = try Support.run(Support.productsDirectory + "/" + tool, ["--help"], timeout: 30)
            XCTAssertEqual(r.status, 0, tool)
            XCTAssertTrue(r.stdout.contains("USAGE: \(tool)"), r.stdout)
        }
    }

    func testHandlerFailsMalformedCommandsAndServesTheRest() throws {
        // In-process daemon (real socket, memfds) with a small engine; one command has a short input,
        // one a short output; the valid ones in the same burst still complete with correct records.
        let dir = Support.temporaryDirectory()
        let path = try Support.seededEngine(.resnet18, in: dir, key: nil)
        let engine = try EngineFile(path: path, verification: .skipVerification)
        let handler = try ClassifierHandler(engine: engine, maximumBatch: 4)
        var configuration = DaemonConfiguration(socketPath: FilePath(dir + "/d.sock"))
        configuration.session = SessionLimits(slotSize: 64 * 1024, slotCount: 16)
        configuration.burstSize = 8
        let daemon = FabricDaemon(configuration: configuration, handlers: [5: handler])
        try daemon.start()
        defer { daemon.stop() }

        var session = try ControllerSession.connect(to: FilePath(dir + "/d.sock"))
        let imageBytes = engine.manifest.input.byteCount
        let record = ClassificationRecord.byteCount(classCount: 10)
        var requests = [CommandRequest]()
        for k in 0..<6 {
            let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
            let floats = Support.randomFloats(imageBytes / 4, seed: UInt64(k))
            floats.withUnsafeBytes { session.buffers.buffer(input).copyMemory(from: $0) }
            requests.append(
                CommandRequest(
                    modelID: 5, input: input, inputSize: k == 1 ? imageBytes - 4 : imageBytes,
                    output: output, outputCapacity: k == 4 ? record - 1 : record))
        }
        let first = try session.submit(batch: requests)
        let network = try Network(engine: engine, maximumBatch: 1)
        for _ in 0..<6 {
            // Completions arrive in any order (the refused one first): match by id.
            let done = try session.waitForCompletion(timeout: .seconds(30))
            let k = Int(done.commandID &- first)
            switch k {
            case 1:
                XCTAssertEqual(done.status, .handlerFailed)
                XCTAssertEqual(done.detail, ClassifierHandler.FailureCode.inputSize.rawValue)
            case 4:
                // The daemon's validator refuses it before the handler (requiredOutputCapacity).
                XCTAssertEqual(done.status, .invalidDescriptor)
                XCTAssertEqual(done.detail, InvalidDescriptorReason.outputTooSmall.rawValue)
            default:
                XCTAssertEqual(done.status, .succeeded, "command \(k)")
                let parsed = try XCTUnwrap(
                    ClassificationRecord.parse(
                        UnsafeRawBufferPointer(rebasing: session.buffers.buffer(done.output).prefix(done.outputSize)),
                        classCount: 10))
                // The daemon's batched logits equal a batch-1 forward pass here.
                var alone = [Float]()
                network.infer(
                    batch: 1, input: { _ in UnsafeRawBufferPointer(session.buffers.buffer(done.input)) },
                    output: { _, l in alone = Array(l) })
                for (a, b) in zip(parsed.logits, alone) { XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b))) }
            }
            session.buffers.release(done.input)
            session.buffers.release(done.output)
        }
    }
}
