import FabricSystem
import Synchronization
import SystemPackage

/// A region of memory that several processes map: one ring of fixed-size slots
/// and its control block, laid out as documented in `Docs/RingLayout.md`.
///
/// Create a region either **named** (a file, e.g. under `/dev/shm` or a
/// hugetlbfs mount, which other processes open by path) or **anonymous** (a
/// sealed `memfd`, shared by passing or inheriting its file descriptor). Attach
/// to an existing one by path or by descriptor; attaching validates the whole
/// header before anything else is touched and reports damage as a
/// ``RegionError``.
///
/// The mapping is unmapped and its descriptor closed when the last reference
/// goes away. Ring endpoints keep a reference, so memory they use cannot be
/// unmapped under them.
public final class SharedRegion: @unchecked Sendable {
    // @unchecked: immutable after init; its memory is shared by design
    /// The path of a named region, `nil` for an anonymous one.
    public let path: FilePath?
    /// The region's file descriptor, owned by the region (closed on deinit).
    /// Pass it to another process (inherit it, or `SCM_RIGHTS`) to share an
    /// anonymous region.
    public let fileDescriptor: FileDescriptor
    /// The validated header.
    public let info: RegionInfo
    /// Start of the mapping.
    @usableFromInline let base: UnsafeMutableRawPointer
    /// Bytes mapped.
    public let mappedSize: Int
    /// What became of ``RegionOptions/placement`` (nil: none was requested, or
    /// this process attached rather than created).
    public let placement: PlacementOutcome?
    private let locked: Bool

    private init(
        path: FilePath?, fd: FileDescriptor, base: UnsafeMutableRawPointer,
        mappedSize: Int, info: RegionInfo, locked: Bool, placement: PlacementOutcome? = nil
    ) {
        self.path = path
        self.fileDescriptor = fd
        self.base = base
        self.mappedSize = mappedSize
        self.info = info
        self.locked = locked
        self.placement = placement
    }

    deinit {
        if locked { Memory.unlock(base, size: mappedSize) }
        Memory.unmap(base, size: mappedSize)
        try? fileDescriptor.close()
    }

    // MARK: Creating

    /// Creates a named region at `path` holding one ring.
    ///
    /// Opens the file with `open(2)` (`O_CREAT|O_EXCL`, mode from
    /// `options.permissions`), sizes it with `ftruncate(2)`, maps it with
    /// `mmap(2)` (`MAP_SHARED`), writes the header and publishes it by storing
    /// the magic word last (release). On any failure the file is removed.
    ///
    /// - Parameters:
    ///   - path: where to create the file (`/dev/shm/NAME` for memory-backed).
    ///   - kind: SPSC or MPSC.
    ///   - capacity: slots, a power of two.
    ///   - element: slot type; ``Descriptor`` by default.
    ///   - options: permissions, prefault, mlock, huge pages.
    public static func create<Element: RingElement>(
        at path: FilePath, kind: RingKind, capacity: Int,
        of element: Element.Type = Descriptor.self, options: RegionOptions = RegionOptions()
    ) throws(RegionError) -> SharedRegion {
        let geometry = try RingGeometry(kind: kind, capacity: capacity, slotSize: MemoryLayout<Element>.stride)
        if !options.exclusive {
            // Replace by unlink + exclusive create: truncating a file someone
            // still maps would fault them with SIGBUS.
            do { try FileSystem.unlinkIfPresent(path) } catch { throw .system(error) }
        }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.openFile(
                path, .readWrite,
                options: [.create, .exclusiveCreate, .closeOnExec, .noFollow],
                permissions: options.permissions)
        } catch {
            if error.errno == .fileExists { throw .alreadyExists(path: path.string) }
            throw .system(error)
        }
        do throws(RegionError) {
            // umask may have narrowed the mode; set exactly what was asked.
            do { try fd.changeMode(to: options.permissions) } catch { throw RegionError.system(error) }
            if options.hugePages && !fd.isOnHugetlbfs {
                throw RegionError.hugePagesUnavailable(
                    reason:
                        "\(path) is not on a hugetlbfs mount (mount one, e.g. /dev/hugepages, and reserve pages in /proc/sys/vm/nr_hugepages)"
                )
            }
            return try initialize(
                path: path, fd: fd, geometry: geometry,
                elementTag: Element.ringElementTag, flags: 0, options: options)
        } catch {
            try? FileSystem.unlink(path)
            try? fd.close()
            throw error
        }
    }

    /// Creates an anonymous region: a `memfd_create(2)` file, sized, sealed
    /// against shrinking and growing (`F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL`,
    /// so no peer can truncate it and fault us), mapped and initialized.
    ///
    /// Share it by passing ``fileDescriptor`` to another process; set
    /// ``RegionOptions/inheritable`` to let an `exec`ed child inherit it.
    public static func createAnonymous<Element: RingElement>(
        name: String = "fabricqueue", kind: RingKind, capacity: Int,
        of element: Element.Type = Descriptor.self, options: RegionOptions = RegionOptions()
    ) throws(RegionError) -> SharedRegion {
        let geometry = try RingGeometry(kind: kind, capacity: capacity, slotSize: MemoryLayout<Element>.stride)
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.memfd(
                name: name, allowSealing: true, closeOnExec: !options.inheritable,
                hugePages: options.hugePages)
        } catch {
            if options.hugePages { throw .hugePagesUnavailable(reason: "memfd_create(MFD_HUGETLB) failed: \(error.errno)") }
            throw .system(error)
        }
        do throws(RegionError) {
            return try initialize(
                path: nil, fd: fd, geometry: geometry, elementTag: Element.ringElementTag,
                flags: RegionLayout.Flags.anonymous, options: options)
        } catch {
            try? fd.close()
            throw error
        }
    }

    private static func initialize(
        path: FilePath?, fd: FileDescriptor, geometry: RingGeometry, elementTag: UInt32,
        flags: UInt32, options: RegionOptions
    ) throws(RegionError) -> SharedRegion {
        let page = options.hugePages ? 2 << 20 : Memory.pageSize
        let size = (geometry.requiredSize + page - 1) / page * page
        do { try fd.truncate(toSize: size) } catch {
            if options.hugePages { throw .hugePagesUnavailable(reason: "ftruncate to \(size) bytes failed: \(error.errno)") }
            throw .system(error)
        }
        if path == nil {
            do { try fd.addSeals(FileDescriptor.sealsAgainstResizing) } catch { throw .system(error) }
        }
        // With a placement, set the policy before the first touch, then prefault.
        let base = try MappedFile.map(
            fd: fd, size: size, prefault: options.prefault && options.placement == nil,
            hugePages: options.hugePages)
        var placement: PlacementOutcome?
        if let requested = options.placement {
            do {
                placement = try NUMA.place(UnsafeMutableRawBufferPointer(start: base, count: size), requested)
            } catch {
                Memory.unmap(base, size: size)
                throw .placement(error)
            }
            if options.prefault {
                // Not shared with anyone yet (no magic): plain stores fault the pages in.
                for offset in stride(from: 0, to: size, by: page) { (base + offset).storeBytes(of: 0, as: UInt8.self) }
            }
        }
        var locked = false
        if options.lockInMemory {
            do { try Memory.lock(base, size: size) } catch {
                Memory.unmap(base, size: size)
                throw .system(error)
            }
            locked = true
        }
        // The file is zero-filled by ftruncate: indices start at 0 and every
        // MPSC slot sequence at 0, which means "not published" for every slot.
        let info = RegionInfo(
            kind: geometry.kind, elementTag: elementTag, geometry: geometry, regionSize: size,
            creatorPID: currentProcessID, epoch: UInt64.random(in: 1...UInt64.max),
            createdAt: realtimeNanoseconds(),
            flags: flags | (options.hugePages ? RegionLayout.Flags.hugePages : 0))
        writeHeader(info, to: base)
        return SharedRegion(
            path: path, fd: fd, base: base, mappedSize: size, info: info, locked: locked,
            placement: placement)
    }

    static func writeHeader(_ info: RegionInfo, to base: UnsafeMutableRawPointer) {
        typealias H = RegionLayout.Header
        base.storeBytes(of: RegionLayout.abiVersion, toByteOffset: H.abiVersion, as: UInt32.self)
        base.storeBytes(of: UInt32(RegionLayout.headerSize), toByteOffset: H.headerSize, as: UInt32.self)
        base.storeBytes(of: UInt64(info.regionSize), toByteOffset: H.regionSize, as: UInt64.self)
        base.storeBytes(of: info.kind.rawValue, toByteOffset: H.ringKind, as: UInt32.self)
        base.storeBytes(of: info.elementTag, toByteOffset: H.elementTag, as: UInt32.self)
        base.storeBytes(of: UInt32(info.slotSize), toByteOffset: H.slotSize, as: UInt32.self)
        base.storeBytes(of: UInt32(info.capacity), toByteOffset: H.capacity, as: UInt32.self)
        base.storeBytes(of: UInt64(RegionLayout.controlOffset), toByteOffset: H.controlOffset, as: UInt64.self)
        base.storeBytes(of: UInt64(info.geometry.slotsOffset), toByteOffset: H.slotsOffset, as: UInt64.self)
        base.storeBytes(of: UInt64(info.geometry.sequencesOffset), toByteOffset: H.sequencesOffset, as: UInt64.self)
        base.storeBytes(of: UInt32(bitPattern: info.creatorPID), toByteOffset: H.creatorPID, as: UInt32.self)
        base.storeBytes(of: info.flags, toByteOffset: H.flags, as: UInt32.self)
        base.storeBytes(of: info.epoch, toByteOffset: H.epoch, as: UInt64.self)
        base.storeBytes(of: info.createdAt, toByteOffset: H.createdAt, as: UInt64.self)
        base.storeBytes(of: HeaderChecksum.compute(base), toByteOffset: H.checksum, as: UInt64.self)
        // Release: every header byte above is visible to a process that reads
        // this magic with acquire, so a half-written header is never accepted.
        base.assumingMemoryBound(to: Atomic<UInt64>.self).pointee.store(RegionLayout.magic, ordering: .releasing)
    }

    // MARK: Attaching

    /// Opens and validates the named region at `path`.
    ///
    /// Uses `open(2)` with `O_NONBLOCK` (a FIFO cannot block us), `fstat(2)`
    /// (only regular files are accepted and the size is checked before
    /// mapping, so a truncated file yields ``RegionError/truncated(fileSize:required:)``
    /// instead of `SIGBUS`), then `mmap(2)` and header validation.
    ///
    /// - Parameters:
    ///   - path: the region's file, e.g. `/dev/shm/NAME`.
    ///   - expectedEpoch: when given, the region must be that incarnation.
    public static func attach(at path: FilePath, expectedEpoch: UInt64? = nil) throws(RegionError) -> SharedRegion {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.openFile(path, .readWrite, options: [.closeOnExec, .nonBlocking])
        } catch {
            if error.errno == .isDirectory { throw .notARegularFile(fileType: "directory") }
            throw .system(error)
        }
        do throws(RegionError) {
            return try validateAndMap(path: path, fd: fd, expectedEpoch: expectedEpoch)
        } catch {
            try? fd.close()
            throw error
        }
    }

    /// Validates and maps the region behind `fileDescriptor` (inherited or
    /// received over a socket). The descriptor is duplicated
    /// (`F_DUPFD_CLOEXEC`); the caller keeps ownership of the one it passed.
    public static func attach(fileDescriptor: FileDescriptor, expectedEpoch: UInt64? = nil) throws(RegionError) -> SharedRegion {
        let fd: FileDescriptor
        do { fd = try fileDescriptor.duplicateCloseOnExec() } catch { throw .system(error) }
        do throws(RegionError) {
            return try validateAndMap(path: nil, fd: fd, expectedEpoch: expectedEpoch)
        } catch {
            try? fd.close()
            throw error
        }
    }

    private static func validateAndMap(
        path: FilePath?, fd: FileDescriptor, expectedEpoch: UInt64?
    ) throws(RegionError) -> SharedRegion {
        let fileSize: Int, isHuge: Bool
        do { (fileSize, isHuge) = try MappedFile.inspect(fd, minimumSize: RegionLayout.headerSize) } catch {
            // A file too small for a header is most often no region at all:
            // say so, rather than "truncated", unless it starts like one.
            if case .truncated = error, let start = try? fd.readPrefix(8), !start.isEmpty {
                var magic: UInt64 = 0
                for (i, byte) in start.enumerated() { magic |= UInt64(byte) << (8 * UInt64(i)) }
                let mask: UInt64 = start.count == 8 ? .max : (1 << (8 * UInt64(start.count))) - 1
                if magic != RegionLayout.magic & mask { throw .badMagic(found: magic) }
            }
            throw error  // empty, or a region's first bytes: truncated
        }
        // Map only what the header describes, once the header has been checked
        // against the file: a small region in a huge (sparse) file costs its
        // own size, not the file's.
        let (base, info, mappedSize) = try MappedFile.mapDescribed(
            fd, fileSize: fileSize, hugePages: isHuge
        ) { (header) throws(RegionError) -> (RegionInfo, Int) in
            let info = try validateHeader(header, fileSize: fileSize)
            return (info, info.regionSize)
        }
        if let expectedEpoch, expectedEpoch != info.epoch {
            Memory.unmap(base, size: mappedSize)
            throw .epochMismatch(expected: expectedEpoch, found: info.epoch)
        }
        return SharedRegion(path: path, fd: fd, base: base, mappedSize: mappedSize, info: info, locked: false)
    }

    /// Checks every header field against the ABI and against `fileSize`.
    static func validateHeader(_ base: UnsafeRawPointer, fileSize: Int) throws(RegionError) -> RegionInfo {
        typealias H = RegionLayout.Header
        // Acquire: pairs with the creator's release store of the magic, so the
        // fields read below are the ones it wrote before publishing.
        let magic = UnsafeMutableRawPointer(mutating: base)
            .assumingMemoryBound(to: Atomic<UInt64>.self).pointee.load(ordering: .acquiring)
        if magic == 0 { throw .notInitialized }
        guard magic == RegionLayout.magic else { throw .badMagic(found: magic) }
        func u32(_ o: Int) -> UInt32 { base.load(fromByteOffset: o, as: UInt32.self) }
        func u64(_ o: Int) -> UInt64 { base.load(fromByteOffset: o, as: UInt64.self) }

        let version = u32(H.abiVersion)
        guard version == RegionLayout.abiVersion else {
            throw .unsupportedVersion(found: version, supported: RegionLayout.abiVersion)
        }
        let headerSize = u32(H.headerSize)
        guard headerSize == UInt32(RegionLayout.headerSize) else {
            throw .headerSizeMismatch(found: headerSize, expected: UInt32(RegionLayout.headerSize))
        }
        let stored = u64(H.checksum)
        let computed = HeaderChecksum.compute(base)
        guard stored == computed else { throw .headerChecksumMismatch(stored: stored, computed: computed) }

        guard let kind = RingKind(rawValue: u32(H.ringKind)) else { throw .unknownRingKind(u32(H.ringKind)) }
        let geometry = try RingGeometry(kind: kind, capacity: Int(u32(H.capacity)), slotSize: Int(u32(H.slotSize)))
        let checks: [(String, Int, UInt64)] = [
            ("controlOffset", RegionLayout.controlOffset, u64(H.controlOffset)),
            ("slotsOffset", geometry.slotsOffset, u64(H.slotsOffset)),
            ("sequencesOffset", geometry.sequencesOffset, u64(H.sequencesOffset)),
        ]
        for (field, expected, found) in checks where UInt64(expected) != found {
            throw .layoutMismatch(field: field, expected: UInt64(expected), found: found)
        }
        let regionSize = u64(H.regionSize)
        guard regionSize >= UInt64(geometry.requiredSize) else {
            throw .layoutMismatch(field: "regionSize", expected: UInt64(geometry.requiredSize), found: regionSize)
        }
        guard regionSize <= UInt64(fileSize) else {
            throw .truncated(fileSize: fileSize, required: Int(clamping: regionSize))
        }
        return RegionInfo(
            kind: kind, elementTag: u32(H.elementTag), geometry: geometry, regionSize: Int(regionSize),
            creatorPID: Int32(bitPattern: u32(H.creatorPID)), epoch: u64(H.epoch),
            createdAt: u64(H.createdAt), flags: u32(H.flags))
    }

    // MARK: Removing

    /// Removes the name of a named region with `unlink(2)`. Processes that have
    /// it mapped keep using it; the memory is freed when the last one unmaps.
    public static func unlink(at path: FilePath) throws(RegionError) {
        do { try FileSystem.unlink(path) } catch { throw .system(error) }
    }

    /// Removes this region's name (see ``unlink(at:)``). Does nothing for an
    /// anonymous region.
    public func unlink() throws(RegionError) {
        if let path { try Self.unlink(at: path) }
    }

    // MARK: Internal access

    @inlinable
    func pointer<T: ~Copyable>(at offset: Int, as type: T.Type) -> UnsafeMutablePointer<T> {
        (base + offset).assumingMemoryBound(to: T.self)
    }

    /// The NUMA node of each page of the mapping (see ``NUMA/nodesOfPages(_:)``):
    /// a node number, or a negative errno (`-ENOENT`: not present).
    ///
    /// `move_pages(2)` answers for this process's page tables, so a page
    /// another process created shows as not present until this one touches
    /// it. With `faultingIn`, each page is read first (a read of a page never
    /// written allocates it under the region's placement policy), so the answer
    /// says where every page of the region is or will be.
    public func nodesOfPages(faultingIn: Bool = false) throws(NUMAError) -> [Int32] {
        try withExtendedLifetime(self) { () throws(NUMAError) -> [Int32] in
            if faultingIn {
                let page = Memory.pageSize
                for offset in stride(from: 0, to: mappedSize, by: page) {
                    // Relaxed atomic load: a read the compiler cannot drop, racing with nobody.
                    _ = (base + offset).assumingMemoryBound(to: Atomic<UInt8>.self).pointee.load(ordering: .relaxed)
                }
            }
            return try NUMA.nodesOfPages(UnsafeRawBufferPointer(start: base, count: mappedSize))
        }
    }

    /// Whether the process that created this region is still alive (`kill(pid, 0)`).
    public var isCreatorAlive: Bool { processExists(info.creatorPID) }
}

extension SharedRegion {
    /// Calls `body` with the whole mapping as raw bytes, for tools and tests
    /// that inspect or repair a region by hand. The mapping stays alive for the
    /// duration of the call.
    public func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try withExtendedLifetime(self) { () throws(E) -> R in
            try body(UnsafeMutableRawBufferPointer(start: base, count: mappedSize))
        }
    }
}
