// CFabricSystem: the Linux calls and macros Swift cannot reach through Glibc.
//
// Kept thin on purpose (the swift-nio CNIOLinux pattern): one wrapper a
// system call, constants and macros the Glibc overlay hides, and nothing
// else. Every wrapper returns what the call returns and leaves errno for the
// caller; retrying on EINTR, reading errno and turning it into an error all
// happen in Swift, in one place (FabricSystem's `systemCall`). Logic that has
// to clean up after itself (parsing control messages, closing descriptors
// the kernel installed) lives in Swift too.
#ifndef C_FABRIC_SYSTEM_H
#define C_FABRIC_SYSTEM_H

#include <stdint.h>
#include <stddef.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/// memfd_create(2). The new descriptor, or -1 with errno set.
int cfq_memfd_create(const char *name, unsigned int flags);
extern const unsigned int CFQ_MFD_CLOEXEC;
extern const unsigned int CFQ_MFD_ALLOW_SEALING;
extern const unsigned int CFQ_MFD_HUGETLB;

/// fcntl(2) with one int argument (fcntl is variadic; Swift cannot call it
/// with the sealing commands, which need _GNU_SOURCE). -1 with errno.
int cfq_fcntl_int(int fd, int command, int argument);
extern const int CFQ_F_ADD_SEALS;
extern const int CFQ_F_GET_SEALS;
extern const int CFQ_F_SEAL_SEAL;
extern const int CFQ_F_SEAL_SHRINK;
extern const int CFQ_F_SEAL_GROW;

/// fcntl(2) with a struct flock (F_OFD_SETLK, F_OFD_GETLK: open file
/// description locks, which need _GNU_SOURCE). -1 with errno.
struct flock;
int cfq_fcntl_lock(int fd, int command, struct flock *lock);
extern const int CFQ_F_OFD_SETLK;
extern const int CFQ_F_OFD_GETLK;

/// futex(2) on a 32-bit word, without FUTEX_PRIVATE_FLAG (so it works between
/// processes sharing the page): `syscall(SYS_futex, word, op, value, timeout,
/// NULL, 0)`, which Swift cannot call because syscall(2) is variadic.
/// `timeout` may be NULL (wait forever); FUTEX_WAIT takes it as relative.
long cfq_futex(uint32_t *word, int operation, uint32_t value, const struct timespec *timeout);
extern const int CFQ_FUTEX_WAIT;
extern const int CFQ_FUTEX_WAKE;

/// The CPU's spin-wait hint (x86 PAUSE, Arm YIELD, RISC-V pause); a compiler
/// barrier elsewhere.
static inline void cfq_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#elif defined(__riscv)
    __asm__ __volatile__(".insn i 0x0F, 0, x0, x0, 0x010" ::: "memory"); /* pause */
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/// eventfd(2). The descriptor, or -1 with errno.
int cfq_eventfd(unsigned int initval, int flags);
extern const int CFQ_EFD_CLOEXEC;
extern const int CFQ_EFD_NONBLOCK;
extern const int CFQ_EFD_SEMAPHORE;

/// ppoll(2) with a relative timeout (NULL: forever) and no signal mask.
int cfq_ppoll(struct pollfd *fds, nfds_t count, const struct timespec *timeout);
/// POLLRDHUP: Linux-only, not exported to Swift.
extern const short CFQ_POLLRDHUP;

/// accept4(2) (needs _GNU_SOURCE). The descriptor, or -1 with errno.
int cfq_accept4(int listener, int flags);

/// getsockopt(SO_PEERCRED): the connected peer's pid, uid and gid as the
/// kernel recorded them at connect time (struct ucred needs _GNU_SOURCE).
/// 0, or -1 with errno.
int cfq_getsockopt_peercred(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);

/// The CMSG_* macros of <sys/socket.h>, which Swift cannot import.
struct cmsghdr *cfq_cmsg_firsthdr(const struct msghdr *message);
struct cmsghdr *cfq_cmsg_nxthdr(const struct msghdr *message, const struct cmsghdr *header);
unsigned char *cfq_cmsg_data(const struct cmsghdr *header);
size_t cfq_cmsg_space(size_t payload);
size_t cfq_cmsg_len(size_t payload);
extern const int CFQ_SCM_RIGHTS;
extern const int CFQ_MSG_CMSG_CLOEXEC;
extern const int CFQ_MSG_CTRUNC;
extern const int CFQ_MSG_NOSIGNAL;

/// pthread_setaffinity_np(pthread_self(), {cpu}) (CPU_SET is a macro).
/// 0 or an errno value; EINVAL for a CPU outside the set's range.
int cfq_pin_current_thread(int cpu);

/// sched_getcpu(3) (needs _GNU_SOURCE): the CPU the caller runs on, or -1.
int cfq_sched_getcpu(void);

/// strerrorname_np(3) (glibc 2.32+, needs _GNU_SOURCE): the symbolic name
/// of an errno value ("ENOMEM"), or NULL for an unknown one.
const char *cfq_errno_name(int error);

/// fstatfs(2) f_type of the filesystem holding `fd`, into `type`. 0, or -1
/// with errno.
int cfq_fstatfs_type(int fd, int64_t *type);
extern const int64_t CFQ_HUGETLBFS_MAGIC;

#ifdef __cplusplus
}
#endif
#endif
