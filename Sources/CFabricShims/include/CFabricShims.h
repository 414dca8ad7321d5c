// CFabricShims: the few Linux calls Swift cannot reach through Glibc.
//
// Kept deliberately tiny (the swift-nio CNIOLinux pattern): one thin wrapper a
// syscall, errno left for the caller to read. Everything else lives in Swift.
#ifndef C_FABRIC_SHIMS_H
#define C_FABRIC_SHIMS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// memfd_create(2). Returns the new fd or -1 with errno set.
int cfq_memfd_create(const char *name, unsigned int flags);

/// memfd_create(2) flags, re-exported because Glibc's Swift overlay hides them.
extern const unsigned int CFQ_MFD_CLOEXEC;
extern const unsigned int CFQ_MFD_ALLOW_SEALING;
extern const unsigned int CFQ_MFD_HUGETLB;

/// fcntl(fd, F_ADD_SEALS, seals) / fcntl(fd, F_GET_SEALS). -1 with errno on failure.
int cfq_add_seals(int fd, int seals);
int cfq_get_seals(int fd);
extern const int CFQ_F_SEAL_SEAL;
extern const int CFQ_F_SEAL_SHRINK;
extern const int CFQ_F_SEAL_GROW;

/// futex(2) FUTEX_WAIT without FUTEX_PRIVATE_FLAG, so it works between processes
/// sharing the page. `timeout_ns` < 0 waits forever. Returns 0 or -1 with errno
/// (EAGAIN: *word != expected; ETIMEDOUT; EINTR).
int cfq_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns);

/// futex(2) FUTEX_WAKE without FUTEX_PRIVATE_FLAG. Returns the number woken or -1.
int cfq_futex_wake(uint32_t *word, int count);

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

/// eventfd(2). Returns the fd or -1 with errno.
int cfq_eventfd(unsigned int initval, int flags);
extern const int CFQ_EFD_CLOEXEC;
extern const int CFQ_EFD_NONBLOCK;
extern const int CFQ_EFD_SEMAPHORE;

/// sendmsg(2) one byte of `tag` with `fd` attached as SCM_RIGHTS on a Unix
/// socket. Returns 0 or -1 with errno.
int cfq_send_fd(int socket, int fd, unsigned char tag);

/// recvmsg(2) one byte and one SCM_RIGHTS descriptor (received with
/// MSG_CMSG_CLOEXEC). Returns the descriptor, or -1 with errno (EBADMSG when
/// the message carried no descriptor; ECONNRESET on end of stream).
int cfq_recv_fd(int socket, unsigned char *tag);

/// ppoll(2) for POLLIN on one fd with a relative timeout in nanoseconds (< 0:
/// forever). Returns 1 when readable, 0 on timeout or EINTR, -1 with errno
/// (EBADF when the fd is not open).
int cfq_poll_readable(int fd, int64_t timeout_ns);

/// socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC) + bind(2) to `path` + listen(2).
/// Returns the listening fd or -1 with errno (ENAMETOOLONG for a long path).
int cfq_unix_listen(const char *path, int backlog);

/// socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC) + connect(2) to `path`. Returns
/// the fd or -1 with errno.
int cfq_unix_connect(const char *path);

/// accept4(2) with SOCK_CLOEXEC, retrying EINTR. Returns the fd or -1 with errno.
int cfq_unix_accept(int listener);

/// getsockopt(SO_PEERCRED): the connected peer's pid, uid and gid as the
/// kernel recorded them at connect time. Returns 0 or -1 with errno.
int cfq_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);

/// pthread_setaffinity_np(pthread_self(), {cpu}). Returns 0 or an errno value.
int cfq_pin_current_thread(int cpu);

/// sched_getcpu(3): the CPU the caller runs on, or -1.
int cfq_current_cpu(void);

/// statfs(2) f_type of the filesystem holding `fd` (to recognise hugetlbfs), or -1.
int64_t cfq_fs_type(int fd);
extern const int64_t CFQ_HUGETLBFS_MAGIC;

#ifdef __cplusplus
}
#endif
#endif
