/* epollfwd: the classic userspace switch loop (vde_switch, Open vSwitch's netdev datapath)
 * between two macvtaps: one thread, one epoll set (level-triggered EPOLLIN on both queues),
 * non-blocking read() drained until EAGAIN, one write() per frame straight from the buffer it
 * was read into. The queues are opened as tapbridge opens them (bench/tapdev.h): 12-byte vnet
 * header, offloads probed down from csum+tso4+tso6+tso-ecn+uso4+uso6, TUNSETSNDBUF(INT_MAX),
 * so GSO super-frames cross unsegmented. While both queues are readable the drain alternates
 * between them, one frame each, so a flood one way does not starve the other.
 * A write refused with EAGAIN/ENOBUFS drops the frame (counted), as a full switch port would.
 * Usage: epollfwd [--seconds N] MACVTAP_A MACVTAP_B   (until SIGTERM/SIGINT or N seconds)
 * At exit it prints frames forwarded per direction and failed writes to stderr. */
#include "tapdev.h"
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

static volatile sig_atomic_t stopping;
static int stop_fd;
static void on_signal(int sig) {
    (void)sig;
    uint64_t one = 1;
    stopping = 1;
    if (write(stop_fd, &one, sizeof one) < 0) { /* the flag alone ends the loop */ }
}

int main(int argc, char **argv) {
    int i = 1, seconds = 0;
    if (argc > 2 && strcmp(argv[1], "--seconds") == 0) { seconds = atoi(argv[2]); i += 2; }
    if (argc - i != 2) { fprintf(stderr, "usage: epollfwd [--seconds N] MACVTAP_A MACVTAP_B\n"); return 2; }
    unsigned offl[2];
    int fd[2] = { tapdev_open("epollfwd", argv[i], &offl[0]), tapdev_open("epollfwd", argv[i + 1], &offl[1]) };

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) { perror("epollfwd: epoll_create1"); return 1; }
    for (unsigned p = 0; p < 2; p++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = p };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd[p], &ev) != 0) { perror("epollfwd: epoll_ctl"); return 1; }
    }
    /* A signal sets the flag and makes the stop eventfd (also in the set) readable, so a stop
     * that lands between the check of the flag and the wait still ends the wait. */
    stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event sev = { .events = EPOLLIN, .data.u32 = 2 };
    if (stop_fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &sev) != 0) { perror("epollfwd: stop eventfd"); return 1; }
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL); sigaction(SIGINT, &sa, NULL); sigaction(SIGALRM, &sa, NULL);
    if (seconds > 0) alarm((unsigned)seconds);
    fprintf(stderr, "epollfwd: %s <-> %s, epoll + read/write, offloads 0x%x/0x%x\n", argv[i], argv[i + 1], offl[0], offl[1]);

    static unsigned char buf[65536 + 512];
    unsigned long long forwarded[2] = {0, 0}, write_errors = 0;
    struct epoll_event evs[3];
    while (!stopping) {
        int n = epoll_wait(ep, evs, 3, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epollfwd: epoll_wait"); return 1;
        }
        unsigned ready = 0;
        for (int k = 0; k < n; k++) ready |= 1u << evs[k].data.u32;
        ready &= 3;   /* bit 2: the stop eventfd; the flag is already set */
        while (ready && !stopping) {
            for (unsigned p = 0; p < 2; p++) {
                if (!(ready & (1u << p))) continue;
                ssize_t r = read(fd[p], buf, sizeof buf);
                if (r < 0) {
                    if (errno == EAGAIN) ready &= ~(1u << p);
                    else if (errno != EINTR) { fprintf(stderr, "epollfwd: read %s: %s\n", argv[i + p], strerror(errno)); return 1; }
                    continue;
                }
                if (r <= TAPDEV_VNET_HDR) continue;
                if (write(fd[p ^ 1], buf, (size_t)r) < 0) {
                    if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR && errno != EINVAL) {
                        fprintf(stderr, "epollfwd: write %s: %s\n", argv[i + (p ^ 1)], strerror(errno)); return 1;
                    }
                    write_errors++;
                } else {
                    forwarded[p]++;
                }
            }
        }
    }
    fprintf(stderr, "epollfwd: forwarded %s->%s %llu, %s->%s %llu, write errors %llu\n",
            argv[i], argv[i + 1], forwarded[0], argv[i + 1], argv[i], forwarded[1], write_errors);
    return 0;
}
