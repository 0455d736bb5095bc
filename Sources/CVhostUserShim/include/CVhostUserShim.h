// CVhostUserShim: the C pieces the VhostUser module cannot express in Swift: eventfd,
// memfd_create and epoll (not imported by Glibc), SCM_RIGHTS control-message walking (CMSG_* macros), and
// ordered loads/stores/fences on guest memory (the split-ring protocol's barriers).
#pragma once
#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <errno.h>

/// A close-on-exec eventfd, optionally non-blocking.
static inline int tb_vu_eventfd(int nonblock) {
    return eventfd(0, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0));
}

/// memfd_create(name, MFD_CLOEXEC) (test frontends back their "guest memory" with it).
int tb_vu_memfd(const char *name);

/// Bytes of control buffer that carry `count` descriptors (CMSG_SPACE).
static inline size_t tb_vu_cmsg_space(int count) { return CMSG_SPACE(sizeof(int) * (size_t)count); }

/// Moves every SCM_RIGHTS descriptor in `msg` into fds[0..<max]; descriptors beyond `max` are
/// closed at once and counted in *closed. Returns how many were stored.
int tb_vu_take_fds(struct msghdr *msg, int *fds, int max, int *closed);

/// Writes one SCM_RIGHTS control message carrying fds[0..<count] into `control` (at least
/// tb_vu_cmsg_space(count) bytes) and points msg at it.
void tb_vu_put_fds(struct msghdr *msg, void *control, const int *fds, int count);

// Guest-memory ordering (virtio split ring): the driver and the device share the rings, so
// index reads are acquire, index writes release, and the store→load pairs of notification
// suppression need a full fence.
static inline uint16_t tb_vu_load_acquire_u16(const void *p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}
static inline uint16_t tb_vu_load_relaxed_u16(const void *p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}
static inline void tb_vu_store_release_u16(void *p, uint16_t v) {
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}
static inline void tb_vu_store_relaxed_u16(void *p, uint16_t v) {
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}
static inline int32_t tb_vu_load_acquire_i32(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void tb_vu_store_release_i32(int32_t *p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/// A close-on-exec epoll set watching fds[0..<count] for input (a worker serving several
/// queue pairs of one vhost-user port polls it in place of their kick eventfds). Returns the
/// epoll descriptor, or -errno.
static inline int tb_vu_epoll_set(const int *fds, int count) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -errno;
    for (int i = 0; i < count; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data = { .u64 = (uint64_t)i } };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0) { int e = errno; close(ep); return -e; }
    }
    return ep;
}

// Per-queue-pair frame counters: written by the one worker serving the pair (a relaxed load
// and store, no locked instruction), read by any thread.
static inline void tb_vu_count_u64(uint64_t *p, uint64_t n) {
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}
static inline uint64_t tb_vu_load_relaxed_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void tb_vu_fence_full(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void tb_vu_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void tb_vu_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
