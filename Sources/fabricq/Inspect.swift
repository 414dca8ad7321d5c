import ArgumentParser
import FabricQueue
import Foundation
import SystemPackage

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a region and print its header, indices, occupancy and doorbell state.",
        discussion: "Exits 1 with one line on standard error if the region is invalid or damaged.")

    @Argument(help: "Path of the region file.")
    var path: String

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(
        inversion: .prefixedNo,
        help:
            "Read every page before asking where it is (pages this process never touched are otherwise reported as not yet touched)."
    )
    var touchPages = true

    struct Report: Codable {
        var path: String
        var magic: String
        var abiVersion: UInt32
        var kind: String
        var capacity: Int
        var slotSize: Int
        var elementTag: UInt32
        var regionSize: Int
        var creatorPID: Int32
        var creatorAlive: Bool
        var epoch: String
        var createdAt: String
        var head: UInt64
        var tail: UInt64
        var occupancy: Int64
        var indicesConsistent: Bool
        var unpublished: Int
        var producerOwner: Int32
        var consumerOwner: Int32
        var dataWaiters: UInt32
        var spaceWaiters: UInt32
        var dataAvailableFutex: UInt32
        var spaceAvailableFutex: UInt32
        var numaAvailable: Bool
        var pagesPerNode: [String: Int]
        var untouchedPages: Int
    }

    func run() throws {
        let region: SharedRegion
        do {
            region = try SharedRegion.attach(at: FilePath(path))
        } catch {
            report("\(path): \(error)")
            throw ExitCode.failure
        }
        let info = region.info
        let s = region.snapshot()
        var pagesPerNode: [String: Int] = [:]
        var untouched = 0
        for status in (try? region.nodesOfPages(faultingIn: touchPages)) ?? [] {
            if status >= 0 { pagesPerNode[String(status), default: 0] += 1 } else { untouched += 1 }
        }
        let created = Date(timeIntervalSince1970: Double(info.createdAt) / 1e9)
        let r = Report(
            path: path, magic: "FABRICQR", abiVersion: RegionLayout.abiVersion, kind: info.kind.description,
            capacity: info.capacity, slotSize: info.slotSize, elementTag: info.elementTag,
            regionSize: info.regionSize, creatorPID: info.creatorPID, creatorAlive: region.isCreatorAlive,
            epoch: "0x" + String(info.epoch, radix: 16), createdAt: ISO8601DateFormatter().string(from: created),
            head: s.head, tail: s.tail, occupancy: s.occupancy, indicesConsistent: s.indicesConsistent,
            unpublished: s.unpublished, producerOwner: s.producerOwner, consumerOwner: s.consumerOwner,
            dataWaiters: s.dataWaiters, spaceWaiters: s.spaceWaiters,
            dataAvailableFutex: s.dataAvailableFutex, spaceAvailableFutex: s.spaceAvailableFutex,
            numaAvailable: NUMA.isAvailable, pagesPerNode: pagesPerNode, untouchedPages: untouched)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(r), as: UTF8.self))
        } else {
            func owner(_ pid: Int32) -> String { pid == 0 ? "none" : "pid \(pid)" }
            print(
                """
                region       \(r.path)
                magic        \(r.magic)  abi version \(r.abiVersion)
                kind         \(r.kind)
                capacity     \(r.capacity) slots x \(r.slotSize) bytes (element tag \(r.elementTag))
                region size  \(r.regionSize) bytes
                creator      pid \(r.creatorPID) (\(r.creatorAlive ? "alive" : "gone")), epoch \(r.epoch), created \(r.createdAt)
                head         \(r.head)
                tail         \(r.tail)
                occupancy    \(r.occupancy) / \(r.capacity)\(r.indicesConsistent ? "" : "  ** INDICES CORRUPT **")\(info.kind == .mpsc ? ", \(r.unpublished) reserved but unpublished" : "")
                producer     \(info.kind == .spsc ? owner(r.producerOwner) : "any (mpsc)")
                consumer     \(owner(r.consumerOwner))
                pages        \(r.pagesPerNode.sorted { $0.key < $1.key }.map { "\($0.value) on node \($0.key)" }.joined(separator: ", "))\(r.untouchedPages > 0 ? ", \(r.untouchedPages) not yet touched" : "")\(r.numaAvailable ? "" : " (NUMA unavailable)")
                doorbell     waiting for data \(r.dataWaiters), waiting for space \(r.spaceWaiters), data futex \(r.dataAvailableFutex), space futex \(r.spaceAvailableFutex)
                """)
        }
        if !s.indicesConsistent {
            report("\(path): ring indices corrupted (head \(s.head), tail \(s.tail))")
            throw ExitCode.failure
        }
    }
}
