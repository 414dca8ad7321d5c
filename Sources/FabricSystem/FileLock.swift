import CFabricSystem
import Glibc
import SystemPackage

/// Open-file-description locks (`fcntl(F_OFD_SETLK)`): a lock the kernel
/// ties to one open file description and drops when its last descriptor
/// closes, which includes the owning process exiting however it exits. That
/// makes it a liveness signal that survives what a recorded pid does not:
/// pid reuse, and processes in other pid namespaces sharing the file.
package enum FileLock {
    /// Opens a new open file description of the file behind `fd` (through
    /// `/proc/self/fd/N`, so it works for a memfd as for a named file) and
    /// takes a write lock on the one byte at `offset` without waiting.
    /// Returns the new descriptor, which holds the lock until it is closed,
    /// or nil when another open file description holds it (in any process,
    /// this one included). `offset` may lie beyond the end of the file.
    package static func tryExclusiveByte(of fd: FileDescriptor, at offset: Int64) throws(SystemCallError) -> FileDescriptor? {
        let own = try FileDescriptor.openFile(FilePath("/proc/self/fd/\(fd.rawValue)"), .readWrite, options: [.closeOnExec])
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = off_t(offset)
        lock.l_len = 1
        switch valueOrErrno(retryOnInterrupt: true, { cfq_fcntl_lock(own.rawValue, CFQ_F_OFD_SETLK, &lock) }) {
        case .success: return own
        case .failure(.resourceTemporarilyUnavailable), .failure(.permissionDenied):
            try? own.close()
            return nil
        case .failure(let error):
            try? own.close()
            throw SystemCallError("fcntl(F_OFD_SETLK)", error)
        }
    }

    /// Whether some open file description holds a lock on the byte at
    /// `offset` of the file behind `fd` (`fcntl(F_OFD_GETLK)`): whether the
    /// role that byte stands for has a live holder.
    package static func isByteLocked(of fd: FileDescriptor, at offset: Int64) throws(SystemCallError) -> Bool {
        let own = try FileDescriptor.openFile(FilePath("/proc/self/fd/\(fd.rawValue)"), .readWrite, options: [.closeOnExec])
        defer { try? own.close() }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = off_t(offset)
        lock.l_len = 1
        _ = try systemCall("fcntl(F_OFD_GETLK)") { cfq_fcntl_lock(own.rawValue, CFQ_F_OFD_GETLK, &lock) }
        return lock.l_type != Int16(F_UNLCK)
    }
}
