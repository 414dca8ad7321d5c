import FabricQueue
import FabricSession

/// What a model's typed inputs must be, from its handler's
/// `inputSpecification`, in a form the poll thread checks without
/// allocating: a bit per accepted element type and a fixed shape.
struct TensorRequirement: Sendable {
    /// Bit *n* set for the type whose code is *n*.
    let acceptedMask: UInt32
    let rank: UInt8
    let dimensions: (UInt32, UInt32, UInt32, UInt32)

    /// Nil when `specification` is nil or does not fit the ABI (then any
    /// well-formed header is taken).
    init?(_ specification: TensorSpecification?) {
        guard let specification, !specification.elementTypes.isEmpty,
            let sample = TensorHeader(elementType: specification.elementTypes[0], shape: specification.shape)
        else { return nil }
        var mask: UInt32 = 0
        for type in specification.elementTypes { mask |= 1 << UInt32(type.rawValue) }
        acceptedMask = mask
        rank = sample.rank
        dimensions = sample.dimensions
    }

    /// Throws when `header` names a type or shape the model does not take.
    func check(_ header: TensorHeader) throws(TensorViolation) {
        guard acceptedMask & (1 << UInt32(header.elementType.rawValue)) != 0 else { throw .elementType }
        guard header.rank == rank, header.dimensions == dimensions else { throw .shape }
    }
}
