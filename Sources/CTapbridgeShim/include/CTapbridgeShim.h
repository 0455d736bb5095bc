// CTapbridgeShim: the few C things Swift cannot import by itself (function-like macros,
// _IOW ioctl numbers, io_uring opcodes newer than liburing 2.3). One header per concern.
#pragma once
#include "tb_netlink.h"
#include "tb_tap.h"
#include "tb_uring.h"
#include "tb_malloc.h"
