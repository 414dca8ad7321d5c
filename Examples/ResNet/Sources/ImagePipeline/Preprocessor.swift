import FabricProducer
import InferenceEngine

/// Resizes an image so its shorter side is ``InputSpecification/resizeShorterSide``
/// (bilinear, half-pixel centres, no antialiasing), takes the centre
/// ``InputSpecification/height``×``InputSpecification/width`` crop, scales to
/// [0, 1] and normalizes with the engine's mean and std, writing C×H×W
/// FP32, FP16 or INT8 (``Precision``) **straight into the destination** (a
/// buffer-pool slot): only the cropped pixels are ever computed, and
/// nothing is copied afterwards (INT8 keeps the FP32 values in a scratch
/// buffer first, since its scale depends on their range).
///
/// Geometry follows torchvision's `Resize(256)` + `CenterCrop(224)`: the long
/// side becomes `floor(256·long/short)`, the crop offset `round((size − crop)/2)`.
public final class Preprocessor {
    /// The geometry and normalization it applies.
    public let specification: InputSpecification
    private var columns: [(x0: Int, x1: Int, weight: Float)]
    private let scale: [Float]
    private let offset: [Float]
    /// FP32 values of one image, kept for INT8 (its scale needs the range first).
    private var scratch: [Float] = []

    /// A preprocessor for `specification` (RGB, 3 channels).
    public init(specification: InputSpecification) {
        self.specification = specification
        columns = Array(repeating: (0, 0, 0), count: specification.width)
        // (v/255 − mean)/std = v·scale + offset
        scale = specification.std.map { 1 / (255 * $0) }
        offset = zip(specification.mean, specification.std).map { -$0 / $1 }
    }

    /// The resized size before the crop, for an image of `width`×`height`.
    public func resizedSize(width: Int, height: Int) -> (width: Int, height: Int) {
        let s = specification.resizeShorterSide
        if width <= height { return (s, max(s, s * height / width)) }
        return (max(s, s * width / height), s)
    }

    /// Writes the normalized crop of `image` into `destination` as FP32;
    /// returns the bytes written.
    public func write(_ image: RGBImage, into destination: UnsafeMutableRawBufferPointer) -> Int {
        let spec = specification
        precondition(destination.count >= spec.byteCount, "destination smaller than one image")
        let out = destination.baseAddress!
        interpolate(image) { i, v in out.storeBytes(of: v, toByteOffset: 4 * i, as: Float.self) }
        return spec.byteCount
    }

    /// Writes the normalized crop of `image` as a typed tensor of
    /// `precision` straight into `destination` (a buffer-pool slot): the
    /// 64-byte header, then the C×H×W elements. FP16 rounds each value to
    /// nearest; INT8 is per-tensor affine, `real = scale × (q − zeroPoint)`,
    /// over this image's range (widened to include 0, so 0 is exact).
    /// Returns the header, whose `dataOffset + dataBytes` is the input size;
    /// nil when `destination` cannot hold it.
    public func write(
        _ image: RGBImage, as precision: Precision, into destination: UnsafeMutableRawBufferPointer
    ) -> TensorHeader? {
        let spec = specification
        let shape = [spec.channels, spec.height, spec.width]
        let elements = spec.channels * spec.height * spec.width
        guard 64 + elements * precision.elementType.byteWidth <= destination.count else { return nil }
        let data = destination.baseAddress! + 64
        let header: TensorHeader?
        switch precision {
        case .fp32:
            interpolate(image) { i, v in data.storeBytes(of: v, toByteOffset: 4 * i, as: Float.self) }
            header = TensorHeader(elementType: .float32, shape: shape)
        case .fp16:
            interpolate(image) { i, v in data.storeBytes(of: Float16(v).bitPattern, toByteOffset: 2 * i, as: UInt16.self) }
            header = TensorHeader(elementType: .float16, shape: shape)
        case .int8:
            if scratch.count < elements { scratch = [Float](repeating: 0, count: elements) }
            let quantization = scratch.withUnsafeMutableBufferPointer { values in
                interpolate(image) { i, v in values[i] = v }
                var low: Float = 0, high: Float = 0
                for v in values[0..<elements] {
                    low = min(low, v)
                    high = max(high, v)
                }
                let quantization = Quantization(low: low, high: high)
                let bytes = data.assumingMemoryBound(to: Int8.self)
                for i in 0..<elements { bytes[i] = quantization.quantize(values[i]) }
                return quantization
            }
            header = TensorHeader(elementType: .int8, shape: shape, scale: quantization.scale, zeroPoint: quantization.zeroPoint)
        }
        guard let header else { return nil }
        header.write(to: destination)
        return header
    }

    /// Per-tensor INT8 parameters for values in `low...high` (with `low ≤ 0 ≤ high`).
    struct Quantization {
        let scale: Float
        let zeroPoint: Int32

        init(low: Float, high: Float) {
            let range = high - low
            let step = range / 255
            scale = step.isNormal ? step : 1  // a constant (or subnormal-range) image: any scale is exact
            zeroPoint = Int32(max(-128, min(127, (-128 - low / scale).rounded())))
        }

        @inline(__always)
        func quantize(_ value: Float) -> Int8 {
            Int8(max(-128, min(127, (value / scale).rounded() + Float(zeroPoint))))
        }
    }

    /// Computes every element of the normalized crop, in C×H×W order, and
    /// hands each to `store` with its index.
    @inline(__always)
    private func interpolate(_ image: RGBImage, _ store: (Int, Float) -> Void) {
        let spec = specification
        precondition(spec.channels == 3, "RGB input only")
        let (rw, rh) = resizedSize(width: image.width, height: image.height)
        let top = Int((Double(rh - spec.height) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(rw - spec.width) / 2).rounded(.toNearestOrEven))
        let sx = Float(image.width) / Float(rw), sy = Float(image.height) / Float(rh)
        func source(_ o: Int, _ s: Float, _ limit: Int) -> (Int, Int, Float) {
            let p = min(max((Float(o) + 0.5) * s - 0.5, 0), Float(limit - 1))
            let i0 = Int(p)
            return (i0, min(i0 + 1, limit - 1), p - Float(i0))
        }
        for x in 0..<spec.width { columns[x] = source(x + left, sx, image.width) }
        let plane = spec.height * spec.width
        image.pixels.withUnsafeBufferPointer { px in
            for y in 0..<spec.height {
                let (y0, y1, wy) = source(y + top, sy, image.height)
                let row0 = px.baseAddress! + y0 * image.width * 3, row1 = px.baseAddress! + y1 * image.width * 3
                for x in 0..<spec.width {
                    let (x0, x1, wx) = columns[x]
                    for c in 0..<3 {
                        let a = Float(row0[x0 * 3 + c]), b = Float(row0[x1 * 3 + c])
                        let d = Float(row1[x0 * 3 + c]), e = Float(row1[x1 * 3 + c])
                        let top = a + (b - a) * wx, bottom = d + (e - d) * wx
                        let v = top + (bottom - top) * wy
                        store(c * plane + y * spec.width + x, v * scale[c] + offset[c])
                    }
                }
            }
        }
    }
}

/// The element type a controller preprocesses into: what crosses the
/// fabric per image is 4 (FP32), 2 (FP16) or 1 (INT8) bytes per element,
/// plus the 64-byte tensor header.
public enum Precision: String, CaseIterable, Sendable, Codable {
    /// IEEE binary32.
    case fp32
    /// IEEE binary16, rounded to nearest.
    case fp16
    /// Signed bytes, per-tensor affine over the image's range.
    case int8

    /// The tensor element type it travels as.
    public var elementType: TensorElementType {
        switch self {
        case .fp32: .float32
        case .fp16: .float16
        case .int8: .int8
        }
    }

    /// Bytes through the fabric for one image of `elements` elements (header included).
    public func inputBytes(elements: Int) -> Int { TensorHeader.size + elements * elementType.byteWidth }
}
