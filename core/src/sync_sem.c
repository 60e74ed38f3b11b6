/*
 * sync_sem.c - the counting semaphore (ms_sem) and permit objects.
 *
 * One atomic word holds the available permits and two flags:
 *
 *     word = available << SEM_SHIFT | SEM_WAITERS | SEM_CLOSED
 *
 * and a mutex guards the FIFO queue of waiter nodes.  SEM_WAITERS is set
 * exactly while the queue is non-empty, and only under the lock.  The
 * invariant that makes the lock-free paths fair:
 *
 *     SEM_WAITERS set  =>  available == 0
 *
 * because permits released while anyone waits are assigned to the head
 * waiter (which collects them until it has all it asked for), never put
 * back in the word.  So acquire and try_acquire take permits with one CAS
 * only while nobody is queued, and release adds them with one CAS under
 * the same condition; with waiters queued both go through the lock.  The
 * two flags and the count share one word, so a CAS that sees no waiters
 * cannot race past a waiter being queued.
 *
 * Conservation, at every moment (the word and the queue under the lock):
 *     available + sum(assigned of queued waiters) + held == total
 * where held is what acquirers own and total changes only by add_permits
 * and forget.  Cancelling a queued waiter releases what it was assigned;
 * cancelling one whose acquire completed unobserved releases all of it;
 * close releases what its waiters were assigned.
 *
 * Costs: uncontended acquire and release are one CAS each; a contended
 * release is one lock, the hand-over to the head waiter, and one wake
 * after the unlock.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "sync.h"

enum {
    SEM_CLOSED = 1u,
    SEM_WAITERS = 2u,
};
#define SEM_SHIFT 2
#define SEM_AVAIL(w) ((w) >> SEM_SHIFT)

/* Waiter node states (ms_sem_waiter.state). */
enum {
    SEM_W_IDLE = 0,    /* not queued, holds nothing: owner's */
    SEM_W_QUEUED = 1,  /* in the queue: the lock's */
    SEM_W_DONE = 2,    /* all permits assigned, not yet observed by a poll */
    SEM_W_CLOSED = 3,  /* woken by close, not yet observed */
};

struct ms_sem {
    /* available << SEM_SHIFT | flags; CAS/RMW acq_rel.  SEM_WAITERS and
     * SEM_CLOSED change only under lock. */
    _Atomic uint64_t word;
    _Atomic uint32_t refs;
    pthread_mutex_t lock;
    ms_wait_link waiters;      /* FIFO of ms_sem_waiter, under lock */
    /* Permits ms_sem_reduce_permits could not take at once because they
     * were held: the next ones given back are absorbed instead.  Written
     * under lock; read without it (relaxed) by add_permits to decide
     * whether it must take the locked path. */
    _Atomic uint64_t debt;
};

static inline ms_sem_waiter *sem_waiter_of(ms_wait_link *l) {
    return sync_container_of(l, ms_sem_waiter, link);
}

int ms_sem_new(uint64_t permits, ms_sem **out) {
    if (!out || permits > MS_SEM_MAX_PERMITS)
        return MS_E_INVALID_ARGUMENT;
    ms_sem *s = malloc(sizeof *s);
    if (!s)
        return MS_E_NO_MEMORY;
    atomic_init(&s->word, permits << SEM_SHIFT);
    atomic_init(&s->refs, 1);
    atomic_init(&s->debt, 0);
    sync_lock_init(&s->lock);
    sync_list_init(&s->waiters);
    *out = s;
    return 0;
}

ms_sem *ms_sem_ref(ms_sem *s) {
    sync_ref(&s->refs);
    return s;
}

void ms_sem_unref(ms_sem *s) {
    if (!s || !sync_unref(&s->refs))
        return;
    /* A queued waiter's owner holds a reference, so none is left. */
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void ms_sem_waiter_init(ms_sem_waiter *w, uint64_t n) {
    w->link.prev = w->link.next = NULL;
    w->waker = (ms_waker){0};
    w->want = n;
    w->assigned = 0;
    w->state = SEM_W_IDLE;
}

/* Lock held.  Hands n permits to the queue in FIFO order, then puts what is
 * left in the word; clears SEM_WAITERS when the queue empties.  Completed
 * waiters' wakers go to *wakes; when the batch fills with permits still to
 * hand out, the lock is dropped to wake them and taken again (the permits
 * in hand are this call's until then). */
static void sem_give_locked(ms_sem *s, uint64_t n, sync_wakes *wakes) {
    uint64_t debt = atomic_load_explicit(&s->debt, memory_order_relaxed);
    if (debt) {
        uint64_t pay = debt < n ? debt : n;
        atomic_store_explicit(&s->debt, debt - pay, memory_order_relaxed);
        n -= pay;
    }
    for (;;) {
        ms_wait_link *l = sync_list_front(&s->waiters);
        if (!l)
            break;
        if (n == 0)
            return; /* queue non-empty: SEM_WAITERS stays */
        if (sync_wakes_full(wakes)) {
            pthread_mutex_unlock(&s->lock);
            sync_wakes_flush(wakes);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        ms_sem_waiter *w = sem_waiter_of(l);
        uint64_t need = w->want - w->assigned;
        uint64_t give = need < n ? need : n;
        w->assigned += give;
        n -= give;
        if (w->assigned == w->want) {
            sync_list_remove(&w->link);
            sync_wakes_take(wakes, &w->waker);
            sync_state_store(&w->state, SEM_W_DONE); /* last touch */
        }
    }
    /* Queue empty: SEM_WAITERS off, leftovers available.  Fast paths do
     * not touch the word while SEM_WAITERS is set, but forget may. */
    uint64_t cur = atomic_load_explicit(&s->word, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(
        &s->word, &cur, (cur & ~(uint64_t)SEM_WAITERS) + (n << SEM_SHIFT),
        memory_order_acq_rel, memory_order_relaxed)) {
    }
}

/* One CAS taking n permits when nobody is queued.  Returns 0,
 * MS_E_EXHAUSTED (too few, or waiters queued) or MS_E_CLOSED. */
static int sem_try_take(ms_sem *s, uint64_t n) {
    uint64_t cur = atomic_load_explicit(&s->word, memory_order_relaxed);
    for (;;) {
        if (cur & SEM_CLOSED)
            return MS_E_CLOSED;
        if (n && ((cur & SEM_WAITERS) || SEM_AVAIL(cur) < n))
            return MS_E_EXHAUSTED; /* no barging past queued waiters */
        if (atomic_compare_exchange_weak_explicit(&s->word, &cur, cur - (n << SEM_SHIFT),
                                                  memory_order_acq_rel, memory_order_relaxed))
            return 0;
    }
}

int ms_sem_try_acquire(ms_sem *s, uint64_t n) {
    if (n > MS_SEM_MAX_PERMITS)
        return MS_E_INVALID_ARGUMENT;
    return sem_try_take(s, n);
}

/* Lock held, w idle.  Takes w's permits or queues it: returns 0 (taken),
 * MS_E_CLOSED, or 1 (queued, with whatever was available assigned). */
static int sem_take_or_queue_locked(ms_sem *s, ms_sem_waiter *w) {
    uint64_t cur = atomic_load_explicit(&s->word, memory_order_relaxed);
    for (;;) {
        if (cur & SEM_CLOSED)
            return MS_E_CLOSED;
        if (cur & SEM_WAITERS) {
            /* Behind the others; available is 0. */
            w->assigned = 0;
            break;
        }
        uint64_t avail = SEM_AVAIL(cur);
        if (avail >= w->want) {
            if (atomic_compare_exchange_weak_explicit(&s->word, &cur,
                                                      cur - (w->want << SEM_SHIFT),
                                                      memory_order_acq_rel,
                                                      memory_order_relaxed))
                return 0;
            continue;
        }
        /* First in the queue: take what there is, raise SEM_WAITERS. */
        if (atomic_compare_exchange_weak_explicit(&s->word, &cur,
                                                  (cur & SEM_CLOSED) | SEM_WAITERS,
                                                  memory_order_acq_rel, memory_order_relaxed)) {
            w->assigned = avail;
            break;
        }
    }
    sync_list_push_back(&s->waiters, &w->link);
    sync_state_store(&w->state, SEM_W_QUEUED);
    return 1;
}

ms_poll ms_sem_acquire_poll(ms_sem *s, ms_sem_waiter *w, ms_cx *cx, int *rc) {
    if (!ms_coop_proceed(cx))
        return MS_POLL_PENDING;
    int r;
    switch (sync_state_load(&w->state)) {
    case SEM_W_DONE:
        w->state = SEM_W_IDLE;
        *rc = 0;
        return MS_POLL_READY;
    case SEM_W_CLOSED:
        w->state = SEM_W_IDLE;
        *rc = MS_E_CLOSED;
        return MS_POLL_READY;
    case SEM_W_QUEUED: {
        ms_waker old = {0};
        pthread_mutex_lock(&s->lock);
        uint32_t st = sync_state_peek(&w->state);
        if (st == SEM_W_QUEUED && !ms_waker_will_wake(&w->waker, ms_cx_waker(cx))) {
            old = w->waker;
            w->waker = ms_waker_clone(ms_cx_waker(cx));
        }
        pthread_mutex_unlock(&s->lock);
        ms_waker_drop(&old);
        if (st == SEM_W_QUEUED)
            return MS_POLL_PENDING;
        w->state = SEM_W_IDLE;
        *rc = st == SEM_W_DONE ? 0 : MS_E_CLOSED;
        return MS_POLL_READY;
    }
    default:
        break;
    }
    if (w->want > MS_SEM_MAX_PERMITS) {
        *rc = MS_E_INVALID_ARGUMENT;
        return MS_POLL_READY;
    }
    r = sem_try_take(s, w->want);
    if (r != MS_E_EXHAUSTED) {
        *rc = r;
        return MS_POLL_READY;
    }
    /* Clone before locking: a clone may run foreign code. */
    ms_waker mine = ms_waker_clone(ms_cx_waker(cx));
    pthread_mutex_lock(&s->lock);
    r = sem_take_or_queue_locked(s, w);
    if (r == 1)
        w->waker = mine;
    pthread_mutex_unlock(&s->lock);
    if (r == 1)
        return MS_POLL_PENDING;
    ms_waker_drop(&mine);
    *rc = r;
    return MS_POLL_READY;
}

void ms_sem_waiter_cancel(ms_sem *s, ms_sem_waiter *w) {
    uint32_t st = sync_state_load(&w->state);
    if (st == SEM_W_IDLE)
        return;
    if (st == SEM_W_CLOSED) {
        w->state = SEM_W_IDLE; /* close already returned its permits */
        return;
    }
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    ms_waker old = {0};
    pthread_mutex_lock(&s->lock);
    st = sync_state_peek(&w->state);
    uint64_t back = 0;
    if (st == SEM_W_QUEUED) {
        sync_list_remove(&w->link);
        old = w->waker;
        w->waker = (ms_waker){0};
        back = w->assigned;
    } else if (st == SEM_W_DONE) {
        back = w->want; /* granted but never observed: still ours to return */
    }
    w->assigned = 0;
    w->state = SEM_W_IDLE;
    if (st == SEM_W_QUEUED || back)
        sem_give_locked(s, back, &wakes); /* also lowers SEM_WAITERS if now empty */
    pthread_mutex_unlock(&s->lock);
    sync_wakes_flush(&wakes);
    ms_waker_drop(&old);
}

int ms_sem_add_permits(ms_sem *s, uint64_t n) {
    if (n == 0)
        return 0;
    if (n > MS_SEM_MAX_PERMITS)
        return MS_E_INVALID_ARGUMENT;
    uint64_t cur = atomic_load_explicit(&s->word, memory_order_relaxed);
    while (!(cur & SEM_WAITERS) && !atomic_load_explicit(&s->debt, memory_order_relaxed)) {
        if (SEM_AVAIL(cur) > MS_SEM_MAX_PERMITS - n)
            return MS_E_INVALID_ARGUMENT;
        if (atomic_compare_exchange_weak_explicit(&s->word, &cur, cur + (n << SEM_SHIFT),
                                                  memory_order_acq_rel, memory_order_relaxed))
            return 0;
    }
    /* Waiters queued (available is 0 and the permits go to them first), or
     * a reduction is owed. */
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    pthread_mutex_lock(&s->lock);
    sem_give_locked(s, n, &wakes);
    pthread_mutex_unlock(&s->lock);
    sync_wakes_flush(&wakes);
    return 0;
}

void ms_sem_release(ms_sem *s, uint64_t n) {
    (void)ms_sem_add_permits(s, n);
}

uint64_t ms_sem_forget(ms_sem *s, uint64_t n) {
    uint64_t cur = atomic_load_explicit(&s->word, memory_order_relaxed);
    for (;;) {
        uint64_t avail = SEM_AVAIL(cur);
        uint64_t take = avail < n ? avail : n;
        if (take == 0)
            return 0;
        if (atomic_compare_exchange_weak_explicit(&s->word, &cur, cur - (take << SEM_SHIFT),
                                                  memory_order_acq_rel, memory_order_relaxed))
            return take;
    }
}

uint64_t ms_sem_reduce_permits(ms_sem *s, uint64_t n, uint64_t *owed) {
    uint64_t now = ms_sem_forget(s, n);
    pthread_mutex_lock(&s->lock);
    uint64_t debt = atomic_load_explicit(&s->debt, memory_order_relaxed) + (n - now);
    atomic_store_explicit(&s->debt, debt, memory_order_relaxed);
    pthread_mutex_unlock(&s->lock);
    if (owed)
        *owed = debt;
    return now;
}

uint64_t ms_sem_owed(const ms_sem *s) {
    return atomic_load_explicit(&((ms_sem *)s)->debt, memory_order_relaxed);
}

uint64_t ms_sem_available(const ms_sem *s) {
    return SEM_AVAIL(atomic_load_explicit(&((ms_sem *)s)->word, memory_order_acquire));
}

bool ms_sem_is_closed(const ms_sem *s) {
    return atomic_load_explicit(&((ms_sem *)s)->word, memory_order_acquire) & SEM_CLOSED;
}

void ms_sem_close(ms_sem *s) {
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    uint64_t back = 0;
    pthread_mutex_lock(&s->lock);
    atomic_fetch_or_explicit(&s->word, SEM_CLOSED, memory_order_acq_rel);
    /* No waiter joins from here on, so this drains the queue. */
    for (ms_wait_link *l; (l = sync_list_front(&s->waiters));) {
        if (sync_wakes_full(&wakes)) {
            pthread_mutex_unlock(&s->lock);
            sync_wakes_flush(&wakes);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        ms_sem_waiter *w = sem_waiter_of(l);
        back += w->assigned;
        w->assigned = 0;
        sync_list_remove(&w->link);
        sync_wakes_take(&wakes, &w->waker);
        sync_state_store(&w->state, SEM_W_CLOSED);
    }
    if (atomic_load_explicit(&s->word, memory_order_relaxed) & SEM_WAITERS)
        sem_give_locked(s, back, &wakes); /* queue empty: clears the flag */
    else if (back)
        atomic_fetch_add_explicit(&s->word, back << SEM_SHIFT, memory_order_acq_rel);
    pthread_mutex_unlock(&s->lock);
    sync_wakes_flush(&wakes);
}

/* ---- permits ---- */

void ms_permit_init(ms_permit *p, ms_sem *s, uint64_t n) {
    p->sem = s ? ms_sem_ref(s) : NULL;
    p->n = n;
}

void ms_permit_release(ms_permit *p) {
    ms_sem *s = p->sem;
    if (!s)
        return;
    p->sem = NULL;
    uint64_t n = p->n;
    p->n = 0;
    ms_sem_release(s, n);
    ms_sem_unref(s);
}

void ms_permit_forget(ms_permit *p) {
    ms_sem *s = p->sem;
    if (!s)
        return;
    p->sem = NULL;
    p->n = 0;
    ms_sem_unref(s);
}
