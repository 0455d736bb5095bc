// io_uring pieces liburing 2.3 lacks or exposes only as macros, and provided-buffer-ring
// helpers (struct io_uring_buf_ring is a union with a flexible array Swift cannot index).
#pragma once
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <stdint.h>
// liburing ships its own copy of the kernel's io_uring.h under the same include guard; take
// the system's <linux/io_uring.h> first so that every module (swift-system's CSystem includes
// it too) sees one definition of struct io_uring_sqe, or clang refuses the mix in any client
// that imports both (seen building bench/micro against the library product).
#include <linux/io_uring.h>
#include <liburing.h>

#ifndef IORING_OP_READ_MULTISHOT
#define IORING_OP_READ_MULTISHOT 49   /* kernel 6.7 */
#endif

static inline unsigned char tb_IOSQE_FIXED_FILE(void) { return IOSQE_FIXED_FILE; }
static inline unsigned char tb_IOSQE_IO_LINK(void) { return IOSQE_IO_LINK; }
static inline unsigned char tb_IOSQE_BUFFER_SELECT(void) { return IOSQE_BUFFER_SELECT; }
static inline unsigned char tb_IOSQE_CQE_SKIP_SUCCESS(void) { return IOSQE_CQE_SKIP_SUCCESS; }
static inline unsigned char tb_IORING_OP_READ_MULTISHOT(void) { return IORING_OP_READ_MULTISHOT; }
static inline unsigned int tb_IORING_CQE_BUFFER_SHIFT(void) { return IORING_CQE_BUFFER_SHIFT; }

/// The completion queue's tail (acquire: the entries before it are fully written) and the
/// entry at position `pos`. Entries between the head and the tail belong to the application
/// until it advances the head; the kernel only appends past the tail.
static inline unsigned tb_cq_tail(const struct io_uring *ring) { return io_uring_smp_load_acquire(ring->cq.ktail); }
static inline unsigned tb_cq_head(const struct io_uring *ring) { return *ring->cq.khead; }
static inline struct io_uring_cqe *tb_cq_entry(struct io_uring *ring, unsigned pos) {
    return &ring->cq.cqes[pos & ring->cq.ring_mask];
}

/// Multishot read into buffers picked from provided-buffer group `group`: one CQE per frame
/// (IORING_CQE_F_MORE set while it stays armed). liburing 2.5's io_uring_prep_read_multishot.
static inline void tb_prep_read_multishot(struct io_uring_sqe *sqe, int fd, unsigned short group) {
    io_uring_prep_rw(IORING_OP_READ_MULTISHOT, sqe, fd, NULL, 0, 0);
    sqe->buf_group = group;
    sqe->flags |= IOSQE_BUFFER_SELECT;
}

/// Single-shot read with a buffer picked from group `group` (the fallback before kernel 6.7).
static inline void tb_prep_read_select(struct io_uring_sqe *sqe, int fd, unsigned short group, unsigned len) {
    io_uring_prep_rw(IORING_OP_READ, sqe, fd, NULL, len, 0);
    sqe->buf_group = group;
    sqe->flags |= IOSQE_BUFFER_SELECT;
}

/// Maps and registers a provided-buffer ring of `entries` (a power of two) for group `bgid`
/// (liburing 2.4's io_uring_setup_buf_ring). NULL and *err = -errno on failure.
static inline struct io_uring_buf_ring *tb_buf_ring_setup(struct io_uring *ring, unsigned entries,
                                                         unsigned short bgid, int *err) {
    size_t size = (size_t)entries * sizeof(struct io_uring_buf);
    /* Populated up front: the kernel pins these pages for the ring's lifetime. */
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) { *err = -errno; return NULL; }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)mem;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    /* Pinning can fail transiently while the kernel is migrating or reclaiming pages
     * (EOPNOTSUPP/EAGAIN/ENOMEM were seen once in ~10 test runs under load): retry briefly. */
    int r = -EAGAIN;
    for (int attempt = 0; attempt < 5; attempt++) {
        r = io_uring_register_buf_ring(ring, &reg, 0);
        if (r != -EOPNOTSUPP && r != -EAGAIN && r != -ENOMEM && r != -EINTR) break;
        usleep(2000 << attempt);
    }
    if (r < 0) { munmap(mem, size); *err = r; return NULL; }
    struct io_uring_buf_ring *br = (struct io_uring_buf_ring *)mem;
    io_uring_buf_ring_init(br);
    *err = 0;
    return br;
}

static inline void tb_buf_ring_free(struct io_uring *ring, struct io_uring_buf_ring *br,
                                    unsigned entries, unsigned short bgid) {
    io_uring_unregister_buf_ring(ring, bgid);
    munmap(br, (size_t)entries * sizeof(struct io_uring_buf));
}

static inline void tb_buf_ring_add(struct io_uring_buf_ring *br, void *addr, unsigned len,
                                   unsigned short bid, unsigned mask, unsigned offset) {
    io_uring_buf_ring_add(br, addr, len, bid, (int)mask, (int)offset);
}

static inline void tb_buf_ring_advance(struct io_uring_buf_ring *br, unsigned count) {
    io_uring_buf_ring_advance(br, (int)count);
}

static inline int tb_errno(void) { return errno; }

/// Single-writer counters shared with readers on other threads: relaxed atomic load/store
/// (plain moves on x86, no locked instructions), so the datapath never pays for a reader.
static inline void tb_counter_add(uint64_t *p, uint64_t n) {
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}
static inline void tb_counter_max(uint64_t *p, uint64_t n) {
    if (n > __atomic_load_n(p, __ATOMIC_RELAXED)) __atomic_store_n(p, n, __ATOMIC_RELAXED);
}
static inline uint64_t tb_counter_load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/// A blocking, close-on-exec eventfd (io_uring waits on it by polling).
static inline int tb_eventfd(void) { return eventfd(0, EFD_CLOEXEC); }

#include <sys/prctl.h>
/// Names the calling thread (shown by top/perf; 15 characters at most).
static inline void tb_set_thread_name(const char *name) { prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0); }

#include <unistd.h>
#include <sys/syscall.h>
/// IORING_REGISTER_ENABLE_RINGS (liburing 2.3's io_uring_enable_rings is declared but not
/// exported); 0 or -errno.
static inline int tb_enable_rings(struct io_uring *ring) {
    long r = syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    return r < 0 ? -errno : 0;
}
