import CFabricSystem
import FabricQueue
import FabricTestSupport
import Foundation
import Glibc
import SystemPackage
import XCTest

final class RegionTests: XCTestCase {
    // MARK: Creating and attaching

    func testNamedRegionRoundTrip() throws {
        let path = temporaryRegionPath(self)
        let created = try SharedRegion.create(at: FilePath(path), kind: .mpsc, capacity: 256)
        XCTAssertEqual(created.info.kind, .mpsc)
        XCTAssertEqual(created.info.capacity, 256)
        XCTAssertEqual(created.info.slotSize, 64)
        XCTAssertEqual(created.info.creatorPID, getpid())
        XCTAssertTrue(created.isCreatorAlive)

        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600, "default permissions are 0600")
        XCTAssertEqual(Int(st.st_size) % 4096, 0)

        let attached = try SharedRegion.attach(at: FilePath(path), expectedEpoch: created.info.epoch)
        XCTAssertEqual(attached.info, created.info)
        XCTAssertThrowsError(try SharedRegion.attach(at: FilePath(path), expectedEpoch: created.info.epoch &+ 1)) {
            XCTAssertEqual($0 as? RegionError, .epochMismatch(expected: created.info.epoch &+ 1, found: created.info.epoch))
        }
    }

    func testExclusiveCreateAndReplace() throws {
        let path = temporaryRegionPath(self)
        let first = try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 8)
        XCTAssertThrowsError(try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 8)) {
            XCTAssertEqual($0 as? RegionError, .alreadyExists(path: path))
        }
        var options = RegionOptions()
        options.exclusive = false
        let second = try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 16, options: options)
        XCTAssertNotEqual(first.info.epoch, second.info.epoch)
        XCTAssertEqual(try SharedRegion.attach(at: FilePath(path)).info.capacity, 16)
    }

    func testCustomPermissionsPrefaultAndLock() throws {
        let path = temporaryRegionPath(self)
        var options = RegionOptions()
        options.permissions = [.ownerReadWrite, .groupRead]
        options.prefault = true
        options.lockInMemory = true
        let region = try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 64, options: options)
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o640)
        XCTAssertEqual(region.info.capacity, 64)
    }

    func testAnonymousRegionIsSealedAndAttachableByDescriptor() throws {
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 32)
        let seals = cfq_fcntl_int(region.fileDescriptor.rawValue, CFQ_F_GET_SEALS, 0)
        XCTAssertNotEqual(seals & CFQ_F_SEAL_SHRINK, 0)
        XCTAssertNotEqual(seals & CFQ_F_SEAL_GROW, 0)
        XCTAssertNotEqual(fcntl(region.fileDescriptor.rawValue, F_GETFD) & FD_CLOEXEC, 0)
        XCTAssertNotEqual(ftruncate(region.fileDescriptor.rawValue, 0), 0, "sealed memfd cannot shrink")
        let attached = try SharedRegion.attach(fileDescriptor: region.fileDescriptor)
        XCTAssertEqual(attached.info, region.info)
        XCTAssertNil(attached.path)
    }

    func testUnlinkRemovesNameButKeepsMapping() throws {
        let path = temporaryRegionPath(self)
        let region = try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 4)
        var producer = try SPSCProducer<Descriptor>(region: region)
        try region.unlink()
        XCTAssertNotEqual(access(path, F_OK), 0)
        XCTAssertTrue(producer.enqueue(Descriptor(commandID: 1)))
        XCTAssertThrowsError(try SharedRegion.unlink(at: FilePath(path))) {
            XCTAssertEqual($0 as? RegionError, .system(SystemCallError("unlink", .noSuchFileOrDirectory)))
        }
    }

    func testNoDescriptorLeaks() throws {
        let path = temporaryRegionPath(self)
        let before = openDescriptorCount()
        for _ in 0..<50 {
            let region = try SharedRegion.create(
                at: FilePath(path), kind: .mpsc, capacity: 16,
                options: {
                    var o = RegionOptions()
                    o.exclusive = false
                    return o
                }())
            _ = try SharedRegion.attach(at: FilePath(path))
            _ = try SharedRegion.attach(fileDescriptor: region.fileDescriptor)
            _ = try SharedRegion.createAnonymous(kind: .spsc, capacity: 16)
            _ = try? SharedRegion.attach(at: "/dev/null")
            _ = try? SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 16)
        }
        XCTAssertEqual(openDescriptorCount(), before)
    }

    func testHugePagesFailCleanlyOrWork() {
        var options = RegionOptions()
        options.hugePages = true
        do {
            let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 1024, options: options)
            XCTAssertNotEqual(region.info.flags & RegionLayout.Flags.hugePages, 0)
            XCTAssertEqual(region.info.regionSize % (2 << 20), 0)
        } catch {
            guard case .hugePagesUnavailable = error else { return XCTFail("unexpected \(error)") }
        }
        // A named region off hugetlbfs is refused with the same typed error, and nothing is left behind.
        let path = temporaryRegionPath(self)
        XCTAssertThrowsError(try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 8, options: options)) {
            guard case .hugePagesUnavailable = $0 as? RegionError else { return XCTFail("unexpected \($0)") }
        }
        XCTAssertNotEqual(access(path, F_OK), 0)
    }

    func testInvalidGeometryIsRejectedAtCreation() {
        for capacity in [0, 1, 3, 1000, 1 << 25] {
            XCTAssertThrowsError(try SharedRegion.createAnonymous(kind: .spsc, capacity: capacity)) {
                XCTAssertEqual($0 as? RegionError, .invalidCapacity(capacity))
            }
        }
    }

    // MARK: Bad regions: each a distinct typed error, never a crash

    /// Creates a valid region file, lets `damage` edit its bytes, re-seals the
    /// checksum when asked, then attaches.
    private func attachDamaged(
        kind: RingKind = .spsc, capacity: Int = 64, resealChecksum: Bool = true,
        _ damage: (inout [UInt8]) -> Void
    ) throws -> RegionError? {
        let path = temporaryRegionPath(self, "damaged")
        _ = try SharedRegion.create(at: FilePath(path), kind: kind, capacity: capacity)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        damage(&bytes)
        if resealChecksum && bytes.count >= 96 {
            let sum = fnv1a(bytes[8..<88])
            withUnsafeBytes(of: sum.littleEndian) { bytes.replaceSubrange(88..<96, with: $0) }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do {
            _ = try SharedRegion.attach(at: FilePath(path))
            return nil
        } catch {
            return error
        }
    }

    private func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(offset..<offset + MemoryLayout<T>.size, with: $0) }
    }

    /// FNV-1a 64, written here independently of the library (as a C peer would).
    private func fnv1a(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x0000_0100_0000_01b3 }
    }

    func testUndamagedCopyAttaches() throws {
        XCTAssertNil(try attachDamaged { _ in })
    }

    func testTruncatedFile() throws {
        XCTAssertEqual(
            try attachDamaged { $0.removeLast($0.count - 4096) },
            .truncated(fileSize: 4096, required: 8192))
        XCTAssertEqual(
            try attachDamaged { $0.removeLast($0.count - 100) },
            .truncated(fileSize: 100, required: 128))
        XCTAssertEqual(try attachDamaged { $0.removeAll() }, .truncated(fileSize: 0, required: 128))
    }

    func testWrongMagic() throws {
        XCTAssertEqual(try attachDamaged { self.put(UInt64(0x4242), at: 0, in: &$0) }, .badMagic(found: 0x4242))
        XCTAssertEqual(try attachDamaged { self.put(UInt64(0), at: 0, in: &$0) }, .notInitialized)
    }

    func testWrongVersion() throws {
        XCTAssertEqual(
            try attachDamaged { self.put(UInt32(1), at: 8, in: &$0) },
            .unsupportedVersion(found: 1, supported: 2))
    }

    func testDamagedHeaderFailsChecksum() throws {
        let error = try attachDamaged(resealChecksum: false) { self.put(UInt32(128), at: 36, in: &$0) }
        guard case .headerChecksumMismatch = error else { return XCTFail("got \(String(describing: error))") }
    }

    func testCapacityNotPowerOfTwo() throws {
        XCTAssertEqual(try attachDamaged { self.put(UInt32(48), at: 36, in: &$0) }, .invalidCapacity(48))
    }

    func testUnknownRingKind() throws {
        XCTAssertEqual(try attachDamaged { self.put(UInt32(7), at: 24, in: &$0) }, .unknownRingKind(7))
    }

    func testSlotSizeMismatch() throws {
        // A consistent header for 128-byte slots attaches as a region, but not as a descriptor ring.
        let path = temporaryRegionPath(self)
        struct Wide: RingElement {
            var a: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
            var b: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
            static var ringElementTag: UInt32 { 1 }
        }
        _ = try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 8, of: Wide.self)
        let region = try SharedRegion.attach(at: FilePath(path))
        XCTAssertThrowsError(try SPSCConsumer<Descriptor>(region: region).capacity) {
            XCTAssertEqual($0 as? RegionError, .slotSizeMismatch(expected: 64, found: 128))
        }
        // A header claiming 128-byte slots in a region sized for 64-byte ones is a layout error.
        XCTAssertEqual(
            try attachDamaged { self.put(UInt32(128), at: 32, in: &$0) },
            .layoutMismatch(field: "regionSize", expected: UInt64(640 + 128 * 64), found: 8192))
        // Slot sizes the ABI cannot express are rejected as such.
        XCTAssertEqual(try attachDamaged { self.put(UInt32(60), at: 32, in: &$0) }, .invalidSlotSize(60))
    }

    func testOffsetsMustMatchGeometry() throws {
        XCTAssertEqual(
            try attachDamaged { self.put(UInt64(1000), at: 48, in: &$0) },
            .layoutMismatch(field: "slotsOffset", expected: 640, found: 1000))
        XCTAssertEqual(
            try attachDamaged(kind: .mpsc) { self.put(UInt64(0), at: 56, in: &$0) },
            .layoutMismatch(field: "sequencesOffset", expected: UInt64(640 + 64 * 64), found: 0))
    }

    func testRegionSizeBeyondFile() throws {
        XCTAssertEqual(
            try attachDamaged { self.put(UInt64(1 << 40), at: 16, in: &$0) },
            .truncated(fileSize: 8192, required: 1 << 40))
    }

    func testNotARegularFile() throws {
        XCTAssertThrowsError(try SharedRegion.attach(at: "/tmp")) {
            XCTAssertEqual($0 as? RegionError, .notARegularFile(fileType: "directory"))
        }
        XCTAssertThrowsError(try SharedRegion.attach(at: "/dev/null")) {
            XCTAssertEqual($0 as? RegionError, .notARegularFile(fileType: "character device"))
        }
        let fifo = temporaryRegionPath(self, "fifo")
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertThrowsError(try SharedRegion.attach(at: FilePath(fifo))) {  // must not block
            XCTAssertEqual($0 as? RegionError, .notARegularFile(fileType: "FIFO"))
        }
    }

    func testMissingFile() {
        XCTAssertThrowsError(try SharedRegion.attach(at: "/dev/shm/fq-does-not-exist")) {
            XCTAssertEqual($0 as? RegionError, .system(SystemCallError("open", .noSuchFileOrDirectory)))
        }
    }

    func testUnsealedMemfdIsRefused() throws {
        let fd = cfq_memfd_create("fq-unsealed", 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 8)
        // Copy a valid region into an unsealed memfd.
        XCTAssertEqual(ftruncate(fd, off_t(region.info.regionSize)), 0)
        region.withUnsafeMutableBytes { bytes in
            _ = pwrite(fd, bytes.baseAddress, bytes.count, 0)
        }
        XCTAssertThrowsError(try SharedRegion.attach(fileDescriptor: FileDescriptor(rawValue: fd))) {
            guard case .missingSeals = $0 as? RegionError else { return XCTFail("got \($0)") }
        }
    }

    func testErrorsDescribeThemselves() {
        XCTAssertEqual(
            RegionError.truncated(fileSize: 100, required: 128).description,
            "region is truncated: file has 100 bytes, layout needs 128")
        XCTAssertTrue(RegionError.badMagic(found: 0x4242).description.contains("not a FabricQueue region"))
    }
}
