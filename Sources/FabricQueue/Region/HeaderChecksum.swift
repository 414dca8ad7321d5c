/// FNV-1a 64 over the header's immutable fields (bytes 8..<88): catches a
/// damaged or half-written header that would otherwise pass the field checks.
enum HeaderChecksum {
    static let coveredRange = RegionLayout.Header.abiVersion..<RegionLayout.Header.checksum

    static func compute(_ header: UnsafeRawPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for offset in coveredRange {
            hash ^= UInt64(header.load(fromByteOffset: offset, as: UInt8.self))
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
