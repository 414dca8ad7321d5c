import CFabricSystem
import Glibc
import SystemPackage

/// Waiting for descriptors with `ppoll(2)`.
package enum Poll {
    /// `POLLIN`.
    package static let readable = Int16(POLLIN)
    /// `POLLOUT`.
    package static let writable = Int16(POLLOUT)
    /// `POLLRDHUP` (Linux-only: the peer shut down its writing side).
    package static let readHangUp = CFQ_POLLRDHUP
    /// `POLLHUP | POLLERR | POLLNVAL | POLLRDHUP`: the descriptor is finished.
    package static let hangUpOrError = Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL) | CFQ_POLLRDHUP

    /// `ppoll(2)` over `entries` for at most `timeoutNanoseconds` (negative:
    /// forever). Returns how many entries have events; an interrupted wait
    /// (`EINTR`, not retried: see the funnel's policy) returns 0, like a timeout.
    package static func wait(
        _ entries: UnsafeMutableBufferPointer<pollfd>, timeoutNanoseconds: Int64
    ) throws(SystemCallError) -> Int {
        var timeout = timespec(nanoseconds: timeoutNanoseconds)
        let result = valueOrErrno(retryOnInterrupt: false) {
            timeoutNanoseconds < 0
                ? cfq_ppoll(entries.baseAddress, nfds_t(entries.count), nil)
                : cfq_ppoll(entries.baseAddress, nfds_t(entries.count), &timeout)
        }
        switch result {
        case .success(let ready): return Int(ready)
        case .failure(.interrupted): return 0
        case .failure(let error): throw SystemCallError("ppoll", error)
        }
    }

    /// `ppoll(2)` over an array of entries (see ``wait(_:timeoutNanoseconds:)-(UnsafeMutableBufferPointer<pollfd>,_)``).
    package static func wait(_ entries: inout [pollfd], timeoutNanoseconds: Int64) throws(SystemCallError) -> Int {
        try entries.withUnsafeMutableBufferPointer { (buffer) throws(SystemCallError) -> Int in
            try wait(buffer, timeoutNanoseconds: timeoutNanoseconds)
        }
    }

    /// Whether `fd` becomes readable (data, or end of stream) within
    /// `timeoutNanoseconds`. `EBADF` when the descriptor is not open.
    package static func waitReadable(_ fd: FileDescriptor, timeoutNanoseconds: Int64) throws(SystemCallError) -> Bool {
        var entry = pollfd(fd: fd.rawValue, events: readable, revents: 0)
        let ready = try withUnsafeMutablePointer(to: &entry) { (pointer) throws(SystemCallError) -> Int in
            try wait(UnsafeMutableBufferPointer(start: pointer, count: 1), timeoutNanoseconds: timeoutNanoseconds)
        }
        if ready > 0 && entry.revents & Int16(POLLNVAL) != 0 { throw SystemCallError("ppoll", .badFileDescriptor) }
        return ready > 0
    }
}
