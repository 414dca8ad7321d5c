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

    /// Runs of contiguous slots (issue 16): first fit from the lowest slot,
    /// across bitmap words, released only as handed out.
    func testPoolHandsOutRunsOfContiguousSlots() throws {
        let region = try DataRegion.createAnonymous(slotSize: 64, slotCount: 130)
        var pool = BufferPool(region: region)
        let three = try XCTUnwrap(pool.acquire(slots: 3))
        XCTAssertEqual(three.slots, 0..<3)
        XCTAssertEqual(three.size, 3 * 64)
        XCTAssertEqual(three.offset, region.geometry.offset(ofSlot: 0))
        let one = try XCTUnwrap(pool.acquire())
        XCTAssertEqual(one.slots, 3..<4)
        let wide = try XCTUnwrap(pool.acquire(slots: 70))
        XCTAssertEqual(wide.slots, 4..<74, "a run across two bitmap words")
        pool.release(three)
        XCTAssertEqual(pool.largestRun, 130 - 74)
        XCTAssertEqual(pool.acquire(slots: 4)?.slots, 74..<78, "the 3-slot gap is too small: first fit skips it")
        XCTAssertEqual(pool.acquire(bytes: 129)?.slots, 0..<3, "129 bytes take three 64-byte slots")
        XCTAssertEqual(pool.acquire(bytes: 0)?.slots, 78..<79, "an empty buffer still takes a slot")
        XCTAssertNil(pool.acquire(slots: 52), "51 free, 51 in a row")
        XCTAssertEqual(pool.acquire(slots: 51)?.slots, 79..<130, "up to the last slot, not past it")
        XCTAssertEqual(pool.availableCount, 0)
        XCTAssertNil(pool.acquire())
        XCTAssertNil(pool.acquire(slots: 0))
        XCTAssertNil(pool.acquire(bytes: -1))
        XCTAssertNil(pool.slotsNeeded(forBytes: 130 * 64 + 1), "more than the region holds")
        XCTAssertEqual(pool.slotsNeeded(forBytes: 130 * 64), 130)
        pool.release(wide)
        XCTAssertEqual(pool.acquire(), BufferSlot(index: 4, offset: region.geometry.offset(ofSlot: 4), size: 64))
        XCTAssertFalse(one.overlaps(three))
        XCTAssertTrue(wide.overlaps(BufferSlot(index: 73, offset: 0, size: 64)))
    }

    /// The pool against a plain array of flags doing first fit, over random
    /// acquires and releases of random widths: the same slots, every time.
    func testPoolMatchesAFirstFitModel() throws {
        let count = 200
        let region = try DataRegion.createAnonymous(slotSize: 64, slotCount: count)
        var pool = BufferPool(region: region)
        var used = [Bool](repeating: false, count: count)
        var held: [BufferSlot] = []
        var seed: UInt64 = 0x5EED
        func next(_ bound: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((seed >> 33) % UInt64(bound))
        }
        for step in 0..<5_000 {
            if held.isEmpty || next(3) != 0 {
                let width = next(4) == 0 ? 1 + next(70) : 1 + next(4)
                var expected: Int?
                var start = 0
                while start + width <= count {
                    if let blocked = (start..<start + width).last(where: { used[$0] }) {
                        start = blocked + 1
                    } else {
                        expected = start
                        break
                    }
                }
                let got = pool.acquire(slots: width)
                XCTAssertEqual(got.map { Int($0.index) }, expected, "step \(step): \(width) slots")
                if let got {
                    XCTAssertEqual(Int(got.slotCount), width)
                    for i in got.slots { used[Int(i)] = true }
                    held.append(got)
                }
            } else {
                let slot = held.remove(at: next(held.count))
                pool.release(slot)
                for i in slot.slots { used[Int(i)] = false }
            }
            XCTAssertEqual(pool.availableCount, used.filter { !$0 }.count)
        }
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
        // Runs: any range inside the slots, never the header page or past the end.
        XCTAssertEqual(g.slots(covering: 4096 + 1000, length: 25), 0..<2, "a run of two slots")
        XCTAssertEqual(g.slots(covering: 4096, length: 4 * 1024), 0..<4, "all of them")
        XCTAssertEqual(g.slots(covering: 4096 + 3 * 1024, length: 0), 3..<3)
        XCTAssertNil(g.slots(covering: 4096, length: 4 * 1024 + 1), "one byte past the last slot")
        XCTAssertNil(g.slots(covering: 4095, length: 2), "starts in the header page")
        XCTAssertNil(g.slots(covering: 4096 + 4 * 1024, length: 0), "starts past the last slot")
        XCTAssertNil(g.slots(covering: UInt64.max, length: UInt64.max))
        XCTAssertNil(g.slots(covering: 4097, length: UInt64.max))
        XCTAssertThrowsError(try DataRegionGeometry(slotSize: 100, slotCount: 4))
        XCTAssertThrowsError(try DataRegionGeometry(slotSize: 64, slotCount: 0))
        let region = try DataRegion.createAnonymous(slotSize: 64, slotCount: 2)
        XCTAssertNil(region.withSlotBytes(offset: 0, length: 8) { _ in true }, "the header is never handed out")
        XCTAssertNil(region.withSlotBytes(offset: 4096 + 124, length: 8) { _ in true }, "past the last slot")
        XCTAssertEqual(region.withSlotBytes(offset: 4096 + 60, length: 8) { $0.count }, 8, "across two slots")
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
