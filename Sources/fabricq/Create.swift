import ArgumentParser
import FabricQueue
import SystemPackage

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a named region holding one ring of 64-byte descriptors.")

    @Argument(help: "Path of the region file (e.g. /dev/shm/NAME, or a file on hugetlbfs).")
    var path: String

    @Option(help: "Ring kind: spsc or mpsc.")
    var kind: RingKind

    @Option(help: "Number of slots, a power of two.")
    var capacity: Int

    @Option(help: "File mode, octal.")
    var mode: String = "600"

    @Flag(help: "Replace an existing file at PATH.")
    var force = false

    @Flag(help: "Touch every page now (MAP_POPULATE).")
    var prefault = false

    @Flag(help: "Use huge pages (PATH must be on hugetlbfs).")
    var hugePages = false

    @Option(help: "Bind the region's pages to this NUMA node (mbind before first touch).")
    var numaNode: Int?

    @Flag(help: "Interleave the region's pages across all NUMA nodes.")
    var interleave = false

    func run() throws {
        guard let bits = UInt32(mode, radix: 8), bits <= 0o777 else {
            throw ValidationError("--mode must be octal, e.g. 600")
        }
        var options = RegionOptions()
        options.permissions = FilePermissions(rawValue: bits)
        options.exclusive = !force
        options.prefault = prefault
        options.hugePages = hugePages
        if numaNode != nil && interleave { throw ValidationError("--numa-node and --interleave exclude each other") }
        options.placement = numaNode.map { .node($0) } ?? (interleave ? .interleave : nil)
        do {
            let region = try SharedRegion.create(at: FilePath(path), kind: kind, capacity: capacity, options: options)
            print(
                "created \(path): \(kind) ring, capacity \(region.info.capacity), \(region.info.regionSize) bytes, epoch 0x\(String(region.info.epoch, radix: 16))"
            )
            if let placement = region.placement { print("placement: \(placement)") }
        } catch {
            report("\(path): \(error)")
            throw ExitCode.failure
        }
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove a named region's file (processes that map it keep it until they unmap).",
        discussion: "Refuses a file that is not a valid FabricQueue region unless --force is given.")

    @Argument(help: "Path of the region file.")
    var path: String

    @Flag(help: "Remove the file even if it is not a valid region (a damaged one, say).")
    var force = false

    func run() throws {
        if !force {
            do { _ = try SharedRegion.attach(at: FilePath(path)) } catch {
                report("\(path): not removed: \(error) (--force removes it anyway)")
                throw ExitCode.failure
            }
        }
        do {
            try SharedRegion.unlink(at: FilePath(path))
        } catch {
            report("\(path): \(error)")
            throw ExitCode.failure
        }
    }
}
