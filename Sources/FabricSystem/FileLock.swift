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
        let own = try reopen(fd)
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

    /// A new open file description of the file behind `fd`: `open(2)` of
    /// `/proc/self/fd/N`, read-write, close-on-exec. The path is formatted in
    /// a stack buffer, so claiming a ring role allocates nothing (endpoints
    /// are created on threads the allocation gate measures).
    private static func reopen(_ fd: FileDescriptor) throws(SystemCallError) -> FileDescriptor {
        let result = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 32) { path in
            Result { () throws(SystemCallError) -> FileDescriptor in
                let prefix: StaticString = "/proc/self/fd/"
                var length = 0
                prefix.withUTF8Buffer { bytes in
                    for byte in bytes {
                        path[length] = CChar(bitPattern: byte)
                        length += 1
                    }
                }
                // The descriptor number, most significant digit first.
                let number = UInt32(bitPattern: fd.rawValue)
                var divisor: UInt32 = 1
                while number / divisor >= 10 { divisor *= 10 }
                while divisor > 0 {
                    path[length] = CChar(UInt8(ascii: "0") + UInt8(number / divisor % 10))
                    length += 1
                    divisor /= 10
                }
                path[length] = 0
                let raw = try systemCall("open") { Glibc.open(path.baseAddress!, O_RDWR | O_CLOEXEC) }
                return FileDescriptor(rawValue: raw)
            }
        }
        return try result.get()
    }
}
