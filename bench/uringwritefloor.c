/* uringwritefloor: the ceiling of any guest->macvtap forwarder on this machine. It writes frames
 * into one macvtap as fast as it can and does nothing else: no reads, no switch, no ring of a
 * guest to walk. The frames come from memory, as a vhost-user port's come from guest memory, so
 * what it measures is the kernel's write path into the macvtap (tap_get_user, the lower device's
 * transmit, the receiving host's delivery in softirq) under tapbridge's io_uring set-up:
 *   - the queue opened as tapbridge opens it (bench/tapdev.h): O_NONBLOCK, 12-byte vnet header,
 *     offloads probed down from csum+tso4+tso6+tso-ecn+uso4+uso6, TUNSETSNDBUF(INT_MAX);
 *   - one io_uring, SQ 1024 / CQ 8192, SINGLE_ISSUER|DEFER_TASKRUN|SUBMIT_ALL, falling back to
 *     COOP_TASKRUN|SUBMIT_ALL, then to no flags; ring fd registered; the queue a fixed file
 *     (as bench/uringfloor.c);
 *   - NSLOT frames built once into one pre-faulted slab (vnet header all zero: no offload asked,
 *     a plain frame; then a valid UDP/IPv4 frame, 198.18.0.1 -> 198.18.0.2 port 9, source port
 *     cycling over 8 flows, IPv4 header checksum, UDP checksum 0, as bench/udpgen.c builds them);
 *   - per frame one IORING_OP_WRITEV of two iovecs (vnet header, frame), prepared once per slot,
 *     as a tapbridge worker writes a frame; BATCH of them per io_uring_enter, which also waits
 *     for (takes) their completions: tap writes complete inside the submit.
 * Frame size counts the 4-byte FCS as RFC 2544 does (--size 64 writes 60 bytes of frame).
 * Bounded: stops after --count frames, --seconds (default 60; SIGALRM a second later as a
 * backstop) or SIGTERM/SIGINT.
 * Usage: uringwritefloor [--seconds N] [--count N] [--size BYTES] [--batch N] MACVTAP DST_MAC
 * Prints one line when set up ("uringwritefloor: writing ...") and at exit to stderr:
 *   uringwritefloor: wrote=N seconds=S pps=R errors=E   (E: writes the kernel refused) */
#include "tapdev.h"
#include "uringsetup.h"
#include "udpframe.h"
#include <arpa/inet.h>
#include <liburing.h>
#include <net/ethernet.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

enum { NSLOT = 256, SLOTSZ = 2048, FLOWS = 8, MAX_BATCH = 256, SQ_ENTRIES = 1024, CQ_ENTRIES = 8192 };

static struct io_uring ring;
static volatile sig_atomic_t stopping;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One frame of `len` bytes (FCS excluded) from 02:00:00:00:00:01 to dst_mac, flow = source port. */
static void build_frame(uint8_t *out, size_t len, const uint8_t *dst_mac, uint16_t sport) {
    static const uint8_t src_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };
    struct in_addr src, dst;
    inet_pton(AF_INET, "198.18.0.1", &src);
    inet_pton(AF_INET, "198.18.0.2", &dst);
    build_udp_frame(out, len, src_mac, dst_mac, src, dst, sport, 9);
}

static int usage(void) {
    fprintf(stderr, "usage: uringwritefloor [--seconds N] [--count N] [--size BYTES] [--batch N] MACVTAP DST_MAC\n");
    return 2;
}

int main(int argc, char **argv) {
    double seconds = 60;
    unsigned long long count = 1ULL << 40;
    long size = 64, batch = 64;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--count")) count = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--size")) size = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atol(argv[i + 1]);
        else return usage();
    }
    if (argc - i != 2) return usage();
    if (size < 64 || size > 1518 || batch < 1 || batch > MAX_BATCH || seconds <= 0 || seconds > 3600) {
        fprintf(stderr, "uringwritefloor: --size 64..1518, --batch 1..%d, --seconds (0, 3600]\n", MAX_BATCH);
        return 2;
    }
    const char *dev = argv[i];
    uint8_t dst_mac[6];
    if (sscanf(argv[i + 1], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst_mac[0], &dst_mac[1], &dst_mac[2],
               &dst_mac[3], &dst_mac[4], &dst_mac[5]) != 6) {
        fprintf(stderr, "uringwritefloor: %s: not a MAC address\n", argv[i + 1]);
        return 2;
    }
    unsigned offl;
    int fd = tapdev_open("uringwritefloor", dev, &offl);

    const char *mode = uring_setup_like_tapbridge(&ring, SQ_ENTRIES, CQ_ENTRIES, "uringwritefloor");
    io_uring_register_ring_fd(&ring);   /* an optimisation only, as in tapbridge */
    int r = io_uring_register_files(&ring, &fd, 1);
    if (r < 0) { fprintf(stderr, "uringwritefloor: register files: %s\n", strerror(-r)); return 1; }

    /* The "guest memory": each slot a zero vnet header then the frame, with its two iovecs. */
    uint8_t *slab = mmap(NULL, (size_t)NSLOT * SLOTSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (slab == MAP_FAILED) { perror("uringwritefloor: mmap"); return 1; }
    static struct iovec iov[NSLOT][2];
    size_t frame_len = (size_t)size - 4;
    for (unsigned s = 0; s < NSLOT; s++) {
        uint8_t *b = slab + (size_t)s * SLOTSZ;
        build_frame(b + TAPDEV_VNET_HDR, frame_len, dst_mac, (uint16_t)(1024 + s % FLOWS));
        iov[s][0] = (struct iovec){ b, TAPDEV_VNET_HDR };
        iov[s][1] = (struct iovec){ b + TAPDEV_VNET_HDR, frame_len };
    }

    struct sigaction sa = { .sa_handler = on_signal };   /* no SA_RESTART: a wait ends with EINTR */
    sigaction(SIGTERM, &sa, NULL); sigaction(SIGINT, &sa, NULL); sigaction(SIGALRM, &sa, NULL);
    alarm((unsigned)seconds + 1);   /* a backstop: a wait that never returns still ends */
    fprintf(stderr, "uringwritefloor: writing %ld-byte frames to %s (dst %s), io_uring %s, %ld writev per enter, offloads 0x%x\n",
            size, dev, argv[i + 1], mode, batch, offl);

    unsigned long long wrote = 0, errors = 0, submitted = 0;
    int last_error = 0;
    unsigned slot = 0;
    double t0 = now(), deadline = t0 + seconds;
    struct io_uring_cqe *cqes[MAX_BATCH];
    while (!stopping && submitted < count) {
        unsigned n = 0;
        for (; n < (unsigned)batch && submitted < count; n++, submitted++) {
            struct io_uring_sqe *s = io_uring_get_sqe(&ring);
            if (!s) break;
            io_uring_prep_writev(s, 0, iov[slot], 2, 0);
            s->flags |= IOSQE_FIXED_FILE;
            io_uring_sqe_set_data64(s, slot);
            slot = (slot + 1) % NSLOT;
        }
        r = io_uring_submit_and_wait(&ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            fprintf(stderr, "uringwritefloor: io_uring_enter: %s\n", strerror(-r)); return 1;
        }
        for (;;) {
            unsigned got = io_uring_peek_batch_cqe(&ring, cqes, MAX_BATCH);
            for (unsigned k = 0; k < got; k++) {
                if (cqes[k]->res > 0) wrote++;
                else { errors++; last_error = -cqes[k]->res; }
            }
            if (got) io_uring_cq_advance(&ring, got);
            if (got < MAX_BATCH) break;
        }
        if ((submitted & 0x3fff) < (unsigned long long)batch && now() >= deadline) break;   /* a clock read per ~16k frames */
    }
    double secs = now() - t0;
    fprintf(stderr, "uringwritefloor: wrote=%llu seconds=%.3f pps=%.0f errors=%llu%s%s\n", wrote, secs,
            secs > 0 ? (double)wrote / secs : 0.0, errors, errors ? " last=" : "", errors ? strerror(last_error) : "");
    io_uring_queue_exit(&ring);
    return 0;
}
