/*
 * sync_chan.c - ms_chan: a multi-producer, multi-consumer FIFO channel of
 * void * values, bounded (capacity >= 1: senders wait while it is full) or
 * unbounded (capacity 0).
 *
 * One mutex guards a ring buffer and two FIFO queues of waiter nodes, one
 * for senders and one for receivers.  Values move by direct hand-over, so
 * a wake always carries its result and no wake-up can be lost or stolen:
 *
 *   - a send that finds a receiver queued gives the value to the head
 *     receiver's node (it never enters the buffer); hence receivers queue
 *     only while the buffer is empty;
 *   - a receive that takes a value from a full bounded buffer moves the
 *     head sender's value into the freed slot and completes that send;
 *     hence senders queue only while the buffer is full.
 *
 * So new senders cannot overtake queued ones, new receivers cannot
 * overtake queued ones, and every completed node just has to be observed
 * by its owner's next poll (lock-free, acquire on the node's state).
 *
 * A receiver that gives up after a value was handed to it (cancel of a
 * completed node) puts the value back: to the next queued receiver, or at
 * the front of the buffer where it came from.  That may leave a bounded
 * buffer briefly above its capacity; senders then wait until it drains
 * below.  To make the put-back infallible, the ring always has room for
 * every value handed out and not yet observed (`handed`); growing it is
 * the only allocation, and only a send can fail with MS_E_NO_MEMORY.
 *
 * Close: pending and later sends fail with MS_E_CLOSED (a queued sender's
 * value stays its own); receivers drain what the buffer holds, then get
 * MS_E_CLOSED.  Values still buffered when the last reference goes are
 * passed to drop_value.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "sync.h"
#include "sync_chan.h"

enum {
    CHAN_W_IDLE = 0,
    CHAN_W_SENDING = 1,    /* queued with a value to send */
    CHAN_W_RECEIVING = 2,  /* queued for a value */
    CHAN_W_SENT = 3,       /* the value went in; not yet observed */
    CHAN_W_RECEIVED = 4,   /* a value was handed over; not yet observed */
    CHAN_W_CLOSED = 5,     /* failed by close, not yet observed */
};

#define CHAN_MIN_ALLOC 8

struct ms_chan {
    _Atomic uint32_t refs;
    size_t capacity;           /* immutable; 0 = unbounded */
    ms_drop_fn drop_value;     /* immutable */
    pthread_mutex_t lock;
    /* Under lock: the ring (alloc is 0 or a power of two), the queues. */
    void **buf;
    size_t head, len, alloc;
    bool closed;
    ms_wait_link senders, receivers;
    /* Values sitting in RECEIVED nodes: incremented under lock,
     * decremented by the node's owner when it observes the value. */
    _Atomic size_t handed;
};

static inline ms_chan_waiter *chan_waiter_of(ms_wait_link *l) {
    return sync_container_of(l, ms_chan_waiter, link);
}

int ms_chan_new(size_t capacity, ms_drop_fn drop_value, ms_chan **out) {
    if (!out)
        return MS_E_INVALID_ARGUMENT;
    ms_chan *ch = malloc(sizeof *ch);
    if (!ch)
        return MS_E_NO_MEMORY;
    atomic_init(&ch->refs, 1);
    ch->capacity = capacity;
    ch->drop_value = drop_value;
    sync_lock_init(&ch->lock);
    ch->buf = NULL;
    ch->head = ch->len = ch->alloc = 0;
    ch->closed = false;
    sync_list_init(&ch->senders);
    sync_list_init(&ch->receivers);
    atomic_init(&ch->handed, 0);
    *out = ch;
    return 0;
}

ms_chan *ms_chan_ref(ms_chan *ch) {
    sync_ref(&ch->refs);
    return ch;
}

void ms_chan_unref(ms_chan *ch) {
    if (!ch || !sync_unref(&ch->refs))
        return;
    /* Waiting tasks hold references, so no node is queued now. */
    for (size_t i = 0; i < ch->len; i++) {
        void *v = ch->buf[(ch->head + i) & (ch->alloc - 1)];
        if (ch->drop_value)
            ch->drop_value(v);
    }
    free(ch->buf);
    pthread_mutex_destroy(&ch->lock);
    free(ch);
}

void ms_chan_waiter_init(ms_chan_waiter *w) {
    w->link.prev = w->link.next = NULL;
    w->waker = (ms_waker){0};
    w->value = NULL;
    w->state = CHAN_W_IDLE;
}

/* ---- the ring (lock held) ---- */

/* Makes room for `extra` more values on top of the buffered and the
 * handed-out ones.  False when out of memory. */
static bool chan_reserve(ms_chan *ch, size_t extra) {
    size_t need = ch->len + atomic_load_explicit(&ch->handed, memory_order_relaxed) + extra;
    if (need <= ch->alloc)
        return true;
    size_t alloc = ch->alloc ? ch->alloc : CHAN_MIN_ALLOC;
    while (alloc < need)
        alloc *= 2;
    void **buf = malloc(alloc * sizeof *buf);
    if (!buf)
        return false;
    for (size_t i = 0; i < ch->len; i++)
        buf[i] = ch->buf[(ch->head + i) & (ch->alloc - 1)];
    free(ch->buf);
    ch->buf = buf;
    ch->head = 0;
    ch->alloc = alloc;
    return true;
}

int chan_reserve_room(ms_chan *ch, size_t n) {
    pthread_mutex_lock(&ch->lock);
    bool ok = chan_reserve(ch, n);
    pthread_mutex_unlock(&ch->lock);
    return ok ? 0 : MS_E_NO_MEMORY;
}

static inline void chan_push_back(ms_chan *ch, void *v) {
    ch->buf[(ch->head + ch->len) & (ch->alloc - 1)] = v;
    ch->len++;
}

static inline void chan_push_front(ms_chan *ch, void *v) {
    ch->head = (ch->head - 1) & (ch->alloc - 1);
    ch->buf[ch->head] = v;
    ch->len++;
}

static inline void *chan_pop_front(ms_chan *ch) {
    void *v = ch->buf[ch->head];
    ch->head = (ch->head + 1) & (ch->alloc - 1);
    ch->len--;
    return v;
}

static inline bool chan_full(const ms_chan *ch) {
    return ch->capacity && ch->len >= ch->capacity;
}

/* Gives v to the head receiver, whose node completes.  A receiver must be
 * queued and the ring must have room reserved for v. */
static void chan_hand_to_receiver(ms_chan *ch, void *v, sync_wakes *wakes) {
    ms_chan_waiter *r = chan_waiter_of(sync_list_front(&ch->receivers));
    sync_list_remove(&r->link);
    r->value = v;
    atomic_fetch_add_explicit(&ch->handed, 1, memory_order_relaxed);
    sync_wakes_take(wakes, &r->waker);
    sync_state_store(&r->state, CHAN_W_RECEIVED);
}

/* Lock held, channel open.  0, MS_E_EXHAUSTED (full) or MS_E_NO_MEMORY. */
static int chan_send_locked(ms_chan *ch, void *v, sync_wakes *wakes) {
    if (!sync_list_empty(&ch->receivers)) {
        if (!chan_reserve(ch, 1))
            return MS_E_NO_MEMORY;
        chan_hand_to_receiver(ch, v, wakes);
        return 0;
    }
    if (chan_full(ch) || !sync_list_empty(&ch->senders))
        return MS_E_EXHAUSTED;
    if (!chan_reserve(ch, 1))
        return MS_E_NO_MEMORY;
    chan_push_back(ch, v);
    return 0;
}

/* Lock held, buffer non-empty.  Pops the front value and lets the head
 * sender's value into the freed room. */
static void *chan_recv_locked(ms_chan *ch, sync_wakes *wakes) {
    void *v = chan_pop_front(ch);
    ms_wait_link *l = sync_list_front(&ch->senders);
    if (l && !chan_full(ch)) {
        ms_chan_waiter *s = chan_waiter_of(l);
        sync_list_remove(l);
        chan_push_back(ch, s->value); /* the popped slot is free */
        sync_wakes_take(wakes, &s->waker);
        sync_state_store(&s->state, CHAN_W_SENT);
    }
    return v;
}

/* ---- sending ---- */

int ms_chan_try_send(ms_chan *ch, void *value) {
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    pthread_mutex_lock(&ch->lock);
    int r = ch->closed ? MS_E_CLOSED : chan_send_locked(ch, value, &wakes);
    pthread_mutex_unlock(&ch->lock);
    sync_wakes_flush(&wakes);
    return r;
}

/* The owner's view of a node some poll found not idle.  Returns true with
 * *rc when the operation finished (the node is idle again). */
static bool chan_observe(ms_chan *ch, ms_chan_waiter *w, ms_cx *cx, uint32_t queued,
                         void **value, int *rc) {
    uint32_t st = sync_state_load(&w->state);
    if (st == queued) {
        ms_waker old = {0};
        pthread_mutex_lock(&ch->lock);
        st = sync_state_peek(&w->state);
        if (st == queued && !ms_waker_will_wake(&w->waker, ms_cx_waker(cx))) {
            old = w->waker;
            w->waker = ms_waker_clone(ms_cx_waker(cx));
        }
        pthread_mutex_unlock(&ch->lock);
        ms_waker_drop(&old);
        if (st == queued)
            return false;
    }
    if (st == CHAN_W_RECEIVED) {
        *value = w->value;
        atomic_fetch_sub_explicit(&ch->handed, 1, memory_order_relaxed);
        *rc = 0;
    } else if (st == CHAN_W_SENT) {
        *rc = 0;
    } else {
        *rc = MS_E_CLOSED;
    }
    w->value = NULL;
    w->state = CHAN_W_IDLE;
    return true;
}

ms_poll ms_chan_send_poll(ms_chan *ch, ms_chan_waiter *w, void *value, ms_cx *cx, int *rc) {
    if (!ms_coop_proceed(cx))
        return MS_POLL_PENDING;
    if (sync_state_load(&w->state) != CHAN_W_IDLE)
        return chan_observe(ch, w, cx, CHAN_W_SENDING, NULL, rc) ? MS_POLL_READY
                                                                   : MS_POLL_PENDING;
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    ms_waker mine = {0};
    if (ch->capacity)
        mine = ms_waker_clone(ms_cx_waker(cx)); /* outside the lock */
    pthread_mutex_lock(&ch->lock);
    int r = ch->closed ? MS_E_CLOSED : chan_send_locked(ch, value, &wakes);
    if (r == MS_E_EXHAUSTED) {
        w->value = value;
        w->waker = mine;
        mine = (ms_waker){0};
        sync_list_push_back(&ch->senders, &w->link);
        sync_state_store(&w->state, CHAN_W_SENDING);
    }
    pthread_mutex_unlock(&ch->lock);
    sync_wakes_flush(&wakes);
    ms_waker_drop(&mine);
    if (r == MS_E_EXHAUSTED)
        return MS_POLL_PENDING;
    *rc = r;
    return MS_POLL_READY;
}

/* ---- receiving ---- */

int ms_chan_try_recv(ms_chan *ch, void **value) {
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    int r = 0;
    pthread_mutex_lock(&ch->lock);
    if (ch->len > 0)
        *value = chan_recv_locked(ch, &wakes);
    else
        r = ch->closed ? MS_E_CLOSED : MS_E_EXHAUSTED;
    pthread_mutex_unlock(&ch->lock);
    sync_wakes_flush(&wakes);
    return r;
}

ms_poll ms_chan_recv_poll(ms_chan *ch, ms_chan_waiter *w, ms_cx *cx, void **value, int *rc) {
    if (!ms_coop_proceed(cx))
        return MS_POLL_PENDING;
    if (sync_state_load(&w->state) != CHAN_W_IDLE)
        return chan_observe(ch, w, cx, CHAN_W_RECEIVING, value, rc) ? MS_POLL_READY
                                                                      : MS_POLL_PENDING;
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    int r = 0;
    bool queued = false;
    pthread_mutex_lock(&ch->lock);
    if (ch->len > 0) {
        *value = chan_recv_locked(ch, &wakes);
    } else if (ch->closed) {
        r = MS_E_CLOSED;
    } else {
        /* Cloning under the lock is rare here (only when about to wait)
         * and keeps the common path to one lock. */
        w->waker = ms_waker_clone(ms_cx_waker(cx));
        sync_list_push_back(&ch->receivers, &w->link);
        sync_state_store(&w->state, CHAN_W_RECEIVING);
        queued = true;
    }
    pthread_mutex_unlock(&ch->lock);
    sync_wakes_flush(&wakes);
    if (queued)
        return MS_POLL_PENDING;
    *rc = r;
    return MS_POLL_READY;
}

/* ---- cancel, close, queries ---- */

bool ms_chan_waiter_cancel(ms_chan *ch, ms_chan_waiter *w) {
    uint32_t st = sync_state_load(&w->state);
    if (st == CHAN_W_IDLE)
        return false;
    if (st == CHAN_W_SENT || st == CHAN_W_CLOSED) {
        /* Final states: nobody else touches the node any more. */
        w->state = CHAN_W_IDLE;
        w->value = NULL;
        return st == CHAN_W_SENT;
    }
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    ms_waker old = {0};
    pthread_mutex_lock(&ch->lock);
    st = sync_state_peek(&w->state);
    if (st == CHAN_W_SENDING || st == CHAN_W_RECEIVING) {
        sync_list_remove(&w->link);
        old = w->waker;
        w->waker = (ms_waker){0};
    } else if (st == CHAN_W_RECEIVED) {
        /* Put the value back where it came from.  Its room is reserved
         * (alloc >= len + handed), so neither path allocates. */
        void *v = w->value;
        atomic_fetch_sub_explicit(&ch->handed, 1, memory_order_relaxed);
        if (!sync_list_empty(&ch->receivers))
            chan_hand_to_receiver(ch, v, &wakes);
        else
            chan_push_front(ch, v);
    }
    w->state = CHAN_W_IDLE;
    w->value = NULL;
    pthread_mutex_unlock(&ch->lock);
    sync_wakes_flush(&wakes);
    ms_waker_drop(&old);
    return st == CHAN_W_SENT;
}

void ms_chan_close(ms_chan *ch) {
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    pthread_mutex_lock(&ch->lock);
    ch->closed = true;
    /* No node joins a queue from here on, so this drains both. */
    for (;;) {
        ms_wait_link *l = sync_list_front(&ch->senders);
        if (!l)
            l = sync_list_front(&ch->receivers);
        if (!l)
            break;
        if (sync_wakes_full(&wakes)) {
            pthread_mutex_unlock(&ch->lock);
            sync_wakes_flush(&wakes);
            pthread_mutex_lock(&ch->lock);
            continue;
        }
        ms_chan_waiter *w = chan_waiter_of(l);
        sync_list_remove(l);
        sync_wakes_take(&wakes, &w->waker);
        sync_state_store(&w->state, CHAN_W_CLOSED);
    }
    pthread_mutex_unlock(&ch->lock);
    sync_wakes_flush(&wakes);
}

bool ms_chan_is_closed(ms_chan *ch) {
    pthread_mutex_lock(&ch->lock);
    bool c = ch->closed;
    pthread_mutex_unlock(&ch->lock);
    return c;
}

size_t ms_chan_len(ms_chan *ch) {
    pthread_mutex_lock(&ch->lock);
    size_t n = ch->len;
    pthread_mutex_unlock(&ch->lock);
    return n;
}

size_t ms_chan_capacity(const ms_chan *ch) {
    return ch->capacity;
}
