// Boost.Lockfree spsc_queue (compile-time capacity 1024) constructed in place
// in a MAP_SHARED mapping, producer and consumer in two processes: the Boost
// reference for FabricQueue's SPSC ring.
//   boost_spsc BURST COUNT   -> M descriptors/s
#include <boost/lockfree/spsc_queue.hpp>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <new>

struct descriptor { uint64_t w[8]; };
static_assert(sizeof(descriptor) == 64, "64-byte descriptors");
using queue = boost::lockfree::spsc_queue<descriptor, boost::lockfree::capacity<1024>>;

static uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}
static void pin(int cpu) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); sched_setaffinity(0, sizeof s, &s); }

int main(int argc, char **argv) {
    if (argc != 3) { std::fprintf(stderr, "usage: %s BURST COUNT\n", argv[0]); return 2; }
    const uint64_t burst = std::strtoull(argv[1], nullptr, 10), count = std::strtoull(argv[2], nullptr, 10);
    if (burst < 1 || burst > 64) return 2;
    void *mem = mmap(nullptr, sizeof(queue), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) { std::perror("mmap"); return 1; }
    queue *q = new (mem) queue();
    if (fork() == 0) {
        pin(0);
        descriptor batch[64] = {};
        for (uint64_t sent = 0; sent < count;) {
            uint64_t n = count - sent < burst ? count - sent : burst;
            for (uint64_t i = 0; i < n; i++) { batch[i].w[0] = sent + i; batch[i].w[4] = 64; }
            for (uint64_t done = 0; done < n;) {
                size_t k = q->push(batch + done, n - done);
                if (k == 0) __builtin_ia32_pause();
                done += k;
            }
            sent += n;
        }
        _exit(0);
    }
    pin(1);
    descriptor out[64];
    uint64_t got = 0, start = 0;
    while (got < count) {
        size_t n = q->pop(out, burst);
        if (n == 0) { __builtin_ia32_pause(); continue; }
        if (got == 0) start = now_ns();
        for (size_t i = 0; i < n; i++) if (out[i].w[0] != got + i) { std::fprintf(stderr, "order broken\n"); return 1; }
        got += n;
    }
    wait(nullptr);
    std::printf("%f\n", double(count) / (double(now_ns() - start) / 1e9) / 1e6);
    return 0;
}
