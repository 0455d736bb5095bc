// CVhostUserShim: memfd_create (needs _GNU_SOURCE) and SCM_RIGHTS walking (CMSG_* macros).
#define _GNU_SOURCE
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>
#include "CVhostUserShim.h"

int tb_vu_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int tb_vu_take_fds(struct msghdr *msg, int *fds, int max, int *closed) {
    int stored = 0;
    *closed = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        if (c->cmsg_len < CMSG_LEN(0)) continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof(int));
            if (stored < max) fds[stored++] = fd;
            else { close(fd); (*closed)++; }
        }
    }
    return stored;
}

void tb_vu_put_fds(struct msghdr *msg, void *control, const int *fds, int count) {
    msg->msg_control = control;
    msg->msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count);
    struct cmsghdr *c = CMSG_FIRSTHDR(msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)count);
}
