#define _GNU_SOURCE
#include "CFabricShims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/magic.h>
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
