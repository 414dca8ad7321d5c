// A plain C11 SPSC ring with cached indices: the reference the Swift ring is
// measured against. It speaks the FabricQueue region layout (Docs/RingLayout.md)
// so both run over identical memory: head at control+0, tail at control+128,
// 64-byte slots at slotsOffset.
//
//   c_spsc_ring produce PATH COUNT BURST
//   c_spsc_ring consume PATH COUNT BURST     prints M descriptors/s
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct { uint64_t w[8]; } descriptor;  // 64 bytes
_Static_assert(sizeof(descriptor) == 64, "descriptor is 64 bytes");

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s produce|consume PATH COUNT BURST\n", argv[0]); return 2; }
    int fd = open(argv[2], O_RDWR);
    if (fd < 0) { perror("open"); return 1; }
    struct stat st;
    fstat(fd, &st);
    uint8_t *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    if (memcmp(base, "FABRICQR", 8) != 0 || *(uint32_t *)(base + 24) != 1) {
        fprintf(stderr, "not a FabricQueue SPSC region\n");
        return 1;
    }
    const uint64_t capacity = *(uint32_t *)(base + 36), mask = capacity - 1;
    uint8_t *control = base + *(uint64_t *)(base + 40);
    descriptor *slots = (descriptor *)(base + *(uint64_t *)(base + 48));
    _Atomic uint64_t *head = (_Atomic uint64_t *)(control + 0);
    _Atomic uint64_t *tail = (_Atomic uint64_t *)(control + 128);
    const uint64_t count = strtoull(argv[3], NULL, 10), burst = strtoull(argv[4], NULL, 10);

    if (strcmp(argv[1], "produce") == 0) {
        uint64_t h = atomic_load_explicit(head, memory_order_relaxed);
        uint64_t cached_tail = atomic_load_explicit(tail, memory_order_acquire);
        descriptor d = {{0, 1, 0, 0, 64, 0, 0, 0}};
        for (uint64_t sent = 0; sent < count;) {
            uint64_t want = count - sent < burst ? count - sent : burst;
            uint64_t free_slots = capacity - (h - cached_tail);
            if (free_slots < want) {
                cached_tail = atomic_load_explicit(tail, memory_order_acquire);
                free_slots = capacity - (h - cached_tail);
            }
            uint64_t n = free_slots < want ? free_slots : want;
            if (n == 0) { __builtin_ia32_pause(); continue; }
            for (uint64_t i = 0; i < n; i++) {
                d.w[0] = sent + i;
                slots[(h + i) & mask] = d;
            }
            h += n;
            sent += n;
            atomic_store_explicit(head, h, memory_order_release);
        }
        return 0;
    }
    uint64_t t = atomic_load_explicit(tail, memory_order_relaxed);
    uint64_t cached_head = t, expected = 0, start = 0;
    descriptor *out = malloc(sizeof(descriptor) * burst);
    for (uint64_t got = 0; got < count;) {
        uint64_t avail = cached_head - t;
        if (avail < burst) {
            cached_head = atomic_load_explicit(head, memory_order_acquire);
            avail = cached_head - t;
        }
        uint64_t n = avail < burst ? avail : burst;
        if (n == 0) { __builtin_ia32_pause(); continue; }
        if (got == 0) start = now_ns();
        for (uint64_t i = 0; i < n; i++) out[i] = slots[(t + i) & mask];
        for (uint64_t i = 0; i < n; i++)
            if (out[i].w[0] != expected + i) { fprintf(stderr, "out of order\n"); return 1; }
        expected += n;
        t += n;
        got += n;
        atomic_store_explicit(tail, t, memory_order_release);
    }
    printf("%f\n", (double)count / ((double)(now_ns() - start) / 1e9) / 1e6);
    return 0;
}
