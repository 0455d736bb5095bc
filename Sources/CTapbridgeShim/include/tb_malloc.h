// tb_malloc: glibc's heap accounting for tests that check memory is given back (mallinfo2 is
// declared in <malloc.h>, which Swift's Glibc module does not import).
#pragma once
#include <malloc.h>
#include <stddef.h>

/// Bytes currently allocated by malloc (in use, not merely mapped).
static inline size_t tb_malloc_bytes_in_use(void) { return mallinfo2().uordblks; }

/// Fixes glibc's mmap threshold (which also turns off its dynamic adjustment): blocks of at
/// least `bytes` are mapped on their own and unmapped when freed.
static inline void tb_malloc_fix_mmap_threshold(size_t bytes) { mallopt(M_MMAP_THRESHOLD, (int)bytes); }
