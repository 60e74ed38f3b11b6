/*
 * smalloc.h - the agents' Lua allocator's block source (smalloc.c):
 * realloc with Lua's contract (p NULL: allocate; nsize 0: free; osize is
 * always the block's current size), small blocks from per-thread caches.
 */
#ifndef MS_SMALLOC_H
#define MS_SMALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* NULL when out of memory (p is then untouched), or when nsize is 0. */
void *sm_realloc(void *p, size_t osize, size_t nsize);

#endif
