/*
 * The reference for remote round trips: a 64-byte ping-pong over plain TCP
 * (TCP_NODELAY), what UCX's TCP transport and remote sessions are measured
 * against in Docs/Benchmarks.md. Both ends block in read(2), or with
 * "spin" busy-poll with non-blocking reads (recv with MSG_DONTWAIT, again
 * on EAGAIN), the reference for a busy-polling controller and daemon.
 *
 *   tcp_pingpong server HOST PORT [spin]          echo every 64-byte message back, one client
 *   tcp_pingpong client HOST PORT COUNT [spin]    COUNT round trips; prints p50/p99 ns
 */
#include <errno.h>
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MESSAGE = 64 };
static int spin;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int exactly(int fd, void *buffer, size_t n, int writing) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = writing ? write(fd, (char *)buffer + done, n - done)
                    : spin  ? recv(fd, (char *)buffer + done, n - done, MSG_DONTWAIT)
                            : read(fd, (char *)buffer + done, n - done);
        if (r < 0 && spin && !writing && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (r <= 0) return -1;
        done += (size_t)r;
    }
    return 0;
}

static int compare(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s server HOST PORT | client HOST PORT COUNT\n", argv[0]); return 2; }
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3])) };
    if (inet_pton(AF_INET, argv[2], &address.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", argv[2]); return 2; }
    int one = 1;
    spin = strcmp(argv[argc - 1], "spin") == 0;
    char message[MESSAGE];
    memset(message, 0x5a, sizeof message);
    if (strcmp(argv[1], "server") == 0) {
        int listener = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 1) != 0) { perror("bind"); return 1; }
        printf("listening\n");
        fflush(stdout);
        int peer = accept(listener, NULL, NULL);
        if (peer < 0) { perror("accept"); return 1; }
        setsockopt(peer, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        while (exactly(peer, message, MESSAGE, 0) == 0 && exactly(peer, message, MESSAGE, 1) == 0) {}
        return 0;
    }
    const long count = argc > 4 && strcmp(argv[4], "spin") != 0 ? atol(argv[4]) : 10000;
    if (count < 1) return 2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) { perror("connect"); return 1; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint64_t *latency = malloc(sizeof(uint64_t) * (size_t)count);
    if (!latency) return 1;
    for (long i = 0; i < count; i++) {
        uint64_t start = now_ns();
        if (exactly(fd, message, MESSAGE, 1) != 0 || exactly(fd, message, MESSAGE, 0) != 0) { fprintf(stderr, "peer gone\n"); return 1; }
        latency[i] = now_ns() - start;
    }
    qsort(latency, (size_t)count, sizeof *latency, compare);
    printf("ok %ld p50=%lu p99=%lu\n", count, (unsigned long)latency[count / 2], (unsigned long)latency[count * 99 / 100]);
    return 0;
}
