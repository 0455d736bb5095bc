// Netlink constants that are macros in libmnl / the kernel headers.
#pragma once
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>

static inline size_t tb_mnl_socket_buffer_size(void) { return MNL_SOCKET_BUFFER_SIZE; }
static inline size_t tb_mnl_align(size_t len) { return MNL_ALIGN(len); }

#include <unistd.h>
#include <sys/syscall.h>
#include <linux/sched.h>

/// setns(fd, CLONE_NEWNET) for the calling thread (glibc hides setns without _GNU_SOURCE).
static inline int tb_setns_net(int fd) { return (int)syscall(SYS_setns, fd, CLONE_NEWNET); }
