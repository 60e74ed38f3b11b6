/*
 * owned.h - the registry of live ASYNC tasks.
 *
 * Shutdown must reach tasks that sit in no queue (waiting on a waker that
 * may never fire) to cancel them and free their state, so every spawned
 * task is linked here until it completes.  The registry is sharded by task
 * id, each shard a mutex-protected list on its own cache line, so spawns
 * and completions on different workers rarely meet on a lock.  Closing it
 * (under every shard lock) is the point after which spawns fail.
 */
#ifndef MS_OWNED_H
#define MS_OWNED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ms.h"

#define OWN_SHARDS 64

typedef struct own_shard {
    /* A spinlock: the critical sections are a few pointer writes, and a
     * worker's tasks share a shard (owned.c), so it is rarely contended;
     * an uncontended pthread mutex cost a fifth of a spawn-and-complete.
     * Spins, then yields the CPU. */
    _Atomic uint32_t lock;
    ms_task *head;              /* under lock */
    bool closed;                /* under lock */
    /* Written under lock, read without it by metrics. */
    _Atomic uint64_t count;
} __attribute__((aligned(64))) own_shard;

typedef struct own {
    own_shard shard[OWN_SHARDS];
} own;

void own_init(own *o);
void own_destroy(own *o);
/* false once closed. */
bool own_insert(own *o, ms_task *t);
/* No-op if t was already unlinked by own_pop. */
void own_remove(own *o, ms_task *t);
void own_close(own *o);
/* Unlinks some live task and returns it with a reference taken, or NULL
 * when the registry is empty. */
ms_task *own_pop(own *o);
uint64_t own_count(own *o);

#endif
