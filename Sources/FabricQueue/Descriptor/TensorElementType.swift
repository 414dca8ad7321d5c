/// The element type of a tensor crossing the fabric. Its raw value is the
/// ABI code (`enum fq_tensor_type` in `fabricqueue.h`); in JSON (model
/// discovery) it is written by ``name``.
public enum TensorElementType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// IEEE 754 binary32.
    case float32 = 1
    /// IEEE 754 binary16.
    case float16 = 2
    /// bfloat16: binary32's exponent, 7 bits of mantissa.
    case bfloat16 = 3
    /// Signed 8-bit integers, quantized: real = scale × (q − zero point).
    case int8 = 4
    /// Unsigned 8-bit integers, quantized: real = scale × (q − zero point).
    case uint8 = 5

    /// Bytes per element.
    public var byteWidth: Int {
        switch self {
        case .float32: 4
        case .float16, .bfloat16: 2
        case .int8, .uint8: 1
        }
    }

    /// Whether values carry a scale and zero point.
    public var isQuantized: Bool { self == .int8 || self == .uint8 }

    /// The short name: `f32`, `f16`, `bf16`, `i8`, `u8`.
    public var name: String {
        switch self {
        case .float32: "f32"
        case .float16: "f16"
        case .bfloat16: "bf16"
        case .int8: "i8"
        case .uint8: "u8"
        }
    }

    /// The type with short name `name` (also `fp32`, `fp16`, `int8`, `uint8`).
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "fp32", "float32": self = .float32
        case "f16", "fp16", "float16": self = .float16
        case "bf16", "bfloat16": self = .bfloat16
        case "i8", "int8": self = .int8
        case "u8", "uint8": self = .uint8
        default: return nil
        }
    }

    /// The short name (``name``).
    public var description: String { name }
}

extension TensorElementType: Codable {
    /// Decodes the short name (``name``).
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let type = TensorElementType(name: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "element type \(text)"))
        }
        self = type
    }

    /// Encodes the short name (``name``).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}
