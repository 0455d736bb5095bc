// libmnl plus the kernel's rtnetlink, link and tun headers.
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/if.h>
#include <linux/netlink.h>
