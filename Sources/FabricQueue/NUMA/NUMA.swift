import CNuma
import FabricSystem
import Glibc

/// Where a region's pages should live.
public enum MemoryPlacement: Equatable, Sendable, CustomStringConvertible {
    /// On node `n` only (`MPOL_BIND`): allocation fails rather than spill.
    case node(Int)
    /// On the node of the CPU that first touches each page (`MPOL_LOCAL`).
    case local
    /// Spread across all nodes page by page (`MPOL_INTERLEAVE`).
    case interleave

    public var description: String {
        switch self {
        case .node(let n): "node \(n)"
        case .local: "local"
        case .interleave: "interleave"
        }
    }
}

/// What became of a placement request.
public enum PlacementOutcome: Equatable, Sendable, CustomStringConvertible {
    /// The kernel accepted the policy (`mbind(2)` succeeded) before any page
    /// was touched.
    case applied(MemoryPlacement)
    /// libnuma reports NUMA unavailable here; nothing was done.
    case unavailable

    public var description: String {
        switch self {
        case .applied(let p): "applied (\(p))"
        case .unavailable: "NUMA unavailable: placement not applied"
        }
    }
}

/// Why a NUMA request was refused.
public enum NUMAError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No such node on this machine.
    case noSuchNode(Int, nodeCount: Int)
    /// No such CPU on this machine.
    case noSuchCPU(Int)
    /// A system call or libnuma call failed.
    case system(SystemCallError)

    public var description: String {
        switch self {
        case .noSuchNode(let n, let count):
            "NUMA node \(n) does not exist (this machine has \(count), numbered 0...\(max(count - 1, 0)))"
        case .noSuchCPU(let cpu): "CPU \(cpu) does not exist"
        case .system(let error): "\(error)"
        }
    }
}

/// NUMA topology, memory placement and thread pinning, through libnuma
/// (Debian `libnuma-dev`) and the `mbind(2)`, `move_pages(2)` and
/// `pthread_setaffinity_np(3)` calls.
///
/// Where libnuma says NUMA is unavailable, ``isAvailable`` is `false`, the
/// machine counts as one node 0, and placement is a no-op that reports
/// ``PlacementOutcome/unavailable``.
public enum NUMA {
    /// Whether the kernel supports NUMA policy (`numa_available() >= 0`).
    public static var isAvailable: Bool { numa_available() >= 0 }

    /// Configured nodes (`numa_num_configured_nodes`), 1 when unavailable.
    public static var nodeCount: Int { isAvailable ? Int(max(numa_num_configured_nodes(), 1)) : 1 }

    /// CPUs configured on this machine.
    public static var cpuCount: Int { CurrentThread.configuredCPUCount }

    /// The node of `cpu` (`numa_node_of_cpu`).
    public static func node(ofCPU cpu: Int) throws(NUMAError) -> Int {
        guard cpu >= 0, cpu < cpuCount else { throw .noSuchCPU(cpu) }
        guard isAvailable else { return 0 }
        do { return Int(try systemCall("numa_node_of_cpu") { numa_node_of_cpu(Int32(cpu)) }) } catch { throw .system(error) }
    }

    /// The CPUs of `node`.
    public static func cpus(ofNode node: Int) throws(NUMAError) -> [Int] {
        try validate(node: node)
        var cpus: [Int] = []
        for cpu in 0..<cpuCount where try self.node(ofCPU: cpu) == node { cpus.append(cpu) }
        return cpus
    }

    /// The CPU the calling thread runs on now (`sched_getcpu`).
    public static var currentCPU: Int { CurrentThread.cpu }

    static func validate(node: Int) throws(NUMAError) {
        guard node >= 0, node < nodeCount else { throw .noSuchNode(node, nodeCount: nodeCount) }
    }

    /// Sets the memory policy of `memory` with `mbind(2)` (`MPOL_MF_STRICT |
    /// MPOL_MF_MOVE`, so pages already present move or the call fails). Do it
    /// before first touch: a shared mapping's policy then governs every page
    /// the kernel allocates for it, in whichever process faults it in.
    @discardableResult
    public static func place(
        _ memory: UnsafeMutableRawBufferPointer, _ placement: MemoryPlacement
    ) throws(NUMAError) -> PlacementOutcome {
        if case .node(let n) = placement { try validate(node: n) }
        guard isAvailable, let base = memory.baseAddress, memory.count > 0 else { return .unavailable }
        var mask = [UInt](repeating: 0, count: max(1, (nodeCount + UInt.bitWidth - 1) / UInt.bitWidth))
        let mode: Int32
        switch placement {
        case .node(let n):
            mask[n / UInt.bitWidth] |= 1 << UInt(n % UInt.bitWidth)
            mode = Int32(MPOL_BIND)
        case .interleave:
            for n in 0..<nodeCount { mask[n / UInt.bitWidth] |= 1 << UInt(n % UInt.bitWidth) }
            mode = Int32(MPOL_INTERLEAVE)
        case .local:
            mode = Int32(MPOL_LOCAL)
        }
        let maxNode = UInt(mask.count * UInt.bitWidth)
        let flags = UInt32(MPOL_MF_STRICT | MPOL_MF_MOVE)
        do {
            _ = try systemCall("mbind") {
                placement == .local
                    ? mbind(base, UInt(memory.count), mode, nil, 0, flags)
                    : mbind(base, UInt(memory.count), mode, mask, maxNode, flags)
            }
        } catch { throw .system(error) }
        return .applied(placement)
    }

    /// The node each page of `memory` is on, from `move_pages(2)` with no
    /// target (a query): a node number, or a negative errno for a page not
    /// present (`-ENOENT`: never touched).
    public static func nodesOfPages(_ memory: UnsafeRawBufferPointer) throws(NUMAError) -> [Int32] {
        guard let base = memory.baseAddress else { return [] }
        let page = Memory.pageSize
        let count = (memory.count + page - 1) / page
        guard isAvailable else { return [Int32](repeating: 0, count: count) }
        var pages: [UnsafeMutableRawPointer?] = (0..<count).map { UnsafeMutableRawPointer(mutating: base + $0 * page) }
        var status = [Int32](repeating: 0, count: count)
        do { _ = try systemCall("move_pages") { move_pages(0, UInt(count), &pages, nil, &status, 0) } } catch {
            throw .system(error)
        }
        return status
    }

    /// Pins the calling thread to `cpu` (`pthread_setaffinity_np`).
    public static func pinCurrentThread(toCPU cpu: Int) throws(NUMAError) {
        guard cpu >= 0, cpu < cpuCount else { throw .noSuchCPU(cpu) }
        do { try CurrentThread.pin(toCPU: cpu) } catch { throw .system(error) }
    }

    /// Pins the calling thread to the CPUs of `node` (`numa_run_on_node`).
    public static func pinCurrentThread(toNode node: Int) throws(NUMAError) {
        try validate(node: node)
        guard isAvailable else { return }
        do { _ = try systemCall("numa_run_on_node") { numa_run_on_node(Int32(node)) } } catch { throw .system(error) }
    }
}
