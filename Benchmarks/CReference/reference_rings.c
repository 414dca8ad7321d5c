// Reference implementations measured side by side with FabricQueue, over the
// same workloads: 64-byte descriptors, capacity 1024, across processes
// (fork, MAP_SHARED memory), the same CPU pinning as the Swift runs.
//
//   reference_rings dpdk      spsc     BURST COUNT   -> M/s (rte_ring SP/SC)
//   reference_rings dpdk      mpsc2    BURST COUNT   -> M/s (rte_ring MP/SC, 2 producers, COUNT each)
//   reference_rings c-ring    pingpong 1     COUNT   -> p50 p99 ns (busy-polled round trip)
//
// DPDK's ring is used on plain shared memory without the DPDK runtime:
// rte_ring_get_memsize_elem + rte_ring_init (no RING_F_EXACT_SZ).
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_DPDK
#include <rte_ring.h>
#include <rte_ring_elem.h>
#endif

#define CAPACITY 1024u
typedef struct { uint64_t w[8]; } descriptor;
_Static_assert(sizeof(descriptor) == 64, "64-byte descriptors");

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}
static void *shared(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    return p;
}
static inline void relax(void) { __builtin_ia32_pause(); }

// ---- plain C11 SPSC ring with cached indices -------------------------------
typedef struct {
    _Alignas(128) _Atomic uint64_t head;
    _Alignas(128) _Atomic uint64_t tail;
    _Alignas(128) descriptor slots[CAPACITY];
} c_ring;

static uint64_t c_produce(c_ring *r, uint64_t *h, uint64_t *ct, const descriptor *in, uint64_t n) {
    uint64_t free_slots = CAPACITY - (*h - *ct);
    if (free_slots < n) { *ct = atomic_load_explicit(&r->tail, memory_order_acquire); free_slots = CAPACITY - (*h - *ct); }
    if (n > free_slots) n = free_slots;
    for (uint64_t i = 0; i < n; i++) r->slots[(*h + i) & (CAPACITY - 1)] = in[i];
    *h += n;
    atomic_store_explicit(&r->head, *h, memory_order_release);
    return n;
}
static uint64_t c_consume(c_ring *r, uint64_t *t, uint64_t *ch, descriptor *out, uint64_t n) {
    uint64_t avail = *ch - *t;
    if (avail < n) { *ch = atomic_load_explicit(&r->head, memory_order_acquire); avail = *ch - *t; }
    if (n > avail) n = avail;
    for (uint64_t i = 0; i < n; i++) out[i] = r->slots[(*t + i) & (CAPACITY - 1)];
    *t += n;
    atomic_store_explicit(&r->tail, *t, memory_order_release);
    return n;
}

// ---- the generic throughput driver -------------------------------------------
typedef uint64_t (*enqueue_fn)(void *ring, void *state, const descriptor *in, uint64_t n);
typedef uint64_t (*dequeue_fn)(void *ring, void *state, descriptor *out, uint64_t n);

#ifdef WITH_DPDK
static uint64_t dpdk_enq(void *r, void *s, const descriptor *in, uint64_t n) { (void)s; return rte_ring_enqueue_burst_elem(r, in, sizeof(descriptor), (unsigned)n, NULL); }
static uint64_t dpdk_deq(void *r, void *s, descriptor *out, uint64_t n) { (void)s; return rte_ring_dequeue_burst_elem(r, out, sizeof(descriptor), (unsigned)n, NULL); }
#endif

// Always inlined, so that each call with a constant `enq`/`deq` is devirtualized
// and every reference runs at full speed (an indirect call per descriptor
// halved the C ring at burst 1).
static inline __attribute__((always_inline)) void producer(void *ring, enqueue_fn enq, uint64_t id, uint64_t burst, uint64_t count) {
    descriptor batch[64];
    uint64_t state[2] = {0, 0}, sent = 0;
    while (sent < count) {
        uint64_t n = count - sent < burst ? count - sent : burst;
        for (uint64_t i = 0; i < n; i++) { batch[i].w[0] = sent + i; batch[i].w[1] = id; batch[i].w[4] = 64; }
        uint64_t done = 0;
        while (done < n) {
            uint64_t k = enq(ring, state, batch + done, n - done);
            if (k == 0) relax();
            done += k;
        }
        sent += n;
    }
}

static inline __attribute__((always_inline)) double consumer(void *ring, dequeue_fn deq, uint64_t burst, uint64_t total, int producers) {
    descriptor out[64];
    uint64_t state[2] = {0, 0}, got = 0, start = 0, expected[4] = {0, 0, 0, 0};
    while (got < total) {
        uint64_t n = deq(ring, state, out, burst);
        if (n == 0) { relax(); continue; }
        if (got == 0) start = now_ns();
        for (uint64_t i = 0; i < n; i++) {
            uint64_t p = out[i].w[1] & 3;
            if (out[i].w[0] != expected[p]++) { fprintf(stderr, "order broken\n"); exit(1); }
        }
        got += n;
    }
    (void)producers;
    return (double)total / ((double)(now_ns() - start) / 1e9) / 1e6;
}

static void throughput(const char *impl, const char *workload, uint64_t burst, uint64_t count) {
#ifdef WITH_DPDK
    if (strcmp(impl, "dpdk") == 0) {
        int producers = strcmp(workload, "mpsc2") == 0 ? 2 : 1;
        ssize_t size = rte_ring_get_memsize_elem(sizeof(descriptor), CAPACITY);
        void *ring = shared((size_t)size);
        unsigned flags = RING_F_SC_DEQ | (producers == 1 ? RING_F_SP_ENQ : 0);
        if (rte_ring_init(ring, "fq-ref", CAPACITY, flags) != 0) { fprintf(stderr, "rte_ring_init failed\n"); exit(1); }
        pid_t kids[2];
        for (int p = 0; p < producers; p++) {
            if ((kids[p] = fork()) == 0) { pin(p); producer(ring, dpdk_enq, (uint64_t)p, burst, count); _exit(0); }
        }
        pin(producers == 1 ? 1 : -1);
        double rate = consumer(ring, dpdk_deq, burst, count * (uint64_t)producers, producers);
        for (int p = 0; p < producers; p++) waitpid(kids[p], NULL, 0);
        printf("%f\n", rate);
        return;
    }
#endif
    fprintf(stderr, "unsupported %s %s (the C ring's throughput is c_spsc_ring.c; DPDK needs -DWITH_DPDK)\n", impl, workload);
    exit(2);
}

static int cmp(const void *a, const void *b) { uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b; return x < y ? -1 : x > y; }

static void pingpong(uint64_t count) {
    c_ring *req = shared(sizeof(c_ring)), *resp = shared(sizeof(c_ring));
    if (fork() == 0) {
        pin(1);
        uint64_t rs[2] = {0, 0}, ws[2] = {0, 0};
        descriptor d;
        for (uint64_t i = 0; i < count; i++) {
            while (c_consume(req, &rs[0], &rs[1], &d, 1) == 0) relax();
            d.w[7] = ~d.w[0];
            while (c_produce(resp, &ws[0], &ws[1], &d, 1) == 0) relax();
        }
        _exit(0);
    }
    pin(0);
    uint64_t *lat = malloc(sizeof(uint64_t) * count);
    uint64_t ws[2] = {0, 0}, rs[2] = {0, 0};
    descriptor d = {{0}};
    for (uint64_t i = 0; i < count; i++) {
        uint64_t t = now_ns();
        d.w[0] = i;
        while (c_produce(req, &ws[0], &ws[1], &d, 1) == 0) relax();
        while (c_consume(resp, &rs[0], &rs[1], &d, 1) == 0) relax();
        lat[i] = now_ns() - t;
        if (d.w[7] != ~i) { fprintf(stderr, "bad reply\n"); exit(1); }
    }
    wait(NULL);
    qsort(lat, count, sizeof *lat, cmp);
    printf("%lu %lu\n", (unsigned long)lat[count / 2], (unsigned long)lat[count * 99 / 100]);
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s c-ring|dpdk spsc|mpsc2|pingpong BURST COUNT\n", argv[0]); return 2; }
    uint64_t burst = strtoull(argv[3], NULL, 10), count = strtoull(argv[4], NULL, 10);
    if (burst < 1 || burst > 64) { fprintf(stderr, "burst must be 1...64\n"); return 2; }
    if (strcmp(argv[2], "pingpong") == 0) pingpong(count);
    else throughput(argv[1], argv[2], burst, count);
    return 0;
}
