/*
 * owned.c - the sharded registry of live tasks; see owned.h.
 */
#include "owned.h"

#include "task.h"

void own_init(own *o) {
    for (int i = 0; i < OWN_SHARDS; i++) {
        pthread_mutex_init(&o->shard[i].lock, NULL);
        o->shard[i].head = NULL;
        o->shard[i].closed = false;
        atomic_init(&o->shard[i].count, 0);
    }
}

void own_destroy(own *o) {
    for (int i = 0; i < OWN_SHARDS; i++)
        pthread_mutex_destroy(&o->shard[i].lock);
}

static own_shard *shard_of(own *o, ms_task *t) {
    return &o->shard[t->id & (OWN_SHARDS - 1)];
}

static void count_add(own_shard *sh, int64_t d) {
    atomic_store_explicit(&sh->count,
                          atomic_load_explicit(&sh->count, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

bool own_insert(own *o, ms_task *t) {
    own_shard *sh = shard_of(o, t);
    pthread_mutex_lock(&sh->lock);
    if (sh->closed) {
        pthread_mutex_unlock(&sh->lock);
        return false;
    }
    t->own_prev = NULL;
    t->own_next = sh->head;
    if (sh->head)
        sh->head->own_prev = t;
    sh->head = t;
    t->own_linked = true;
    count_add(sh, 1);
    pthread_mutex_unlock(&sh->lock);
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
    pthread_mutex_lock(&sh->lock);
    if (t->own_linked)
        unlink_locked(sh, t);
    pthread_mutex_unlock(&sh->lock);
}

void own_close(own *o) {
    for (int i = 0; i < OWN_SHARDS; i++) {
        pthread_mutex_lock(&o->shard[i].lock);
        o->shard[i].closed = true;
        pthread_mutex_unlock(&o->shard[i].lock);
    }
}

ms_task *own_pop(own *o) {
    for (int i = 0; i < OWN_SHARDS; i++) {
        own_shard *sh = &o->shard[i];
        pthread_mutex_lock(&sh->lock);
        ms_task *t = sh->head;
        if (t) {
            unlink_locked(sh, t);
            task_ref(t);
        }
        pthread_mutex_unlock(&sh->lock);
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
