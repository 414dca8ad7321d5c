/// What a typed input is: the 64-byte header at the start of a command's
/// input buffer when its descriptor's flags carry
/// ``Descriptor/tensorHeaderFlag``. Part of the ABI (`fq_tensor_header` in
/// `fabricqueue.h`, RingLayout.md); all fields little-endian.
///
/// | offset | field       | type      |                                                     |
/// |--------|-------------|-----------|-----------------------------------------------------|
/// | 0      | magic       | u32       | "FQT1" (0x3154_5146)                                |
/// | 4      | elementType | u8        | ``TensorElementType`` code                          |
/// | 5      | rank        | u8        | 1 to 4                                              |
/// | 6      | reserved    | u16       | 0                                                   |
/// | 8      | dimensions  | u32 × 4   | outermost first; those past `rank` are 0            |
/// | 24     | scale       | f32       | quantized types: > 0 and finite; float types: 0     |
/// | 28     | zeroPoint   | i32       | quantized types: in the type's range; float types: 0 |
/// | 32     | dataOffset  | u32       | where the elements start, from the input's start: a multiple of 64, ≥ 64 |
/// | 36     | dataBytes   | u32       | product of the dimensions × the element width       |
/// | 40     | reserved    | 24 bytes  | 0                                                   |
///
/// The daemon reads the header once into a copy, checks it
/// (``read(from:)``) and against what the model takes, and hands the
/// handler the checked copy; a bad one completes the command
/// `invalidDescriptor` with its own ``InvalidDescriptorReason`` before any
/// handler runs.
@frozen
public struct TensorHeader: Sendable, Equatable {
    /// "FQT1" read as a little-endian `UInt32`.
    public static let magic: UInt32 = 0x3154_5146
    /// Bytes of the header.
    public static let size = 64
    /// The most dimensions a tensor has.
    public static let maximumRank = 4

    /// The elements' type.
    public var elementType: TensorElementType
    /// How many of ``dimensions`` are used (1 to 4).
    public var rank: UInt8
    /// The dimensions, outermost first; those past ``rank`` are 0.
    public var dimensions: (UInt32, UInt32, UInt32, UInt32)
    /// Quantized types: real value = scale × (q − zeroPoint). 0 for float types.
    public var scale: Float
    /// Quantized types: the integer that stands for 0.0. 0 for float types.
    public var zeroPoint: Int32
    /// Where the elements start, in bytes from the start of the input.
    public var dataOffset: UInt32
    /// Bytes of elements: the product of the dimensions × the element width.
    public var dataBytes: UInt32

    /// A header for a tensor of `shape` (1 to 4 dimensions, each ≥ 1) whose
    /// elements follow it (at byte 64); nil when the daemon would refuse it:
    /// the shape does not fit the ABI (rank, a zero dimension, more than
    /// 4 GiB of elements), a float type with a scale or zero point, or a
    /// quantized type without a finite scale > 0 and a zero point in range.
    public init?(elementType: TensorElementType, shape: [Int], scale: Float = 0, zeroPoint: Int32 = 0) {
        guard (1...Self.maximumRank).contains(shape.count), shape.allSatisfy({ $0 > 0 && $0 <= Int(UInt32.max) }) else {
            return nil
        }
        guard Self.quantizationIsValid(elementType, scaleBits: scale.bitPattern, zeroPoint: zeroPoint) else { return nil }
        var dims: [UInt32] = shape.map { UInt32($0) }
        while dims.count < 4 { dims.append(0) }
        self.elementType = elementType
        rank = UInt8(shape.count)
        dimensions = (dims[0], dims[1], dims[2], dims[3])
        self.scale = scale
        self.zeroPoint = zeroPoint
        dataOffset = UInt32(Self.size)
        guard let bytes = Self.dataBytes(elementType: elementType, rank: rank, dimensions: dimensions) else { return nil }
        dataBytes = bytes
    }

    /// The dimensions in use, outermost first.
    public var shape: [Int] { (0..<Int(min(rank, 4))).map { Int(Self.dimension(dimensions, $0)) } }

    /// Dimension `k` (0…3) of `dimensions`, without an array (the daemon
    /// reads headers on its poll thread, which allocates nothing).
    @inlinable
    static func dimension(_ dimensions: (UInt32, UInt32, UInt32, UInt32), _ k: Int) -> UInt32 {
        switch k {
        case 0: dimensions.0
        case 1: dimensions.1
        case 2: dimensions.2
        default: dimensions.3
        }
    }

    /// The product of the first `rank` dimensions × the element width; nil
    /// when it overflows 32 bits.
    @inlinable
    static func dataBytes(
        elementType: TensorElementType, rank: UInt8, dimensions: (UInt32, UInt32, UInt32, UInt32)
    ) -> UInt32? {
        var total = UInt64(elementType.byteWidth)
        for k in 0..<Int(min(rank, 4)) {
            let (product, overflow) = total.multipliedReportingOverflow(by: UInt64(dimension(dimensions, k)))
            guard !overflow, product <= UInt64(UInt32.max) else { return nil }
            total = product
        }
        return UInt32(total)
    }

    /// Writes the header into the first 64 bytes of `buffer` (which must hold them).
    public func write(to buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.size, "a tensor header takes 64 bytes")
        for k in 0..<Self.size { buffer[k] = 0 }
        buffer.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer[4] = elementType.rawValue
        buffer[5] = rank
        buffer.storeBytes(of: dimensions.0.littleEndian, toByteOffset: 8, as: UInt32.self)
        buffer.storeBytes(of: dimensions.1.littleEndian, toByteOffset: 12, as: UInt32.self)
        buffer.storeBytes(of: dimensions.2.littleEndian, toByteOffset: 16, as: UInt32.self)
        buffer.storeBytes(of: dimensions.3.littleEndian, toByteOffset: 20, as: UInt32.self)
        buffer.storeBytes(of: scale.bitPattern.littleEndian, toByteOffset: 24, as: UInt32.self)
        buffer.storeBytes(of: zeroPoint.littleEndian, toByteOffset: 28, as: Int32.self)
        buffer.storeBytes(of: dataOffset.littleEndian, toByteOffset: 32, as: UInt32.self)
        buffer.storeBytes(of: dataBytes.littleEndian, toByteOffset: 36, as: UInt32.self)
    }

    /// Reads and checks the header at the start of an input of
    /// `input.count` bytes that another process may be writing: every field
    /// is read once, into the returned copy, and nothing later re-reads the
    /// buffer's header. Throws the first check that fails.
    public static func read(from input: UnsafeRawBufferPointer) throws(TensorViolation) -> TensorHeader {
        guard input.count >= size else { throw .malformed }
        // One copy of the 64 bytes: the checks and the result use it alone.
        var raw = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &raw) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[0..<size])) }
        return try withUnsafeBytes(of: raw) { (b) throws(TensorViolation) -> TensorHeader in
            func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: b.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
            guard u32(0) == magic, b[6] == 0, b[7] == 0 else { throw .malformed }
            for k in 40..<size where b[k] != 0 { throw .malformed }
            guard let type = TensorElementType(rawValue: b[4]) else { throw .malformed }
            let rank = b[5]
            guard rank >= 1 && Int(rank) <= maximumRank else { throw .malformed }
            let dims = (u32(8), u32(12), u32(16), u32(20))
            for k in 0..<4 where (k < Int(rank)) != (dimension(dims, k) != 0) { throw .malformed }
            let scale = Float(bitPattern: u32(24))
            let zeroPoint = Int32(bitPattern: u32(28))
            guard quantizationIsValid(type, scaleBits: u32(24), zeroPoint: zeroPoint) else { throw .quantization }
            let dataOffset = u32(32), dataBytes = u32(36)
            // A multiple of 64: the elements are as aligned as the slot, so a
            // handler may load them as their type.
            guard let expected = Self.dataBytes(elementType: type, rank: rank, dimensions: dims), expected == dataBytes,
                dataOffset >= UInt32(size), dataOffset % UInt32(size) == 0,
                UInt64(dataOffset) + UInt64(dataBytes) <= UInt64(input.count)
            else { throw .size }
            var header = TensorHeader(
                elementType: type, rank: rank, dimensions: dims, scale: scale, zeroPoint: zeroPoint)
            header.dataOffset = dataOffset
            header.dataBytes = dataBytes
            return header
        }
    }

    /// Field by field; `dataOffset` and `dataBytes` follow from the others.
    init(
        elementType: TensorElementType, rank: UInt8, dimensions: (UInt32, UInt32, UInt32, UInt32), scale: Float,
        zeroPoint: Int32
    ) {
        self.elementType = elementType
        self.rank = rank
        self.dimensions = dimensions
        self.scale = scale
        self.zeroPoint = zeroPoint
        dataOffset = UInt32(Self.size)
        dataBytes = Self.dataBytes(elementType: elementType, rank: rank, dimensions: dimensions) ?? 0
    }

    /// Float types: scale and zero point both exactly 0 (+0.0). Quantized
    /// types: a finite scale > 0 and a zero point in the type's range.
    @inlinable
    static func quantizationIsValid(_ type: TensorElementType, scaleBits: UInt32, zeroPoint: Int32) -> Bool {
        guard type.isQuantized else { return scaleBits == 0 && zeroPoint == 0 }
        let scale = Float(bitPattern: scaleBits)
        let range: ClosedRange<Int32> = type == .int8 ? -128...127 : 0...255
        return scale.isFinite && scale > 0 && range.contains(zeroPoint)
    }

    /// Field by field (the scale by its bits).
    public static func == (a: TensorHeader, b: TensorHeader) -> Bool {
        a.elementType == b.elementType && a.rank == b.rank && a.dimensions == b.dimensions
            && a.scale.bitPattern == b.scale.bitPattern && a.zeroPoint == b.zeroPoint && a.dataOffset == b.dataOffset
            && a.dataBytes == b.dataBytes
    }
}

/// Why a tensor header was refused (each its own ``InvalidDescriptorReason``).
public enum TensorViolation: Error, Sendable, Equatable {
    /// Not a header: short input, bad magic, unknown type, rank outside 1…4,
    /// a used dimension of 0 or an unused one not 0, reserved bytes not 0.
    case malformed
    /// A scale or zero point on a float type, or a bad one on a quantized type.
    case quantization
    /// `dataBytes` is not the dimensions' product × the width, or the
    /// elements leave the input.
    case size
    /// The model does not take this element type.
    case elementType
    /// The model takes another shape.
    case shape

    /// The completion's `detail` for this violation.
    public var reason: InvalidDescriptorReason {
        switch self {
        case .malformed: .tensorHeaderMalformed
        case .quantization: .tensorQuantization
        case .size: .tensorSize
        case .elementType: .tensorElementType
        case .shape: .tensorShape
        }
    }
}

extension Descriptor {
    /// The `flags` bit that says the input starts with a ``TensorHeader``
    /// (bit 15; bits 0–14 keep the meaning their model gives them).
    public static let tensorHeaderFlag: UInt16 = 0x8000

    /// Whether the input starts with a ``TensorHeader``.
    @inlinable public var hasTensorHeader: Bool { flags & Self.tensorHeaderFlag != 0 }
}

/// What a model takes, against what a command brought: the 64 bytes the
/// daemon writes into the output of a command it refused with
/// ``InvalidDescriptorReason/tensorElementType`` or
/// ``InvalidDescriptorReason/tensorShape`` (when the output holds them; the
/// completion's `outputSize` is then 64). Part of the ABI
/// (`fq_tensor_mismatch`); little-endian.
///
/// | offset | field          | type    |
/// |--------|----------------|---------|
/// | 0      | magic          | u32 "FQTM" (0x4D54_5146) |
/// | 4      | acceptedTypes  | u32: bit *n* set for ``TensorElementType`` code *n* |
/// | 8      | expectedRank   | u8      |
/// | 9      | receivedType   | u8      |
/// | 10     | receivedRank   | u8      |
/// | 11     | reserved       | u8 (0)  |
/// | 12     | expectedShape  | u32 × 4 |
/// | 28     | receivedShape  | u32 × 4 |
/// | 44     | reserved       | 20 bytes (0) |
public struct TensorMismatch: Sendable, Equatable, CustomStringConvertible {
    /// "FQTM" read as a little-endian `UInt32`.
    public static let magic: UInt32 = 0x4D54_5146
    /// Bytes of the record.
    public static let size = 64

    /// The element types the model takes.
    public var acceptedTypes: [TensorElementType]
    /// The shape it takes.
    public var expectedShape: [Int]
    /// The type the command's header named (nil for a code this build does not know).
    public var receivedType: TensorElementType?
    /// The shape it named.
    public var receivedShape: [Int]

    /// Reads a record from a refused command's output (`outputSize` bytes);
    /// nil when it is not one.
    public init?(_ output: UnsafeRawBufferPointer) {
        guard output.count >= Self.size else { return nil }
        func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: output.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        guard u32(0) == Self.magic else { return nil }
        let mask = u32(4)
        acceptedTypes = TensorElementType.allCases.filter { mask & (1 << UInt32($0.rawValue)) != 0 }
        let expectedRank = min(Int(output[8]), 4), receivedRank = min(Int(output[10]), 4)
        expectedShape = (0..<expectedRank).map { Int(u32(12 + 4 * $0)) }
        receivedType = TensorElementType(rawValue: output[9])
        receivedShape = (0..<receivedRank).map { Int(u32(28 + 4 * $0)) }
    }

    /// "expected f32|f16 [3×224×224], received i8 [3×112×112]".
    public var description: String {
        let expected = TensorText.describe(acceptedTypes.map(\.name), expectedShape)
        let received = TensorText.describe([receivedType?.name ?? "unknown"], receivedShape)
        return "expected \(expected), received \(received)"
    }

    /// Daemon side: writes the record for a model that takes `acceptedMask`
    /// (bit per type code) of shape `expected` (`expectedRank` used) and a
    /// command whose header is `received`, into `output` (at least 64
    /// bytes). Allocates nothing.
    public static func write(
        acceptedMask: UInt32, expectedRank: UInt8, expected: (UInt32, UInt32, UInt32, UInt32),
        received: TensorHeader, to output: UnsafeMutableRawBufferPointer
    ) {
        precondition(output.count >= size, "a tensor mismatch record takes 64 bytes")
        for k in 0..<size { output[k] = 0 }
        output.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        output.storeBytes(of: acceptedMask.littleEndian, toByteOffset: 4, as: UInt32.self)
        output[8] = expectedRank
        output[9] = received.elementType.rawValue
        output[10] = received.rank
        for k in 0..<4 {
            output.storeBytes(of: TensorHeader.dimension(expected, k).littleEndian, toByteOffset: 12 + 4 * k, as: UInt32.self)
            output.storeBytes(
                of: TensorHeader.dimension(received.dimensions, k).littleEndian, toByteOffset: 28 + 4 * k, as: UInt32.self)
        }
    }
}

/// How tensors are written for people everywhere in the package
/// (`TensorMismatch`, `TensorSpecification`): `f32|f16 [3×224×224]`.
package enum TensorText {
    package static func describe(_ types: [String], _ shape: [Int]) -> String {
        "\(types.joined(separator: "|")) [\(shape.map(String.init).joined(separator: "×"))]"
    }
}
