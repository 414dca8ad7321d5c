/*
 * A controller in plain C that opens a session with a FabricQueue daemon
 * (session mode): connects to its Unix socket, runs the version-1 handshake,
 * receives the session's rings, data region and doorbells over SCM_RIGHTS,
 * then runs COUNT round trips through the daemon's echo model (model 1):
 * fill an input slot, post a descriptor, wait for the completion, check that
 * the output slot holds the input back. Builds natively and, statically, for
 * riscv64 (see Docs/Porting.md).
 *
 *   c_session SOCKET COUNT [PAYLOAD_BYTES [TYPE]]
 *
 * With TYPE (f32, f16, bf16, i8 or u8) every command is typed: its input
 * starts with an fq_tensor_header (fq_tensor_header_init: a rank-1 tensor of
 * PAYLOAD_BYTES / width elements; i8 and u8 with a scale and zero point) and
 * carries FQ_FLAG_TENSOR_HEADER. First it posts one header that lies about
 * its size and checks that the daemon refuses it (FQ_INVALID_TENSOR_SIZE).
 *
 * Doorbells: after posting it rings the daemon's eventfd if the daemon sleeps
 * (fq_ring_consumer_fd); it waits for completions by spinning 20 us, then
 * sleeping on the completion ring's futex, which the daemon rings, in 20 ms
 * slices: after an empty slice it checks the control socket, so a dead
 * daemon is noticed within one slice (exit status 1, "daemon gone").
 */
#define _GNU_SOURCE
#include "fabricqueue.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static int fail(const char *what) { fprintf(stderr, "c_session: %s\n", what); return 1; }

/* Reads exactly n bytes (the socket is blocking; the daemon answers within its handshake timeout). */
static int read_exactly(int fd, void *buffer, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, (char *)buffer + got, n - got, 0);
        if (r <= 0) { if (r < 0 && errno == EINTR) continue; return -1; }
        got += (size_t)r;
    }
    return 0;
}

/*
 * Receives one SCM_RIGHTS message: a one-byte tag and exactly one descriptor.
 * Anything else (no descriptor, several, a truncated control buffer) is
 * refused, and every descriptor the kernel installed for it is closed first,
 * so a hostile daemon cannot leak descriptors into this process.
 */
static int receive_fd(int socket_fd, uint8_t *tag) {
    union { char buffer[CMSG_SPACE(8 * sizeof(int))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof control);
    struct iovec io = { .iov_base = tag, .iov_len = 1 };
    struct msghdr msg = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof control.buffer };
    ssize_t n;
    do { n = recvmsg(socket_fd, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    int received[8], count = 0;
    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) continue;
        size_t fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < fds && count < 8; i++) memcpy(&received[count++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if (n == 1 && count == 1 && !(msg.msg_flags & MSG_CTRUNC)) return received[0];
    for (int i = 0; i < count; i++) close(received[i]);
    return -1;
}

/* Whether the daemon has gone: its end of the control socket hung up (the
 * kernel closes it when the daemon exits, however it exits). Never blocks. */
static bool daemon_gone(int socket_fd) {
    struct pollfd p = { .fd = socket_fd, .events = POLLIN | POLLRDHUP, .revents = 0 };
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) return true;
    char byte;
    return recv(socket_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Maps a granted descriptor whole; returns its size in *size. */
static void *map_fd(int fd, size_t *size) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return NULL;
    void *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return NULL;
    *size = (size_t)st.st_size;
    return base;
}

/* The element type named on the command line, or 0. */
static uint8_t tensor_type(const char *name) {
    static const struct { const char *name; uint8_t type; } types[] = {
        { "f32", FQ_TENSOR_F32 }, { "f16", FQ_TENSOR_F16 }, { "bf16", FQ_TENSOR_BF16 }, { "i8", FQ_TENSOR_I8 }, { "u8", FQ_TENSOR_U8 },
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) if (strcmp(name, types[i].name) == 0) return types[i].type;
    return 0;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s SOCKET COUNT [PAYLOAD_BYTES [f32|f16|bf16|i8|u8]]\n", argv[0]); return 2; }
    const uint64_t count = strtoull(argv[2], NULL, 10);
    size_t payload = argc > 3 ? strtoul(argv[3], NULL, 10) : 256;

    /* A typed command: the header, then the elements (the payload rounded down to whole elements). */
    fq_tensor_header tensor;
    memset(&tensor, 0, sizeof tensor);
    uint16_t flags = 0;
    if (argc > 4) {
        const uint8_t type = tensor_type(argv[4]);
        if (type == 0) return fail("unknown element type (f32, f16, bf16, i8, u8)");
        const bool quantized = type == FQ_TENSOR_I8 || type == FQ_TENSOR_U8;
        if (payload / fq_tensor_type_width(type) > UINT32_MAX) return fail("no tensor of that many elements");
        const uint32_t elements = (uint32_t)(payload / fq_tensor_type_width(type));
        const uint64_t bytes = fq_tensor_header_init(&tensor, type, 1, &elements, quantized ? 0.05f : 0.0f,
                                                     type == FQ_TENSOR_U8 ? 128 : quantized ? -3 : 0);
        if (bytes == 0) return fail("no tensor of that many elements");
        payload = (size_t)bytes;
        flags = FQ_FLAG_TENSOR_HEADER;
    }

    /* 1. Connect and say hello. */
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    if (sock < 0 || strlen(argv[1]) >= sizeof address.sun_path) return fail("socket");
    strcpy(address.sun_path, argv[1]);
    if (connect(sock, (struct sockaddr *)&address, sizeof address) != 0) { perror(argv[1]); return 1; }
    fq_hello hello = { .magic = FQ_HELLO_MAGIC, .protocol_version = FQ_SESSION_VERSION, .client_pid = getpid() };
    if (send(sock, &hello, sizeof hello, MSG_NOSIGNAL) != (ssize_t)sizeof hello) return fail("send hello");

    /* 2. The daemon's verdict, then the tagged descriptors. */
    fq_reply reply;
    if (read_exactly(sock, &reply, sizeof reply) != 0) return fail("no reply");
    if (reply.magic != FQ_REPLY_MAGIC) return fail("reply is not FabricQueue's");
    if (reply.status != 0) {
        fprintf(stderr, "c_session: session rejected (status %u, daemon version %u): %.32s\n",
                reply.status, reply.protocol_version, reply.reason);
        return 1;
    }
    int fds[6] = { -1, -1, -1, -1, -1, -1 };
    if (reply.descriptor_count > 16) return fail("too many descriptors announced");
    for (uint32_t i = 0; i < reply.descriptor_count; i++) {
        uint8_t tag = 0;
        int fd = receive_fd(sock, &tag);
        if (fd < 0) return fail("receiving a descriptor");
        if (tag >= 1 && tag <= 5 && fds[tag] < 0) fds[tag] = fd; else close(fd);
    }
    for (int tag = 1; tag <= 5; tag++) if (fds[tag] < 0) return fail("grant lacks a descriptor");

    /* 3. Map and validate everything before use. */
    size_t sub_size, comp_size, data_size;
    void *sub_base = map_fd(fds[FQ_SESSION_TAG_SUBMISSION_RING], &sub_size);
    void *comp_base = map_fd(fds[FQ_SESSION_TAG_COMPLETION_RING], &comp_size);
    uint8_t *data = map_fd(fds[FQ_SESSION_TAG_DATA_REGION], &data_size);
    if (!sub_base || !comp_base || !data) return fail("mapping a granted region");
    fq_ring submissions, completions;
    fq_data_header *dh;
    if (fq_attach(sub_base, sub_size, &submissions) != FQ_OK || submissions.kind != FQ_RING_SPSC) return fail("bad submission ring");
    if (fq_attach_element(comp_base, comp_size, &completions, FQ_ELEMENT_COMPLETION) != FQ_OK) return fail("bad completion ring");
    if (fq_attach_data(data, data_size, &dh) != FQ_OK) return fail("bad data region");
    if (dh->slot_count < 2 || payload > dh->slot_size) return fail("payload does not fit a slot");
    const uint32_t me = (uint32_t)getpid();
    int producer_lock = -1, consumer_lock = -1;
    if (fq_claim_role(fds[FQ_SESSION_TAG_SUBMISSION_RING], FQ_ROLE_LOCK_PRODUCER, &submissions.control->producer_owner, me,
                      &producer_lock))
        return fail("submission producer role taken");
    if (fq_claim_role(fds[FQ_SESSION_TAG_COMPLETION_RING], FQ_ROLE_LOCK_CONSUMER, &completions.control->consumer_owner, me,
                      &consumer_lock))
        return fail("completion consumer role taken");
    fq_producer producer;
    fq_consumer consumer;
    fq_producer_init(&producer, &submissions);
    fq_consumer_init(&consumer, &completions);
    const int daemon_doorbell = fds[FQ_SESSION_TAG_DAEMON_DOORBELL];
    const uint64_t in_offset = dh->data_offset, out_offset = dh->data_offset + dh->slot_size;

    /* 4. A typed header the daemon must refuse: it claims one element more than the input holds. */
    if (flags) {
        fq_tensor_header liar = tensor;
        liar.data_bytes += fq_tensor_type_width(liar.element_type);
        memcpy(data + in_offset, &liar, sizeof liar);
        fq_descriptor d = { .command_id = UINT64_MAX, .model_id = 1, .flags = flags, .input_offset = in_offset,
                            .input_size = (uint32_t)payload, .output_offset = out_offset, .output_capacity = (uint32_t)payload,
                            .submit_timestamp = fq_now_ns(), .producer_id = me };
        while (!fq_spsc_enqueue(&producer, &d)) {
            if (!fq_wait_for_space(&producer, 20000, 10000000000LL)) return fail("submission ring full for 10 s");
        }
        fq_ring_consumer_fd(&submissions, daemon_doorbell);
        fq_completion c;
        int got;
        const uint64_t since = fq_now_ns();
        while ((got = fq_dequeue_completion(&consumer, &c)) == 0) {
            if (!fq_wait_for_data(&consumer, 20000, 20000000LL) && (daemon_gone(sock) || fq_now_ns() - since > 10000000000ULL))
                return fail("no answer to the lying tensor header");
        }
        if (got < 0) return fail("completion ring indices corrupt");
        fq_ring_producers_fd(&completions, daemon_doorbell);
        if (c.command_id != UINT64_MAX || c.status != FQ_INVALID_DESCRIPTOR || c.detail != FQ_INVALID_TENSOR_SIZE) {
            fprintf(stderr, "c_session: the lying header got status %u detail %u\n", c.status, c.detail);
            return 1;
        }
    }

    /* 5. Round trips. */
    uint64_t *latency = malloc(sizeof(uint64_t) * (count ? count : 1));
    if (!latency) return fail("out of memory");
    uint64_t wakeups = 0;
    for (uint64_t seq = 0; seq < count; seq++) {
        size_t k = 0;
        if (flags) { memcpy(data + in_offset, &tensor, sizeof tensor); k = sizeof tensor; }
        for (; k < payload; k++) data[in_offset + k] = (uint8_t)(seq * 131 + k);
        memset(data + out_offset, 0, payload);
        fq_descriptor d = { .command_id = seq + 1, .model_id = 1, .flags = flags, .input_offset = in_offset, .input_size = (uint32_t)payload,
                            .output_offset = out_offset, .output_capacity = (uint32_t)payload,
                            .submit_timestamp = fq_now_ns(), .producer_id = me, .user_data = seq };
        while (!fq_spsc_enqueue(&producer, &d)) {
            if (!fq_wait_for_space(&producer, 20000, 10000000000LL)) return fail("submission ring full for 10 s");
        }
        wakeups += fq_ring_consumer_fd(&submissions, daemon_doorbell);
        fq_completion c;
        int got;
        const uint64_t waiting_since = fq_now_ns();
        while ((got = fq_dequeue_completion(&consumer, &c)) == 0) {
            /* Wait in 20 ms slices; after an empty one, ask the socket whether the daemon is still there. */
            if (!fq_wait_for_data(&consumer, 20000, 20000000LL)) {
                if (daemon_gone(sock)) return fail("daemon gone (its control socket closed)");
                if (fq_now_ns() - waiting_since > 10000000000ULL) {
                    fprintf(stderr, "c_session: no completion for command %lu within 10 s\n", (unsigned long)(seq + 1));
                    return 1;
                }
            }
        }
        if (got < 0) return fail("completion ring indices corrupt");
        fq_ring_producers_fd(&completions, daemon_doorbell);
        latency[seq] = fq_now_ns() - d.submit_timestamp;
        if (c.command_id != seq + 1 || c.user_data != seq || c.status != FQ_SUCCEEDED || c.output_size != payload) {
            fprintf(stderr, "c_session: command %lu: id %lu status %u detail %u size %u\n", (unsigned long)(seq + 1),
                    (unsigned long)c.command_id, c.status, c.detail, c.output_size);
            return 1;
        }
        if (memcmp(data + in_offset, data + out_offset, payload) != 0) {
            fprintf(stderr, "c_session: command %lu: output differs from input\n", (unsigned long)(seq + 1));
            return 1;
        }
    }
    qsort(latency, count, sizeof *latency, compare_u64);
    fq_release_role(&submissions.control->producer_owner, me, producer_lock);
    fq_release_role(&completions.control->consumer_owner, me, consumer_lock);
    printf("c_session: %lu %sround trips ok (session %lu), p50 %lu ns, p99 %lu ns, %lu daemon wake-ups\n",
           (unsigned long)count, flags ? "typed " : "", (unsigned long)reply.session_id,
           (unsigned long)(count ? latency[count / 2] : 0), (unsigned long)(count ? latency[count * 99 / 100] : 0),
           (unsigned long)wakeups);
    return 0;
}
