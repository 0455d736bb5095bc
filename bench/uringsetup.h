/* uringsetup.h: sets up an io_uring as tapbridge's worker does (Sources/Datapath/Ring.swift), for
 * the bench's io_uring programs (uringfloor.c, uringwritefloor.c): SINGLE_ISSUER|DEFER_TASKRUN
 * when the kernel has them, else COOP_TASKRUN, else plain; SUBMIT_ALL; a CQ of `cq_entries`.
 * Returns the name of the mode it got; exits with a message naming `prog` if none works. */
#ifndef URINGSETUP_H
#define URINGSETUP_H
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *uring_setup_like_tapbridge(struct io_uring *ring, unsigned sq_entries,
                                              unsigned cq_entries, const char *prog) {
    static const struct { unsigned flags; const char *name; } modes[] = {
        { IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL, "single-issuer+defer-taskrun" },
        { IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, "coop-taskrun" },
        { 0, "plain" },
    };
    int r = -EINVAL;
    for (unsigned i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = modes[i].flags | IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
        if ((r = io_uring_queue_init_params(sq_entries, ring, &p)) == 0) return modes[i].name;
    }
    fprintf(stderr, "%s: io_uring_setup: %s\n", prog, strerror(-r));
    exit(1);
}
#endif
