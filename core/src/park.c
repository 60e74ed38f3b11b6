/*
 * park.c - futex-based parking.
 *
 * The state word moves EMPTY -> PARKED (the parking thread, before it
 * sleeps) and anything -> NOTIFIED (unpark, by swap).  The parker goes back
 * to EMPTY when it consumes the token.  futex_wait only sleeps while the
 * word still reads PARKED, so an unpark between the transition and the
 * syscall makes the syscall return at once: no lost wake-up.
 */
#define _GNU_SOURCE
#include "park.h"

#include <errno.h>
#include <pthread.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { PARK_EMPTY = 0, PARK_PARKED = 1, PARK_NOTIFIED = 2 };

static int futex_wait(_Atomic uint32_t *addr, uint32_t expect, const struct timespec *rel) {
    return (int)syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expect, rel, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr, int n) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void park_init(park *p) {
    atomic_init(&p->state, PARK_EMPTY);
}

bool park_wait(park *p, int64_t timeout_ns) {
    uint32_t expect = PARK_NOTIFIED;
    if (atomic_compare_exchange_strong(&p->state, &expect, PARK_EMPTY))
        return true;
    expect = PARK_EMPTY;
    if (!atomic_compare_exchange_strong(&p->state, &expect, PARK_PARKED)) {
        /* Only an unpark can have changed EMPTY: take its token. */
        atomic_store(&p->state, PARK_EMPTY);
        return true;
    }
    uint64_t deadline = timeout_ns >= 0 ? ms_now_ns() + (uint64_t)timeout_ns : 0;
    for (;;) {
        struct timespec rel, *relp = NULL;
        if (timeout_ns >= 0) {
            uint64_t now = ms_now_ns();
            if (now >= deadline) {
                /* Give up unless a token arrived meanwhile. */
                uint32_t s = PARK_PARKED;
                if (atomic_compare_exchange_strong(&p->state, &s, PARK_EMPTY))
                    return false;
                atomic_store(&p->state, PARK_EMPTY);
                return true;
            }
            uint64_t left = deadline - now;
            rel.tv_sec = (time_t)(left / 1000000000u);
            rel.tv_nsec = (long)(left % 1000000000u);
            relp = &rel;
        }
        futex_wait(&p->state, PARK_PARKED, relp);
        uint32_t s = PARK_NOTIFIED;
        if (atomic_compare_exchange_strong(&p->state, &s, PARK_EMPTY))
            return true;
        /* Spurious wake-up or timeout: loop re-checks the deadline. */
    }
}

bool park_try(park *p) {
    uint32_t expect = PARK_NOTIFIED;
    return atomic_compare_exchange_strong(&p->state, &expect, PARK_EMPTY);
}

bool park_unpark(park *p) {
    uint32_t prev = atomic_exchange(&p->state, PARK_NOTIFIED);
    if (prev == PARK_PARKED) {
        futex_wake(&p->state, 1);
        return true;
    }
    return false;
}

/* ---- per-thread parkers ---- */

typedef struct thread_parker {
    park p;                  /* first: a park * is a thread_parker * */
    _Atomic uint32_t refs;   /* the thread's own ref plus one per waker */
} thread_parker;

static pthread_key_t tp_key;
static pthread_once_t tp_once = PTHREAD_ONCE_INIT;

static void tp_release(thread_parker *tp) {
    if (atomic_fetch_sub_explicit(&tp->refs, 1, memory_order_acq_rel) == 1)
        free(tp);
}

static void tp_thread_exit(void *arg) {
    tp_release(arg);
}

static void tp_make_key(void) {
    pthread_key_create(&tp_key, tp_thread_exit);
}

park *park_thread_current(void) {
    pthread_once(&tp_once, tp_make_key);
    thread_parker *tp = pthread_getspecific(tp_key);
    if (!tp) {
        tp = malloc(sizeof *tp);
        if (!tp)
            return NULL;
        park_init(&tp->p);
        atomic_init(&tp->refs, 1);
        pthread_setspecific(tp_key, tp);
    }
    return &tp->p;
}

static const ms_waker_vtable tp_vtable;

static ms_waker tp_clone(void *data) {
    thread_parker *tp = data;
    atomic_fetch_add_explicit(&tp->refs, 1, memory_order_relaxed);
    return (ms_waker){&tp_vtable, tp};
}

static void tp_wake_by_ref(void *data) {
    park_unpark(&((thread_parker *)data)->p);
}

static void tp_wake(void *data) {
    tp_wake_by_ref(data);
    tp_release(data);
}

static void tp_drop(void *data) {
    tp_release(data);
}

static const ms_waker_vtable tp_vtable = {tp_clone, tp_wake, tp_wake_by_ref, tp_drop};

ms_waker park_thread_waker(park *p) {
    return tp_clone((thread_parker *)p);
}
