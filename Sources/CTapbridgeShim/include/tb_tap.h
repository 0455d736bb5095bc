// TUN/TAP ioctl numbers (_IOR/_IOW macros are not imported by Swift).
#pragma once
#include <sys/ioctl.h>
#include <linux/if_tun.h>

static inline unsigned long tb_TUNSETIFF(void) { return TUNSETIFF; }
static inline unsigned long tb_TUNGETIFF(void) { return TUNGETIFF; }
static inline unsigned long tb_TUNSETOFFLOAD(void) { return TUNSETOFFLOAD; }
static inline unsigned long tb_TUNSETVNETHDRSZ(void) { return TUNSETVNETHDRSZ; }
static inline unsigned long tb_TUNGETVNETHDRSZ(void) { return TUNGETVNETHDRSZ; }
static inline unsigned long tb_TUNSETQUEUE(void) { return TUNSETQUEUE; }
static inline unsigned long tb_TUNGETFEATURES(void) { return TUNGETFEATURES; }
