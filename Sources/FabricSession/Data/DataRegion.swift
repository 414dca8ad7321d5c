import FabricQueue
import FabricSystem
import Synchronization
import SystemPackage

/// Shared memory for command payloads: a one-page header, then `slotCount`
/// fixed-size, cache-line-aligned buffer slots. The daemon creates one per
/// session (a sealed memfd) and passes it to the controller, which fills
/// input slots in place; descriptors name them by offset.
///
/// Header (page 0), little-endian: magic "FQDATA01" u64 @0 (written last,
/// release) | abiVersion u32 @8 | reserved u32 @12 | dataOffset u64 @16 |
/// slotSize u64 @24 | slotCount u32 @32 | reserved u32 @36 | epoch u64 @40 |
/// checksum u64 @48 (FNV-1a 64 over bytes 8..<48). Attaching validates all of
/// it against the file before use.
public final class DataRegion: @unchecked Sendable {
    // @unchecked: immutable after init; slot bytes are the peers' to coordinate through the rings
    /// "FQDATA01" read as a little-endian `UInt64`.
    public static let magic: UInt64 = 0x3130_4154_4144_5146
    /// Size of the header page; slot 0 starts here.
    public static let headerPage = 4096

    /// The region's descriptor, owned (closed on deinit).
    public let fileDescriptor: FileDescriptor
    /// The validated slot geometry.
    public let geometry: DataRegionGeometry
    /// Random id of this region's incarnation.
    public let epoch: UInt64
    @usableFromInline let base: UnsafeMutableRawPointer
    /// Bytes mapped.
    public let mappedSize: Int

    private init(fd: FileDescriptor, base: UnsafeMutableRawPointer, mappedSize: Int, geometry: DataRegionGeometry, epoch: UInt64)
    {
        fileDescriptor = fd
        self.base = base
        self.mappedSize = mappedSize
        self.geometry = geometry
        self.epoch = epoch
    }

    deinit {
        Memory.unmap(base, size: mappedSize)
        try? fileDescriptor.close()
    }

    /// Creates an anonymous data region (sealed memfd) of `slotCount` slots of
    /// `slotSize` bytes (a multiple of 64).
    public static func createAnonymous(slotSize: Int, slotCount: Int, inheritable: Bool = false) throws(RegionError) -> DataRegion
    {
        guard slotSize > 0, slotCount > 0, slotCount <= Int(UInt32.max) else { throw .invalidCapacity(slotCount) }
        let geometry = try DataRegionGeometry(slotSize: UInt64(slotSize), slotCount: UInt32(slotCount))
        let size = Int(geometry.regionSize)
        let fd = try MappedFile.sealedMemfd(name: "fabricqueue-data", size: size, inheritable: inheritable)
        let base: UnsafeMutableRawPointer
        do { base = try MappedFile.map(fd: fd, size: size, prefault: false, hugePages: false) } catch {
            try? fd.close()
            throw error
        }
        let epoch = UInt64.random(in: 1...UInt64.max)
        base.storeBytes(of: RegionLayout.abiVersion, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: geometry.dataOffset, toByteOffset: 16, as: UInt64.self)
        base.storeBytes(of: geometry.slotSize, toByteOffset: 24, as: UInt64.self)
        base.storeBytes(of: geometry.slotCount, toByteOffset: 32, as: UInt32.self)
        base.storeBytes(of: epoch, toByteOffset: 40, as: UInt64.self)
        base.storeBytes(of: checksum(base), toByteOffset: 48, as: UInt64.self)
        // Release: a peer that acquires the magic sees the complete header.
        base.assumingMemoryBound(to: Atomic<UInt64>.self).pointee.store(magic, ordering: .releasing)
        return DataRegion(fd: fd, base: base, mappedSize: size, geometry: geometry, epoch: epoch)
    }

    /// Validates and maps the data region behind `fileDescriptor` (duplicated;
    /// the caller keeps its own).
    public static func attach(fileDescriptor: FileDescriptor) throws(RegionError) -> DataRegion {
        let fd: FileDescriptor
        do { fd = try fileDescriptor.duplicateCloseOnExec() } catch { throw .system(error) }
        do throws(RegionError) {
            let (fileSize, _) = try MappedFile.inspect(fd, minimumSize: headerPage)
            // Only the header page until it is checked, then only what it describes.
            let (base, header, mappedSize) = try MappedFile.mapDescribed(fd, fileSize: fileSize, hugePages: false) {
                (base) throws(RegionError) -> ((DataRegionGeometry, UInt64), Int) in
                // Acquire: pairs with the creator's release store of the magic.
                let found = UnsafeMutableRawPointer(mutating: base).assumingMemoryBound(to: Atomic<UInt64>.self).pointee
                    .load(ordering: .acquiring)
                if found == 0 { throw .notInitialized }
                guard found == magic else { throw .badMagic(found: found) }
                let version = base.load(fromByteOffset: 8, as: UInt32.self)
                guard version == RegionLayout.abiVersion else {
                    throw .unsupportedVersion(found: version, supported: RegionLayout.abiVersion)
                }
                let stored = base.load(fromByteOffset: 48, as: UInt64.self)
                let computed = checksum(base)
                guard stored == computed else { throw .headerChecksumMismatch(stored: stored, computed: computed) }
                let dataOffset = base.load(fromByteOffset: 16, as: UInt64.self)
                guard dataOffset == UInt64(headerPage) else {
                    throw .layoutMismatch(field: "dataOffset", expected: UInt64(headerPage), found: dataOffset)
                }
                let geometry = try DataRegionGeometry(
                    slotSize: base.load(fromByteOffset: 24, as: UInt64.self),
                    slotCount: base.load(fromByteOffset: 32, as: UInt32.self))
                guard geometry.regionSize <= UInt64(fileSize) else {
                    throw .truncated(fileSize: fileSize, required: Int(clamping: geometry.regionSize))
                }
                return ((geometry, base.load(fromByteOffset: 40, as: UInt64.self)), Int(geometry.regionSize))
            }
            return DataRegion(fd: fd, base: base, mappedSize: mappedSize, geometry: header.0, epoch: header.1)
        } catch {
            try? fd.close()
            throw error
        }
    }

    /// The header checksum: FNV-1a 64 over bytes 8..<48.
    static func checksum(_ base: UnsafeRawPointer) -> UInt64 { HeaderChecksum.compute(base, over: 8..<48) }

    /// The bytes `offset..<offset+length` if they lie inside the slots (one
    /// slot or a run of them; see
    /// ``DataRegionGeometry/slots(covering:length:)``), else nil. The pointer
    /// is valid while this region exists; keep a reference to it for as long
    /// as you use the bytes.
    @inlinable
    public func slotBytes(offset: UInt64, length: UInt64) -> UnsafeMutableRawBufferPointer? {
        guard geometry.slots(covering: offset, length: length) != nil else { return nil }
        return UnsafeMutableRawBufferPointer(start: base + Int(offset), count: Int(length))
    }

    /// Calls `body` with the bytes `offset..<offset+length` if they lie
    /// inside the slots (see ``DataRegionGeometry/slots(covering:length:)``);
    /// returns nil without calling it otherwise. The daemon reads inputs and
    /// writes outputs only through this check.
    @inlinable
    public func withSlotBytes<R, E: Error>(
        offset: UInt64, length: UInt64,
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
    ) throws(E) -> R? {
        guard geometry.slots(covering: offset, length: length) != nil else { return nil }
        return try withExtendedLifetime(self) { () throws(E) -> R in
            try body(UnsafeMutableRawBufferPointer(start: base + Int(offset), count: Int(length)))
        }
    }
}
