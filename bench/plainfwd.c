/* plainfwd: the naive userspace baseline. Two threads, one per direction, read() a frame from
 * one macvtap and write() it to the other. Opens each macvtap's character device by the
 * major:minor in sysfs (through a private node). With --vnet the queues carry a 12-byte virtio
 * header and TSO/checksum offloads, so 64 KiB super-frames cross unsegmented.
 * Usage: plainfwd [--vnet] MACVTAP_A MACVTAP_B      (runs until killed) */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int vnet;

static int open_macvtap(const char *name) {
    char path[256], buf[64], node[64];
    snprintf(path, sizeof path, "/sys/class/net/%s/ifindex", name);
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "plainfwd: %s: no such interface\n", name); exit(1); }
    int ifindex = 0;
    if (fscanf(f, "%d", &ifindex) != 1) exit(1);
    fclose(f);
    snprintf(path, sizeof path, "/sys/class/net/%s/macvtap/tap%d/dev", name, ifindex);
    f = fopen(path, "r");
    if (!f || !fgets(buf, sizeof buf, f)) { fprintf(stderr, "plainfwd: %s: not a macvtap\n", name); exit(1); }
    fclose(f);
    unsigned maj, min;
    sscanf(buf, "%u:%u", &maj, &min);
    snprintf(node, sizeof node, "/tmp/plainfwd-%d-%s", getpid(), name);
    unlink(node);
    if (mknod(node, S_IFCHR | 0600, makedev(maj, min)) != 0) { perror("mknod"); exit(1); }
    int fd = open(node, O_RDWR);
    unlink(node);
    if (fd < 0) { perror(name); exit(1); }
    struct ifreq ifr = {0};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) { perror("TUNSETIFF"); exit(1); }
    if (vnet) {
        int sz = 12;
        ioctl(fd, TUNSETVNETHDRSZ, &sz);
        if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) != 0) perror("TUNSETOFFLOAD");
    }
    return fd;
}

struct dir { int in, out; };

static void *pump(void *arg) {
    struct dir *d = arg;
    static __thread char buf[65536 + 64];
    for (;;) {
        ssize_t n = read(d->in, buf, sizeof buf);
        if (n < 0) { if (errno == EINTR || errno == EAGAIN) continue; perror("read"); exit(1); }
        if (write(d->out, buf, n) < 0 && errno != EAGAIN && errno != ENOBUFS && errno != EINTR) { perror("write"); exit(1); }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int i = 1;
    if (argc > 1 && strcmp(argv[1], "--vnet") == 0) { vnet = 1; i++; }
    if (argc - i != 2) { fprintf(stderr, "usage: plainfwd [--vnet] MACVTAP_A MACVTAP_B\n"); return 2; }
    int a = open_macvtap(argv[i]), b = open_macvtap(argv[i + 1]);
    struct dir ab = {a, b}, ba = {b, a};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, pump, &ab);
    pthread_create(&t2, NULL, pump, &ba);
    pthread_join(t1, NULL);
    return 0;
}
