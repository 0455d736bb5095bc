// tb_malloc: glibc malloc tuning (mallopt is declared in <malloc.h>, which Swift's Glibc module
// does not import).
#pragma once
#include <malloc.h>
#include <stddef.h>


/// Fixes glibc's mmap threshold (which also turns off its dynamic adjustment): blocks of at
/// least `bytes` are mapped on their own and unmapped when freed.
static inline void tb_malloc_fix_mmap_threshold(size_t bytes) { mallopt(M_MMAP_THRESHOLD, (int)bytes); }
