import COpenBLAS

/// CPU kernels over activations laid out C×N×H×W (channel-major, the batch
/// inside each channel), so one GEMM covers a whole batch:
/// `out[Cout, N·OH·OW] = W[Cout, Cin·kh·kw] × col[Cin·kh·kw, N·OH·OW]`.
/// Pointers are unchecked here; ``Network`` sized every buffer when it
/// validated the engine.
enum Kernels {
    /// Geometry of one convolution or pooling window.
    struct Window {
        var channels: Int
        var inHeight: Int, inWidth: Int
        var outHeight: Int, outWidth: Int
        var kernelHeight: Int, kernelWidth: Int
        var stride: Int
        var padTop: Int, padLeft: Int

        /// Output columns `[lo, hi)` whose input column `ow·stride + kj − padLeft` is inside the image.
        @inline(__always)
        func validColumns(_ kj: Int) -> (Int, Int) {
            let offset = kj - padLeft
            let lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
            let last = inWidth - 1 - offset
            let hi = last < 0 ? 0 : min(outWidth, last / stride + 1)
            return (min(lo, hi), hi)
        }
    }

    /// Unfolds `input` (C×N×H×W) into `col` ((C·kh·kw) × (N·OH·OW)); padding reads as 0.
    static func im2col(_ input: UnsafePointer<Float>, batch n: Int, _ w: Window, into col: UnsafeMutablePointer<Float>) {
        let plane = w.inHeight * w.inWidth
        let outPlane = w.outHeight * w.outWidth
        let rowLength = n * outPlane
        var row = col
        for c in 0..<w.channels {
            for ki in 0..<w.kernelHeight {
                for kj in 0..<w.kernelWidth {
                    let (lo, hi) = w.validColumns(kj)
                    for b in 0..<n {
                        let src = input + (c * n + b) * plane
                        let dstImage = row + b * outPlane
                        for oh in 0..<w.outHeight {
                            let dst = dstImage + oh * w.outWidth
                            let ih = oh * w.stride + ki - w.padTop
                            guard ih >= 0 && ih < w.inHeight && lo < hi else {
                                dst.update(repeating: 0, count: w.outWidth)
                                continue
                            }
                            if lo > 0 { dst.update(repeating: 0, count: lo) }
                            if hi < w.outWidth { (dst + hi).update(repeating: 0, count: w.outWidth - hi) }
                            let srcRow = src + ih * w.inWidth + (kj - w.padLeft)
                            if w.stride == 1 {
                                (dst + lo).update(from: srcRow + lo, count: hi - lo)
                            } else {
                                for ow in lo..<hi { dst[ow] = srcRow[ow * w.stride] }
                            }
                        }
                    }
                    row += rowLength
                }
            }
        }
    }

    /// `c[m×n] = a[m×k] · b[k×n]` (row-major, OpenBLAS).
    @inline(__always)
    static func gemm(
        m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>
    ) {
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
            1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
    }

    /// Depthwise convolution (one filter per channel), direct; bias and activation come after.
    static func depthwise(
        _ input: UnsafePointer<Float>, batch n: Int, _ w: Window, weight: UnsafePointer<Float>,
        into output: UnsafeMutablePointer<Float>
    ) {
        let plane = w.inHeight * w.inWidth
        let outPlane = w.outHeight * w.outWidth
        let taps = w.kernelHeight * w.kernelWidth
        for c in 0..<w.channels {
            let filter = weight + c * taps
            for b in 0..<n {
                let src = input + (c * n + b) * plane
                let dst = output + (c * n + b) * outPlane
                dst.update(repeating: 0, count: outPlane)
                for ki in 0..<w.kernelHeight {
                    for kj in 0..<w.kernelWidth {
                        let tap = filter[ki * w.kernelWidth + kj]
                        let (lo, hi) = w.validColumns(kj)
                        guard lo < hi else { continue }
                        for oh in 0..<w.outHeight {
                            let ih = oh * w.stride + ki - w.padTop
                            guard ih >= 0 && ih < w.inHeight else { continue }
                            let srcRow = src + ih * w.inWidth + (kj - w.padLeft)
                            let dstRow = dst + oh * w.outWidth
                            for ow in lo..<hi { dstRow[ow] += tap * srcRow[ow * w.stride] }
                        }
                    }
                }
            }
        }
    }

    /// Adds the bias and the residual, then applies the activation, row by row.
    static func epilogue(
        _ out: UnsafeMutablePointer<Float>, rows: Int, columns: Int, bias: UnsafePointer<Float>?,
        residual: UnsafePointer<Float>?, activation: LayerSpecification.Activation
    ) {
        for r in 0..<rows {
            let row = out + r * columns
            let b = bias?[r] ?? 0
            if let residual {
                let res = residual + r * columns
                for j in 0..<columns { row[j] += b + res[j] }
            } else if b != 0 {
                for j in 0..<columns { row[j] += b }
            }
            switch activation {
            case .none: break
            case .relu: for j in 0..<columns { row[j] = max(row[j], 0) }
            case .relu6: for j in 0..<columns { row[j] = min(max(row[j], 0), 6) }
            }
        }
    }

    /// Max pooling; windows clipped to the image (padding never wins).
    static func maxPool(_ input: UnsafePointer<Float>, batch n: Int, _ w: Window, into output: UnsafeMutablePointer<Float>) {
        let plane = w.inHeight * w.inWidth
        let outPlane = w.outHeight * w.outWidth
        for p in 0..<(w.channels * n) {
            let src = input + p * plane
            let dst = output + p * outPlane
            for oh in 0..<w.outHeight {
                let h0 = max(oh * w.stride - w.padTop, 0), h1 = min(oh * w.stride - w.padTop + w.kernelHeight, w.inHeight)
                for ow in 0..<w.outWidth {
                    let w0 = max(ow * w.stride - w.padLeft, 0), w1 = min(ow * w.stride - w.padLeft + w.kernelWidth, w.inWidth)
                    var m = -Float.infinity
                    for ih in h0..<h1 { for iw in w0..<w1 { m = max(m, src[ih * w.inWidth + iw]) } }
                    dst[oh * w.outWidth + ow] = m
                }
            }
        }
    }

    /// Mean of each H×W plane: C×N×H×W → C×N.
    static func globalAveragePool(
        _ input: UnsafePointer<Float>, planes: Int, planeSize: Int, into output: UnsafeMutablePointer<Float>
    ) {
        let scale = 1 / Float(planeSize)
        for p in 0..<planes {
            let src = input + p * planeSize
            var sum: Float = 0
            for i in 0..<planeSize { sum += src[i] }
            output[p] = sum * scale
        }
    }
}
