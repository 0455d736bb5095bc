// liburing, imported as-is: Swift sees its static inline helpers directly.
// liburing.h defines _GNU_SOURCE/_XOPEN_SOURCE before its own includes; if the C library
// headers were first seen here under those macros, fd_set & co. would differ from the ones
// SwiftGlibc/Dispatch see, and any Swift module importing both fails to build (release builds
// of everything that imports Foundation and the datapath). So include them plainly first.
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <inttypes.h>
#include <time.h>
#include <fcntl.h>
#include <sched.h>
// liburing ships its own copy of the kernel's io_uring.h under the same include guard; take
// the system's <linux/io_uring.h> first so that every module (swift-system's CSystem includes
// it too) sees one definition of struct io_uring_sqe, or clang refuses the mix in any client
// that imports both (seen building bench/micro against the library product).
#include <linux/io_uring.h>
#include <liburing.h>
