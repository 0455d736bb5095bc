// liburing, imported as-is: Swift sees its static inline helpers directly.
#include <liburing.h>
