import CFabricSystem
import FabricQueue
import FabricSession
import Glibc
import SystemPackage
import XCTest

final class DataRegionTests: XCTestCase {
    func testCreateAttachAndShareBytes() throws {
        let region = try DataRegion.createAnonymous(slotSize: 4096, slotCount: 8)
        XCTAssertEqual(region.geometry.regionSize, 4096 + 8 * 4096)
        let attached = try DataRegion.attach(fileDescriptor: region.fileDescriptor)
        XCTAssertEqual(attached.geometry, region.geometry)
        XCTAssertEqual(attached.epoch, region.epoch)
        var pool = BufferPool(region: region)
        let slot = try XCTUnwrap(pool.acquire())
        XCTAssertEqual(slot.offset, 4096)
        pool.buffer(slot).storeBytes(of: 0xFEED_FACE, toByteOffset: 100, as: UInt64.self)
        let seen = attached.withSlotBytes(offset: slot.offset + 100, length: 8) { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual(seen, 0xFEED_FACE, "written through one mapping, read through another")
        pool.release(slot)
    }

    func testPoolExhaustionIsBackpressure() throws {
        let region = try DataRegion.createAnonymous(slotSize: 64, slotCount: 4)
        var pool = BufferPool(region: region)
        var slots: [BufferSlot] = []
        while let slot = pool.acquire() { slots.append(slot) }
        XCTAssertEqual(slots.map(\.index), [0, 1, 2, 3])
        XCTAssertEqual(Set(slots.map(\.offset)).count, 4)
        XCTAssertEqual(pool.availableCount, 0)
        XCTAssertNil(pool.acquire())
        pool.release(slots[2])
        XCTAssertEqual(pool.acquire(), slots[2])
    }

    func testSlotContainmentIsOverflowProof() throws {
        let g = try DataRegionGeometry(slotSize: 1024, slotCount: 4)
        XCTAssertEqual(g.slot(containing: 4096, length: 1024), 0)
        XCTAssertEqual(g.slot(containing: 4096 + 3 * 1024 + 1000, length: 24), 3)
        XCTAssertNil(g.slot(containing: 4095, length: 1), "before the slots (the header page)")
        XCTAssertNil(g.slot(containing: 4096 + 1000, length: 25), "straddles two slots")
        XCTAssertNil(g.slot(containing: 4096 + 4 * 1024, length: 0), "past the last slot")
        XCTAssertNil(g.slot(containing: UInt64.max, length: UInt64.max))
        XCTAssertNil(g.slot(containing: 4096, length: UInt64.max))
        XCTAssertThrowsError(try DataRegionGeometry(slotSize: 100, slotCount: 4))
        XCTAssertThrowsError(try DataRegionGeometry(slotSize: 64, slotCount: 0))
        let region = try DataRegion.createAnonymous(slotSize: 64, slotCount: 2)
        XCTAssertNil(region.withSlotBytes(offset: 0, length: 8) { _ in true }, "the header is never handed out")
        XCTAssertNil(region.withSlotBytes(offset: 4096 + 60, length: 8) { _ in true })
    }

    func testDamagedDataRegionsAreTypedErrors() throws {
        let good = try DataRegion.createAnonymous(slotSize: 64, slotCount: 2)
        func damaged(_ edit: (UnsafeMutableRawPointer) -> Void) throws -> RegionError? {
            let fd = cfq_memfd_create("fq-damaged", CFQ_MFD_ALLOW_SEALING)
            defer { close(fd) }
            let size = Int(good.geometry.regionSize)
            XCTAssertEqual(ftruncate(fd, off_t(size)), 0)
            let copy = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
            defer { copy.deallocate() }
            XCTAssertEqual(pread(good.fileDescriptor.rawValue, copy, size, 0), size)
            edit(copy)
            XCTAssertEqual(pwrite(fd, copy, size, 0), size)
            XCTAssertEqual(cfq_fcntl_int(fd, CFQ_F_ADD_SEALS, CFQ_F_SEAL_SHRINK | CFQ_F_SEAL_GROW), 0)
            do {
                _ = try DataRegion.attach(fileDescriptor: FileDescriptor(rawValue: fd))
                return nil
            } catch { return error }
        }
        XCTAssertNil(try damaged { _ in })
        XCTAssertEqual(try damaged { $0.storeBytes(of: UInt64(1), as: UInt64.self) }, .badMagic(found: 1))
        XCTAssertEqual(try damaged { $0.storeBytes(of: UInt64(0), as: UInt64.self) }, .notInitialized)
        guard case .headerChecksumMismatch = try damaged({ $0.storeBytes(of: UInt32(9999), toByteOffset: 32, as: UInt32.self) })
        else {
            return XCTFail("slot count edit not caught by the checksum")
        }
        XCTAssertThrowsError(try DataRegion.attach(fileDescriptor: FileDescriptor(rawValue: 987_654)))
        let unsealed = cfq_memfd_create("fq-unsealed", 0)
        defer { close(unsealed) }
        XCTAssertEqual(ftruncate(unsealed, 8192), 0)
        XCTAssertThrowsError(try DataRegion.attach(fileDescriptor: FileDescriptor(rawValue: unsealed))) {
            guard case .missingSeals = $0 as? RegionError else { return XCTFail("\($0)") }
        }
    }
}
