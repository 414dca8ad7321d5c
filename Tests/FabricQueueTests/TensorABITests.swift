import CFabricQueueABI
import FabricQueue
import FabricTestSupport
import XCTest

/// Typed inputs (issue 16): the tensor header and the mismatch record, the
/// same bytes from Swift and from the C header, and every refusal its own.
final class TensorABITests: XCTestCase {
    /// Every element type and rank 1…4, with and without quantization:
    /// Swift and `fq_tensor_header_init` write the same 64 bytes, and
    /// `TensorHeader.read` gives back what was written.
    func testEveryTypeAndRankRoundTripsThroughSwiftAndC() throws {
        let shapes: [[Int]] = [[7], [3, 5], [3, 224, 224], [2, 3, 4, 5], [1, 1, 1, 1]]
        for type in TensorElementType.allCases {
            for shape in shapes {
                let scale: Float = type.isQuantized ? 0.0125 : 0
                let zeroPoint: Int32 = type == .int8 ? -3 : type == .uint8 ? 128 : 0
                let header = try XCTUnwrap(TensorHeader(elementType: type, shape: shape, scale: scale, zeroPoint: zeroPoint))
                XCTAssertEqual(header.shape, shape)
                XCTAssertEqual(Int(header.dataBytes), shape.reduce(type.byteWidth, *))
                var swift = [UInt8](repeating: 0xAA, count: 64 + Int(header.dataBytes))
                swift.withUnsafeMutableBytes { header.write(to: $0) }
                var c = [UInt8](repeating: 0xAA, count: 64)
                let dims = shape.map(UInt32.init) + [UInt32](repeating: 0, count: 4 - shape.count)
                let total = c.withUnsafeMutableBytes {
                    fq_abi_tensor_header($0.baseAddress, type.rawValue, UInt8(shape.count), dims, scale, zeroPoint)
                }
                XCTAssertEqual(Int(total), swift.count, "\(type) \(shape): C sizes the input the same")
                XCTAssertEqual(Array(swift.prefix(64)), c, "\(type) \(shape): the same bytes from C")
                let read = try swift.withUnsafeBytes { try TensorHeader.read(from: $0) }
                XCTAssertEqual(read, header, "\(type) \(shape)")
            }
        }
    }

    func testTheCLayoutMatchesSwift() {
        let c = cABITable()
        XCTAssertEqual(c["sizeof.fq_tensor_header"], TensorHeader.size)
        XCTAssertEqual(c["sizeof.fq_tensor_mismatch"], TensorMismatch.size)
        XCTAssertEqual(c["const.tensor_magic"].map(UInt32.init), TensorHeader.magic)
        XCTAssertEqual(c["const.tensor_mismatch_magic"].map(UInt32.init), TensorMismatch.magic)
        XCTAssertEqual(c["const.flag_tensor_header"].map(UInt16.init), Descriptor.tensorHeaderFlag)
        let offsets = [
            "element_type": 4, "rank": 5, "dims": 8, "scale": 24, "zero_point": 28, "data_offset": 32, "data_bytes": 36,
        ]
        for (field, offset) in offsets { XCTAssertEqual(c["fq_tensor_header.\(field)"], offset, field) }
        let mismatch = [
            "accepted_types": 4, "expected_rank": 8, "received_type": 9, "received_rank": 10, "expected_dims": 12,
            "received_dims": 28,
        ]
        for (field, offset) in mismatch { XCTAssertEqual(c["fq_tensor_mismatch.\(field)"], offset, field) }
        for type in TensorElementType.allCases { XCTAssertEqual(c["type.\(type.name)"], Int(type.rawValue)) }
        let reasons: [(String, InvalidDescriptorReason)] = [
            ("tensor_header", .tensorHeaderMalformed), ("tensor_quantization", .tensorQuantization),
            ("tensor_size", .tensorSize), ("tensor_type", .tensorElementType), ("tensor_shape", .tensorShape),
        ]
        for (name, reason) in reasons { XCTAssertEqual(c["invalid.\(name)"], Int(reason.rawValue), name) }
        XCTAssertEqual(TensorElementType(name: "fp16"), .float16)
        XCTAssertNil(TensorElementType(name: "f64"))
    }

    /// Each kind of bad header is refused with its own violation, whatever
    /// else it holds; the C helper refuses what Swift's reader would.
    func testEveryBadHeaderIsRefusedWithItsOwnError() throws {
        let good = try XCTUnwrap(TensorHeader(elementType: .float16, shape: [2, 3]))
        func bytes(_ edit: (inout [UInt8]) -> Void) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: 64 + 12)
            b.withUnsafeMutableBytes { good.write(to: $0) }
            edit(&b)
            return b
        }
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in b: inout [UInt8]) {
            withUnsafeBytes(of: value.littleEndian) { b.replaceSubrange(offset..<offset + MemoryLayout<T>.size, with: $0) }
        }
        func verdict(_ b: [UInt8]) -> TensorViolation? {
            b.withUnsafeBytes { buffer in
                do throws(TensorViolation) { _ = try TensorHeader.read(from: buffer) } catch { return error }
                return nil
            }
        }
        XCTAssertNil(verdict(bytes { _ in }), "the good one")
        let cases: [(String, [UInt8], TensorViolation)] = [
            ("short input", Array(bytes { _ in }.prefix(63)), .malformed),
            ("bad magic", bytes { $0[0] ^= 1 }, .malformed),
            ("unknown type", bytes { $0[4] = 9 }, .malformed),
            ("rank 0", bytes { $0[5] = 0 }, .malformed),
            ("rank 5", bytes { $0[5] = 5 }, .malformed),
            ("a zero dimension", bytes { put(UInt32(0), at: 12, in: &$0) }, .malformed),
            ("an unused dimension set", bytes { put(UInt32(4), at: 16, in: &$0) }, .malformed),
            ("a reserved byte", bytes { $0[50] = 1 }, .malformed),
            ("scale on a float type", bytes { put(Float(0.5).bitPattern, at: 24, in: &$0) }, .quantization),
            ("zero point on a float type", bytes { put(Int32(1), at: 28, in: &$0) }, .quantization),
            ("data size off by one", bytes { put(UInt32(13), at: 36, in: &$0) }, .size),
            ("data offset inside the header", bytes { put(UInt32(32), at: 32, in: &$0) }, .size),
            ("elements past the input", bytes { put(UInt32(128), at: 32, in: &$0) }, .size),
            ("data offset not a multiple of 64", bytes { put(UInt32(65), at: 32, in: &$0) }, .size),
            ("a scale of -0.0 on a float type", bytes { put((-Float.zero).bitPattern, at: 24, in: &$0) }, .quantization),
        ]
        for (name, b, expected) in cases { XCTAssertEqual(verdict(b), expected, name) }

        // Quantized types need a usable scale and a zero point in range.
        let int8 = try XCTUnwrap(TensorHeader(elementType: .int8, shape: [4], scale: 0.1, zeroPoint: 0))
        func quantized(scale: Float, zeroPoint: Int32, type: TensorElementType = .int8) -> TensorViolation? {
            var header = int8
            header.elementType = type
            header.scale = scale
            header.zeroPoint = zeroPoint
            var b = [UInt8](repeating: 0, count: 68)
            b.withUnsafeMutableBytes { header.write(to: $0) }
            return b.withUnsafeBytes { buffer in
                do throws(TensorViolation) { _ = try TensorHeader.read(from: buffer) } catch { return error }
                return nil
            }
        }
        XCTAssertNil(quantized(scale: 0.1, zeroPoint: -128))
        XCTAssertEqual(quantized(scale: 0, zeroPoint: 0), .quantization)
        XCTAssertEqual(quantized(scale: .nan, zeroPoint: 0), .quantization)
        XCTAssertEqual(quantized(scale: .infinity, zeroPoint: 0), .quantization)
        XCTAssertEqual(quantized(scale: 0.1, zeroPoint: 128), .quantization)
        XCTAssertEqual(quantized(scale: 0.1, zeroPoint: -1, type: .uint8), .quantization)
        XCTAssertNil(quantized(scale: 0.1, zeroPoint: 255, type: .uint8))

        var c = [UInt8](repeating: 0, count: 64)
        let dims: [UInt32] = [2, 3, 0, 0]
        XCTAssertEqual(c.withUnsafeMutableBytes { fq_abi_tensor_header($0.baseAddress, 1, 2, dims, 0.5, 0) }, 0, "scale on f32")
        XCTAssertEqual(c.withUnsafeMutableBytes { fq_abi_tensor_header($0.baseAddress, 4, 2, dims, 0, 0) }, 0, "i8 without scale")
        XCTAssertEqual(c.withUnsafeMutableBytes { fq_abi_tensor_header($0.baseAddress, 9, 2, dims, 0, 0) }, 0, "unknown type")
        XCTAssertEqual(c.withUnsafeMutableBytes { fq_abi_tensor_header($0.baseAddress, 1, 5, dims, 0, 0) }, 0, "rank 5")
        XCTAssertNil(TensorHeader(elementType: .float32, shape: []))
        XCTAssertNil(TensorHeader(elementType: .float32, shape: [2, 0]))
        XCTAssertNil(TensorHeader(elementType: .float32, shape: [65536, 65536]), "over 4 GiB")
        XCTAssertNil(TensorHeader(elementType: .int8, shape: [4]), "a quantized type needs a scale")
        XCTAssertNil(TensorHeader(elementType: .float16, shape: [4], scale: 1), "a float type takes none")
        XCTAssertNil(TensorHeader(elementType: .uint8, shape: [4], scale: 1, zeroPoint: 256))
        // C writes +0 for a float type's scale, whatever the caller passed.
        let zero = c.withUnsafeMutableBytes { fq_abi_tensor_header($0.baseAddress, 2, 2, dims, -0.0, 0) }
        XCTAssertEqual(zero, 64 + 12)
        XCTAssertEqual(c[24..<28].allSatisfy { $0 == 0 }, true, "-0.0 becomes +0")
        XCTAssertNoThrow(
            try c.withUnsafeBytes { raw in
                var input = [UInt8](raw) + [UInt8](repeating: 0, count: 12)
                _ = try input.withUnsafeMutableBytes { try TensorHeader.read(from: UnsafeRawBufferPointer($0)) }
            })
    }

    func testAMismatchRecordSaysWhatTheModelTakes() throws {
        let received = try XCTUnwrap(TensorHeader(elementType: .int8, shape: [3, 112, 112], scale: 0.02, zeroPoint: 0))
        var output = [UInt8](repeating: 0xEE, count: 64)
        output.withUnsafeMutableBytes {
            TensorMismatch.write(
                acceptedMask: 1 << 1 | 1 << 2, expectedRank: 3, expected: (3, 224, 224, 0), received: received, to: $0)
        }
        let record = try XCTUnwrap(output.withUnsafeBytes { TensorMismatch($0) })
        XCTAssertEqual(record.acceptedTypes, [.float32, .float16])
        XCTAssertEqual(record.expectedShape, [3, 224, 224])
        XCTAssertEqual(record.receivedType, .int8)
        XCTAssertEqual(record.receivedShape, [3, 112, 112])
        XCTAssertEqual(record.description, "expected f32|f16 [3×224×224], received i8 [3×112×112]")
        XCTAssertNil(output.prefix(63).withUnsafeBytes { TensorMismatch($0) }, "too short")
        XCTAssertNil([UInt8](repeating: 0, count: 64).withUnsafeBytes { TensorMismatch($0) }, "no magic")
    }
}
