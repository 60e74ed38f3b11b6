/*
 * smalloc.c - per-thread caches of small blocks for the agents' Lua
 * allocator (agent_alloc).
 *
 * Why: spawning an agent creates a Lua state (hundreds of small objects)
 * and an agent that ends frees them all; with glibc's default per-thread
 * cache of 7 blocks per size, most of those go through the arena, and
 * perf shows malloc/free/malloc_consolidate at about half of the time of
 * A1 (spawn 1,000 agents).  Here freed blocks of up to SM_MAX bytes wait in
 * a thread-local free list per 16-byte size class, so the next state
 * built on this worker reuses them without taking an arena lock.
 *
 * Lua's allocator contract gives the block's size on every free and
 * realloc (osize), so the blocks need no header; a small block is always
 * allocated at its class's full size so any request of the class fits.
 * A block may be freed on another thread than the one that allocated it
 * (an agent moves between workers): it simply joins that thread's cache.
 * Each class keeps at most SM_CLASS_BYTES, so a thread holds at most
 * SM_CLASSES * SM_CLASS_BYTES (about 530 KiB) idle; the caches are given back
 * to malloc when their thread ends.
 *
 * Sanitizer builds bypass the caches so that use-after-free and leaks of
 * Lua objects stay visible to them.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "smalloc.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SM_DISABLED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SM_DISABLED 1
#endif
#endif

/* Class k holds blocks of k * 16 + 8 bytes: what glibc can hand out from
 * a chunk of (k + 1) * 16, so rounding a request up to its class costs no
 * memory over a plain malloc of it. */
#define SM_GRAIN 16
#define SM_MAX 512
#define SM_CLASSES ((SM_MAX + 7) / SM_GRAIN + 1)
#define SM_CLASS_BYTES (16 * 1024)

typedef struct sm_block {
    struct sm_block *next;
} sm_block;

typedef struct sm_cache {
    sm_block *head[SM_CLASSES];
    uint32_t count[SM_CLASSES];
    bool registered;
} sm_cache;

#ifndef SM_DISABLED
static __thread sm_cache tl_cache;
static pthread_key_t sm_key;
static pthread_once_t sm_once = PTHREAD_ONCE_INIT;

static void sm_flush(void *p) {
    sm_cache *c = p;
    for (int i = 0; i < SM_CLASSES; i++) {
        while (c->head[i]) {
            sm_block *b = c->head[i];
            c->head[i] = b->next;
            free(b);
        }
        c->count[i] = 0;
    }
}

static void sm_make_key(void) {
    pthread_key_create(&sm_key, sm_flush);
}
#endif

/* Class index of a size in 1..SM_MAX, and the size of its blocks. */
static inline int sm_class(size_t size) {
    return (int)((size + 7) / SM_GRAIN);
}

static inline size_t sm_class_size(int k) {
    return (size_t)k * SM_GRAIN + 8;
}

static void *sm_get(size_t size) {
#ifndef SM_DISABLED
    if (size <= SM_MAX) {
        int k = sm_class(size);
        sm_block *b = tl_cache.head[k];
        if (b) {
            tl_cache.head[k] = b->next;
            tl_cache.count[k]--;
            return b;
        }
        return malloc(sm_class_size(k));
    }
#endif
    return malloc(size);
}

static void sm_put(void *p, size_t size) {
#ifndef SM_DISABLED
    if (size <= SM_MAX) {
        int k = sm_class(size);
        if (tl_cache.count[k] < SM_CLASS_BYTES / sm_class_size(k)) {
            if (!tl_cache.registered) {
                /* The thread's caches go back to malloc when it ends. */
                pthread_once(&sm_once, sm_make_key);
                pthread_setspecific(sm_key, &tl_cache);
                tl_cache.registered = true;
            }
            sm_block *b = p;
            b->next = tl_cache.head[k];
            tl_cache.head[k] = b;
            tl_cache.count[k]++;
            return;
        }
    }
#endif
    (void)size;
    free(p);
}

void *sm_realloc(void *p, size_t osize, size_t nsize) {
    if (!p)
        return nsize ? sm_get(nsize) : NULL;
    if (nsize == 0) {
        sm_put(p, osize);
        return NULL;
    }
#ifndef SM_DISABLED
    if (osize <= SM_MAX || nsize <= SM_MAX) {
        /* Same class: the block already has room. */
        if (osize <= SM_MAX && nsize <= SM_MAX && sm_class(osize) == sm_class(nsize))
            return p;
        void *q = sm_get(nsize);
        if (!q)
            return NULL;
        memcpy(q, p, osize < nsize ? osize : nsize);
        sm_put(p, osize);
        return q;
    }
#endif
    return realloc(p, nsize);
}
