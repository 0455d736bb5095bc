/* uringfloor: the io_uring floor for forwarding between two macvtaps. It does at the kernel
 * boundary what one tapbridge worker does (Sources/Datapath/Worker.swift, Ring/Ring.swift,
 * Ring/BufferRing.swift, Tap/MacvtapDevice.swift) and nothing else: no switch, no queues, no
 * per-port counters. What the kernel sees is the same:
 *   - queues opened O_NONBLOCK with a 12-byte vnet header, offloads probed down from
 *     csum+tso4+tso6+tso-ecn+uso4+uso6, TUNSETSNDBUF(INT_MAX) (bench/tapdev.h);
 *   - one io_uring, SQ 1024 / CQ 8192, SINGLE_ISSUER|DEFER_TASKRUN|SUBMIT_ALL, falling back to
 *     COOP_TASKRUN|SUBMIT_ALL, then to no flags; ring fd registered; both queues as fixed files;
 *   - a provided-buffer ring (group 0) of 512 buffers of 64 KiB + 512, one pre-faulted slab;
 *   - a multishot read (opcode 49) on each queue, re-armed when it ends (after the buffers
 *     are handed back if it ended for want of buffers);
 *   - each frame read is written to the other queue by IORING_OP_WRITEV, vnet header and
 *     frame as two iovecs, straight from the buffer it was read into (no copy);
 *   - completions taken in chunks of 64; after a full chunk the freed buffers are published
 *     and the writes it produced submitted at once, and their completions (tap writes
 *     complete inside the submit) taken right away, ahead of the reads queued before them;
 *     otherwise the writes go with the next io_uring_enter, which also waits;
 *   - a buffer goes back to the ring when its write completes;
 *   - an eventfd read always armed (tapbridge's control channel; here: stop on a signal).
 * Usage: uringfloor [--seconds N] MACVTAP_A MACVTAP_B   (until SIGTERM/SIGINT or N seconds)
 * At exit it prints frames forwarded per direction and failed writes to stderr. */
#include "tapdev.h"
#include "uringsetup.h"
#include <liburing.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#ifndef IORING_OP_READ_MULTISHOT
#define IORING_OP_READ_MULTISHOT 49   /* kernel 6.7; liburing 2.5's io_uring_prep_read_multishot */
#endif

enum { NBUF = 512, BUFSZ = 65536 + 512, CHUNK = 64, SQ_ENTRIES = 1024, CQ_ENTRIES = 8192 };
enum { OP_READ = 1, OP_WRITE, OP_STOP, OP_TAKEN };   /* user_data: op << 32 | buffer << 8 | port */

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static unsigned char *slab;
static unsigned pending_adds;
static struct iovec iov[NBUF][2];   /* per buffer: it is written exactly once, to the other port */
static int armed[2], starved[2];
static int stop_fd;
static uint64_t stop_value;
static volatile sig_atomic_t stopping;
static unsigned long long forwarded[2], write_errors, rearms, enobufs;

static void on_signal(int sig) {
    (void)sig;
    uint64_t one = 1;
    stopping = 1;
    if (write(stop_fd, &one, sizeof one) < 0) { /* the flag alone ends the loop at the next wake */ }
}

static inline uint64_t ud(unsigned op, unsigned buf, unsigned port) { return (uint64_t)op << 32 | buf << 8 | port; }

static struct io_uring_sqe *sqe(void) {
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    if (!s) { io_uring_submit(&ring); s = io_uring_get_sqe(&ring); }
    if (!s) { fprintf(stderr, "uringfloor: no submission queue entry\n"); exit(1); }
    return s;
}

static void give(unsigned bid) {
    io_uring_buf_ring_add(br, slab + (size_t)bid * BUFSZ, BUFSZ, bid, io_uring_buf_ring_mask(NBUF), pending_adds++);
}
static void publish(void) {
    if (pending_adds) { io_uring_buf_ring_advance(br, pending_adds); pending_adds = 0; }
}

static void arm_read(unsigned port) {
    struct io_uring_sqe *s = sqe();
    io_uring_prep_rw(IORING_OP_READ_MULTISHOT, s, port, NULL, 0, 0);
    s->buf_group = 0;
    s->flags |= IOSQE_BUFFER_SELECT | IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(s, ud(OP_READ, 0, port));
    armed[port] = 1;
}

static void arm_stop(void) {
    struct io_uring_sqe *s = sqe();
    io_uring_prep_read(s, stop_fd, &stop_value, sizeof stop_value, 0);
    io_uring_sqe_set_data64(s, ud(OP_STOP, 0, 0));
}

static void handle_write(const struct io_uring_cqe *c) {
    if (c->res < 0) write_errors++;
    give((unsigned)(c->user_data >> 8) & 0xffff);
}

static void handle(const struct io_uring_cqe *c) {
    unsigned op = (unsigned)(c->user_data >> 32), port = (unsigned)c->user_data & 1;
    if (op == OP_WRITE) { handle_write(c); return; }
    if (op == OP_STOP) { stopping = 1; return; }
    if (op != OP_READ) return;   /* OP_TAKEN: a write already handled right after its submit */
    if (c->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = c->flags >> IORING_CQE_BUFFER_SHIFT;
        if (c->res > TAPDEV_VNET_HDR) {
            unsigned char *b = slab + (size_t)bid * BUFSZ;
            iov[bid][0] = (struct iovec){ b, TAPDEV_VNET_HDR };
            iov[bid][1] = (struct iovec){ b + TAPDEV_VNET_HDR, (size_t)c->res - TAPDEV_VNET_HDR };
            struct io_uring_sqe *s = sqe();
            io_uring_prep_writev(s, port ^ 1, iov[bid], 2, 0);
            s->flags |= IOSQE_FIXED_FILE;
            io_uring_sqe_set_data64(s, ud(OP_WRITE, bid, port ^ 1));
            forwarded[port]++;
        } else {
            give(bid);
        }
    }
    if (c->res <= 0) {
        armed[port] = 0;
        if (c->res == -ENOBUFS) { enobufs++; starved[port] = 1; }
        else if (c->res == -EAGAIN || c->res == -EINTR) starved[port] = 1;
        else if (c->res != -ECANCELED) { fprintf(stderr, "uringfloor: read on port %u: %s\n", port, strerror(-c->res)); exit(1); }
        return;
    }
    if (!(c->flags & IORING_CQE_F_MORE)) { armed[port] = 0; rearms++; arm_read(port); }
}

/* Submits the writes a full chunk produced and takes their completions at once: they were
 * posted at the tail, behind read completions still waiting in the queue. Each one taken is
 * marked OP_TAKEN in place so the in-order pass skips it. */
static void flush_writes(void) {
    if (!io_uring_sq_ready(&ring)) return;
    unsigned mark = io_uring_smp_load_acquire(ring.cq.ktail);
    io_uring_submit(&ring);
    unsigned tail = io_uring_smp_load_acquire(ring.cq.ktail), head = *ring.cq.khead;
    unsigned pos = (mark - head) <= (tail - head) ? mark : head;
    for (; pos != tail; pos++) {
        struct io_uring_cqe *c = &ring.cq.cqes[pos & ring.cq.ring_mask];
        if ((c->user_data >> 32) == OP_WRITE) { handle_write(c); c->user_data = ud(OP_TAKEN, 0, 0); }
    }
}

int main(int argc, char **argv) {
    int i = 1, seconds = 0;
    if (argc > 2 && strcmp(argv[1], "--seconds") == 0) { seconds = atoi(argv[2]); i += 2; }
    if (argc - i != 2) { fprintf(stderr, "usage: uringfloor [--seconds N] MACVTAP_A MACVTAP_B\n"); return 2; }
    unsigned offl[2];
    int fds[2] = { tapdev_open("uringfloor", argv[i], &offl[0]), tapdev_open("uringfloor", argv[i + 1], &offl[1]) };

    const char *mode = uring_setup_like_tapbridge(&ring, SQ_ENTRIES, CQ_ENTRIES, "uringfloor");
    io_uring_register_ring_fd(&ring);   /* an optimisation only, as in tapbridge */
    int r = io_uring_register_files(&ring, fds, 2);
    if (r < 0) { fprintf(stderr, "uringfloor: register files: %s\n", strerror(-r)); return 1; }
    slab = mmap(NULL, (size_t)NBUF * BUFSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    br = mmap(NULL, NBUF * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (slab == MAP_FAILED || br == MAP_FAILED) { perror("uringfloor: mmap"); return 1; }
    struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)br, .ring_entries = NBUF, .bgid = 0 };
    if ((r = io_uring_register_buf_ring(&ring, &reg, 0)) < 0) { fprintf(stderr, "uringfloor: register buffer ring: %s\n", strerror(-r)); return 1; }
    io_uring_buf_ring_init(br);
    for (unsigned b = 0; b < NBUF; b++) give(b);
    publish();

    stop_fd = eventfd(0, EFD_CLOEXEC);
    struct sigaction sa = { .sa_handler = on_signal };   /* no SA_RESTART: a wait ends with EINTR */
    sigaction(SIGTERM, &sa, NULL); sigaction(SIGINT, &sa, NULL); sigaction(SIGALRM, &sa, NULL);
    if (seconds > 0) alarm((unsigned)seconds);
    arm_stop();
    arm_read(0); arm_read(1);
    fprintf(stderr, "uringfloor: %s <-> %s, io_uring %s, multishot read + %d x %d B provided buffers, offloads 0x%x/0x%x\n",
            argv[i], argv[i + 1], mode, NBUF, BUFSZ, offl[0], offl[1]);

    struct io_uring_cqe *cqes[CHUNK];
    while (!stopping) {
        r = io_uring_submit_and_wait(&ring, 1);
        if (r < 0 && r != -EINTR && r != -ETIME && r != -EAGAIN && r != -EBUSY) {
            fprintf(stderr, "uringfloor: io_uring_enter: %s\n", strerror(-r)); return 1;
        }
        for (;;) {
            unsigned n = io_uring_peek_batch_cqe(&ring, cqes, CHUNK);
            for (unsigned k = 0; k < n; k++) handle(cqes[k]);
            if (n) io_uring_cq_advance(&ring, n);
            if (n < CHUNK) break;
            publish();        /* a long burst: buffers back to the reads, writes out now */
            flush_writes();
        }
        publish();
        for (unsigned p = 0; p < 2; p++)
            if (starved[p] && !armed[p]) { starved[p] = 0; rearms++; arm_read(p); }
    }
    fprintf(stderr, "uringfloor: forwarded %s->%s %llu, %s->%s %llu, write errors %llu, read re-arms %llu (out of buffers %llu)\n",
            argv[i], argv[i + 1], forwarded[0], argv[i + 1], argv[i], forwarded[1], write_errors, rearms, enobufs);
    io_uring_queue_exit(&ring);
    return 0;
}
