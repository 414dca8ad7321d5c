import CFabricSystem
import Glibc
import SystemPackage

// File and memfd calls: open(2), memfd_create(2), ftruncate(2), fcntl(2),
// fstat(2), fstatfs(2), fchmod(2), unlink(2), readlink(2).

extension FileDescriptor {
    /// `open(2)` through swift-system (which retries `EINTR`).
    package static func openFile(
        _ path: FilePath, _ mode: AccessMode, options: OpenOptions, permissions: FilePermissions? = nil
    ) throws(SystemCallError) -> FileDescriptor {
        do {
            return try FileDescriptor.open(path, mode, options: options, permissions: permissions, retryOnInterrupt: true)
        } catch let error as Errno {
            throw SystemCallError("open", error)
        } catch {
            throw SystemCallError("open", .ioError)
        }
    }

    /// `memfd_create(2)`: a new anonymous file, optionally sealable
    /// (`MFD_ALLOW_SEALING`), close-on-exec (`MFD_CLOEXEC`) and on huge pages
    /// (`MFD_HUGETLB`).
    package static func memfd(
        name: String, allowSealing: Bool, closeOnExec: Bool, hugePages: Bool = false
    ) throws(SystemCallError) -> FileDescriptor {
        var flags: UInt32 = 0
        if allowSealing { flags |= CFQ_MFD_ALLOW_SEALING }
        if closeOnExec { flags |= CFQ_MFD_CLOEXEC }
        if hugePages { flags |= CFQ_MFD_HUGETLB }
        return FileDescriptor(rawValue: try systemCall("memfd_create") { cfq_memfd_create(name, flags) })
    }

    /// `ftruncate(2)` to `size` bytes.
    package func truncate(toSize size: Int) throws(SystemCallError) {
        _ = try systemCall("ftruncate") { ftruncate(rawValue, off_t(size)) }
    }

    /// The memfd seals `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`: nobody can
    /// resize the file or change its seals any more.
    package static var sealsAgainstResizing: Int32 { CFQ_F_SEAL_SHRINK | CFQ_F_SEAL_GROW | CFQ_F_SEAL_SEAL }
    /// `F_SEAL_SHRINK`: the seal that makes a memfd safe to map (no peer can
    /// truncate it under us and fault our loads with `SIGBUS`).
    package static var sealAgainstShrinking: Int32 { CFQ_F_SEAL_SHRINK }

    /// `fcntl(F_ADD_SEALS)`.
    package func addSeals(_ seals: Int32) throws(SystemCallError) {
        _ = try systemCall("fcntl(F_ADD_SEALS)") { cfq_fcntl_int(rawValue, CFQ_F_ADD_SEALS, seals) }
    }

    /// `fcntl(F_GET_SEALS)`.
    package func seals() throws(SystemCallError) -> Int32 {
        try systemCall("fcntl(F_GET_SEALS)") { cfq_fcntl_int(rawValue, CFQ_F_GET_SEALS, 0) }
    }

    /// `fcntl(F_DUPFD_CLOEXEC)`: a close-on-exec duplicate the caller owns.
    package func duplicateCloseOnExec() throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(rawValue: try systemCall("fcntl(F_DUPFD_CLOEXEC)") { cfq_fcntl_int(rawValue, F_DUPFD_CLOEXEC, 0) })
    }

    /// Whether the descriptor is open (`fcntl(F_GETFD)`); `EBADF` otherwise.
    package func checkOpen() throws(SystemCallError) {
        _ = try systemCall("fcntl(F_GETFD)") { cfq_fcntl_int(rawValue, F_GETFD, 0) }
    }

    /// Sets `FD_CLOEXEC` (`fcntl(F_SETFD)`): the descriptor is closed in an
    /// `exec`ed child.
    package func setCloseOnExec() throws(SystemCallError) {
        _ = try systemCall("fcntl(F_SETFD)") { cfq_fcntl_int(rawValue, F_SETFD, FD_CLOEXEC) }
    }

    /// Sets `O_NONBLOCK` (`fcntl(F_GETFL)` then `fcntl(F_SETFL)`).
    package func setNonBlocking() throws(SystemCallError) {
        let flags: Int32 = try systemCall("fcntl(F_GETFL)") { cfq_fcntl_int(rawValue, F_GETFL, 0) }
        _ = try systemCall("fcntl(F_SETFL)") { cfq_fcntl_int(rawValue, F_SETFL, flags | O_NONBLOCK) }
    }

    /// Up to `count` bytes from offset 0 (`pread(2)`), fewer at end of file.
    package func readPrefix(_ count: Int) throws(SystemCallError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let result = bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemCallError) -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return try systemCall("pread") { Glibc.pread(rawValue, base, buffer.count, 0) }
            }
        }
        return Array(bytes[0..<(try result.get())])
    }

    /// `fstat(2)`.
    package func status() throws(SystemCallError) -> Glibc.stat {
        var result = Glibc.stat()
        _ = try systemCall("fstat") { fstat(rawValue, &result) }
        return result
    }

    /// `fstatfs(2)`'s `f_type`: which filesystem holds the file.
    package func filesystemType() throws(SystemCallError) -> Int64 {
        var type: Int64 = 0
        _ = try systemCall("fstatfs") { cfq_fstatfs_type(rawValue, &type) }
        return type
    }

    /// Whether the file lives on hugetlbfs (`fstatfs(2)`); false when that
    /// cannot be told.
    package var isOnHugetlbfs: Bool { (try? filesystemType()) == CFQ_HUGETLBFS_MAGIC }

    /// `fchmod(2)`: sets exactly `permissions` (umask does not apply).
    package func changeMode(to permissions: FilePermissions) throws(SystemCallError) {
        _ = try systemCall("fchmod") { fchmod(rawValue, mode_t(permissions.rawValue)) }
    }

    /// What `/proc/self/fd/N` names for this descriptor (`readlink(2)`):
    /// "/memfd:NAME (deleted)", "anon_inode:[eventfd]", a path…
    package func procLink() throws(SystemCallError) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let path = "/proc/self/fd/\(rawValue)"
        let count = try systemCall("readlink") { readlink(path, &buffer, buffer.count - 1) }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether this is a memfd (by its `/proc/self/fd` link).
    package var isMemfd: Bool { (try? procLink())?.hasPrefix("/memfd:") ?? false }
}

/// Path-level calls.
package enum FileSystem {
    /// `unlink(2)`.
    package static func unlink(_ path: FilePath) throws(SystemCallError) {
        _ = try systemCall("unlink") { Glibc.unlink(path.string) }
    }

    /// `unlink(2)`, where a missing file is not an error.
    package static func unlinkIfPresent(_ path: FilePath) throws(SystemCallError) {
        switch valueOrErrno(retryOnInterrupt: true, { Glibc.unlink(path.string) }) {
        case .success, .failure(.noSuchFileOrDirectory): return
        case .failure(let error): throw SystemCallError("unlink", error)
        }
    }

    /// `lstat(2)`: the path's own status (a link is not followed), or nil
    /// when nothing is there.
    package static func linkStatus(_ path: FilePath) throws(SystemCallError) -> Glibc.stat? {
        var result = Glibc.stat()
        switch valueOrErrno(retryOnInterrupt: true, { lstat(path.string, &result) }) {
        case .success: return result
        case .failure(.noSuchFileOrDirectory): return nil
        case .failure(let error): throw SystemCallError("lstat", error)
        }
    }

    /// Whether `mode` is a socket's.
    package static func isSocket(_ mode: mode_t) -> Bool { mode & S_IFMT == S_IFSOCK }

    /// `chmod(2)`.
    package static func changeMode(of path: FilePath, to permissions: FilePermissions) throws(SystemCallError) {
        _ = try systemCall("chmod") { chmod(path.string, mode_t(permissions.rawValue)) }
    }

    /// A readable name for the file type in `mode` (`st_mode & S_IFMT`).
    package static func fileTypeName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: "regular file"
        case S_IFDIR: "directory"
        case S_IFIFO: "FIFO"
        case S_IFCHR: "character device"
        case S_IFBLK: "block device"
        case S_IFSOCK: "socket"
        case S_IFLNK: "symbolic link"
        default: "file of mode 0o\(String(mode, radix: 8))"
        }
    }

    /// Whether `mode` is a regular file's.
    package static func isRegularFile(_ mode: mode_t) -> Bool { mode & S_IFMT == S_IFREG }
}
