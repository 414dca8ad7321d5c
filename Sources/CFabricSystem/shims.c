#define _GNU_SOURCE
#include "CFabricSystem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

const unsigned int CFQ_MFD_CLOEXEC = MFD_CLOEXEC;
const unsigned int CFQ_MFD_ALLOW_SEALING = MFD_ALLOW_SEALING;
const unsigned int CFQ_MFD_HUGETLB = MFD_HUGETLB;
const int CFQ_F_ADD_SEALS = F_ADD_SEALS;
const int CFQ_F_GET_SEALS = F_GET_SEALS;
const int CFQ_F_SEAL_SEAL = F_SEAL_SEAL;
const int CFQ_F_SEAL_SHRINK = F_SEAL_SHRINK;
const int CFQ_F_SEAL_GROW = F_SEAL_GROW;
const int CFQ_F_OFD_SETLK = F_OFD_SETLK;
const int CFQ_F_OFD_GETLK = F_OFD_GETLK;
const int CFQ_FUTEX_WAIT = FUTEX_WAIT;
const int CFQ_FUTEX_WAKE = FUTEX_WAKE;
const int CFQ_EFD_CLOEXEC = EFD_CLOEXEC;
const int CFQ_EFD_NONBLOCK = EFD_NONBLOCK;
const int CFQ_EFD_SEMAPHORE = EFD_SEMAPHORE;
const short CFQ_POLLRDHUP = POLLRDHUP;
const int CFQ_SCM_RIGHTS = SCM_RIGHTS;
const int CFQ_MSG_CMSG_CLOEXEC = MSG_CMSG_CLOEXEC;
const int CFQ_MSG_CTRUNC = MSG_CTRUNC;
const int CFQ_MSG_NOSIGNAL = MSG_NOSIGNAL;
const int64_t CFQ_HUGETLBFS_MAGIC = HUGETLBFS_MAGIC;

int cfq_memfd_create(const char *name, unsigned int flags) { return memfd_create(name, flags); }

int cfq_fcntl_int(int fd, int command, int argument) { return fcntl(fd, command, argument); }

int cfq_fcntl_lock(int fd, int command, struct flock *lock) { return fcntl(fd, command, lock); }

long cfq_futex(uint32_t *word, int operation, uint32_t value, const struct timespec *timeout) {
    return syscall(SYS_futex, word, operation, value, timeout, NULL, 0);
}

int cfq_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }

int cfq_ppoll(struct pollfd *fds, nfds_t count, const struct timespec *timeout) {
    return ppoll(fds, count, timeout, NULL);
}

int cfq_accept4(int listener, int flags) { return accept4(listener, NULL, NULL, flags); }

int cfq_getsockopt_peercred(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred cred;
    socklen_t length = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

struct cmsghdr *cfq_cmsg_firsthdr(const struct msghdr *message) { return CMSG_FIRSTHDR(message); }
struct cmsghdr *cfq_cmsg_nxthdr(const struct msghdr *message, const struct cmsghdr *header) {
    return CMSG_NXTHDR((struct msghdr *)message, (struct cmsghdr *)header);
}
unsigned char *cfq_cmsg_data(const struct cmsghdr *header) { return (unsigned char *)CMSG_DATA(header); }
size_t cfq_cmsg_space(size_t payload) { return CMSG_SPACE(payload); }
size_t cfq_cmsg_len(size_t payload) { return CMSG_LEN(payload); }

int cfq_pin_current_thread(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int cfq_sched_getcpu(void) { return sched_getcpu(); }

const char *cfq_errno_name(int error) { return strerrorname_np(error); }

int cfq_fstatfs_type(int fd, int64_t *type) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    *type = (int64_t)s.f_type;
    return 0;
}
