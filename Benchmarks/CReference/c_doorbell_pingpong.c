// Two processes ping-pong, each sleeping until the other rings: the bare
// syscall cost of a blocking wake round trip, the reference for the Swift
// futex and eventfd doorbells. Parent pinned to CPU 0, child to CPU 1.
//   c_doorbell_pingpong futex|eventfd COUNT      prints p50/p99/max in ns
#define _GNU_SOURCE
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static void pin(int cpu) {
    cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}
// Wait until *w != seen, sleeping in FUTEX_WAIT (shared, not private).
static uint32_t await_change(_Atomic uint32_t *w, uint32_t seen) {
    uint32_t v;
    while ((v = atomic_load_explicit(w, memory_order_acquire)) == seen)
        syscall(SYS_futex, w, FUTEX_WAIT, seen, NULL, NULL, 0);
    return v;
}
static void bump_and_wake(_Atomic uint32_t *w) {
    atomic_fetch_add_explicit(w, 1, memory_order_release);
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}
static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
// eventfd: write 1 to ring, poll + read to wait (as the Swift doorbell does).
static void efd_ring(int fd) { uint64_t one = 1; if (write(fd, &one, 8) != 8) exit(1); }
static void efd_wait(int fd) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    uint64_t v;
    while (poll(&p, 1, -1) < 1) {}
    if (read(fd, &v, 8) != 8) exit(1);
}
static int eventfd_mode(long count, uint64_t *lat) {
    int ping = eventfd(0, 0), pong = eventfd(0, 0);
    pid_t child = fork();
    if (child == 0) {
        pin(1);
        for (long i = 0; i < count; i++) { efd_wait(ping); efd_ring(pong); }
        _exit(0);
    }
    pin(0);
    for (long i = 0; i < count; i++) {
        uint64_t t = now_ns();
        efd_ring(ping);
        efd_wait(pong);
        lat[i] = now_ns() - t;
    }
    waitpid(child, NULL, 0);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "futex";
    long count = argc > 2 ? atol(argv[2]) : 100000;
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)count);
    if (strcmp(mode, "eventfd") == 0) {
        eventfd_mode(count, lat);
        goto report;
    }
    _Atomic uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    _Atomic uint32_t *ping = &w[0], *pong = &w[16];  // separate cache lines
    pid_t child = fork();
    if (child == 0) {
        pin(1);
        uint32_t seen = 0;
        for (long i = 0; i < count; i++) { seen = await_change(ping, seen); bump_and_wake(pong); }
        _exit(0);
    }
    pin(0);
    uint32_t seen = 0;
    for (long i = 0; i < count; i++) {
        uint64_t t = now_ns();
        bump_and_wake(ping);
        seen = await_change(pong, seen);
        lat[i] = now_ns() - t;
    }
    waitpid(child, NULL, 0);
report:
    qsort(lat, (size_t)count, sizeof *lat, cmp);
    printf("kind=c-%s count=%ld p50_ns=%lu p99_ns=%lu max_ns=%lu\n", mode, count,
           (unsigned long)lat[count / 2], (unsigned long)lat[count * 99 / 100], (unsigned long)lat[count - 1]);
    return 0;
}
