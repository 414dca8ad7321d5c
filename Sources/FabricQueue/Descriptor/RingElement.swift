import FabricSystem

/// A type that can live in a ring slot: plain bits, no references, with a tag
/// recorded in the region header so a ring of one element type is never read
/// as another.
public protocol RingElement: BitwiseCopyable, Sendable {
    /// Identifies the element type in the region header. FabricQueue reserves
    /// tags below 0x1000; ``Descriptor`` is 1.
    static var ringElementTag: UInt32 { get }
}
