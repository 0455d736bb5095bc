// TUN/TAP ioctls for macvtap queues. _IOR/_IOW numbers and struct ifreq's flag union are not
// importable from Swift, so the calls themselves live here; each returns 0 or -errno.
#pragma once
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <net/if.h>
#include <linux/if_tun.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20   /* kernel 6.2 */
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

static inline unsigned long tb_TUNSETIFF(void) { return TUNSETIFF; }
static inline unsigned long tb_TUNGETIFF(void) { return TUNGETIFF; }
static inline unsigned long tb_TUNSETOFFLOAD(void) { return TUNSETOFFLOAD; }
static inline unsigned long tb_TUNSETVNETHDRSZ(void) { return TUNSETVNETHDRSZ; }
static inline unsigned long tb_TUNGETVNETHDRSZ(void) { return TUNGETVNETHDRSZ; }
static inline unsigned long tb_TUNSETQUEUE(void) { return TUNSETQUEUE; }
static inline unsigned long tb_TUNGETFEATURES(void) { return TUNGETFEATURES; }
static inline unsigned long tb_TUNSETSNDBUF(void) { return TUNSETSNDBUF; }

static inline unsigned int tb_TUN_F_CSUM(void) { return TUN_F_CSUM; }
static inline unsigned int tb_TUN_F_TSO4(void) { return TUN_F_TSO4; }
static inline unsigned int tb_TUN_F_TSO6(void) { return TUN_F_TSO6; }
static inline unsigned int tb_TUN_F_TSO_ECN(void) { return TUN_F_TSO_ECN; }
static inline unsigned int tb_TUN_F_USO4(void) { return TUN_F_USO4; }
static inline unsigned int tb_TUN_F_USO6(void) { return TUN_F_USO6; }

static inline dev_t tb_makedev(unsigned int major, unsigned int minor) { return makedev(major, minor); }

/// TUNGETIFF: the queue's IFF_* flags.
static inline int tb_tun_get_flags(int fd, int *flags) {
    struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
    if (ioctl(fd, TUNGETIFF, &ifr) < 0) return -errno;
    *flags = (unsigned short)ifr.ifr_flags;
    return 0;
}
/// TUNSETIFF: macvtap ignores the name and only accepts IFF_TAP|IFF_NO_PI [+VNET_HDR|MULTI_QUEUE].
static inline int tb_tun_set_flags(int fd, int flags) {
    struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = (short)flags;
    return ioctl(fd, TUNSETIFF, &ifr) < 0 ? -errno : 0;
}
static inline int tb_tun_set_vnet_hdr_size(int fd, int size) {
    return ioctl(fd, TUNSETVNETHDRSZ, &size) < 0 ? -errno : 0;
}
static inline int tb_tun_get_vnet_hdr_size(int fd, int *size) {
    return ioctl(fd, TUNGETVNETHDRSZ, size) < 0 ? -errno : 0;
}
static inline int tb_tun_set_offload(int fd, unsigned int offloads) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)offloads) < 0 ? -errno : 0;
}
/// TUNSETQUEUE with IFF_ATTACH_QUEUE / IFF_DETACH_QUEUE.
static inline int tb_tun_set_queue(int fd, int attach) {
    struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    return ioctl(fd, TUNSETQUEUE, &ifr) < 0 ? -errno : 0;
}
/// TUNSETSNDBUF: how many bytes of written frames may be in flight below the queue before a
/// write fails with EAGAIN (default: net.core.wmem_default, about 200 KiB).
static inline int tb_tun_set_sndbuf(int fd, int bytes) {
    return ioctl(fd, TUNSETSNDBUF, &bytes) < 0 ? -errno : 0;
}
static inline int tb_tun_get_features(int fd, unsigned int *features) {
    return ioctl(fd, TUNGETFEATURES, features) < 0 ? -errno : 0;
}

// Tun/tap interfaces made through /dev/net/tun (tap ports and host ports: Tap/TunDevice.swift).
static inline unsigned long tb_TUNSETPERSIST(void) { return TUNSETPERSIST; }
static inline unsigned long tb_TUNSETOWNER(void) { return TUNSETOWNER; }
static inline unsigned long tb_TUNSETGROUP(void) { return TUNSETGROUP; }

/// TUNSETIFF with a name: creates tap `name` (or attaches one more queue to it). A name that does
/// not fit IFNAMSIZ is -ENAMETOOLONG, never cut short.
static inline int tb_tun_attach(int fd, const char *name, int flags) {
    struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = (short)flags;
    return ioctl(fd, TUNSETIFF, &ifr) < 0 ? -errno : 0;
}
/// TUNGETIFF: the name and IFF_* flags of the interface `fd` is attached to.
static inline int tb_tun_get_name(int fd, char name[IFNAMSIZ], int *flags) {
    struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
    if (ioctl(fd, TUNGETIFF, &ifr) < 0) return -errno;
    memcpy(name, ifr.ifr_name, IFNAMSIZ); name[IFNAMSIZ - 1] = 0;
    *flags = (unsigned short)ifr.ifr_flags;
    return 0;
}
static inline int tb_tun_set_persist(int fd, int on) {
    return ioctl(fd, TUNSETPERSIST, (unsigned long)on) < 0 ? -errno : 0;
}
/// TUNSETOWNER / TUNSETGROUP: who besides CAP_NET_ADMIN may attach queues ((uid_t)-1: anyone).
static inline int tb_tun_set_owner(int fd, uid_t uid) {
    return ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0 ? -errno : 0;
}
static inline int tb_tun_set_group(int fd, gid_t gid) {
    return ioctl(fd, TUNSETGROUP, (unsigned long)gid) < 0 ? -errno : 0;
}
static inline int tb_ifnamsiz(void) { return IFNAMSIZ; }
