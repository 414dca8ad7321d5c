import DaemonTestSupport
import FabricConsumer
import FabricDiagnostics
import FabricProducer
import FabricTestSupport
import SystemPackage
import XCTest

/// Typed inputs through a daemon (issue 16): the header is checked against
/// what the model takes before its handler runs, each refusal with its own
/// reason (and, for a type or shape it does not take, a record of what it
/// does); the handler gets the checked copy.
final class TensorTests: XCTestCase {
    /// Takes f32 or f16 tensors of 2×3; answers the element type it was
    /// handed and the elements.
    private final class TypedEcho: CommandHandler {
        let requiredOutputCapacity: UInt32 = 0
        var inputSpecification: TensorSpecification? { TensorSpecification(elementTypes: [.float32, .float16], shape: [2, 3]) }
        func handle(_ batch: borrowing CommandBatch) throws {
            for i in 0..<batch.count {
                let data = batch.tensorData(i), output = batch.output(i)
                output[0] = batch.tensor(i)?.elementType.rawValue ?? 0
                let n = min(data.count, output.count - 1)
                if n > 0 { output.baseAddress!.advanced(by: 1).copyMemory(from: data.baseAddress!, byteCount: n) }
                batch.complete(i, outputSize: n + 1)
            }
        }
    }

    /// Scribbles over its input's header, then answers whether the daemon's
    /// copy stayed what was checked (1) and the elements' size it gives.
    private final class HeaderScribbler: CommandHandler {
        let requiredOutputCapacity: UInt32 = 0
        func handle(_ batch: borrowing CommandBatch) throws {
            for i in 0..<batch.count {
                let before = batch.tensor(i)
                let input = UnsafeMutableRawBufferPointer(mutating: batch.input(i))
                for k in 0..<min(64, input.count) { input[k] = 0xFF }
                let output = batch.output(i)
                output[0] = before != nil && batch.tensor(i) == before ? 1 : 0
                output.storeBytes(of: UInt32(batch.tensorData(i).count), toByteOffset: 1, as: UInt32.self)
                batch.complete(i, outputSize: 5)
            }
        }
    }

    func testTheDaemonChecksTypedInputsAgainstTheModel() throws {
        let socket = temporarySocketPath(self)
        let daemon = try startDaemon(
            self, socket: socket, log: EventLog(), extra: [20: TypedEcho(), 21: HeaderScribbler()])
        XCTAssertEqual(daemon.models.first { $0.id == 20 }?.input?.description, "f32|f16 [2×3]")
        var session = try ControllerSession.connect(to: FilePath(socket))

        /// Submits a typed command (`patch` edits the input after the header is written).
        func run(
            model: UInt32 = 20, _ type: TensorElementType, _ shape: [Int], scale: Float = 0,
            patch: (UnsafeMutableRawBufferPointer) -> Void = { _ in }
        ) throws -> (completion: CommandCompletion, output: [UInt8]) {
            let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
            let header = try XCTUnwrap(TensorHeader(elementType: type, shape: shape, scale: scale))
            let data = try XCTUnwrap(session.buffers.writeTensorHeader(header, into: input))
            for k in 0..<data.count { data[k] = UInt8(truncatingIfNeeded: k) }
            patch(session.buffers.buffer(input))
            try session.submit(CommandRequest(modelID: model, input: input, tensor: header, output: output))
            let done = try session.waitForCompletion(timeout: .seconds(10))
            defer {
                session.buffers.release(done.input)
                session.buffers.release(done.output)
            }
            return (done, Array(session.buffers.buffer(done.output).prefix(done.outputSize)))
        }
        func refusal(_ result: (completion: CommandCompletion, output: [UInt8])) -> InvalidDescriptorReason? {
            guard result.completion.status == .invalidDescriptor else { return nil }
            return InvalidDescriptorReason(rawValue: result.completion.detail)
        }

        let f32 = try run(.float32, [2, 3])
        XCTAssertEqual(f32.completion.status, .succeeded)
        XCTAssertEqual(f32.output, [1] + (0..<24).map { UInt8($0) }, "the handler got the checked header and the elements")
        let f16 = try run(.float16, [2, 3])
        XCTAssertEqual(f16.output.first, 2)
        XCTAssertEqual(f16.output.count, 13)

        let int8 = try run(.int8, [2, 3], scale: 0.1)
        XCTAssertEqual(refusal(int8), .tensorElementType)
        let record = try XCTUnwrap(int8.output.withUnsafeBytes { TensorMismatch($0) }, "a record of what the model takes")
        XCTAssertEqual(record.description, "expected f32|f16 [2×3], received i8 [2×3]")
        let shape = try run(.float32, [3, 2])
        XCTAssertEqual(refusal(shape), .tensorShape)
        XCTAssertEqual(shape.output.withUnsafeBytes { TensorMismatch($0) }?.receivedShape, [3, 2])

        let scaled = try run(.float32, [2, 3]) { $0.storeBytes(of: Float(0.5).bitPattern, toByteOffset: 24, as: UInt32.self) }
        XCTAssertEqual(refusal(scaled), .tensorQuantization, "a scale on a float type")
        let sized = try run(.float32, [2, 3]) { $0.storeBytes(of: UInt32(25).littleEndian, toByteOffset: 36, as: UInt32.self) }
        XCTAssertEqual(refusal(sized), .tensorSize)
        let garbled = try run(.float32, [2, 3]) { $0[0] ^= 0xFF }
        XCTAssertEqual(refusal(garbled), .tensorHeaderMalformed)
        XCTAssertTrue(garbled.output.isEmpty, "no record for a header that is not one")

        // A model that states nothing takes any well-formed header; an
        // untyped command to a typed model is taken as raw bytes.
        let toEcho = try run(model: 1, .uint8, [5], scale: 1)
        XCTAssertEqual(toEcho.completion.status, .succeeded)
        XCTAssertEqual(toEcho.output.count, 64 + 5, "the echo got the whole input")
        let input = try XCTUnwrap(session.buffers.acquire()), output = try XCTUnwrap(session.buffers.acquire())
        session.buffers.buffer(input).copyBytes(from: [9, 9, 9])
        try session.submit(CommandRequest(modelID: 20, input: input, inputSize: 3, output: output))
        let untyped = try session.waitForCompletion(timeout: .seconds(10))
        XCTAssertEqual(untyped.status, .succeeded)
        XCTAssertEqual(Array(session.buffers.buffer(output).prefix(untyped.outputSize)), [0, 9, 9, 9])

        // The handler works from the daemon's checked copy: rewriting the
        // header in the input changes nothing it is told.
        let scribbled = try run(model: 21, .float32, [4])
        XCTAssertEqual(scribbled.output.first, 1, "the copy, not a re-read")
        XCTAssertEqual(scribbled.output.dropFirst().withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }, 16)

        let counts = try XCTUnwrap(daemon.telemetry().models.first { $0.id == 20 })
        XCTAssertEqual(counts.completions.succeeded, 3)
        XCTAssertEqual(counts.completions.invalidDescriptor, 5)
    }

    /// Inputs larger than a slot (issue 16), between processes: a batch of
    /// eight 224×224×3 FP32 images (4.8 MB) echoed through runs of 64 KiB
    /// slots, and through a session whose slots are sized for that batch.
    /// The controller child checks every byte that comes back.
    func testInputsLargerThanASlotTravelInRunsBetweenProcesses() throws {
        let batchOfEight = 8 * 3 * 224 * 224 * 4
        for (slotSize, slotCount) in [(64 * 1024, 160), (batchOfEight + 64, 4)] {
            let socket = temporarySocketPath(self)
            let daemon = try startDaemon(self, socket: socket, log: EventLog()) {
                $0.session = SessionLimits(
                    submissionCapacity: 16, completionCapacity: 16, slotSize: slotSize, slotCount: slotCount)
            }
            for model in [DiagnosticModel.echo, .checksum] {
                let controller = try ChildProcess(
                    "fabricq-test-helper", ["controller", socket, "3", "\(model.rawValue)", "\(batchOfEight)"])
                controller.assertSuccess(timeout: 60)
                XCTAssertTrue(controller.standardOutput.contains("ok 3"), controller.standardOutput)
            }
            XCTAssertEqual(daemon.telemetry().models.first { $0.id == DiagnosticModel.echo.rawValue }?.completions.succeeded, 3)
            daemon.stop()
        }
    }
}
