import FabricSystem

/// FNV-1a 64 over a header's immutable fields: catches a damaged or
/// half-written header that would otherwise pass the field checks. Ring
/// regions cover bytes 8..<88, data regions bytes 8..<48.
package enum HeaderChecksum {
    package static let coveredRange = RegionLayout.Header.abiVersion..<RegionLayout.Header.checksum

    package static func compute(_ header: UnsafeRawPointer, over range: Range<Int> = coveredRange) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for offset in range {
            hash ^= UInt64(header.load(fromByteOffset: offset, as: UInt8.self))
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
