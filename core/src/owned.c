/*
 * owned.c - the sharded registry of live tasks; see owned.h.
 */
#include "owned.h"

#include <sched.h>

#include "sched.h"
#include "task.h"

static void shard_lock(own_shard *sh) {
    for (int spins = 0;; spins++) {
        if (!atomic_exchange_explicit(&sh->lock, 1, memory_order_acquire))
            return;
        while (atomic_load_explicit(&sh->lock, memory_order_relaxed)) {
            if (++spins > 64) {
                sched_yield();
                spins = 0;
            } else {
                __builtin_ia32_pause();
            }
        }
    }
}

static void shard_unlock(own_shard *sh) {
    atomic_store_explicit(&sh->lock, 0, memory_order_release);
}

void own_init(own *o) {
    for (int i = 0; i < OWN_SHARDS; i++) {
        atomic_init(&o->shard[i].lock, 0);
        o->shard[i].head = NULL;
        o->shard[i].closed = false;
        atomic_init(&o->shard[i].count, 0);
    }
}

void own_destroy(own *o) {
    (void)o;
}

/* Ids come in per-worker blocks (sched.h): tasks a worker spawns share a
 * shard, whose lock and list head then stay in that worker's cache. */
static own_shard *shard_of(own *o, ms_task *t) {
    return &o->shard[(t->id / SCHED_ID_BLOCK) & (OWN_SHARDS - 1)];
}

static void count_add(own_shard *sh, int64_t d) {
    atomic_store_explicit(&sh->count,
                          atomic_load_explicit(&sh->count, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

bool own_insert(own *o, ms_task *t) {
    own_shard *sh = shard_of(o, t);
    shard_lock(sh);
    if (sh->closed) {
        shard_unlock(sh);
        return false;
    }
    t->own_prev = NULL;
    t->own_next = sh->head;
    if (sh->head)
        sh->head->own_prev = t;
    sh->head = t;
    t->own_linked = true;
    count_add(sh, 1);
    shard_unlock(sh);
    return true;
}

static void unlink_locked(own_shard *sh, ms_task *t) {
    if (t->own_prev)
        t->own_prev->own_next = t->own_next;
    else
        sh->head = t->own_next;
    if (t->own_next)
        t->own_next->own_prev = t->own_prev;
    t->own_prev = t->own_next = NULL;
    t->own_linked = false;
    count_add(sh, -1);
}

void own_remove(own *o, ms_task *t) {
    own_shard *sh = shard_of(o, t);
    shard_lock(sh);
    if (t->own_linked)
        unlink_locked(sh, t);
    shard_unlock(sh);
}

void own_close(own *o) {
    for (int i = 0; i < OWN_SHARDS; i++) {
        shard_lock(&o->shard[i]);
        o->shard[i].closed = true;
        shard_unlock(&o->shard[i]);
    }
}

ms_task *own_pop(own *o) {
    for (int i = 0; i < OWN_SHARDS; i++) {
        own_shard *sh = &o->shard[i];
        shard_lock(sh);
        ms_task *t = sh->head;
        if (t) {
            unlink_locked(sh, t);
            task_ref(t);
        }
        shard_unlock(sh);
        if (t)
            return t;
    }
    return NULL;
}

uint64_t own_count(own *o) {
    uint64_t n = 0;
    for (int i = 0; i < OWN_SHARDS; i++)
        n += atomic_load_explicit(&o->shard[i].count, memory_order_relaxed);
    return n;
}
