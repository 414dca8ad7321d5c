import CFabricShims
import Glibc
import SystemPackage

/// The file-level checks and mapping shared by every kind of region.
enum MappedFile {
    /// `fstat(2)` checks before anything is mapped: a regular file, at least
    /// `minimumSize` bytes, and, for a memfd, sealed against shrinking (whoever
    /// passed it could otherwise truncate it and fault our loads with SIGBUS;
    /// a named file has no such seal, and its mode keeps untrusted writers out).
    /// Returns the file size and whether it lives on hugetlbfs.
    static func inspect(_ fd: FileDescriptor, minimumSize: Int) throws(RegionError) -> (size: Int, isHuge: Bool) {
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { throw .system(operation: "fstat", errno: Errno(rawValue: errno)) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .notARegularFile(fileType: fileTypeName(st.st_mode)) }
        let fileSize = Int(st.st_size)
        guard fileSize >= minimumSize else { throw .truncated(fileSize: fileSize, required: minimumSize) }
        if isMemfd(fd) {
            let seals = cfq_get_seals(fd.rawValue)
            if seals < 0 || seals & CFQ_F_SEAL_SHRINK == 0 { throw .missingSeals(found: seals) }
        }
        return (fileSize, cfq_fs_type(fd.rawValue) == CFQ_HUGETLBFS_MAGIC)
    }

    /// A new anonymous memfd of `size` bytes, sealed against shrinking and
    /// growing (`memfd_create`, `ftruncate`, `F_ADD_SEALS`).
    static func sealedMemfd(name: String, size: Int, inheritable: Bool) throws(RegionError) -> FileDescriptor {
        let raw = cfq_memfd_create(name, CFQ_MFD_ALLOW_SEALING | (inheritable ? 0 : CFQ_MFD_CLOEXEC))
        guard raw >= 0 else { throw .system(operation: "memfd_create", errno: Errno(rawValue: errno)) }
        let fd = FileDescriptor(rawValue: raw)
        guard ftruncate(raw, off_t(size)) == 0 else {
            let e = Errno(rawValue: errno)
            try? fd.close()
            throw .system(operation: "ftruncate", errno: e)
        }
        guard cfq_add_seals(raw, CFQ_F_SEAL_SHRINK | CFQ_F_SEAL_GROW | CFQ_F_SEAL_SEAL) == 0 else {
            let e = Errno(rawValue: errno)
            try? fd.close()
            throw .system(operation: "fcntl(F_ADD_SEALS)", errno: e)
        }
        return fd
    }

    static func map(fd: FileDescriptor, size: Int, prefault: Bool, hugePages: Bool) throws(RegionError) -> UnsafeMutableRawPointer {
        let flags = MAP_SHARED | (prefault ? MAP_POPULATE : 0)
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, flags, fd.rawValue, 0), p != MAP_FAILED else {
            let e = Errno(rawValue: errno)
            if hugePages { throw .hugePagesUnavailable(reason: "mmap of \(size) bytes failed: \(e)") }
            throw .system(operation: "mmap", errno: e)
        }
        return p
    }

    /// What `/proc/self/fd/N` names for `fd` (`readlink(2)`): "/memfd:NAME
    /// (deleted)", "anon_inode:[eventfd]", a path…; nil if it cannot be read.
    static func procLink(_ fd: FileDescriptor) -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let n = readlink("/proc/self/fd/\(fd.rawValue)", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether `fd` is a memfd.
    static func isMemfd(_ fd: FileDescriptor) -> Bool { procLink(fd)?.hasPrefix("/memfd:") ?? false }

    static func fileTypeName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "directory"
        case S_IFIFO: "FIFO"
        case S_IFCHR: "character device"
        case S_IFBLK: "block device"
        case S_IFSOCK: "socket"
        case S_IFLNK: "symbolic link"
        default: "file of mode 0o\(String(mode, radix: 8))"
        }
    }

}
