import XCTest

@testable import InferenceEngine

/// im2col + sgemm (and the direct depthwise kernel) against a naive direct
/// convolution written here, over strides, asymmetric padding and batches.
final class ConvolutionTests: XCTestCase {
    struct Case { var cin: Int, cout: Int, h: Int, w: Int, k: Int, stride: Int, pad: [Int], batch: Int, depthwise: Bool }

    /// Output[n][o][y][x] = Σ input · weight, zero outside the image; layouts C×N×H×W like the runtime.
    func naive(_ c: Case, input: [Float], weight: [Float], oh: Int, ow: Int) -> [Float] {
        var out = [Float](repeating: 0, count: c.cout * c.batch * oh * ow)
        for o in 0..<c.cout {
            for n in 0..<c.batch {
                for y in 0..<oh {
                    for x in 0..<ow {
                        var acc: Double = 0
                        let channels = c.depthwise ? [o] : Array(0..<c.cin)
                        for (ci, ch) in channels.enumerated() {
                            for i in 0..<c.k {
                                for j in 0..<c.k {
                                    let iy = y * c.stride + i - c.pad[0], ix = x * c.stride + j - c.pad[1]
                                    guard iy >= 0, iy < c.h, ix >= 0, ix < c.w else { continue }
                                    let wIndex = c.depthwise ? (o * c.k + i) * c.k + j : ((o * c.cin + ci) * c.k + i) * c.k + j
                                    acc += Double(input[((ch * c.batch + n) * c.h + iy) * c.w + ix]) * Double(weight[wIndex])
                                }
                            }
                        }
                        out[((o * c.batch + n) * oh + y) * ow + x] = Float(acc)
                    }
                }
            }
        }
        return out
    }

    func testIm2colGemmAndDepthwiseMatchDirectConvolution() {
        let cases = [
            Case(cin: 3, cout: 8, h: 17, w: 13, k: 7, stride: 2, pad: [3, 3, 3, 3], batch: 2, depthwise: false),
            Case(cin: 5, cout: 4, h: 9, w: 9, k: 3, stride: 1, pad: [1, 1, 1, 1], batch: 3, depthwise: false),
            Case(cin: 6, cout: 7, h: 10, w: 8, k: 1, stride: 2, pad: [0, 0, 0, 0], batch: 2, depthwise: false),
            Case(cin: 4, cout: 4, h: 12, w: 12, k: 3, stride: 2, pad: [0, 0, 1, 1], batch: 2, depthwise: false),
            Case(cin: 6, cout: 6, h: 11, w: 11, k: 5, stride: 2, pad: [1, 1, 2, 2], batch: 3, depthwise: true),
            Case(cin: 4, cout: 4, h: 7, w: 9, k: 3, stride: 1, pad: [1, 1, 1, 1], batch: 1, depthwise: true),
        ]
        for (number, c) in cases.enumerated() {
            let oh = (c.h + c.pad[0] + c.pad[2] - c.k) / c.stride + 1
            let ow = (c.w + c.pad[1] + c.pad[3] - c.k) / c.stride + 1
            let input = Support.randomFloats(c.cin * c.batch * c.h * c.w, seed: UInt64(number))
            let weight = Support.randomFloats(c.cout * (c.depthwise ? 1 : c.cin) * c.k * c.k, seed: UInt64(100 + number))
            let want = naive(c, input: input, weight: weight, oh: oh, ow: ow)
            let window = Kernels.Window(
                channels: c.cin, inHeight: c.h, inWidth: c.w, outHeight: oh, outWidth: ow,
                kernelHeight: c.k, kernelWidth: c.k, stride: c.stride, padTop: c.pad[0], padLeft: c.pad[1])
            var got = [Float](repeating: .nan, count: want.count)
            input.withUnsafeBufferPointer { x in
                weight.withUnsafeBufferPointer { w in
                    got.withUnsafeMutableBufferPointer { out in
                        if c.depthwise {
                            Kernels.depthwise(
                                x.baseAddress!, batch: c.batch, window, weight: w.baseAddress!, into: out.baseAddress!)
                        } else {
                            let columns = c.batch * oh * ow, k = c.cin * c.k * c.k
                            var col = [Float](repeating: .nan, count: k * columns)
                            col.withUnsafeMutableBufferPointer {
                                Kernels.im2col(x.baseAddress!, batch: c.batch, window, into: $0.baseAddress!)
                            }
                            col.withUnsafeBufferPointer {
                                Kernels.gemm(m: c.cout, n: columns, k: k, w.baseAddress!, $0.baseAddress!, out.baseAddress!)
                            }
                        }
                    }
                }
            }
            let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .nan
            XCTAssertLessThan(worst, 1e-4, "case \(number) \(c): max difference \(worst)")
        }
    }

    func testMaxPoolIgnoresPaddingAndSoftmaxTopK() {
        // 1 channel, batch 1, 3×3 input, 3×3 window stride 2 pad 1: every window's max is a real pixel.
        let input: [Float] = [-5, -4, -3, -2, -1, -6, -7, -8, -9]
        let window = Kernels.Window(
            channels: 1, inHeight: 3, inWidth: 3, outHeight: 2, outWidth: 2,
            kernelHeight: 3, kernelWidth: 3, stride: 2, padTop: 1, padLeft: 1)
        var out = [Float](repeating: 0, count: 4)
        input.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { Kernels.maxPool(x.baseAddress!, batch: 1, window, into: $0.baseAddress!) }
        }
        XCTAssertEqual(out, [-1, -1, -1, -1])

        let logits: [Float] = [1, 3, 2, .nan, 3]
        var p = [Float](repeating: 0, count: 5)
        logits.withUnsafeBufferPointer { l in p.withUnsafeMutableBufferPointer { Classification.softmax(l, into: $0) } }
        let top = p.withUnsafeBufferPointer { Classification.top(3, of: $0) }
        // NaN input poisons the sum: probabilities are NaN and top-k skips them.
        XCTAssertTrue(top.isEmpty || top.allSatisfy { !$0.probability.isNaN })
        let clean: [Float] = [1, 3, 2, 0, 3]
        clean.withUnsafeBufferPointer { l in p.withUnsafeMutableBufferPointer { Classification.softmax(l, into: $0) } }
        let top2 = p.withUnsafeBufferPointer { Classification.top(3, of: $0) }
        XCTAssertEqual(top2.map(\.index), [1, 4, 2])
        XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-6)
    }

    func testTopKIntoAFixedBufferMatchesSorting() {
        let values = Support.randomFloats(1000, seed: 77)
        var best = [ClassScore](repeating: ClassScore(index: -1, probability: 0), count: 5)
        let found = values.withUnsafeBufferPointer { v in
            best.withUnsafeMutableBufferPointer { Classification.top(of: v, into: $0) }
        }
        XCTAssertEqual(found, 5)
        let want = values.enumerated().sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
            .prefix(5)
        XCTAssertEqual(best.map(\.index), want.map(\.offset))
        // Fewer values than slots: only the real ones are written.
        let two: [Float] = [.nan, 2, 1]
        let n = two.withUnsafeBufferPointer { v in best.withUnsafeMutableBufferPointer { Classification.top(of: v, into: $0) } }
        XCTAssertEqual(n, 2)
        XCTAssertEqual(best.prefix(2).map(\.index), [1, 2])
    }
}
