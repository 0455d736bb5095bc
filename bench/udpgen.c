/* udpgen: the bench's line-rate small-frame generator. Sends valid UDP/IPv4 frames
 * (198.18.0.0/15 addresses, IPv4 header checksum, UDP checksum 0) of one fixed size out of an
 * interface through an AF_PACKET PACKET_TX_RING (TPACKET_V2) with PACKET_QDISC_BYPASS: frames are
 * written once into the mmap'ed ring and the kernel hands whole batches to the driver per send()
 * call, with no per-frame syscall, copy or qdisc. `--mmsg` uses sendmmsg() on a plain packet
 * socket instead (one copy per frame), for kernels without TX_RING.
 *
 * Frame size counts the 4-byte FCS as RFC 2544 does: `--size 64` hands 60 bytes to the kernel
 * (UDP payload 18), `--size 1500` 1496. `--flows N` cycles the UDP source port over N values so
 * multi-queue receivers spread the load (macvtap picks a queue by flow hash).
 * Bounded: stops after --count frames or --seconds, whichever comes first. Prints one line:
 *   sent=N seconds=S pps=R stalls=K   (K: send() calls refused for want of room, i.e. the first
 *   hop or the socket's send buffer was full: the path after the generator set the pace)
 * Usage: udpgen --dev IF --dst-mac MAC [--src 198.18.0.1] [--dst 198.18.0.2] [--size 64]
 *               [--count N] [--seconds S] [--flows N] [--port 9] [--mmsg]
 *        udpgen --rx-count IF     (prints the interface's rx_packets; the receiver-side count)
 *        udpgen --sink PORT [--seconds S]   (receiver: a bound UDP socket that is never read, so the
 *               receiving kernel drops the load cheaply at the full socket instead of answering
 *               every frame with an ICMP port-unreachable route lookup; exits after S s or SIGTERM) */
#define _GNU_SOURCE
#include "udpframe.h"
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING_BLOCK (1 << 16)
#define RING_FRAME 2048
#define RING_BLOCKS 64 /* 2048 frames in flight */
#define BATCH 256

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) { fprintf(stderr, "udpgen: %s: %s\n", what, strerror(errno)); exit(1); }

static int rx_count(const char *ifname) {
    char path[256];
    snprintf(path, sizeof path, "/sys/class/net/%s/statistics/rx_packets", ifname);
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    unsigned long long n;
    if (fscanf(f, "%llu", &n) != 1) die(path);
    printf("%llu\n", n);
    return 0;
}

static int sink(int port, double seconds) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket(UDP)");
    int small = 1; /* the kernel rounds it up to its minimum */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) die("bind sink");
    printf("sink ready\n");
    fflush(stdout);
    if (seconds <= 0 || seconds > 3600) seconds = 600;
    struct timespec ts = {(time_t)seconds, 0};
    nanosleep(&ts, NULL);
    return 0;
}

int main(int argc, char **argv) {
    const char *dev = NULL, *dst_mac_s = NULL, *src_s = "198.18.0.1", *dst_s = "198.18.0.2";
    long size = 64, flows = 1, dport = 9, use_mmsg = 0;
    unsigned long long count = 10000000ULL;
    double seconds = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--rx-count") && v) return rx_count(v);
        if (!strcmp(a, "--sink") && v) {
            double secs = i + 3 < argc && !strcmp(argv[i + 2], "--seconds") ? atof(argv[i + 3]) : 600;
            return sink(atoi(v), secs);
        }
        else if (!strcmp(a, "--mmsg")) { use_mmsg = 1; continue; }
        else if (!v) { fprintf(stderr, "udpgen: %s needs a value\n", a); return 2; }
        else if (!strcmp(a, "--dev")) dev = v;
        else if (!strcmp(a, "--dst-mac")) dst_mac_s = v;
        else if (!strcmp(a, "--src")) src_s = v;
        else if (!strcmp(a, "--dst")) dst_s = v;
        else if (!strcmp(a, "--size")) size = atol(v);
        else if (!strcmp(a, "--count")) count = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--flows")) flows = atol(v);
        else if (!strcmp(a, "--port")) dport = atol(v);
        else { fprintf(stderr, "udpgen: unknown option %s\n", a); return 2; }
        i++;
    }
    if (!dev || !dst_mac_s) { fprintf(stderr, "usage: udpgen --dev IF --dst-mac MAC [--size 64|512|1500] [--count N] [--seconds S] [--flows N] [--mmsg]\n"); return 2; }
    if (size < 64 || size > 1518) { fprintf(stderr, "udpgen: --size must be 64..1518 (frame incl. FCS)\n"); return 2; }
    if (flows < 1) flows = 1;
    if (seconds <= 0 || seconds > 600) seconds = 3; /* always bounded in time */
    size_t len = size - 4;

    uint8_t dst_mac[6], src_mac[6];
    if (sscanf(dst_mac_s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst_mac[0], &dst_mac[1], &dst_mac[2], &dst_mac[3], &dst_mac[4], &dst_mac[5]) != 6) {
        fprintf(stderr, "udpgen: bad MAC %s\n", dst_mac_s); return 2;
    }
    struct in_addr src, dst;
    if (inet_pton(AF_INET, src_s, &src) != 1 || inet_pton(AF_INET, dst_s, &dst) != 1) { fprintf(stderr, "udpgen: bad address\n"); return 2; }

    int fd = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: send only, never receives */
    if (fd < 0) die("socket(AF_PACKET)");
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", dev);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) die(dev);
    memcpy(src_mac, ifr.ifr_hwaddr.sa_data, 6);
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(dev), .sll_halen = 6};
    memcpy(ll.sll_addr, dst_mac, 6);
    if (bind(fd, (struct sockaddr *)&ll, sizeof ll) != 0) die("bind");
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) != 0) die("PACKET_QDISC_BYPASS");
    /* Frames waiting in the next device's queue (a macvtap or tap nobody has read yet) stay
     * charged to this socket's send buffer; with the 208 KiB default a slow reader throttles
     * the generator after a few hundred frames. 16 MiB (root: SO_SNDBUFFORCE) lets the queue
     * after the first hop fill and overflow in the kernel, as a NIC's would. */
    int sndbuf = 16 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

    unsigned long long sent = 0, stalls = 0; /* stalls: send() refused for want of room (EAGAIN/ENOBUFS) */
    double t0 = now(), deadline = t0 + seconds;

    if (!use_mmsg) {
        int v = TPACKET_V2;
        if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) != 0) die("PACKET_VERSION");
        struct tpacket_req req = {.tp_block_size = RING_BLOCK, .tp_block_nr = RING_BLOCKS, .tp_frame_size = RING_FRAME,
                                  .tp_frame_nr = RING_BLOCKS * (RING_BLOCK / RING_FRAME)};
        if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) != 0) die("PACKET_TX_RING");
        size_t ring_len = (size_t)req.tp_block_size * req.tp_block_nr;
        uint8_t *ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (ring == MAP_FAILED) die("mmap TX ring");
        unsigned nframes = req.tp_frame_nr;
        size_t data_off = TPACKET_ALIGN(sizeof(struct tpacket2_hdr));
        for (unsigned i = 0; i < nframes; i++) /* every slot pre-built once: the loop only flips status words */
            build_udp_frame(ring + (size_t)i * RING_FRAME + data_off, len, src_mac, dst_mac, src, dst,
                        (uint16_t)(1024 + i % flows), (uint16_t)dport);
        /* Slots are requested in ring order and the kernel sends them in that order, so the
         * oldest requested slot seen AVAILABLE again has been taken by the device. A device
         * that cannot take a frame (queue full: tap, veth backlog) makes the kernel stop and
         * retry that frame on the next send(): the generator then runs at the rate the first
         * hop accepts, and `sent` counts only frames the device accepted. */
        unsigned head = 0, tail = 0, inflight = 0;
        unsigned long long requested = 0;
        for (;;) {
            while (inflight && ((struct tpacket2_hdr *)(ring + (size_t)tail * RING_FRAME))->tp_status == TP_STATUS_AVAILABLE) {
                tail = (tail + 1) % nframes; inflight--; sent++;
            }
            if (now() >= deadline || sent >= count) break;
            for (unsigned b = 0; b < BATCH && inflight < nframes && requested < count; b++) {
                struct tpacket2_hdr *h = (void *)(ring + (size_t)head * RING_FRAME);
                h->tp_len = len;
                __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
                head = (head + 1) % nframes; inflight++; requested++;
            }
            if (send(fd, NULL, 0, MSG_DONTWAIT) < 0) {
                if (errno == ENOBUFS || errno == EAGAIN) {
                    /* The first hop is full: sleep briefly instead of spinning, so the CPU
                     * goes to whoever drains it (on 2 cores that is often the forwarder). */
                    stalls++;
                    struct timespec nap = {0, 20000};
                    nanosleep(&nap, NULL);
                } else if (errno != EINTR) die("send (TX ring)");
            }
        }
        /* Frames still requested at the deadline: flushed (they are counted when taken, up to 0.2 s). */
        for (double end = now() + 0.2; inflight && now() < end;) {
            send(fd, NULL, 0, MSG_DONTWAIT);
            while (inflight && ((struct tpacket2_hdr *)(ring + (size_t)tail * RING_FRAME))->tp_status == TP_STATUS_AVAILABLE) {
                tail = (tail + 1) % nframes; inflight--; sent++;
            }
        }
    } else {
        enum { N = 64 };
        static uint8_t bufs[N][1518];
        struct mmsghdr msgs[N];
        struct iovec iov[N];
        memset(msgs, 0, sizeof msgs);
        for (int i = 0; i < N; i++) {
            build_udp_frame(bufs[i], len, src_mac, dst_mac, src, dst, (uint16_t)(1024 + i % flows), (uint16_t)dport);
            iov[i] = (struct iovec){bufs[i], len};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &ll, .msg_namelen = sizeof ll, .msg_iov = &iov[i], .msg_iovlen = 1};
        }
        while (sent < count && now() < deadline) {
            unsigned n = count - sent < N ? (unsigned)(count - sent) : N;
            int r = sendmmsg(fd, msgs, n, 0);
            if (r < 0) {
                if (errno == ENOBUFS || errno == EAGAIN) { stalls++; struct timespec nap = {0, 20000}; nanosleep(&nap, NULL); continue; }
                if (errno == EINTR) continue;
                die("sendmmsg");
            }
            sent += r;
        }
    }
    double dt = now() - t0;
    printf("sent=%llu seconds=%.3f pps=%.0f stalls=%llu\n", sent, dt, sent / dt, stalls);
    close(fd);
    return 0;
}
