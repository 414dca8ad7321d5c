import FabricSystem
import Glibc
import SystemPackage

/// The file-level checks and mapping shared by every kind of region (ring
/// regions here, data regions in the session layer).
package enum MappedFile {
    /// `fstat(2)` checks before anything is mapped: a regular file, at least
    /// `minimumSize` bytes, and, for a memfd, sealed against shrinking (whoever
    /// passed it could otherwise truncate it and fault our loads with SIGBUS;
    /// a named file has no such seal, and its mode keeps untrusted writers out).
    /// Returns the file size and whether it lives on hugetlbfs.
    package static func inspect(_ fd: FileDescriptor, minimumSize: Int) throws(RegionError) -> (size: Int, isHuge: Bool) {
        let status: Glibc.stat
        do { status = try fd.status() } catch { throw .system(error) }
        guard FileSystem.isRegularFile(status.st_mode) else {
            throw .notARegularFile(fileType: FileSystem.fileTypeName(status.st_mode))
        }
        let fileSize = Int(status.st_size)
        guard fileSize >= minimumSize else { throw .truncated(fileSize: fileSize, required: minimumSize) }
        if fd.isMemfd {
            let seals = (try? fd.seals()) ?? -1
            if seals < 0 || seals & FileDescriptor.sealAgainstShrinking == 0 { throw .missingSeals(found: seals) }
        }
        return (fileSize, fd.isOnHugetlbfs)
    }

    /// A new anonymous memfd of `size` bytes, sealed against shrinking and
    /// growing (`memfd_create`, `ftruncate`, `F_ADD_SEALS`).
    package static func sealedMemfd(name: String, size: Int, inheritable: Bool) throws(RegionError) -> FileDescriptor {
        do throws(SystemCallError) {
            let fd = try FileDescriptor.memfd(name: name, allowSealing: true, closeOnExec: !inheritable)
            do throws(SystemCallError) {
                try fd.truncate(toSize: size)
                try fd.addSeals(FileDescriptor.sealsAgainstResizing)
            } catch {
                try? fd.close()
                throw error
            }
            return fd
        } catch {
            throw .system(error)
        }
    }

    /// Maps the header of a file already checked by ``inspect(_:minimumSize:)``,
    /// lets `validate` check it and say how many bytes the region spans (at
    /// most `fileSize`), then maps exactly those: a valid header in a much
    /// larger file never makes the caller map, or touch, the rest.
    package static func mapDescribed<Header>(
        _ fd: FileDescriptor, fileSize: Int, hugePages: Bool,
        validate: (UnsafeRawPointer) throws(RegionError) -> (Header, Int)
    ) throws(RegionError) -> (UnsafeMutableRawPointer, Header, Int) {
        let headerBytes = min(fileSize, hugePages ? 2 << 20 : Memory.pageSize)
        let header = try map(fd: fd, size: headerBytes, prefault: false, hugePages: hugePages)
        let described: (Header, Int)
        do { described = try validate(header) } catch {
            Memory.unmap(header, size: headerBytes)
            throw error
        }
        Memory.unmap(header, size: headerBytes)
        let size = described.1
        guard size > 0, size <= fileSize else { throw .truncated(fileSize: fileSize, required: size) }
        return (try map(fd: fd, size: size, prefault: false, hugePages: hugePages), described.0, size)
    }

    /// Maps `size` bytes of `fd` shared and read-write (`mmap(2)`).
    package static func map(
        fd: FileDescriptor, size: Int, prefault: Bool, hugePages: Bool
    ) throws(RegionError) -> UnsafeMutableRawPointer {
        do { return try Memory.mapShared(fd, size: size, populate: prefault) } catch {
            if hugePages { throw .hugePagesUnavailable(reason: "mmap of \(size) bytes failed: \(error.errno)") }
            throw .system(error)
        }
    }
}
