import FabricSystem

/// Copies one ring element between a slot and private memory in explicit
/// 16-byte (or, for odd sizes, 8-byte) chunks.
///
/// Two reasons not to use a plain `pointee` assignment here: the compiler may
/// move a 64-byte struct as one aggregate load/store, which ThreadSanitizer
/// does not instrument (it sees 1-, 2-, 4-, 8- and 16-byte accesses only), so
/// a missing release/acquire on the ring would go undetected; and a struct
/// filled with 8-byte stores then copied with 16-byte loads stalls on store
/// forwarding. After specialization the chunk loop unrolls to four 16-byte
/// moves for a ``Descriptor``.
@inlinable @inline(__always)
func copyElement<Element: RingElement>(from source: UnsafePointer<Element>, to destination: UnsafeMutablePointer<Element>) {
    let size = MemoryLayout<Element>.size
    let src = UnsafeRawPointer(source)
    let dst = UnsafeMutableRawPointer(destination)
    if size % 16 == 0 {
        var offset = 0
        while offset < size {
            dst.storeBytes(
                of: src.loadUnaligned(fromByteOffset: offset, as: SIMD2<UInt64>.self),
                toByteOffset: offset, as: SIMD2<UInt64>.self)
            offset += 16
        }
    } else {
        // Slot sizes are multiples of 8 (RingGeometry); element sizes may not be.
        var offset = 0
        while offset + 8 <= size {
            dst.storeBytes(
                of: src.loadUnaligned(fromByteOffset: offset, as: UInt64.self),
                toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < size {
            dst.storeBytes(of: src.load(fromByteOffset: offset, as: UInt8.self), toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }
}

/// Copies `count` consecutive elements with one `memmove` (the
/// `llvm.memmove` intrinsic, which ThreadSanitizer instruments as a range
/// access). For runs of slots: glibc's memmove moves a 64-byte descriptor in
/// two 32-byte AVX2 operations where available, which measured 8 % faster at
/// burst 1 on the consumer side than four 16-byte moves.
///
/// ThreadSanitizer builds (`scripts/test-tsan` defines `FABRICQUEUE_TSAN`)
/// copy element by element in 16-byte chunks instead: on this toolchain TSan
/// does not see the memmove, and a race it cannot see is a race it cannot
/// report. The orderings under test are the same in both builds; only the
/// copy primitive differs.
@inlinable @inline(__always)
func copyElements<Element: RingElement>(
    from source: UnsafePointer<Element>, to destination: UnsafeMutablePointer<Element>, count: Int
) {
    #if FABRICQUEUE_TSAN
    for i in 0..<count { copyElement(from: source + i, to: destination + i) }
    #else
    UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * MemoryLayout<Element>.stride)
    #endif
}

/// Writes `element` (a value, usually built in registers) into `slot`.
///
/// A direct store: after specialization the compiler writes the fields as
/// they are computed, which both avoids a round trip through the stack
/// (a store-forwarding stall when re-read in 16-byte chunks: measured 0.96x
/// vs 1.05x the C ring at burst 1) and gives ThreadSanitizer per-field stores
/// to see. Memory-to-memory copies use ``copyElement(from:to:)``.
@inlinable @inline(__always)
func writeElement<Element: RingElement>(_ element: Element, to slot: UnsafeMutablePointer<Element>) {
    slot.pointee = element
}

/// Reads the element in `slot` (see ``copyElement(from:to:)``).
@inlinable @inline(__always)
func readElement<Element: RingElement>(from slot: UnsafePointer<Element>) -> Element {
    withUnsafeTemporaryAllocation(of: Element.self, capacity: 1) { buffer in
        copyElement(from: slot, to: buffer.baseAddress.unsafelyUnwrapped)
        return buffer[0]
    }
}
