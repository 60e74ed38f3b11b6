/*
 * sync_oneshot.c - ms_oneshot: one value from one sender side to one
 * receiver side.
 *
 * Built for the request/reply hot path, so no lock: one atomic word holds
 * the state flags and the count of live sides,
 *
 *     word = sides << OS_SIDE_SHIFT | OS_TAKEN | OS_WAKER | OS_RX_GONE
 *            | OS_TX_GONE | OS_VALUE
 *
 * plus the value and the receiver's waker.  The protocol (Tokio's):
 *
 *   - send writes the value, then sets OS_VALUE with one CAS, which fails
 *     if the receiver side is gone (the value stays the caller's);
 *   - the receiver publishes its waker by writing the slot and then
 *     setting OS_WAKER; to replace it, it first clears OS_WAKER, which
 *     fails once OS_VALUE or OS_TX_GONE is set;
 *   - whoever sets OS_VALUE or OS_TX_GONE and sees OS_WAKER in the word it
 *     replaced wakes the slot's waker (by reference).  While OS_WAKER is
 *     set and the receiver cannot clear it any more, nobody writes the
 *     slot, so the read is safe.
 *
 * The waker slot is dropped only when the object is freed: a sender may
 * still be reading it when the receiver side closes.  Each side owns one
 * count in the word and keeps it until it has finished touching the
 * object, so the frees happen after every wake.  A side closing when no
 * wake is needed sets its GONE flag and drops its count in one RMW.
 *
 * Costs: new is one malloc; send is a CAS; a receive that waits is a clone
 * and a CAS to register, one acquire load to see the value; each close is
 * one RMW (two when the sender closes on a registered waiter without
 * sending); the last close frees.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "sync.h"

enum {
    OS_VALUE = 1u << 0,    /* the value was sent */
    OS_TX_GONE = 1u << 1,  /* the sender side was closed */
    OS_RX_GONE = 1u << 2,  /* the receiver side was closed */
    OS_WAKER = 1u << 3,    /* rx_waker holds the receiver's waker */
    OS_TAKEN = 1u << 4,    /* the receiver took the value */
};
#define OS_SIDE_SHIFT 8
#define OS_SIDE (1u << OS_SIDE_SHIFT)

struct ms_oneshot {
    _Atomic uint32_t word;
    ms_drop_fn drop_value;  /* immutable */
    void *value;            /* written by send before OS_VALUE (release) */
    ms_waker rx_waker;      /* see OS_WAKER */
};

int ms_oneshot_new(ms_drop_fn drop_value, ms_oneshot **out) {
    if (!out)
        return MS_E_INVALID_ARGUMENT;
    ms_oneshot *o = malloc(sizeof *o);
    if (!o)
        return MS_E_NO_MEMORY;
    atomic_init(&o->word, 2 * OS_SIDE);
    o->drop_value = drop_value;
    o->value = NULL;
    o->rx_waker = (ms_waker){0};
    *out = o;
    return 0;
}

/* Both sides are gone: nothing else can touch o. */
static void oneshot_free(ms_oneshot *o, uint32_t word) {
    if ((word & (OS_VALUE | OS_TAKEN)) == OS_VALUE && o->drop_value)
        o->drop_value(o->value);
    ms_waker_drop(&o->rx_waker);
    free(o);
}

/* Drops one side's count, having set `gone` in an earlier RMW. */
static void oneshot_put_side(ms_oneshot *o) {
    uint32_t prev = atomic_fetch_sub_explicit(&o->word, OS_SIDE, memory_order_acq_rel);
    if ((prev >> OS_SIDE_SHIFT) == 1)
        oneshot_free(o, prev - OS_SIDE);
}

int ms_oneshot_send(ms_oneshot *o, void *value) {
    uint32_t s = atomic_load_explicit(&o->word, memory_order_relaxed);
    if (s & (OS_VALUE | OS_TX_GONE))
        return MS_E_INVALID_ARGUMENT; /* sent already, or the side is closed */
    o->value = value;
    for (;;) {
        if (s & OS_RX_GONE)
            return MS_E_CLOSED;
        if (atomic_compare_exchange_weak_explicit(&o->word, &s, s | OS_VALUE,
                                                  memory_order_acq_rel, memory_order_relaxed))
            break;
    }
    if (s & OS_WAKER)
        ms_waker_wake_by_ref(&o->rx_waker);
    return 0;
}

bool ms_oneshot_is_closed(const ms_oneshot *o) {
    return atomic_load_explicit(&((ms_oneshot *)o)->word, memory_order_acquire) & OS_RX_GONE;
}

void ms_oneshot_close_tx(ms_oneshot *o) {
    if (!o)
        return;
    uint32_t s = atomic_load_explicit(&o->word, memory_order_relaxed);
    for (;;) {
        /* The receiver waits for a value that will never come: wake it,
         * keeping our count until the wake is done. */
        bool wake = (s & (OS_VALUE | OS_WAKER | OS_RX_GONE)) == OS_WAKER;
        uint32_t next = (s | OS_TX_GONE) - (wake ? 0 : OS_SIDE);
        if (atomic_compare_exchange_weak_explicit(&o->word, &s, next, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            if (wake) {
                ms_waker_wake_by_ref(&o->rx_waker);
                oneshot_put_side(o);
            } else if ((s >> OS_SIDE_SHIFT) == 1) {
                oneshot_free(o, next);
            }
            return;
        }
    }
}

/* The receiver's view once OS_VALUE or OS_TX_GONE is set. */
static ms_poll oneshot_finish(ms_oneshot *o, uint32_t s, void **value, int *rc) {
    if ((s & (OS_VALUE | OS_TAKEN)) == OS_VALUE) {
        *value = o->value;
        atomic_fetch_or_explicit(&o->word, OS_TAKEN, memory_order_relaxed);
        *rc = 0;
    } else {
        *rc = MS_E_CLOSED; /* sender gone without sending, or taken already */
    }
    return MS_POLL_READY;
}

ms_poll ms_oneshot_recv_poll(ms_oneshot *o, ms_cx *cx, void **value, int *rc) {
    if (!ms_coop_proceed(cx))
        return MS_POLL_PENDING;
    uint32_t s = atomic_load_explicit(&o->word, memory_order_acquire);
    if (s & (OS_VALUE | OS_TX_GONE))
        return oneshot_finish(o, s, value, rc);
    const ms_waker *mine = ms_cx_waker(cx);
    if (s & OS_WAKER) {
        if (ms_waker_will_wake(&o->rx_waker, mine))
            return MS_POLL_PENDING;
        /* Take the slot back before replacing the waker in it. */
        for (;;) {
            if (s & (OS_VALUE | OS_TX_GONE))
                return oneshot_finish(o, s, value, rc);
            if (atomic_compare_exchange_weak_explicit(&o->word, &s, s & ~OS_WAKER,
                                                      memory_order_acq_rel,
                                                      memory_order_acquire))
                break;
        }
        ms_waker_drop(&o->rx_waker);
    }
    o->rx_waker = ms_waker_clone(mine);
    s = atomic_load_explicit(&o->word, memory_order_acquire);
    for (;;) {
        if (s & (OS_VALUE | OS_TX_GONE)) {
            /* Completed meanwhile; the slot was never published. */
            ms_waker_drop(&o->rx_waker);
            return oneshot_finish(o, s, value, rc);
        }
        if (atomic_compare_exchange_weak_explicit(&o->word, &s, s | OS_WAKER,
                                                  memory_order_acq_rel, memory_order_acquire))
            return MS_POLL_PENDING;
    }
}

int ms_oneshot_try_recv(ms_oneshot *o, void **value) {
    uint32_t s = atomic_load_explicit(&o->word, memory_order_acquire);
    if (!(s & (OS_VALUE | OS_TX_GONE)))
        return MS_E_EXHAUSTED;
    int rc;
    oneshot_finish(o, s, value, &rc);
    return rc;
}

void ms_oneshot_close_rx(ms_oneshot *o) {
    if (!o)
        return;
    /* OS_RX_GONE is not set yet (one close per side), so the add sets it. */
    uint32_t prev =
        atomic_fetch_add_explicit(&o->word, OS_RX_GONE - OS_SIDE, memory_order_acq_rel);
    if ((prev >> OS_SIDE_SHIFT) == 1)
        oneshot_free(o, prev + OS_RX_GONE - OS_SIDE);
}
