/* vmrelay: the bench's stand-in for a VM on a tapbridge VM-socket port, no QEMU needed. It
 * connects to two tapbridge stream-server ports (QEMU `-netdev stream` framing: a 4-byte
 * big-endian length, then the raw Ethernet frame) and relays frames between them, one thread per
 * direction: it reads as much as the socket has, walks the complete frames (checking each length
 * as QEMU does: 14..65535), writes them on in one write and keeps a partial tail for the next
 * read. Used by bench/run (tapbridge-vm: sender -> macvtap -> tapbridge -> socket A -> vmrelay ->
 * socket B -> tapbridge -> macvtap -> receiver).
 * Usage: vmrelay SOCK_A SOCK_B [SECONDS_TO_WAIT_FOR_SOCKETS]   (runs until a socket closes or killed)
 *        vmrelay --self-test   (framing over a socketpair; used by the smoke test) */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUF (256 * 1024)
#define MAX_FRAME 65535
#define MIN_FRAME 14

struct dir { int in, out; const char *name; unsigned long long frames; };

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        p += w; n -= (size_t)w;
    }
    return 0;
}

/* Relays complete frames from d->in to d->out until EOF or a framing error. Returns 0 on EOF. */
static int relay(struct dir *d) {
    uint8_t *buf = malloc(BUF + MAX_FRAME + 4);
    if (!buf) return -1;
    size_t have = 0;
    for (;;) {
        ssize_t n = read(d->in, buf + have, BUF);
        if (n < 0) { if (errno == EINTR) continue; perror(d->name); free(buf); return -1; }
        if (n == 0) { free(buf); return 0; }
        have += (size_t)n;
        size_t at = 0;
        while (have - at >= 4) {
            uint32_t len = (uint32_t)buf[at] << 24 | (uint32_t)buf[at + 1] << 16 | (uint32_t)buf[at + 2] << 8 | buf[at + 3];
            if (len < MIN_FRAME || len > MAX_FRAME) { fprintf(stderr, "vmrelay: %s: bad length %u\n", d->name, len); free(buf); return -1; }
            if (have - at < 4 + len) break;
            at += 4 + len;
            d->frames++;
        }
        if (at && write_all(d->out, buf, at) != 0) { perror(d->name); free(buf); return -1; }
        memmove(buf, buf + at, have - at);
        have -= at;
    }
}

static void *pump(void *arg) {
    struct dir *d = arg;
    relay(d);
    /* One side gone: the "VM" powers off (the process exits, closing both connections). */
    fprintf(stderr, "vmrelay: %s: %llu frames\n", d->name, d->frames);
    exit(0);
    return NULL;
}

static int connect_unix(const char *path, double wait_seconds) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) { fprintf(stderr, "vmrelay: %s: path too long\n", path); exit(2); }
    strcpy(a.sun_path, path);
    for (int tries = 0;; tries++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) { perror("socket"); exit(1); }
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        close(fd);
        if (tries * 0.05 >= wait_seconds) { fprintf(stderr, "vmrelay: connect %s: %s\n", path, strerror(errno)); exit(1); }
        usleep(50000);
    }
}

static int self_test(void) {
    int a[2], b[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) || socketpair(AF_UNIX, SOCK_STREAM, 0, b)) { perror("socketpair"); return 1; }
    /* Three frames (60, 1514, 60 bytes), written in awkward pieces; they must come out whole. */
    uint8_t in[3 * 4 + 60 + 1514 + 60], out[sizeof in];
    size_t at = 0;
    uint32_t lens[3] = {60, 1514, 60};
    for (int i = 0; i < 3; i++) {
        in[at] = 0; in[at + 1] = 0; in[at + 2] = lens[i] >> 8; in[at + 3] = lens[i] & 0xff;
        memset(in + at + 4, 'a' + i, lens[i]);
        at += 4 + lens[i];
    }
    write_all(a[0], in, 7);
    write_all(a[0], in + 7, 900);
    write_all(a[0], in + 907, sizeof in - 907);
    shutdown(a[0], SHUT_WR);
    struct dir d = {a[1], b[0], "self-test", 0};
    if (relay(&d) != 0 || d.frames != 3) { fprintf(stderr, "vmrelay: self-test: %llu frames\n", d.frames); return 1; }
    size_t got = 0;
    while (got < sizeof out) { ssize_t n = read(b[1], out + got, sizeof out - got); if (n <= 0) break; got += (size_t)n; }
    if (got != sizeof in || memcmp(in, out, sizeof in) != 0) { fprintf(stderr, "vmrelay: self-test: bytes differ\n"); return 1; }
    /* A zero length (not QEMU framing) must stop the relay with an error. */
    uint8_t bad[4] = {0};
    int c[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, c);
    write_all(c[0], bad, 4);
    shutdown(c[0], SHUT_WR);
    struct dir e = {c[1], b[0], "self-test-bad", 0};
    if (relay(&e) == 0) { fprintf(stderr, "vmrelay: self-test: zero length accepted\n"); return 1; }
    printf("vmrelay: self-test ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--self-test") == 0) return self_test();
    if (argc < 3) { fprintf(stderr, "usage: vmrelay SOCK_A SOCK_B [WAIT_SECONDS] | vmrelay --self-test\n"); return 2; }
    double wait = argc > 3 ? atof(argv[3]) : 10;
    int a = connect_unix(argv[1], wait), b = connect_unix(argv[2], wait);
    static struct dir ab, ba;
    ab = (struct dir){a, b, "a->b", 0};
    ba = (struct dir){b, a, "b->a", 0};
    pthread_t t;
    pthread_create(&t, NULL, pump, &ab);
    pump(&ba);
    return 0;
}
