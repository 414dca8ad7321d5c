import FabricProducer
import Foundation
import ImagePipeline
import InferenceEngine
import XCTest

/// Decoding (libjpeg-turbo, libpng) and the resize / crop / normalize that writes into a slot.
final class PreprocessorTests: XCTestCase {
    func testDecodesTheBundledJPEGAndPNG() throws {
        let png = try ImageDecoder.decode(contentsOf: Support.sampleImages + "/chelsea.png")
        XCTAssertEqual([png.width, png.height], [451, 300])
        let jpeg = try ImageDecoder.decode(contentsOf: Support.sampleImages + "/coffee.jpg")
        XCTAssertEqual([jpeg.width, jpeg.height], [600, 400])
        // The coffee cup's saucer is near white, the table behind it dark: decoded pixels are real pixels.
        XCTAssertGreaterThan(Set(jpeg.pixels).count, 200)
    }

    func testCorruptAndForeignFilesGiveTypedErrors() throws {
        var jpeg = [UInt8](FileManager.default.contents(atPath: Support.sampleImages + "/coffee.jpg")!)
        jpeg.removeLast(jpeg.count - 600)  // header survives, scan data does not
        XCTAssertThrowsError(try ImageDecoder.decode(Data(jpeg + [UInt8](repeating: 0, count: 10)), name: "cut.jpg"))
        var png = [UInt8](FileManager.default.contents(atPath: Support.sampleImages + "/chelsea.png")!)
        png.removeLast(png.count / 2)
        XCTAssertThrowsError(try ImageDecoder.decode(Data(png), name: "cut.png")) { error in
            guard case ImageError.corrupt = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try ImageDecoder.decode(Data("GIF89a".utf8), name: "x.gif")) { error in
            XCTAssertEqual(error as? ImageError, .unknownFormat(path: "x.gif"))
        }
    }

    /// Issue 13, item 17: a truncated JPEG that the decoder can still fill in
    /// is classified with a warning, not silently; an unreadable path says
    /// why in words, not as a raw errno.
    func testTruncatedJPEGWarnsAndUnreadablePathsSayWhy() throws {
        var jpeg = [UInt8](FileManager.default.contents(atPath: Support.sampleImages + "/coffee.jpg")!)
        jpeg.removeLast(jpeg.count / 3)
        let image = try ImageDecoder.decode(Data(jpeg), name: "cut.jpg")
        XCTAssertNotNil(image.warning, "a truncated JPEG decodes with a warning")
        XCTAssertTrue(image.warning?.hasPrefix("cut.jpg: ") ?? false, image.warning ?? "")
        let clean = try ImageDecoder.decode(contentsOf: Support.sampleImages + "/coffee.jpg")
        XCTAssertNil(clean.warning)
        let directory = Support.temporaryDirectory("adir")
        XCTAssertThrowsError(try ImageDecoder.decode(contentsOf: directory)) {
            XCTAssertEqual("\($0)", "cannot read \(directory): Is a directory")
        }
        XCTAssertThrowsError(try ImageDecoder.decode(contentsOf: directory + "/missing.jpg")) {
            XCTAssertEqual("\($0)", "cannot read \(directory)/missing.jpg: No such file or directory")
        }
    }

    func testConstantImageNormalizesToConstantPlanes() {
        let rgb: [UInt8] = [200, 100, 50]
        let image = RGBImage(width: 40, height: 30, pixels: (0..<1200).flatMap { _ in rgb })
        var spec = InputSpecification.imageNet
        spec.height = 16
        spec.width = 16
        spec.resizeShorterSide = 20
        let out = run(image, spec)
        for c in 0..<3 {
            let want: Float = (Float(rgb[c]) / 255 - spec.mean[c]) / spec.std[c]
            for v in out[(c * 256)..<((c + 1) * 256)] { XCTAssertEqual(v, want, accuracy: 1e-5) }
        }
    }

    func testResizeAndCenterCropGeometry() {
        // A horizontal ramp, 100×50: resized to 40×20 (shorter side 20), centre crop 20×20 → columns 10..<30
        // of the resized image, i.e. source x = (10.5 + i)·2.5 − 0.5.
        let width = 100, height = 50
        var pixels = [UInt8]()
        for _ in 0..<height { for x in 0..<width { pixels += [UInt8(x * 2), 0, 0] } }
        var spec = InputSpecification(
            channels: 3, height: 20, width: 20, resizeShorterSide: 20, mean: [0, 0, 0], std: [1, 1, 1])
        spec.resizeShorterSide = 20
        let p = Preprocessor(specification: spec)
        XCTAssertEqual(p.resizedSize(width: width, height: height).width, 40)
        let out = run(RGBImage(width: width, height: height, pixels: pixels), spec)
        for i in 0..<20 {
            let sourceX: Float = (Float(10 + i) + 0.5) * 2.5 - 0.5
            let want: Float = 2 * sourceX / 255
            XCTAssertEqual(out[5 * 20 + i], want, accuracy: 1e-4, "column \(i)")
        }
        // Monotone along the row, constant down the column.
        XCTAssertEqual(out[0 * 20 + 7], out[19 * 20 + 7], accuracy: 1e-6)
    }

    /// Issue 16: the same crop written as a typed FP32, FP16 or INT8 tensor
    /// straight into the slot. The header says what follows; FP16 is FP32
    /// rounded to half precision; INT8 dequantizes to within half a step
    /// of FP32, its range spans the image's values and includes 0.
    func testTypedPrecisionsMatchFP32WithinTheirRounding() throws {
        let photo = try ImageDecoder.decode(contentsOf: Support.sampleImages + "/coffee.jpg")
        var spec = InputSpecification.imageNet
        (spec.height, spec.width, spec.resizeShorterSide) = (56, 48, 64)
        let reference = run(photo, spec)
        let elements = 3 * 56 * 48
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 + 4 * elements, alignment: 64)
        defer { buffer.deallocate() }
        let preprocessor = Preprocessor(specification: spec)
        for precision in Precision.allCases {
            let header = try XCTUnwrap(preprocessor.write(photo, as: precision, into: buffer))
            XCTAssertEqual(header.elementType, precision.elementType)
            XCTAssertEqual(header.shape, [3, 56, 48])
            XCTAssertEqual(header.dataOffset, 64)
            XCTAssertEqual(Int(header.dataBytes), elements * precision.elementType.byteWidth)
            XCTAssertEqual(precision.inputBytes(elements: elements), 64 + Int(header.dataBytes))
            XCTAssertEqual(try TensorHeader.read(from: UnsafeRawBufferPointer(buffer)), header, "the header is in the slot")
            let data = UnsafeRawBufferPointer(rebasing: buffer[64...])
            for i in 0..<elements {
                switch precision {
                case .fp32:
                    XCTAssertEqual(data.load(fromByteOffset: 4 * i, as: Float.self), reference[i])
                case .fp16:
                    let half = Float16(bitPattern: data.load(fromByteOffset: 2 * i, as: UInt16.self))
                    XCTAssertEqual(half, Float16(reference[i]))
                case .int8:
                    let q = Float(data.load(fromByteOffset: i, as: Int8.self))
                    let real = header.scale * (q - Float(header.zeroPoint))
                    XCTAssertEqual(real, reference[i], accuracy: header.scale * 0.5 + 1e-6, "element \(i)")
                }
            }
            if precision == .int8 {
                XCTAssertGreaterThan(header.scale, 0)
                XCTAssertTrue((-128...127).contains(header.zeroPoint))
                let range = 255 * header.scale, spread = max(0, reference.max()!) - min(0, reference.min()!)
                XCTAssertEqual(range, spread, accuracy: 1e-3 * range, "the scale spans the image's values and 0")
            }
        }
        let small = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 + 2 * elements - 1, alignment: 64)
        defer { small.deallocate() }
        XCTAssertNil(preprocessor.write(photo, as: .fp16, into: small), "one byte short")
        XCTAssertNotNil(preprocessor.write(photo, as: .int8, into: small))
    }

    /// The generated variants are deterministic, differ from each other and
    /// stay valid images.
    func testGeneratedVariantsAreDeterministic() throws {
        let photo = try ImageDecoder.decode(contentsOf: Support.sampleImages + "/chelsea.png")
        let a = PrecisionComparison.variants(of: [photo], count: 6), b = PrecisionComparison.variants(of: [photo], count: 6)
        XCTAssertEqual(a.map(\.pixels), b.map(\.pixels))
        XCTAssertEqual(Set(a.map(\.pixels)).count, 6)
        for v in a {
            XCTAssertEqual(v.pixels.count, v.width * v.height * 3)
            XCTAssertTrue(v.width <= photo.width && v.width >= photo.width * 6 / 10 - 1)
        }
    }

    func run(_ image: RGBImage, _ spec: InputSpecification) -> [Float] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: spec.byteCount, alignment: 64)
        defer { buffer.deallocate() }
        XCTAssertEqual(Preprocessor(specification: spec).write(image, into: buffer), spec.byteCount)
        return Array(buffer.bindMemory(to: Float.self))
    }
}
