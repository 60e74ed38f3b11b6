/*
 * sync_notify.c - ms_notify: wake one waiter, or all of them.
 *
 * Tokio's Notify.  notify_one wakes the longest waiting waiter or, when
 * nobody waits, stores a single permit that the next wait consumes at once
 * (so a notify_one racing ahead of the wait is not lost).  notify_all wakes
 * every waiter present and stores nothing.
 *
 * notify_all also bumps a generation counter.  A waiter node records the
 * generation when it is initialised, and its first poll completes at once
 * if the generation moved: so "init the waiter, check the condition, poll"
 * cannot miss a notify_all that lands between the check and the poll.
 * Every node queued before a notify_all carries an older generation than
 * the one it sets, and every node queued after it the new one (its first
 * poll would have completed otherwise), so notify_all wakes queued nodes
 * from the head until it meets one of its own generation, even when it has
 * to drop the lock half way to wake a full batch.
 *
 * A node woken by notify_one and cancelled before its poll saw it passes
 * the notification on (to the next waiter, or as the permit), as Tokio
 * does: a notification is never swallowed by a task that gave up.
 *
 * Everything is under one mutex; the owner of a woken node reads its
 * state without it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "sync.h"

enum {
    NOTIFY_W_IDLE = 0,
    NOTIFY_W_QUEUED = 1,
    NOTIFY_W_ONE = 2,   /* woken by notify_one, not yet observed */
    NOTIFY_W_ALL = 3,   /* woken by notify_all, not yet observed */
};

struct ms_notify {
    _Atomic uint32_t refs;
    /* notify_all count; written under lock, read by waiter_init without
     * it (acquire). */
    _Atomic uint64_t gen;
    pthread_mutex_t lock;
    bool permit;               /* under lock */
    ms_wait_link waiters;      /* FIFO of ms_notify_waiter, under lock */
};

static inline ms_notify_waiter *notify_waiter_of(ms_wait_link *l) {
    return sync_container_of(l, ms_notify_waiter, link);
}

int ms_notify_new(ms_notify **out) {
    if (!out)
        return MS_E_INVALID_ARGUMENT;
    ms_notify *n = malloc(sizeof *n);
    if (!n)
        return MS_E_NO_MEMORY;
    atomic_init(&n->refs, 1);
    atomic_init(&n->gen, 0);
    sync_lock_init(&n->lock);
    n->permit = false;
    sync_list_init(&n->waiters);
    *out = n;
    return 0;
}

ms_notify *ms_notify_ref(ms_notify *n) {
    sync_ref(&n->refs);
    return n;
}

void ms_notify_unref(ms_notify *n) {
    if (!n || !sync_unref(&n->refs))
        return;
    pthread_mutex_destroy(&n->lock);
    free(n);
}

void ms_notify_waiter_init(ms_notify *n, ms_notify_waiter *w) {
    w->link.prev = w->link.next = NULL;
    w->waker = (ms_waker){0};
    w->gen = atomic_load_explicit(&n->gen, memory_order_acquire);
    w->state = NOTIFY_W_IDLE;
}

/* Lock held.  Wakes the head waiter with ONE, or stores the permit. */
static void notify_one_locked(ms_notify *n, sync_wakes *wakes) {
    ms_wait_link *l = sync_list_front(&n->waiters);
    if (!l) {
        n->permit = true;
        return;
    }
    ms_notify_waiter *w = notify_waiter_of(l);
    sync_list_remove(l);
    sync_wakes_take(wakes, &w->waker);
    sync_state_store(&w->state, NOTIFY_W_ONE);
}

void ms_notify_one(ms_notify *n) {
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    pthread_mutex_lock(&n->lock);
    notify_one_locked(n, &wakes);
    pthread_mutex_unlock(&n->lock);
    sync_wakes_flush(&wakes);
}

void ms_notify_all(ms_notify *n) {
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    pthread_mutex_lock(&n->lock);
    uint64_t mine = atomic_load_explicit(&n->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&n->gen, mine, memory_order_release);
    for (ms_wait_link *l; (l = sync_list_front(&n->waiters));) {
        ms_notify_waiter *w = notify_waiter_of(l);
        if (w->gen >= mine)
            break; /* queued after this call began */
        if (sync_wakes_full(&wakes)) {
            pthread_mutex_unlock(&n->lock);
            sync_wakes_flush(&wakes);
            pthread_mutex_lock(&n->lock);
            continue;
        }
        sync_list_remove(l);
        sync_wakes_take(&wakes, &w->waker);
        sync_state_store(&w->state, NOTIFY_W_ALL);
    }
    pthread_mutex_unlock(&n->lock);
    sync_wakes_flush(&wakes);
}

ms_poll ms_notify_poll(ms_notify *n, ms_notify_waiter *w, ms_cx *cx) {
    if (!ms_coop_proceed(cx))
        return MS_POLL_PENDING;
    uint32_t st = sync_state_load(&w->state);
    if (st == NOTIFY_W_ONE || st == NOTIFY_W_ALL) {
        w->state = NOTIFY_W_IDLE;
        return MS_POLL_READY;
    }
    ms_waker mine = ms_waker_clone(ms_cx_waker(cx));
    ms_waker old = {0};
    pthread_mutex_lock(&n->lock);
    st = sync_state_peek(&w->state);
    ms_poll r = MS_POLL_PENDING;
    if (st == NOTIFY_W_QUEUED) {
        if (!ms_waker_will_wake(&w->waker, &mine)) {
            old = w->waker;
            w->waker = mine;
            mine = (ms_waker){0};
        }
    } else if (st != NOTIFY_W_IDLE) {
        w->state = NOTIFY_W_IDLE;
        r = MS_POLL_READY;
    } else if (atomic_load_explicit(&n->gen, memory_order_relaxed) != w->gen) {
        r = MS_POLL_READY; /* a notify_all since init */
    } else if (n->permit) {
        n->permit = false;
        r = MS_POLL_READY;
    } else {
        w->waker = mine;
        mine = (ms_waker){0};
        sync_list_push_back(&n->waiters, &w->link);
        sync_state_store(&w->state, NOTIFY_W_QUEUED);
    }
    pthread_mutex_unlock(&n->lock);
    ms_waker_drop(&mine);
    ms_waker_drop(&old);
    return r;
}

void ms_notify_waiter_cancel(ms_notify *n, ms_notify_waiter *w) {
    uint32_t st = sync_state_load(&w->state);
    if (st == NOTIFY_W_IDLE)
        return;
    if (st == NOTIFY_W_ALL) {
        w->state = NOTIFY_W_IDLE;
        return;
    }
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    ms_waker old = {0};
    pthread_mutex_lock(&n->lock);
    st = sync_state_peek(&w->state);
    if (st == NOTIFY_W_QUEUED) {
        sync_list_remove(&w->link);
        old = w->waker;
        w->waker = (ms_waker){0};
    } else if (st == NOTIFY_W_ONE) {
        notify_one_locked(n, &wakes); /* pass the notification on */
    }
    w->state = NOTIFY_W_IDLE;
    pthread_mutex_unlock(&n->lock);
    sync_wakes_flush(&wakes);
    ms_waker_drop(&old);
}
