/*
 * A controller in plain C: attaches to a FabricQueue region by path (named
 * region mode) and posts checked descriptors, exactly those `fabricq produce`
 * would post (sequence number, producer id, checksum), so that a Swift
 * consumer such as `fabricq consume` verifies every byte it receives.
 * Builds natively and, statically, for riscv64 (see Docs/Porting.md).
 *
 *   c_controller PATH COUNT PRODUCER_ID
 *
 * Rings the consumer's futex doorbell when it sleeps. When the ring is full
 * it spins 50 us, then sleeps on the space doorbell (up to 10 s, then exits 1).
 */
#define _GNU_SOURCE
#include "fabricqueue.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* splitmix64's finalizer, as FabricDiagnostics.CheckedTraffic.mix. */
static uint64_t mix(uint64_t x) {
    uint64_t z = x + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t checksum(const fq_descriptor *d) {
    uint64_t h = mix(d->command_id);
    h = mix(h ^ ((uint64_t)d->model_id << 32 | (uint64_t)d->flags << 16 | (uint64_t)d->priority << 8 | d->opcode));
    h = mix(h ^ d->input_offset);
    h = mix(h ^ d->output_offset);
    h = mix(h ^ ((uint64_t)d->input_size << 32 | d->output_capacity));
    h = mix(h ^ d->submit_timestamp);
    h = mix(h ^ ((uint64_t)d->producer_id << 32 | d->deadline_us));
    return h;
}

/* The descriptor `fabricq produce --producer-id P` sends as its `seq`th. */
static fq_descriptor checked(uint32_t producer, uint64_t seq) {
    fq_descriptor d = {
        .command_id = seq,
        .model_id = (uint32_t)mix(seq ^ 0x5eed),
        .flags = (uint16_t)(seq * 2654435761ULL),
        .priority = (uint8_t)(seq >> 3),
        .opcode = 0,
        .input_offset = seq * 64,
        .output_offset = ~seq,
        .input_size = (uint32_t)(seq | 1),
        .output_capacity = producer + 7,
        .submit_timestamp = 0,
        .producer_id = producer,
        .deadline_us = (uint32_t)(seq >> 1),
    };
    d.user_data = checksum(&d);
    return d;
}

static const char *status_text(fq_status s) {
    static const char *text[] = { "ok", "truncated", "not initialized", "bad magic", "unsupported version",
                                  "header checksum mismatch", "unknown ring kind", "invalid capacity",
                                  "slot size mismatch", "layout mismatch", "element type mismatch" };
    return (unsigned)s < sizeof text / sizeof text[0] ? text[s] : "unknown";
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s PATH COUNT PRODUCER_ID\n", argv[0]); return 2; }
    const uint64_t count = strtoull(argv[2], NULL, 10);
    const uint32_t producer = (uint32_t)strtoul(argv[3], NULL, 10);
    int fd = open(argv[1], O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) { perror(argv[1]); return 1; }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { fprintf(stderr, "%s: not a regular file\n", argv[1]); return 1; }
    void *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    fq_ring ring;
    fq_status status = fq_attach(base, (size_t)st.st_size, &ring);
    if (status != FQ_OK) { fprintf(stderr, "%s: %s\n", argv[1], status_text(status)); return 1; }
    if (ring.kind == FQ_RING_SPSC) {
        /* Claim the producer role as the Swift endpoints do (0 -> pid); acq_rel like theirs. */
        uint32_t expected = 0;
        if (!atomic_compare_exchange_strong_explicit(&ring.control->producer_owner, &expected, (uint32_t)getpid(),
                                                     memory_order_acq_rel, memory_order_acquire)) {
            fprintf(stderr, "%s: producer role held by pid %u\n", argv[1], expected);
            return 1;
        }
    }
    fq_producer p;
    fq_producer_init(&p, &ring);
    uint64_t rings = 0;
    for (uint64_t seq = 0; seq < count; seq++) {
        fq_descriptor d = checked(producer, seq);
        while (!(ring.kind == FQ_RING_SPSC ? fq_spsc_enqueue(&p, &d) : fq_mpsc_enqueue(&p, &d))) {
            if (!fq_wait_for_space(&p, 50000 /* spin 50 us */, 10000000000LL)) {
                fprintf(stderr, "ring full for 10 s at %lu\n", (unsigned long)seq);
                return 1;
            }
        }
        rings += fq_ring_consumer(&ring);
    }
    if (ring.kind == FQ_RING_SPSC) {
        uint32_t me = (uint32_t)getpid();
        /* Release: our last head store is visible to whoever claims the role next. */
        atomic_compare_exchange_strong_explicit(&ring.control->producer_owner, &me, 0, memory_order_release, memory_order_relaxed);
    }
    printf("c_controller: posted %lu descriptors as producer %u (%lu wake-ups)\n",
           (unsigned long)count, producer, (unsigned long)rings);
    return 0;
}
