/*
 * fabricqueue.h: the FabricQueue shared-memory ABI, version 2, for C peers.
 *
 * One header, no library: include it in a C11 program (gcc or clang, Linux)
 * to attach to a region a Swift FabricQueue process created, and post or
 * take 64-byte descriptors. Docs/RingLayout.md is the prose version of this
 * file; a Swift test checks that every offset here equals the Swift one.
 *
 * Memory ordering. Every atomic states its ordering and why, and matches the
 * Swift implementation exactly. x86 is strongly ordered and hides missing
 * barriers; RISC-V (RVWMO) and Arm are not, which is why none is implicit.
 */
#ifndef FABRICQUEUE_H
#define FABRICQUEUE_H

#include <errno.h>
#include <float.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/*
 * Strict C11 (-std=c11, no _GNU_SOURCE or _DEFAULT_SOURCE) hides the POSIX
 * and Linux declarations this header uses. Declaring them again is harmless
 * where the system headers did declare them (the types are the same as
 * glibc's and musl's), and the constants are Linux's own ABI values, the
 * same on every architecture this header supports. So the header compiles on
 * its own under -std=c11 -pedantic, and as gnu11.
 */
long syscall(long number, ...);
int clock_gettime(int clock, struct timespec *time);
#define FQ_CLOCK_MONOTONIC 1
#ifndef O_CLOEXEC
#define O_CLOEXEC 02000000
#endif
#ifndef F_OFD_SETLK
#define F_OFD_SETLK 37
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "The FabricQueue ABI is little-endian."
#endif

#define FQ_MAGIC 0x5251434952424146ULL /* "FABRICQR" */
#define FQ_ABI_VERSION 2u
#define FQ_HEADER_SIZE 128u
#define FQ_CONTROL_OFFSET 128u
#define FQ_CONTROL_SIZE 512u
#define FQ_SLOTS_OFFSET 640u
#define FQ_RING_SPSC 1u
#define FQ_RING_MPSC 2u
#define FQ_ELEMENT_DESCRIPTOR 1u
#define FQ_MAX_CAPACITY (1u << 24)

/* Region header, offset 0. `magic` is written last (release) by the creator. */
typedef struct fq_region_header {
    _Atomic uint64_t magic;    /*  0 */
    uint32_t abi_version;      /*  8 */
    uint32_t header_size;      /* 12 */
    uint64_t region_size;      /* 16 */
    uint32_t ring_kind;        /* 24 */
    uint32_t element_tag;      /* 28 */
    uint32_t slot_size;        /* 32 */
    uint32_t capacity;         /* 36 */
    uint64_t control_offset;   /* 40 */
    uint64_t slots_offset;     /* 48 */
    uint64_t sequences_offset; /* 56 */
    uint32_t creator_pid;      /* 64 */
    uint32_t flags;            /* 68 */
    uint64_t epoch;            /* 72 */
    uint64_t created_at;       /* 80 */
    uint64_t checksum;         /* 88: FNV-1a 64 over bytes 8..87 */
    uint8_t reserved[32];      /* 96 */
} fq_region_header;

/* Ring control block at control_offset: producer and consumer state 128 bytes apart. */
typedef struct fq_control {
    _Atomic uint64_t head;            /*   0: next position to write (MPSC: reservation counter) */
    uint8_t pad0[120];
    _Atomic uint64_t tail;            /* 128: next position to read */
    uint8_t pad1[120];
    _Atomic uint32_t data_waiters;    /* 256: sleepers waiting for data (bits 0-15 futex, 16-31 eventfd) */
    _Atomic uint32_t space_waiters;   /* 260: sleepers waiting for space */
    _Atomic uint32_t data_futex;      /* 264 */
    _Atomic uint32_t space_futex;     /* 268 */
    uint8_t pad2[112];
    _Atomic uint32_t producer_owner;  /* 384: SPSC producer role, pid or 0 */
    _Atomic uint32_t consumer_owner;  /* 388: consumer role, pid or 0 */
    uint8_t pad3[120];
} fq_control;

/* The 64-byte command descriptor (element tag 1). Offsets into the data region, never pointers. */
typedef struct fq_descriptor {
    uint64_t command_id;       /*  0 */
    uint32_t model_id;         /*  8 */
    uint16_t flags;            /* 12: meaning set by the daemon */
    uint8_t priority;          /* 14: higher is served first; 0 is the default level */
    uint8_t opcode;            /* 15: enum fq_opcode */
    uint64_t input_offset;     /* 16 */
    uint64_t output_offset;    /* 24 */
    uint32_t input_size;       /* 32 */
    uint32_t output_capacity;  /* 36 */
    uint64_t submit_timestamp; /* 40: CLOCK_MONOTONIC ns */
    uint32_t producer_id;      /* 48 */
    uint32_t deadline_us;      /* 52: deadline, microseconds after submit_timestamp (0: none) */
    uint64_t user_data;        /* 56 */
} fq_descriptor;
/* Descriptor opcodes. A cancel names the command (command_id, model_id) of the same session to drop
 * if still queued (it then completes FQ_CANCELLED); it gets no completion of its own. */
enum fq_opcode { FQ_OP_RUN = 0, FQ_OP_CANCEL = 1 };

/* The 64-byte completion record (element tag 2), posted by the daemon on a completion ring. */
#define FQ_ELEMENT_COMPLETION 2u
enum fq_completion_status { FQ_SUCCEEDED = 0, FQ_INVALID_DESCRIPTOR = 1, FQ_UNKNOWN_MODEL = 2,
                            FQ_HANDLER_FAILED = 3, FQ_CANCELLED = 4, FQ_EXPIRED = 5,
                            FQ_MODEL_QUEUE_FULL = 6 };
/* Completions arrive in any order: match them by command_id. For FQ_SUCCEEDED, detail is the size of
 * the batch the command ran in. */
typedef struct fq_completion {
    uint64_t command_id;              /*  0 */
    uint64_t user_data;               /*  8 */
    uint32_t status;                  /* 16: enum fq_completion_status */
    uint32_t output_size;             /* 20 */
    uint64_t submit_timestamp;        /* 24: CLOCK_MONOTONIC ns, all four */
    uint64_t pickup_timestamp;        /* 32 */
    uint64_t handler_start_timestamp; /* 40 */
    uint64_t handler_end_timestamp;   /* 48 */
    uint32_t producer_id;             /* 56 */
    uint32_t detail;                  /* 60 */
} fq_completion;
_Static_assert(sizeof(fq_completion) == 64, "completion is one cache line");

_Static_assert(sizeof(fq_region_header) == FQ_HEADER_SIZE, "header is 128 bytes");
_Static_assert(offsetof(fq_region_header, checksum) == 88, "checksum at 88");
_Static_assert(offsetof(fq_region_header, sequences_offset) == 56, "sequences offset at 56");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "lock-free atomics of plain size");
_Static_assert(sizeof(fq_control) == FQ_CONTROL_SIZE, "control block is 512 bytes");
_Static_assert(offsetof(fq_control, tail) == 128, "tail at 128");
_Static_assert(offsetof(fq_control, data_waiters) == 256, "doorbell line at 256");
_Static_assert(offsetof(fq_control, producer_owner) == 384, "admin line at 384");
_Static_assert(sizeof(fq_descriptor) == 64, "descriptor is one cache line");
_Static_assert(offsetof(fq_descriptor, user_data) == 56, "user_data at 56");

/* ---- attaching --------------------------------------------------------------- */

typedef enum fq_status {
    FQ_OK = 0,
    FQ_ERR_TRUNCATED,        /* file smaller than the header or than region_size */
    FQ_ERR_NOT_INITIALIZED,  /* magic 0: creator unfinished */
    FQ_ERR_BAD_MAGIC,
    FQ_ERR_VERSION,
    FQ_ERR_CHECKSUM,
    FQ_ERR_KIND,
    FQ_ERR_CAPACITY,
    FQ_ERR_SLOT_SIZE,
    FQ_ERR_LAYOUT,           /* an offset disagrees with the geometry */
    FQ_ERR_ELEMENT,
} fq_status;

/* A validated ring: pointers derived once from the header's offsets. */
typedef struct fq_ring {
    fq_region_header *header;
    fq_control *control;
    fq_descriptor *slots;
    _Atomic uint64_t *sequences; /* MPSC only */
    uint64_t capacity, mask;
    uint32_t kind;
} fq_ring;

static inline uint64_t fq_header_checksum(const fq_region_header *h) {
    const uint8_t *p = (const uint8_t *)h;
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (size_t i = 8; i < 88; i++) { hash ^= p[i]; hash *= 0x100000001b3ULL; }
    return hash;
}

/* Validates the mapping `base` of `file_size` bytes before anything else is read from it. */
static inline fq_status fq_attach_element(void *base, size_t file_size, fq_ring *ring, uint32_t element_tag) {
    if (file_size < FQ_HEADER_SIZE) return FQ_ERR_TRUNCATED;
    fq_region_header *h = (fq_region_header *)base;
    /* Acquire: pairs with the creator's release store of magic; the fields below are complete. */
    uint64_t magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    if (magic == 0) return FQ_ERR_NOT_INITIALIZED;
    if (magic != FQ_MAGIC) return FQ_ERR_BAD_MAGIC;
    if (h->abi_version != FQ_ABI_VERSION || h->header_size != FQ_HEADER_SIZE) return FQ_ERR_VERSION;
    if (h->checksum != fq_header_checksum(h)) return FQ_ERR_CHECKSUM;
    if (h->ring_kind != FQ_RING_SPSC && h->ring_kind != FQ_RING_MPSC) return FQ_ERR_KIND;
    uint64_t cap = h->capacity;
    if (cap < 2 || cap > FQ_MAX_CAPACITY || (cap & (cap - 1)) != 0) return FQ_ERR_CAPACITY;
    if (h->slot_size != sizeof(fq_descriptor)) return FQ_ERR_SLOT_SIZE;
    if (h->element_tag != element_tag) return FQ_ERR_ELEMENT;
    uint64_t slots_end = FQ_SLOTS_OFFSET + cap * sizeof(fq_descriptor);
    uint64_t sequences = h->ring_kind == FQ_RING_MPSC ? (slots_end + 63) & ~63ULL : 0;
    uint64_t required = h->ring_kind == FQ_RING_MPSC ? sequences + cap * 8 : slots_end;
    if (h->control_offset != FQ_CONTROL_OFFSET || h->slots_offset != FQ_SLOTS_OFFSET ||
        h->sequences_offset != sequences || h->region_size < required) return FQ_ERR_LAYOUT;
    if (h->region_size > file_size) return FQ_ERR_TRUNCATED;
    uint8_t *b = (uint8_t *)base;
    ring->header = h;
    ring->control = (fq_control *)(b + FQ_CONTROL_OFFSET);
    ring->slots = (fq_descriptor *)(b + FQ_SLOTS_OFFSET);
    ring->sequences = sequences ? (_Atomic uint64_t *)(b + sequences) : NULL;
    ring->capacity = cap;
    ring->mask = cap - 1;
    ring->kind = h->ring_kind;
    return FQ_OK;
}

/* A ring of descriptors (element tag 1). Completion rings (tag 2): fq_attach_element(..., FQ_ELEMENT_COMPLETION). */
static inline fq_status fq_attach(void *base, size_t file_size, fq_ring *ring) {
    return fq_attach_element(base, file_size, ring, FQ_ELEMENT_DESCRIPTOR);
}

/*
 * Exclusive roles (the SPSC producer, every ring's consumer). Who holds a role
 * is decided by an open-file-description lock (fcntl F_OFD_SETLK, a write lock
 * on one byte) on the region's file, at the role's byte below: the kernel
 * drops it when its holder closes it or exits, however it exits, so pid reuse
 * and pid namespaces cannot fool it. The owner word keeps the holder's pid for
 * information (fabricq inspect). The Swift endpoints do exactly this.
 */
/* Bit 63 of an MPSC sequence word, over `position + 1`: the producer gave the
 * slot up; a consumer steps over it instead of waiting. */
#define FQ_SEQUENCE_ABANDONED (1ULL << 63)

#define FQ_ROLE_LOCK_PRODUCER (1LL << 62)
#define FQ_ROLE_LOCK_CONSUMER ((1LL << 62) + 1)
#define FQ_ROLE_ERROR 0xFFFFFFFFu

/*
 * Claims the role whose lock byte is `role_byte` (FQ_ROLE_LOCK_*) of the region
 * behind `region_fd`, and records `pid` in the role's owner `word`. On success
 * returns 0 and stores in *lock_fd the descriptor that holds the lock: keep it
 * open for as long as you hold the role (fq_release_role closes it). When a
 * live process holds the role, returns the pid its owner word names (nonzero);
 * FQ_ROLE_ERROR with errno set when a system call failed.
 * Acq_rel exchange of the word: we see everything the previous owner
 * published before it let go, and our later writes follow the claim.
 */
static inline uint32_t fq_claim_role(int region_fd, long long role_byte, _Atomic uint32_t *word, uint32_t pid, int *lock_fd) {
    char path[40];
    snprintf(path, sizeof path, "/proc/self/fd/%d", region_fd);
    int own = open(path, O_RDWR | O_CLOEXEC); /* a new open file description: its own lock */
    if (own < 0) return FQ_ROLE_ERROR;
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = (off_t)role_byte;
    lock.l_len = 1;
    int r;
    do { r = fcntl(own, F_OFD_SETLK, &lock); } while (r != 0 && errno == EINTR);
    if (r != 0) {
        int saved = errno;
        close(own);
        errno = saved;
        if (saved == EAGAIN || saved == EACCES) {
            /* Acquire: read the holder's pid as it published it. */
            uint32_t holder = atomic_load_explicit(word, memory_order_acquire);
            return holder ? holder : FQ_ROLE_ERROR;
        }
        return FQ_ROLE_ERROR;
    }
    atomic_exchange_explicit(word, pid, memory_order_acq_rel);
    *lock_fd = own;
    return 0;
}

/* Releases a role claimed with fq_claim_role. Release: our last index store is
 * visible to the next owner; closing `lock_fd` drops the lock. */
static inline void fq_release_role(_Atomic uint32_t *word, uint32_t pid, int lock_fd) {
    atomic_compare_exchange_strong_explicit(word, &pid, 0, memory_order_release, memory_order_relaxed);
    close(lock_fd);
}

/* ---- producing --------------------------------------------------------------- */

/* Producer state private to one thread: the cached copy of the consumer's tail. */
typedef struct fq_producer {
    fq_ring ring;
    uint64_t head;        /* SPSC: our own head */
    uint64_t cached_tail;
} fq_producer;

static inline void fq_producer_init(fq_producer *p, const fq_ring *ring) {
    p->ring = *ring;
    /* Acquire: resume after everything a previous producer published. */
    p->head = atomic_load_explicit(&ring->control->head, memory_order_acquire);
    /* Acquire: the consumer's reads of slots up to tail are done. */
    p->cached_tail = atomic_load_explicit(&ring->control->tail, memory_order_acquire);
}

/* SPSC: appends one descriptor; false when full (or the consumer's tail is corrupt). */
static inline bool fq_spsc_enqueue(fq_producer *p, const fq_descriptor *d) {
    fq_ring *r = &p->ring;
    if (p->head - p->cached_tail >= r->capacity) {
        /* Acquire: pairs with the consumer's release of tail; its reads of the slot we reuse are finished. */
        uint64_t t = atomic_load_explicit(&r->control->tail, memory_order_acquire);
        if (p->head - t <= r->capacity) p->cached_tail = t; /* a contradicting tail is ignored: looks full */
        if (p->head - p->cached_tail >= r->capacity) return false;
    }
    r->slots[p->head & r->mask] = *d;
    p->head += 1;
    /* Release: the slot is visible before the head that announces it. */
    atomic_store_explicit(&r->control->head, p->head, memory_order_release);
    return true;
}

/* MPSC: claims a position with a CAS on head, writes, publishes via the slot's sequence word. */
static inline bool fq_mpsc_enqueue(fq_producer *p, const fq_descriptor *d) {
    fq_ring *r = &p->ring;
    /* Relaxed: a guess the CAS confirms; slots are ordered by the tail acquire and sequence release. */
    uint64_t pos = atomic_load_explicit(&r->control->head, memory_order_relaxed);
    int inconsistent = 0;
    for (;;) {
        uint64_t used = pos - p->cached_tail;
        if (used >= r->capacity) {
            /* Acquire: as in fq_spsc_enqueue. */
            p->cached_tail = atomic_load_explicit(&r->control->tail, memory_order_acquire);
            used = pos - p->cached_tail;
            if (used > r->capacity) { /* stale head snapshot, or a corrupt tail */
                if (++inconsistent > 64) return false;
                pos = atomic_load_explicit(&r->control->head, memory_order_relaxed); /* Relaxed: as above. */
                continue;
            }
            if (used == r->capacity) return false;
        }
        /* Relaxed CAS: it only hands out positions; exclusive ownership follows from its success. */
        if (atomic_compare_exchange_weak_explicit(&r->control->head, &pos, pos + 1,
                                                  memory_order_relaxed, memory_order_relaxed)) break;
    }
    r->slots[pos & r->mask] = *d;
    /* Release: the slot is visible to a consumer that acquires sequence == pos + 1. */
    atomic_store_explicit(&r->sequences[pos & r->mask], pos + 1, memory_order_release);
    return true;
}

/* ---- consuming --------------------------------------------------------------- */

typedef struct fq_consumer {
    fq_ring ring;
    uint64_t tail;
    uint64_t cached_head;
} fq_consumer;

static inline void fq_consumer_init(fq_consumer *c, const fq_ring *ring) {
    c->ring = *ring;
    /* Acquire: resume after a previous consumer's last release of tail. */
    c->tail = atomic_load_explicit(&ring->control->tail, memory_order_acquire);
    c->cached_head = c->tail;
}

/* Returns 1 with *out filled, 0 when empty (or not yet published), -1 on corrupt indices. */
static inline int fq_dequeue(fq_consumer *c, fq_descriptor *out) {
    fq_ring *r = &c->ring;
    if (r->kind == FQ_RING_SPSC) {
        if (c->cached_head == c->tail) {
            /* Acquire: pairs with the producer's release of head; the slot holds what it wrote. */
            uint64_t h = atomic_load_explicit(&r->control->head, memory_order_acquire);
            if (h - c->tail > r->capacity) return -1;
            c->cached_head = h;
            if (h == c->tail) return 0;
        }
    } else {
        /* Acquire: pairs with the producer's release of the sequence word. */
        if (atomic_load_explicit(&r->sequences[c->tail & r->mask], memory_order_acquire) != c->tail + 1) {
            /* Relaxed: only tells empty from in-flight. */
            uint64_t h = atomic_load_explicit(&r->control->head, memory_order_relaxed);
            return h - c->tail > r->capacity ? -1 : 0;
        }
    }
    *out = r->slots[c->tail & r->mask]; /* copy out before use: the producer cannot change our copy */
    c->tail += 1;
    /* Release: our read of the slot happens before a producer reuses it. */
    atomic_store_explicit(&r->control->tail, c->tail, memory_order_release);
    return 1;
}

/* ---- futex doorbell (Docs/Doorbells.md) -------------------------------------- */

/*
 * Wakes sleepers on one doorbell line (`waiters`/`word`: data_waiters/data_futex
 * or space_waiters/space_futex) after the release store that made their
 * condition true. Futex sleepers (bits 0-15 of the waiter word) get FUTEX_WAKE;
 * eventfd sleepers (bits 16-31) get a write of 1 to `eventfd` (pass -1 when the
 * ring has no eventfd). Returns whether a wake-up was sent.
 */
static inline bool fq_ring_line(_Atomic uint32_t *waiters, _Atomic uint32_t *word, int eventfd) {
    /* F2: orders our release of head/tail/sequence before the waiter-count load (store-buffering). */
    atomic_thread_fence(memory_order_seq_cst);
    /* Relaxed: ordered by the fence. */
    uint32_t sleeping = atomic_load_explicit(waiters, memory_order_relaxed);
    if (sleeping == 0) return false;
    /* Release: a waiter that sees the new word also sees the condition. */
    atomic_fetch_add_explicit(word, 1, memory_order_release);
    if (sleeping & 0xFFFFu) syscall(SYS_futex, word, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
    if ((sleeping >> 16) && eventfd >= 0) {
        uint64_t one = 1;
        ssize_t n = write(eventfd, &one, sizeof one);
        (void)n; /* EAGAIN: the counter is already non-zero, the sleeper wakes anyway */
    }
    return true;
}

/* Wakes a consumer sleeping for data, if any (futex only); call after enqueueing. */
static inline bool fq_ring_consumer(const fq_ring *r) {
    return fq_ring_line(&r->control->data_waiters, &r->control->data_futex, -1);
}

/* Wakes a consumer sleeping for data on the futex or on `eventfd` (a session's daemon doorbell). */
static inline bool fq_ring_consumer_fd(const fq_ring *r, int eventfd) {
    return fq_ring_line(&r->control->data_waiters, &r->control->data_futex, eventfd);
}

/* Wakes producers sleeping for space on the futex or on `eventfd`; call after dequeueing. */
static inline bool fq_ring_producers_fd(const fq_ring *r, int eventfd) {
    return fq_ring_line(&r->control->space_waiters, &r->control->space_futex, eventfd);
}

static inline uint64_t fq_now_ns(void) {
    struct timespec ts;
    clock_gettime(FQ_CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * Waits until the ring has space or `timeout_ns` passes; true when there is
 * space. Spins for `spin_ns` first, then sleeps as a futex sleeper (the
 * protocol of Docs/Doorbells.md), in slices of at most 2 ms: a Swift consumer
 * using `receive` rings us at once, and one that only polls with `dequeue`
 * (never rings) still cannot leave us asleep for the whole timeout.
 */
static inline bool fq_wait_for_space(fq_producer *p, int64_t spin_ns, int64_t timeout_ns) {
    fq_ring *r = &p->ring;
    const uint64_t start = fq_now_ns(), deadline = start + (uint64_t)timeout_ns;
    for (;;) {
        /* Relaxed head (MPSC: others' reservations), acquire tail as in fq_spsc_enqueue. */
        uint64_t h = r->kind == FQ_RING_SPSC ? p->head
                                             : atomic_load_explicit(&r->control->head, memory_order_relaxed);
        uint64_t t = atomic_load_explicit(&r->control->tail, memory_order_acquire);
        /* Signed: a head read before a tail that has since overtaken it means "retry", not "full". */
        if ((int64_t)(h - t) < (int64_t)r->capacity) return true;
        uint64_t now = fq_now_ns();
        if (now >= deadline) return false;
        if (now - start < (uint64_t)spin_ns) continue;
        /* Acquire: pairs with the notifier's release increment. */
        uint32_t ticket = atomic_load_explicit(&r->control->space_futex, memory_order_acquire);
        atomic_fetch_add_explicit(&r->control->space_waiters, 1, memory_order_relaxed); /* Relaxed: F1 orders it. */
        atomic_thread_fence(memory_order_seq_cst); /* F1 */
        h = r->kind == FQ_RING_SPSC ? p->head : atomic_load_explicit(&r->control->head, memory_order_relaxed);
        t = atomic_load_explicit(&r->control->tail, memory_order_acquire);
        if ((int64_t)(h - t) >= (int64_t)r->capacity) {
            uint64_t slice = deadline - now < 2000000 ? deadline - now : 2000000;
            struct timespec ts = { 0, (long)slice };
            syscall(SYS_futex, &r->control->space_futex, FUTEX_WAIT, ticket, &ts, NULL, 0);
        }
        atomic_fetch_sub_explicit(&r->control->space_waiters, 1, memory_order_relaxed); /* Relaxed: a hint. */
    }
}

/* ---- completion rings (SPSC, element tag 2) ---------------------------------- */

/* Returns 1 with *out filled, 0 when empty, -1 on corrupt indices. A completion ring is SPSC. */
static inline int fq_dequeue_completion(fq_consumer *c, fq_completion *out) {
    fq_ring *r = &c->ring;
    if (c->cached_head == c->tail) {
        /* Acquire: pairs with the daemon's release of head; the slot holds what it wrote. */
        uint64_t h = atomic_load_explicit(&r->control->head, memory_order_acquire);
        if (h - c->tail > r->capacity) return -1;
        c->cached_head = h;
        if (h == c->tail) return 0;
    }
    memcpy(out, (const fq_completion *)(const void *)r->slots + (c->tail & r->mask), sizeof *out);
    c->tail += 1;
    /* Release: our read of the slot happens before the daemon reuses it. */
    atomic_store_explicit(&r->control->tail, c->tail, memory_order_release);
    return 1;
}

/*
 * Waits until the consumer's ring has data or `timeout_ns` passes; true when
 * it has. Spins `spin_ns`, then sleeps as a futex sleeper on the data line
 * (the protocol of Docs/Doorbells.md) in slices of at most 2 ms.
 */
static inline bool fq_wait_for_data(fq_consumer *c, int64_t spin_ns, int64_t timeout_ns) {
    fq_ring *r = &c->ring;
    const uint64_t start = fq_now_ns(), deadline = start + (uint64_t)timeout_ns;
    for (;;) {
        /* Acquire: as in fq_dequeue_completion. */
        if (atomic_load_explicit(&r->control->head, memory_order_acquire) != c->tail) return true;
        uint64_t now = fq_now_ns();
        if (now >= deadline) return false;
        if (now - start < (uint64_t)spin_ns) continue;
        /* Acquire: pairs with the notifier's release increment. */
        uint32_t ticket = atomic_load_explicit(&r->control->data_futex, memory_order_acquire);
        atomic_fetch_add_explicit(&r->control->data_waiters, 1, memory_order_relaxed); /* Relaxed: F1 orders it. */
        atomic_thread_fence(memory_order_seq_cst); /* F1 */
        /* Acquire: as above. */
        if (atomic_load_explicit(&r->control->head, memory_order_acquire) == c->tail) {
            uint64_t slice = deadline - now < 2000000 ? deadline - now : 2000000;
            struct timespec ts = { 0, (long)slice };
            syscall(SYS_futex, &r->control->data_futex, FUTEX_WAIT, ticket, &ts, NULL, 0);
        }
        atomic_fetch_sub_explicit(&r->control->data_waiters, 1, memory_order_relaxed); /* Relaxed: a hint. */
    }
}

/* ---- data region (a session's buffer slots) ----------------------------------- */

#define FQ_DATA_MAGIC 0x3130415441445146ULL /* "FQDATA01" */
#define FQ_DATA_HEADER_PAGE 4096u

/* Header at offset 0 of a data region; slot i is at data_offset + i * slot_size. */
typedef struct fq_data_header {
    _Atomic uint64_t magic;  /*  0: written last (release) by the daemon */
    uint32_t abi_version;    /*  8 */
    uint32_t reserved0;      /* 12 */
    uint64_t data_offset;    /* 16: 4096 */
    uint64_t slot_size;      /* 24: multiple of 64, at most 1 GiB */
    uint32_t slot_count;     /* 32: 1 ... 2^20 */
    uint32_t reserved1;      /* 36 */
    uint64_t epoch;          /* 40 */
    uint64_t checksum;       /* 48: FNV-1a 64 over bytes 8..47 */
} fq_data_header;
_Static_assert(offsetof(fq_data_header, checksum) == 48, "data checksum at 48");

/* Validates a mapped data region of `file_size` bytes; 0 when good. */
static inline fq_status fq_attach_data(void *base, size_t file_size, fq_data_header **out) {
    if (file_size < FQ_DATA_HEADER_PAGE) return FQ_ERR_TRUNCATED;
    fq_data_header *h = (fq_data_header *)base;
    /* Acquire: pairs with the daemon's release store of magic; the fields below are complete. */
    uint64_t magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    if (magic == 0) return FQ_ERR_NOT_INITIALIZED;
    if (magic != FQ_DATA_MAGIC) return FQ_ERR_BAD_MAGIC;
    if (h->abi_version != FQ_ABI_VERSION) return FQ_ERR_VERSION;
    const uint8_t *p = (const uint8_t *)base;
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (size_t i = 8; i < 48; i++) { hash ^= p[i]; hash *= 0x100000001b3ULL; }
    if (h->checksum != hash) return FQ_ERR_CHECKSUM;
    if (h->data_offset != FQ_DATA_HEADER_PAGE) return FQ_ERR_LAYOUT;
    if (h->slot_size < 64 || h->slot_size > (1ULL << 30) || h->slot_size % 64) return FQ_ERR_SLOT_SIZE;
    if (h->slot_count < 1 || h->slot_count > (1u << 20)) return FQ_ERR_CAPACITY;
    if (h->data_offset + h->slot_size * h->slot_count > file_size) return FQ_ERR_TRUNCATED;
    *out = h;
    return FQ_OK;
}

/* ---- session protocol, version 2 (Docs/Architecture.md, "Sessions") ------------ */

#define FQ_SESSION_VERSION 2u
#define FQ_HELLO_MAGIC 0x314F4C4C45485146ULL /* "FQHELLO1" */
#define FQ_REPLY_MAGIC 0x31594C5045525146ULL /* "FQREPLY1" */
#define FQ_HELLO_SIZE 32u
#define FQ_REPLY_SIZE 64u
/* Tags of the descriptors a grant carries (one SCM_RIGHTS message each, 1 tag byte). */
enum fq_session_tag { FQ_SESSION_TAG_SUBMISSION_RING = 1, FQ_SESSION_TAG_COMPLETION_RING = 2,
                      FQ_SESSION_TAG_DATA_REGION = 3, FQ_SESSION_TAG_DAEMON_DOORBELL = 4,
                      FQ_SESSION_TAG_SESSION_DOORBELL = 5 };
/* Reply status: 0 accepted, else why not. */
enum fq_session_rejection { FQ_REJECT_VERSION = 1, FQ_REJECT_NOT_ALLOWED = 2, FQ_REJECT_MALFORMED = 3,
                            FQ_REJECT_BUSY = 4 };

/* Hello purpose: a session (rings, region, doorbells), or a read-only
 * query answered with payload_size bytes of JSON after the reply (no
 * descriptors; the daemon then closes the connection): the daemon's
 * telemetry, or the models it serves (id, name, input type and shape,
 * output size, batch limits). */
enum fq_hello_purpose { FQ_HELLO_SESSION = 0, FQ_HELLO_TELEMETRY = 1, FQ_HELLO_MODELS = 2 };

/* Tensor element types (ABI codes; model discovery writes their short names). */
enum fq_tensor_type { FQ_TENSOR_F32 = 1, FQ_TENSOR_F16 = 2, FQ_TENSOR_BF16 = 3, FQ_TENSOR_I8 = 4, FQ_TENSOR_U8 = 5 };

/* Typed inputs. With FQ_FLAG_TENSOR_HEADER in a descriptor's flags, its
 * input starts with this 64-byte header; the elements follow at data_offset
 * (a multiple of 64; 64 when fq_tensor_header_init wrote it). Float types carry scale 0 and
 * zero point 0; quantized ones a finite scale > 0 and a zero point in the
 * type's range (real = scale * (q - zero_point)). The daemon refuses a bad
 * header or one its model does not take with FQ_INVALID_TENSOR_*. */
#define FQ_FLAG_TENSOR_HEADER 0x8000u
#define FQ_TENSOR_MAGIC 0x31545146u /* "FQT1" */
#define FQ_TENSOR_HEADER_SIZE 64u
typedef struct fq_tensor_header {
    uint32_t magic;          /*  0: FQ_TENSOR_MAGIC */
    uint8_t element_type;    /*  4: enum fq_tensor_type */
    uint8_t rank;            /*  5: 1..4 */
    uint16_t reserved0;      /*  6 */
    uint32_t dims[4];        /*  8: outermost first; unused ones 0 */
    float scale;             /* 24 */
    int32_t zero_point;      /* 28 */
    uint32_t data_offset;    /* 32: from the start of the input, a multiple of 64, >= 64 */
    uint32_t data_bytes;     /* 36: product of dims x element width */
    uint8_t reserved1[24];   /* 40 */
} fq_tensor_header;
_Static_assert(sizeof(fq_tensor_header) == FQ_TENSOR_HEADER_SIZE, "tensor header is 64 bytes");

/* Invalid-descriptor details (fq_completion.detail) of tensor refusals. */
enum fq_invalid_tensor { FQ_INVALID_TENSOR_HEADER = 6, FQ_INVALID_TENSOR_QUANTIZATION = 7, FQ_INVALID_TENSOR_SIZE = 8,
                         FQ_INVALID_TENSOR_TYPE = 9, FQ_INVALID_TENSOR_SHAPE = 10 };

static inline uint32_t fq_tensor_type_width(uint8_t type) {
    switch (type) {
    case FQ_TENSOR_F32: return 4;
    case FQ_TENSOR_F16: case FQ_TENSOR_BF16: return 2;
    case FQ_TENSOR_I8: case FQ_TENSOR_U8: return 1;
    default: return 0;
    }
}

/* Fills *h for a tensor of `rank` dims (each >= 1) whose elements follow the
 * header. Returns the bytes the whole input takes (64 + elements), or 0 when
 * the type, rank, quantization or size (over 4 GiB) is not allowed. */
static inline uint64_t fq_tensor_header_init(fq_tensor_header *h, uint8_t type, uint8_t rank, const uint32_t *dims,
                                             float scale, int32_t zero_point) {
    memset(h, 0, sizeof *h);
    uint64_t bytes = fq_tensor_type_width(type);
    if (bytes == 0 || rank < 1 || rank > 4) return 0;
    bool quantized = type == FQ_TENSOR_I8 || type == FQ_TENSOR_U8;
    if (quantized) {
        int32_t lo = type == FQ_TENSOR_I8 ? -128 : 0, hi = type == FQ_TENSOR_I8 ? 127 : 255;
        if (!(scale > 0 && scale <= FLT_MAX) || zero_point < lo || zero_point > hi) return 0;
    } else if (scale != 0 || zero_point != 0) {
        return 0;
    } else {
        scale = 0.0f; /* +0, never -0: the daemon checks the bits */
    }
    for (uint8_t k = 0; k < rank; k++) {
        if (dims[k] == 0) return 0;
        bytes *= dims[k];
        if (bytes > UINT32_MAX) return 0;
        h->dims[k] = dims[k];
    }
    h->magic = FQ_TENSOR_MAGIC;
    h->element_type = type;
    h->rank = rank;
    h->scale = scale;
    h->zero_point = zero_point;
    h->data_offset = FQ_TENSOR_HEADER_SIZE;
    h->data_bytes = (uint32_t)bytes;
    return FQ_TENSOR_HEADER_SIZE + bytes;
}

/* What the model takes, written into the output of a command refused with
 * FQ_INVALID_TENSOR_TYPE or FQ_INVALID_TENSOR_SHAPE (output_size 64). */
#define FQ_TENSOR_MISMATCH_MAGIC 0x4D545146u /* "FQTM" */
typedef struct fq_tensor_mismatch {
    uint32_t magic;           /*  0: FQ_TENSOR_MISMATCH_MAGIC */
    uint32_t accepted_types;  /*  4: bit n for type code n */
    uint8_t expected_rank;    /*  8 */
    uint8_t received_type;    /*  9 */
    uint8_t received_rank;    /* 10 */
    uint8_t reserved0;        /* 11 */
    uint32_t expected_dims[4];/* 12 */
    uint32_t received_dims[4];/* 28 */
    uint8_t reserved1[20];    /* 44 */
} fq_tensor_mismatch;
_Static_assert(sizeof(fq_tensor_mismatch) == 64, "tensor mismatch record is 64 bytes");

typedef struct fq_hello {
    uint64_t magic;            /*  0: FQ_HELLO_MAGIC */
    uint32_t protocol_version; /*  8 */
    uint32_t purpose;          /* 12: enum fq_hello_purpose */
    int32_t client_pid;        /* 16 */
    uint8_t reserved1[12];     /* 20 */
} fq_hello;
_Static_assert(sizeof(fq_hello) == FQ_HELLO_SIZE, "hello is 32 bytes");

typedef struct fq_reply {
    uint64_t magic;            /*  0: FQ_REPLY_MAGIC */
    uint32_t protocol_version; /*  8: the daemon's */
    uint32_t status;           /* 12: 0 or enum fq_session_rejection */
    uint64_t session_id;       /* 16 */
    uint32_t descriptor_count; /* 24 */
    uint32_t payload_size;     /* 28: bytes that follow a telemetry reply */
    char reason[32];           /* 32: UTF-8, NUL-padded */
} fq_reply;
_Static_assert(sizeof(fq_reply) == FQ_REPLY_SIZE, "reply is 64 bytes");

#endif /* FABRICQUEUE_H */
