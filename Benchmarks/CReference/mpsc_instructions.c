// One thread moves COUNT descriptors through DPDK's rte_ring in MP/SC mode,
// BURST at a time: enqueue a burst (multi-producer path: CAS on the head,
// then the in-order tail update), dequeue it (single consumer). Nothing
// spins or waits, so `valgrind --tool=callgrind` counts the same
// instructions every run: the per-descriptor cost of the ring operations,
// to set beside FabricQueue's (`fabricq-test-helper mpsc-instructions`).
// Docs/Benchmarks.md has the commands.
//
//   cc -O2 $(pkg-config --cflags libdpdk) -o mpsc_instructions mpsc_instructions.c -lrte_ring -lrte_eal
//   mpsc_instructions COUNT BURST
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CAPACITY 1024u
typedef struct { uint64_t w[8]; } descriptor;

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s COUNT BURST\n", argv[0]); return 2; }
    const uint64_t count = strtoull(argv[1], NULL, 10);
    const unsigned burst = (unsigned)strtoul(argv[2], NULL, 10);
    if (burst == 0 || burst > 64) { fprintf(stderr, "burst 1...64\n"); return 2; }
    ssize_t size = rte_ring_get_memsize_elem(sizeof(descriptor), CAPACITY);
    struct rte_ring *ring = aligned_alloc(128, ((size_t)size + 127) & ~(size_t)127);
    if (!ring || rte_ring_init(ring, "mpsc-count", CAPACITY, RING_F_SC_DEQ) != 0) { fprintf(stderr, "rte_ring_init failed\n"); return 1; }
    descriptor in[64], out[64];
    uint64_t moved = 0, check = 0;
    while (moved < count) {
        for (unsigned i = 0; i < burst; i++) { in[i].w[0] = moved + i; in[i].w[1] = 1; }
        unsigned n = rte_ring_mp_enqueue_burst_elem(ring, in, sizeof(descriptor), burst, NULL);
        unsigned m = rte_ring_sc_dequeue_burst_elem(ring, out, sizeof(descriptor), n, NULL);
        for (unsigned i = 0; i < m; i++) check += out[i].w[0];
        moved += m;
    }
    printf("moved %llu (check %llu)\n", (unsigned long long)moved, (unsigned long long)check);
    return 0;
}
