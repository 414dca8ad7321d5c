import COpenBLAS

/// A network compiled from an ``EngineFile`` for batches of up to
/// `maximumBatch` images: every layer checked against the shapes, weights
/// used in place from the mapping, activation buffers allocated once and
/// reused by liveness. ``infer(batch:input:output:)`` allocates nothing.
///
/// Not thread-safe: one thread runs it at a time (the daemon's poll thread).
/// OpenBLAS may use its own threads inside each GEMM.
public final class Network: @unchecked Sendable {
    // @unchecked: mutable scratch buffers, used by one thread at a time (see above).
    /// The engine whose weights it uses in place.
    public let engine: EngineFile
    /// The largest batch ``infer(batch:input:output:)`` takes.
    public let maximumBatch: Int
    /// What each input image must be.
    public let input: InputSpecification
    /// Logits per image.
    public let classCount: Int

    private let steps: [Step]
    private let buffers: [UnsafeMutablePointer<Float>]
    private let inputBuffer: Int
    private let outputBuffer: Int
    private let column: UnsafeMutablePointer<Float>
    /// Floats held by activation and scratch buffers.
    public let scratchFloatCount: Int

    struct Shape: Equatable {
        var c: Int, h: Int, w: Int
        var count: Int { c * h * w }
    }

    enum Step {
        case convolution(Convolution)
        case maxPool(source: Int, destination: Int, window: Kernels.Window)
        case averagePool(source: Int, destination: Int, channels: Int, planeSize: Int)
        case linear(
            source: Int, destination: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, inFeatures: Int,
            outFeatures: Int)
    }

    struct Convolution {
        var source: Int, destination: Int, residual: Int?
        var weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?
        var window: Kernels.Window
        var outChannels: Int
        var depthwise: Bool
        /// 1×1, stride 1, no padding: the input already is the column matrix.
        var direct: Bool
        var activation: LayerSpecification.Activation

        /// Rows of the column matrix (the GEMM's inner dimension): Cin·kh·kw.
        var columnRows: Int { window.channels * window.kernelHeight * window.kernelWidth }
    }

    /// Validates the engine's layers and compiles them.
    public init(engine: EngineFile, maximumBatch: Int = 8) throws(EngineError) {
        guard (1...64).contains(maximumBatch) else { throw .unsupported("maximum batch \(maximumBatch) is not in 1...64") }
        let m = engine.manifest
        self.engine = engine
        self.maximumBatch = maximumBatch
        input = m.input
        classCount = m.classCount
        guard (1...16).contains(m.input.channels), (1...4096).contains(m.input.height), (1...4096).contains(m.input.width),
            m.input.mean.count == m.input.channels, m.input.std.count == m.input.channels,
            m.input.std.allSatisfy({ $0 > 0 && $0.isFinite }), m.input.resizeShorterSide >= max(m.input.height, m.input.width),
            (1...100_000).contains(m.classCount)
        else {
            throw .malformed("input specification or class count out of range")
        }
        let limit = 1 << 30  // floats per buffer, a sanity bound on what a manifest may ask for

        // Shapes and liveness.
        var shapes = ["input": Shape(c: m.input.channels, h: m.input.height, w: m.input.width)]
        var lastUse = [String: Int]()
        for (i, layer) in m.layers.enumerated() {
            for name in [layer.input] + (layer.residual.map { [$0] } ?? []) {
                guard shapes[name] != nil else { throw .malformed("layer \(i) reads \(name), which no earlier layer makes") }
                lastUse[name] = i
            }
            guard shapes[layer.output] == nil else { throw .malformed("value \(layer.output) is made twice") }
            shapes[layer.output] = try Self.outputShape(of: layer, index: i, input: shapes[layer.input]!, engine: engine)
            guard shapes[layer.output]!.count <= limit / maximumBatch else { throw .unsupported("layer \(i) is too large") }
            if let r = layer.residual, shapes[r] != shapes[layer.output] {
                throw .malformed("layer \(i): residual \(r) has another shape than the output")
            }
        }
        guard let outShape = shapes[m.output], outShape == Shape(c: m.classCount, h: 1, w: 1) else {
            throw .malformed("output \(m.output) is missing or is not (\(m.classCount), 1, 1)")
        }
        lastUse[m.output] = Int.max

        // Buffers: reuse a free one that fits, else grow or add one.
        var capacities = [Int]()
        var free = [Int]()
        var bufferOf = [String: Int]()
        func allocate(_ floats: Int) -> Int {
            if let best = free.filter({ capacities[$0] >= floats }).min(by: { capacities[$0] < capacities[$1] }) {
                free.removeAll { $0 == best }
                return best
            }
            if let largest = free.max(by: { capacities[$0] < capacities[$1] }) {
                free.removeAll { $0 == largest }
                capacities[largest] = floats
                return largest
            }
            capacities.append(floats)
            return capacities.count - 1
        }
        bufferOf["input"] = allocate(shapes["input"]!.count * maximumBatch)
        var plan = [LayerSpecification]()
        for (i, layer) in m.layers.enumerated() {
            bufferOf[layer.output] = allocate(shapes[layer.output]!.count * maximumBatch)
            plan.append(layer)
            for name in Set([layer.input] + (layer.residual.map { [$0] } ?? [])) where lastUse[name] == i {
                free.append(bufferOf[name]!)
            }
        }

        let compiled: [Step] = plan.map { layer in
            let inShape = shapes[layer.input]!, outShape = shapes[layer.output]!
            let source = bufferOf[layer.input]!, destination = bufferOf[layer.output]!
            let pad = layer.padding ?? [0, 0, 0, 0]
            switch layer.op {
            case .convolution:
                let w = engine.tensor(layer.weight!)!
                let kh = w.entry.shape[2], kw = w.entry.shape[3]
                let depthwise = (layer.groups ?? 1) != 1
                let window = Kernels.Window(
                    channels: inShape.c, inHeight: inShape.h, inWidth: inShape.w,
                    outHeight: outShape.h, outWidth: outShape.w, kernelHeight: kh, kernelWidth: kw,
                    stride: layer.stride ?? 1, padTop: pad[0], padLeft: pad[1])
                return .convolution(
                    Convolution(
                        source: source, destination: destination, residual: layer.residual.map { bufferOf[$0]! },
                        weight: w.values.baseAddress!, bias: layer.bias.flatMap { engine.tensor($0)?.values.baseAddress },
                        window: window, outChannels: outShape.c, depthwise: depthwise,
                        direct: !depthwise && kh == 1 && kw == 1 && window.stride == 1 && pad.allSatisfy { $0 == 0 },
                        activation: layer.activation ?? .none))
            case .maxPool:
                let k = layer.kernel!
                return .maxPool(
                    source: source, destination: destination,
                    window: Kernels.Window(
                        channels: inShape.c, inHeight: inShape.h, inWidth: inShape.w, outHeight: outShape.h, outWidth: outShape.w,
                        kernelHeight: k, kernelWidth: k, stride: layer.stride ?? 1, padTop: pad[0], padLeft: pad[1]))
            case .globalAveragePool:
                return .averagePool(
                    source: source, destination: destination, channels: inShape.c, planeSize: inShape.h * inShape.w)
            case .linear:
                return .linear(
                    source: source, destination: destination, weight: engine.tensor(layer.weight!)!.values.baseAddress!,
                    bias: layer.bias.flatMap { engine.tensor($0)?.values.baseAddress },
                    inFeatures: inShape.c, outFeatures: outShape.c)
            }
        }
        // The im2col scratch: the largest column matrix of a convolution that needs one.
        let columnFloats = compiled.reduce(0) { size, step in
            guard case let .convolution(c) = step, !c.depthwise, !c.direct else { return size }
            return max(size, c.columnRows * c.window.outHeight * c.window.outWidth * maximumBatch)
        }
        steps = compiled
        buffers = capacities.map { n in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            p.initialize(repeating: 0, count: n)
            return p
        }
        // Also gathers one image's logits in infer(batch:input:output:).
        column = .allocate(capacity: max(columnFloats, m.classCount))
        scratchFloatCount = capacities.reduce(0, +) + max(columnFloats, m.classCount)
        inputBuffer = bufferOf["input"]!
        outputBuffer = bufferOf[m.output]!
    }

    deinit {
        for b in buffers { b.deallocate() }
        column.deallocate()
    }

    /// Runs `batch` images. `input(i)` gives image i as float32 C×H×W
    /// (``InputSpecification/byteCount`` bytes); `output(i, logits)` receives
    /// its `classCount` logits. Neither closure may keep its pointer.
    public func infer(
        batch n: Int, input: (Int) -> UnsafeRawBufferPointer,
        output: (Int, UnsafeBufferPointer<Float>) -> Void
    ) {
        infer(batch: n, input: { (input($0), .float32) }, output: output)
    }

    /// Runs `batch` images stored in any ``InputEncoding``: `input(i)` gives
    /// image i's C×H×W elements (channels × height × width × the encoding's
    /// width bytes) and how they are stored. Each is converted to FP32 as it
    /// is copied into the network's input buffer (the kernels compute in
    /// FP32); the rest is as for FP32 input.
    public func infer(
        batch n: Int, input: (Int) -> (UnsafeRawBufferPointer, InputEncoding),
        output: (Int, UnsafeBufferPointer<Float>) -> Void
    ) {
        precondition(n >= 1 && n <= maximumBatch, "batch out of 1...maximumBatch")
        let plane = self.input.height * self.input.width
        let x = buffers[inputBuffer]
        for b in 0..<n {
            let (image, encoding) = input(b)
            let width = encoding.byteWidth
            precondition(image.count >= self.input.channels * plane * width, "input image too small")
            // Unaligned reads: the slot's offset need not be element-aligned.
            let source = image.baseAddress!
            for c in 0..<self.input.channels {
                let destination: UnsafeMutablePointer<Float> = x + (c * n + b) * plane
                encoding.convert(source + c * plane * width, count: plane, into: destination)
            }
        }
        for step in steps { run(step, batch: n) }
        // Logits are classes × batch; hand each image its column, gathered into the column scratch.
        let logits = buffers[outputBuffer]
        for b in 0..<n {
            for k in 0..<classCount { column[k] = logits[k * n + b] }
            output(b, UnsafeBufferPointer(start: column, count: classCount))
        }
    }

    private func run(_ step: Step, batch n: Int) {
        switch step {
        case let .convolution(c):
            let src = UnsafePointer(buffers[c.source]), dst = buffers[c.destination]
            let columns = n * c.window.outHeight * c.window.outWidth
            if c.depthwise {
                Kernels.depthwise(src, batch: n, c.window, weight: c.weight, into: dst)
            } else if c.direct {
                Kernels.gemm(m: c.outChannels, n: columns, k: c.window.channels, c.weight, src, dst)
            } else {
                Kernels.im2col(src, batch: n, c.window, into: column)
                Kernels.gemm(m: c.outChannels, n: columns, k: c.columnRows, c.weight, column, dst)
            }
            Kernels.epilogue(
                dst, rows: c.outChannels, columns: columns, bias: c.bias,
                residual: c.residual.map { UnsafePointer(buffers[$0]) }, activation: c.activation)
        case let .maxPool(source, destination, window):
            Kernels.maxPool(buffers[source], batch: n, window, into: buffers[destination])
        case let .averagePool(source, destination, channels, planeSize):
            Kernels.globalAveragePool(buffers[source], planes: channels * n, planeSize: planeSize, into: buffers[destination])
        case let .linear(source, destination, weight, bias, inFeatures, outFeatures):
            Kernels.gemm(m: outFeatures, n: n, k: inFeatures, weight, buffers[source], buffers[destination])
            Kernels.epilogue(buffers[destination], rows: outFeatures, columns: n, bias: bias, residual: nil, activation: .none)
        }
    }

    /// Checks one layer against the engine and returns its output shape.
    private static func outputShape(
        of layer: LayerSpecification, index i: Int, input x: Shape,
        engine: EngineFile
    ) throws(EngineError) -> Shape {
        func tensor(_ name: String?, _ shape: [Int]) throws(EngineError) {
            guard let name else { throw .malformed("layer \(i) needs a tensor") }
            guard let t = engine.tensor(name) else { throw .malformed("layer \(i): tensor \(name) is not in the table") }
            guard t.entry.shape == shape else {
                throw .malformed("layer \(i): tensor \(name) has shape \(t.entry.shape), expected \(shape)")
            }
        }
        let stride = layer.stride ?? 1
        let pad = layer.padding ?? [0, 0, 0, 0]
        guard
            layer.op == .convolution
                || (layer.residual == nil && (layer.activation ?? LayerSpecification.Activation.none) == .none)
        else {
            throw .unsupported("layer \(i): only convolutions take a residual or an activation")
        }
        guard (1...8).contains(stride), pad.count == 4, pad.allSatisfy({ (0...64).contains($0) }) else {
            throw .malformed("layer \(i): stride or padding out of range")
        }
        func spatial(_ k: Int) throws(EngineError) -> (Int, Int) {
            guard (1...31).contains(k), pad[0] < k, pad[1] < k, pad[2] < k, pad[3] < k else {
                throw .malformed("layer \(i): kernel \(k) or its padding out of range")
            }
            let h = x.h + pad[0] + pad[2] - k, w = x.w + pad[1] + pad[3] - k
            guard h >= 0, w >= 0 else { throw .malformed("layer \(i): window larger than its input") }
            return (h / stride + 1, w / stride + 1)
        }
        switch layer.op {
        case .convolution:
            guard let wname = layer.weight, let w = engine.tensor(wname), w.entry.shape.count == 4 else {
                throw .malformed("layer \(i): convolution weight missing or not 4-D")
            }
            let cout = w.entry.shape[0], k = w.entry.shape[2]
            guard w.entry.shape[3] == k else { throw .unsupported("layer \(i): non-square kernels") }
            let groups = layer.groups ?? 1
            if groups == 1 {
                try tensor(wname, [cout, x.c, k, k])
            } else {
                guard groups == x.c, cout == x.c else {
                    throw .unsupported("layer \(i): groups must be 1 or the channel count (depthwise)")
                }
                try tensor(wname, [cout, 1, k, k])
            }
            if layer.bias != nil { try tensor(layer.bias, [cout]) }
            let (h, w2) = try spatial(k)
            return Shape(c: cout, h: h, w: w2)
        case .maxPool:
            guard let k = layer.kernel else { throw .malformed("layer \(i): pooling without a kernel") }
            let (h, w) = try spatial(k)
            return Shape(c: x.c, h: h, w: w)
        case .globalAveragePool:
            return Shape(c: x.c, h: 1, w: 1)
        case .linear:
            guard x.h == 1, x.w == 1, let wname = layer.weight, let w = engine.tensor(wname), w.entry.shape.count == 2 else {
                throw .malformed("layer \(i): linear needs a (C, 1, 1) input and a 2-D weight")
            }
            try tensor(wname, [w.entry.shape[0], x.c])
            if layer.bias != nil { try tensor(layer.bias, [w.entry.shape[0]]) }
            guard layer.residual == nil else { throw .unsupported("layer \(i): residual on a linear layer") }
            return Shape(c: w.entry.shape[0], h: 1, w: 1)
        }
    }
}
