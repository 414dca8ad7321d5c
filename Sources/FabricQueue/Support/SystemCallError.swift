import FabricSystem

/// A system call that failed: its `operation` names the call as its man page
/// does (`"mmap"`, `"fcntl(F_ADD_SEALS)"`, `"recvmsg"`) and its `errno` keeps
/// the `Errno`
/// it returned; its description reads
/// `"mmap failed: Cannot allocate memory (errno 12)"`.
///
/// Every FabricQueue error that reports a kernel failure carries one
/// (``RegionError/system(_:)``, ``DoorbellError/system(_:)``,
/// ``NUMAError/system(_:)``, and the session layer's `SocketError.system`),
/// so the errno is never lost. The type lives in the package's system layer,
/// where every system call is made; this alias is its name here.
public typealias SystemCallError = FabricSystem.SystemCallError
