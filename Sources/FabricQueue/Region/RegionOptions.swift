import FabricSystem
import SystemPackage

/// How a region is created.
public struct RegionOptions: Sendable {
    /// File mode of a named region. Default `0o600`: only the owner may attach.
    public var permissions: FilePermissions = [.ownerReadWrite]
    /// Touch every page at creation (`MAP_POPULATE`) so the first descriptors do
    /// not pay page faults.
    public var prefault = false
    /// `mlock(2)` the mapping so it is never paged out (subject to `RLIMIT_MEMLOCK`).
    public var lockInMemory = false
    /// Back the region with huge pages: `MFD_HUGETLB` for anonymous regions, a
    /// hugetlbfs mount for named ones. Fails with
    /// ``RegionError/hugePagesUnavailable(reason:)`` where none are reserved.
    public var hugePages = false
    /// Fail if the named region exists (default). When `false`, an existing file
    /// is replaced.
    public var exclusive = true
    /// Leave an anonymous region's fd open across `exec` so a spawned child can
    /// attach by fd number. Default `false` (`MFD_CLOEXEC`).
    public var inheritable = false

    /// NUMA placement of the region's pages, applied with `mbind(2)` before
    /// any page is touched. `nil` (default): the kernel's default policy.
    /// Where NUMA is unavailable the request is a no-op and
    /// ``SharedRegion/placement`` says so; a node that does not exist is an error.
    public var placement: MemoryPlacement? = nil

    /// Default options: 0600, no prefault, no lock, normal pages, exclusive.
    public init() {}
}
