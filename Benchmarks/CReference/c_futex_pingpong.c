// Two processes ping-pong through two futex words in a shared mapping: the
// bare syscall cost of a blocking wake round trip, the reference for the
// Swift futex doorbell. Parent pinned to CPU 0, child to CPU 1.
//   c_futex_pingpong COUNT      prints p50/p99/max round trip in ns
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 100000;
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
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)count);
    uint32_t seen = 0;
    for (long i = 0; i < count; i++) {
        uint64_t t = now_ns();
        bump_and_wake(ping);
        seen = await_change(pong, seen);
        lat[i] = now_ns() - t;
    }
    waitpid(child, NULL, 0);
    qsort(lat, (size_t)count, sizeof *lat, cmp);
    printf("kind=c-futex count=%ld p50_ns=%lu p99_ns=%lu max_ns=%lu\n", count,
           (unsigned long)lat[count / 2], (unsigned long)lat[count * 99 / 100], (unsigned long)lat[count - 1]);
    return 0;
}
