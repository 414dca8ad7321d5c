import Glibc
import SystemPackage

/// Mapping shared memory: `mmap(2)`, `munmap(2)`, `mlock(2)`, `munlock(2)`.
package enum Memory {
    /// The system page size (`sysconf(_SC_PAGESIZE)`).
    package static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// Maps `size` bytes of `fd` read-write and shared (`MAP_SHARED`, plus
    /// `MAP_POPULATE` when `populate`).
    package static func mapShared(
        _ fd: FileDescriptor, size: Int, populate: Bool
    ) throws(SystemCallError) -> UnsafeMutableRawPointer {
        let flags = MAP_SHARED | (populate ? MAP_POPULATE : 0)
        return try systemCall("mmap", failingWith: MAP_FAILED) {
            mmap(nil, size, PROT_READ | PROT_WRITE, flags, fd.rawValue, 0)
        }
    }

    /// `munmap(2)`. Fails only for arguments that were never mapped, which
    /// would be a bug in the caller; the result is ignored.
    package static func unmap(_ base: UnsafeMutableRawPointer, size: Int) {
        _ = valueOrErrno { munmap(base, size) }
    }

    /// `mlock(2)`: keeps the pages resident (subject to `RLIMIT_MEMLOCK`).
    package static func lock(_ base: UnsafeMutableRawPointer, size: Int) throws(SystemCallError) {
        _ = try systemCall("mlock") { mlock(base, size) }
    }

    /// `munlock(2)`; the result is ignored (see ``unmap(_:size:)``).
    package static func unlock(_ base: UnsafeMutableRawPointer, size: Int) {
        _ = valueOrErrno { munlock(base, size) }
    }
}
