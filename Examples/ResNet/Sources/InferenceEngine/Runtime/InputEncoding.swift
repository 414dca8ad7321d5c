/// How an input image's elements are stored: the network computes in FP32,
/// and ``Network/infer(batch:input:output:)`` converts other encodings as it
/// copies each image into its input buffer.
public enum InputEncoding: Sendable, Equatable {
    /// IEEE binary32, copied as is.
    case float32
    /// IEEE binary16 (half the bytes of FP32).
    case float16
    /// bfloat16: the upper half of a binary32.
    case bfloat16
    /// Per-tensor quantized signed bytes: `real = scale × (q − zeroPoint)`.
    case int8(scale: Float, zeroPoint: Int32)
    /// Per-tensor quantized unsigned bytes: `real = scale × (q − zeroPoint)`.
    case uint8(scale: Float, zeroPoint: Int32)

    /// Bytes per element.
    public var byteWidth: Int {
        switch self {
        case .float32: 4
        case .float16, .bfloat16: 2
        case .int8, .uint8: 1
        }
    }

    /// Converts `count` little-endian elements at `source` (any alignment)
    /// to FP32 at `destination`.
    @inlinable
    func convert(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        switch self {
        case .float32:
            #if _endian(little)
            UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
            #else
            for i in 0..<count {
                destination[i] = Float(
                    bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
            #endif
        case .float16:
            for i in 0..<count {
                let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                destination[i] = Float(Float16(bitPattern: bits))
            }
        case .bfloat16:
            for i in 0..<count {
                let bits = UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16
                destination[i] = Float(bitPattern: bits)
            }
        case let .int8(scale, zeroPoint):
            let bytes = source.assumingMemoryBound(to: Int8.self)
            let zero = Float(zeroPoint)
            for i in 0..<count { destination[i] = scale * (Float(bytes[i]) - zero) }
        case let .uint8(scale, zeroPoint):
            let bytes = source.assumingMemoryBound(to: UInt8.self)
            let zero = Float(zeroPoint)
            for i in 0..<count { destination[i] = scale * (Float(bytes[i]) - zero) }
        }
    }
}
