import InferenceEngine

/// Resizes an image so its shorter side is ``InputSpecification/resizeShorterSide``
/// (bilinear, half-pixel centres, no antialiasing), takes the centre
/// ``InputSpecification/height``×``InputSpecification/width`` crop, scales to
/// [0, 1] and normalizes with the engine's mean and std, writing float32
/// C×H×W **straight into the destination** (a buffer-pool slot): only the
/// cropped pixels are ever computed, and nothing is copied afterwards.
///
/// Geometry follows torchvision's `Resize(256)` + `CenterCrop(224)`: the long
/// side becomes `floor(256·long/short)`, the crop offset `round((size − crop)/2)`.
public final class Preprocessor {
    /// The geometry and normalization it applies.
    public let specification: InputSpecification
    private var columns: [(x0: Int, x1: Int, weight: Float)]
    private let scale: [Float]
    private let offset: [Float]

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

    /// Writes the normalized crop of `image` into `destination`; returns the bytes written.
    public func write(_ image: RGBImage, into destination: UnsafeMutableRawBufferPointer) -> Int {
        let spec = specification
        precondition(destination.count >= spec.byteCount, "destination smaller than one image")
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
            let out = destination.baseAddress!
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
                        out.storeBytes(
                            of: v * scale[c] + offset[c], toByteOffset: 4 * (c * plane + y * spec.width + x), as: Float.self)
                    }
                }
            }
        }
        return spec.byteCount
    }
}
