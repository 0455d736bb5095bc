// tb_malloc: glibc's heap accounting for tests that check memory is given back (mallinfo2 is
// declared in <malloc.h>, which Swift's Glibc module does not import).
#pragma once
#include <malloc.h>
#include <stddef.h>

/// Bytes currently allocated by malloc (in use, not merely mapped).
static inline size_t tb_malloc_bytes_in_use(void) { return mallinfo2().uordblks; }
