/* tapdev.h: opens a macvtap's character device for the bench forwarders (uringfloor.c,
 * epollfwd.c) the way tapbridge's MacvtapDevice.openQueue does at the kernel boundary:
 * device found by the major:minor in sysfs and opened through a private node (as plainfwd.c),
 * O_NONBLOCK, IFF_TAP|IFF_NO_PI|IFF_VNET_HDR with a 12-byte vnet header, TUNSETSNDBUF(INT_MAX),
 * and TUNSETOFFLOAD probed down from everything tapbridge carries (csum, tso4, tso6, tso-ecn,
 * uso4, uso6) to what the kernel accepts. Exits with a message naming the interface on error. */
#ifndef TAPDEV_H
#define TAPDEV_H
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20   /* kernel 6.2 */
#define TUN_F_USO6 0x40
#endif

#define TAPDEV_VNET_HDR 12

static void tapdev_fail(const char *prog, const char *name, const char *what) {
    fprintf(stderr, "%s: %s: %s: %s\n", prog, name, what, strerror(errno));
    exit(1);
}

/* Returns the open, configured queue; *offloads gets the TUN_F_* bits the kernel took. */
static int tapdev_open(const char *prog, const char *name, unsigned *offloads) {
    char path[256], buf[64], node[96];
    snprintf(path, sizeof path, "/sys/class/net/%s/ifindex", name);
    FILE *f = fopen(path, "r");
    int ifindex = 0;
    if (!f || fscanf(f, "%d", &ifindex) != 1) { fprintf(stderr, "%s: %s: no such interface\n", prog, name); exit(1); }
    fclose(f);
    snprintf(path, sizeof path, "/sys/class/net/%s/macvtap/tap%d/dev", name, ifindex);
    f = fopen(path, "r");
    if (!f || !fgets(buf, sizeof buf, f)) { fprintf(stderr, "%s: %s: not a macvtap (no %s)\n", prog, name, path); exit(1); }
    fclose(f);
    unsigned maj, min;
    if (sscanf(buf, "%u:%u", &maj, &min) != 2) { fprintf(stderr, "%s: %s: unreadable device number\n", prog, name); exit(1); }
    snprintf(node, sizeof node, "/tmp/%s-%d-%s", prog, getpid(), name);
    unlink(node);
    if (mknod(node, S_IFCHR | 0600, makedev(maj, min)) != 0) tapdev_fail(prog, name, "mknod");
    int fd = open(node, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    unlink(node);
    if (fd < 0) tapdev_fail(prog, name, "open");

    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    if (ioctl(fd, TUNGETIFF, &ifr) != 0) tapdev_fail(prog, name, "TUNGETIFF");
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (ifr.ifr_flags & IFF_MULTI_QUEUE);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) tapdev_fail(prog, name, "TUNSETIFF");
    int hdr = TAPDEV_VNET_HDR;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) != 0) tapdev_fail(prog, name, "TUNSETVNETHDRSZ");
    int sndbuf = INT_MAX;
    if (ioctl(fd, TUNSETSNDBUF, &sndbuf) != 0) tapdev_fail(prog, name, "TUNSETSNDBUF");
    const unsigned all = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6;
    const unsigned attempts[] = { all, all & ~(TUN_F_USO4 | TUN_F_USO6),
                                  all & ~(TUN_F_USO4 | TUN_F_USO6 | TUN_F_TSO_ECN), TUN_F_CSUM, 0 };
    for (unsigned i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        if (ioctl(fd, TUNSETOFFLOAD, attempts[i]) == 0) { *offloads = attempts[i]; return fd; }
        if (errno != EINVAL) break;
    }
    tapdev_fail(prog, name, "TUNSETOFFLOAD");
    return -1;
}
#endif
