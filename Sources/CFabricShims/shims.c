#define _GNU_SOURCE
#include "CFabricShims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

const unsigned int CFQ_MFD_CLOEXEC = MFD_CLOEXEC;
const unsigned int CFQ_MFD_ALLOW_SEALING = MFD_ALLOW_SEALING;
const unsigned int CFQ_MFD_HUGETLB = MFD_HUGETLB;
const int CFQ_F_SEAL_SEAL = F_SEAL_SEAL;
const int CFQ_F_SEAL_SHRINK = F_SEAL_SHRINK;
const int CFQ_F_SEAL_GROW = F_SEAL_GROW;
const int64_t CFQ_HUGETLBFS_MAGIC = HUGETLBFS_MAGIC;

int cfq_memfd_create(const char *name, unsigned int flags) {
    return memfd_create(name, flags);
}

int cfq_add_seals(int fd, int seals) { return fcntl(fd, F_ADD_SEALS, seals); }

int cfq_get_seals(int fd) { return fcntl(fd, F_GET_SEALS); }

int cfq_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tsp = &ts;
    }
    /* FUTEX_WAIT takes a relative timeout. No FUTEX_PRIVATE_FLAG: shared page. */
    return (int)syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, NULL, 0);
}

int cfq_futex_wake(uint32_t *word, int count) {
    return (int)syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

int64_t cfq_fs_type(int fd) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    return (int64_t)s.f_type;
}

const int CFQ_EFD_CLOEXEC = EFD_CLOEXEC;
const int CFQ_EFD_NONBLOCK = EFD_NONBLOCK;
const int CFQ_EFD_SEMAPHORE = EFD_SEMAPHORE;

int cfq_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }

int cfq_send_fd(int socket, int fd, unsigned char tag) {
    struct iovec iov = { .iov_base = &tag, .iov_len = 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = control.buf, .msg_controllen = sizeof control.buf };
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(socket, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

int cfq_recv_fd(int socket, unsigned char *tag) {
    struct iovec iov = { .iov_base = tag, .iov_len = 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = control.buf, .msg_controllen = sizeof control.buf };
    ssize_t n;
    do { n = recvmsg(socket, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    if (n == 0) { errno = ECONNRESET; return -1; }
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS ||
        cmsg->cmsg_len != CMSG_LEN(sizeof(int)) || (msg.msg_flags & MSG_CTRUNC)) {
        errno = EBADMSG;
        return -1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
    return fd;
}

int cfq_pin_current_thread(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int cfq_current_cpu(void) { return sched_getcpu(); }

int cfq_poll_readable(int fd, int64_t timeout_ns) {
    struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tsp = &ts;
    }
    int r = ppoll(&p, 1, tsp, NULL);
    if (r < 0) return errno == EINTR ? 0 : -1;
    if (r > 0 && (p.revents & POLLNVAL)) { errno = EBADF; return -1; }
    return r > 0 ? 1 : 0;
}

static int fill_address(struct sockaddr_un *address, const char *path) {
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address->sun_path) { errno = ENAMETOOLONG; return -1; }
    strcpy(address->sun_path, path);
    return 0;
}

int cfq_unix_listen(const char *path, int backlog) {
    struct sockaddr_un address;
    if (fill_address(&address, path) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, backlog) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int cfq_unix_connect(const char *path) {
    struct sockaddr_un address;
    if (fill_address(&address, path) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int r;
    do { r = connect(fd, (struct sockaddr *)&address, sizeof address); } while (r != 0 && errno == EINTR);
    if (r != 0) { int saved = errno; close(fd); errno = saved; return -1; }
    return fd;
}

int cfq_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred cred;
    socklen_t length = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int cfq_unix_accept(int listener) {
    int fd;
    do { fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC); } while (fd < 0 && errno == EINTR);
    return fd;
}
