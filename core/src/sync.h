/*
 * sync.h - what the synchronisation primitives (sync_*.c) share: the
 * intrusive queue of waiting tasks, the batch of wakers collected under a
 * lock and woken after it, and the atomic accessors for the state words of
 * caller-owned waiter nodes.
 *
 * Every primitive keeps its waiters in a doubly-linked list threaded
 * through ms_wait_link fields embedded in the waiters' own nodes (in the
 * waiting task's state), so a wait allocates nothing.  The list and every
 * node on it belong to the primitive's lock.  A node's state word is
 * written under that lock and read by the node's owner without it
 * (acquire), so a task woken because its wait completed sees the result
 * without taking the lock.  Whoever completes a node moves its waker out
 * first and stores the final state last: after that store the owner may
 * free the node at any time.
 *
 * Wakers are never woken (or dropped) under a primitive's lock: a wake may
 * run arbitrary code, including code that re-enters the primitive.  They
 * are collected in a sync_wakes batch and woken after the unlock.  A clone
 * (a reference count for every waker the runtime makes) may happen under
 * a lock on paths that are about to wait anyway.
 */
#ifndef MS_SYNC_H
#define MS_SYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ms.h"

#define sync_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- the waiter queue: a circular list with a sentinel in the object ---- */

static inline void sync_list_init(ms_wait_link *head) {
    head->prev = head->next = head;
}

static inline bool sync_list_empty(const ms_wait_link *head) {
    return head->next == head;
}

static inline ms_wait_link *sync_list_front(ms_wait_link *head) {
    return head->next == head ? NULL : head->next;
}

static inline void sync_list_push_back(ms_wait_link *head, ms_wait_link *n) {
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

/* Unlinks n from whatever list holds it; n's links become NULL. */
static inline void sync_list_remove(ms_wait_link *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

/* ---- waiter node state words (plain uint32_t in ms.h, accessed atomically) ---- */

static inline uint32_t sync_state_load(const uint32_t *s) {
    return __atomic_load_n(s, __ATOMIC_ACQUIRE);
}

/* Relaxed: for the lock holder, and for the owner re-reading its own write. */
static inline uint32_t sync_state_peek(const uint32_t *s) {
    return __atomic_load_n(s, __ATOMIC_RELAXED);
}

static inline void sync_state_store(uint32_t *s, uint32_t v) {
    __atomic_store_n(s, v, __ATOMIC_RELEASE);
}

/* ---- wakers collected under a lock, woken after it ---- */

#define SYNC_WAKE_BATCH 32

typedef struct sync_wakes {
    uint32_t n;
    ms_waker w[SYNC_WAKE_BATCH];
} sync_wakes;

static inline void sync_wakes_init(sync_wakes *b) {
    b->n = 0;
}

static inline bool sync_wakes_full(const sync_wakes *b) {
    return b->n == SYNC_WAKE_BATCH;
}

/* Takes ownership of *w (moved out: *w becomes null).  The batch must not
 * be full. */
static inline void sync_wakes_take(sync_wakes *b, ms_waker *w) {
    b->w[b->n++] = *w;
    *w = (ms_waker){0};
}

/* Wakes (consuming) every collected waker; call without any lock held. */
static inline void sync_wakes_flush(sync_wakes *b) {
    for (uint32_t i = 0; i < b->n; i++)
        ms_waker_wake(&b->w[i]);
    b->n = 0;
}

/* ---- the object lock ---- */

/* A plain (non-spinning) mutex.  Measured on semaphore_contended: glibc's
 * adaptive mutex, which spins before sleeping, made it 1.4x slower with 2
 * workers and 4.7x slower with 4 workers on 2 cores (spinning on a lock
 * whose holder was preempted). */
static inline void sync_lock_init(pthread_mutex_t *m) {
    pthread_mutex_init(m, NULL);
}

/* ---- refcounts ---- */

/* Increments; relaxed, as a reference can only be copied by its holder. */
static inline void sync_ref(_Atomic uint32_t *refs) {
    atomic_fetch_add_explicit(refs, 1, memory_order_relaxed);
}

/* Decrements; true when that was the last reference (acq_rel, so the
 * caller may then tear the object down). */
static inline bool sync_unref(_Atomic uint32_t *refs) {
    return atomic_fetch_sub_explicit(refs, 1, memory_order_acq_rel) == 1;
}

#endif
