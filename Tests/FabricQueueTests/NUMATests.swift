import FabricDiagnostics
import FabricQueue
import FabricTestSupport
import SystemPackage
import XCTest

final class NUMATests: XCTestCase {
    func testTopology() throws {
        XCTAssertGreaterThanOrEqual(NUMA.nodeCount, 1)
        XCTAssertEqual(try NUMA.node(ofCPU: 0), 0)
        XCTAssertThrowsError(try NUMA.node(ofCPU: 1 << 20)) { XCTAssertEqual($0 as? NUMAError, .noSuchCPU(1 << 20)) }
        let cpus = try NUMA.cpus(ofNode: 0)
        XCTAssertTrue(cpus.contains(0))
        XCTAssertThrowsError(try NUMA.cpus(ofNode: NUMA.nodeCount)) {
            XCTAssertEqual($0 as? NUMAError, .noSuchNode(NUMA.nodeCount, nodeCount: NUMA.nodeCount))
        }
    }

    func testRegionBoundToNodeZeroHasEveryPageThere() throws {
        var options = RegionOptions()
        options.placement = .node(0)
        options.prefault = true
        let region = try SharedRegion.createAnonymous(kind: .mpsc, capacity: 4096, options: options)
        let nodes = try region.nodesOfPages()
        XCTAssertEqual(nodes.count, region.mappedSize / Int(getpagesize()))
        if NUMA.isAvailable {
            XCTAssertEqual(region.placement, .applied(.node(0)))
            XCTAssertEqual(Set(nodes), [0], "pages: \(nodes)")
        } else {
            XCTAssertEqual(region.placement, .unavailable)
        }
        // Another process attaching sees the same pages on the same node.
        let attached = try SharedRegion.attach(fileDescriptor: region.fileDescriptor)
        XCTAssertEqual(try attached.nodesOfPages(faultingIn: true), nodes)
        XCTAssertNil(attached.placement)
    }

    func testUntouchedPagesAreReportedAsSuch() throws {
        var options = RegionOptions()
        options.placement = .node(0)
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 4096, options: options)
        let nodes = try region.nodesOfPages()
        XCTAssertEqual(nodes.first, 0, "the header page was written")
        if NUMA.isAvailable { XCTAssertTrue(nodes.dropFirst().contains(-ENOENT), "\(nodes)") }
    }

    func testNonexistentNodeIsRejectedAndNothingLeaks() throws {
        let before = openDescriptorCount()
        var options = RegionOptions()
        options.placement = .node(NUMA.nodeCount + 3)
        XCTAssertThrowsError(try SharedRegion.createAnonymous(kind: .spsc, capacity: 8, options: options)) {
            XCTAssertEqual($0 as? RegionError, .placement(.noSuchNode(NUMA.nodeCount + 3, nodeCount: NUMA.nodeCount)))
        }
        let path = temporaryRegionPath(self)
        XCTAssertThrowsError(try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 8, options: options))
        XCTAssertNotEqual(access(path, F_OK), 0, "a refused named region leaves no file")
        options.placement = .node(-1)
        XCTAssertThrowsError(try SharedRegion.createAnonymous(kind: .spsc, capacity: 8, options: options))
        XCTAssertEqual(openDescriptorCount(), before)
    }

    func testInterleaveAndLocalApply() throws {
        for placement in [MemoryPlacement.interleave, .local] {
            var options = RegionOptions()
            options.placement = placement
            let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 64, options: options)
            XCTAssertEqual(region.placement, NUMA.isAvailable ? .applied(placement) : .unavailable)
        }
    }

    func testPinningAThread() throws {
        final class Box: @unchecked Sendable {
            // @unchecked: written by the thread before join, read after
            var cpu = -1
            var error: Error?
        }
        let target = NUMA.cpuCount - 1
        let box = Box()
        runOnThreads([
            {
                do {
                    try NUMA.pinCurrentThread(toCPU: target)
                    box.cpu = NUMA.currentCPU
                    try NUMA.pinCurrentThread(toNode: 0)
                } catch { box.error = error }
            }
        ])
        XCTAssertNil(box.error)
        XCTAssertEqual(box.cpu, target)
        XCTAssertThrowsError(try NUMA.pinCurrentThread(toCPU: 1 << 20))
        XCTAssertThrowsError(try NUMA.pinCurrentThread(toNode: 99)) {
            XCTAssertEqual($0 as? NUMAError, .noSuchNode(99, nodeCount: NUMA.nodeCount))
        }
    }
}
