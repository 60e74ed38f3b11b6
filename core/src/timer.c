/*
 * timer.c - timers, intervals and timeouts.
 *
 * A timer joins the wheel only when a poll finds it not yet due (lazily,
 * as Tokio does), so a timer that is polled once after its deadline never
 * costs a wheel insert.  Cancelling or freeing unlinks it at once under the
 * wheel lock: 100,000 abandoned timeouts leave nothing behind.
 */
#include "timer.h"

#include <stdlib.h>

#include "runtime.h"

int ms_timer_new(ms_runtime *rt, ms_timer **out, ms_error *err) {
    driver *d = drv_of(rt, true, false, "a timer", err);
    if (!d)
        return MS_E_NOT_ENABLED;
    ms_timer *t = calloc(1, sizeof *t);
    if (!t)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a timer");
    t->d = d;
    atomic_init(&t->fired, false);
    *out = t;
    return 0;
}

static void unlink_locked(ms_timer *t) {
    if (t->entry.linked) {
        whl_remove(&t->d->wheel, &t->entry);
        atomic_fetch_sub_explicit(&t->d->timers_active, 1, memory_order_relaxed);
    }
}

void ms_timer_set_deadline(ms_timer *t, uint64_t deadline_ns) {
    pthread_mutex_lock(&t->d->tlock);
    unlink_locked(t);
    atomic_store_explicit(&t->fired, false, memory_order_relaxed);
    pthread_mutex_unlock(&t->d->tlock);
    t->deadline_ns = deadline_ns;
    t->armed = true;
}

void ms_timer_set_after(ms_timer *t, uint64_t ms) {
    ms_timer_set_deadline(t, ms_now_ns() + ms * 1000000u);
}

uint64_t ms_timer_deadline(const ms_timer *t) {
    return t->deadline_ns;
}

ms_poll ms_timer_poll(ms_timer *t, ms_cx *cx) {
    if (!t->armed)
        return MS_POLL_PENDING;
    if (atomic_load_explicit(&t->fired, memory_order_acquire))
        return MS_POLL_READY;
    driver *d = t->d;
    bool due = ms_now_ns() >= t->deadline_ns;
    bool poke = false;
    pthread_mutex_lock(&d->tlock);
    if (due || atomic_load_explicit(&t->fired, memory_order_relaxed)) {
        unlink_locked(t);
        atomic_store_explicit(&t->fired, true, memory_order_relaxed);
        pthread_mutex_unlock(&d->tlock);
        return MS_POLL_READY;
    }
    ms_waker_store(&t->waker, ms_cx_waker(cx));
    if (!t->entry.linked) {
        t->entry.deadline = drv_deadline_ms(d, t->deadline_ns);
        if (!whl_insert(&d->wheel, &t->entry)) {
            /* The wheel's clock already passed it (rounding): due. */
            atomic_store_explicit(&t->fired, true, memory_order_relaxed);
            pthread_mutex_unlock(&d->tlock);
            return MS_POLL_READY;
        }
        atomic_fetch_add_explicit(&d->timers_active, 1, memory_order_relaxed);
        if (t->entry.deadline < d->next_wake) {
            d->next_wake = t->entry.deadline;
            poke = true;
        }
    }
    pthread_mutex_unlock(&d->tlock);
    if (poke)
        drv_poke(d);
    return MS_POLL_PENDING;
}

void ms_timer_cancel(ms_timer *t) {
    pthread_mutex_lock(&t->d->tlock);
    unlink_locked(t);
    ms_waker_drop(&t->waker);
    pthread_mutex_unlock(&t->d->tlock);
    t->armed = false;
}

void ms_timer_free(ms_timer *t) {
    if (!t)
        return;
    ms_timer_cancel(t);
    free(t);
}

ms_waker tmr_fire_locked(whl_entry *e) {
    ms_timer *t = (ms_timer *)e;
    atomic_fetch_sub_explicit(&t->d->timers_active, 1, memory_order_relaxed);
    atomic_store_explicit(&t->fired, true, memory_order_release);
    ms_waker w = t->waker;
    t->waker = (ms_waker){0};
    return w;
}

void tmr_retry_locked(driver *d, whl_entry *e) {
    e->deadline = d->wheel.elapsed + 1;
    whl_insert(&d->wheel, e);
}

/* ---- timeout ---- */

ms_poll ms_timeout_poll(ms_timer *deadline, ms_cx *cx, ms_poll_fn fn, void *state,
                        bool *timed_out) {
    *timed_out = false;
    ms_poll r = fn(cx, state);
    if (r != MS_POLL_PENDING)
        return r;
    if (ms_timer_poll(deadline, cx) == MS_POLL_READY) {
        *timed_out = true;
        return MS_POLL_READY;
    }
    return MS_POLL_PENDING;
}

/* ---- interval ---- */

int ms_interval_new(ms_runtime *rt, uint64_t period_ms, ms_missed_tick policy,
                    ms_interval **out, ms_error *err) {
    if (period_ms == 0 || period_ms > MS_MAX_DURATION_MS)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "interval period %llu ms is out of range (allowed 1..%llu)",
                            (unsigned long long)period_ms,
                            (unsigned long long)MS_MAX_DURATION_MS);
    if (policy != MS_MISSED_BURST && policy != MS_MISSED_DELAY && policy != MS_MISSED_SKIP)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "missed-tick policy %d is not burst, delay or skip", (int)policy);
    ms_interval *iv = calloc(1, sizeof *iv);
    if (!iv)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for an interval");
    int rc = ms_timer_new(rt, &iv->timer, err);
    if (rc != 0) {
        free(iv);
        return rc;
    }
    iv->period_ns = period_ms * 1000000u;
    iv->policy = policy;
    iv->next_ns = ms_now_ns() + iv->period_ns;
    ms_timer_set_deadline(iv->timer, iv->next_ns);
    *out = iv;
    return 0;
}

ms_poll ms_interval_poll(ms_interval *iv, ms_cx *cx, uint64_t *skipped) {
    if (skipped)
        *skipped = 0;
    if (ms_timer_poll(iv->timer, cx) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    uint64_t now = ms_now_ns();
    uint64_t next = iv->next_ns + iv->period_ns;
    switch (iv->policy) {
    case MS_MISSED_BURST:
        break; /* late ticks come back to back until caught up */
    case MS_MISSED_DELAY:
        if (next <= now)
            next = now + iv->period_ns;
        break;
    case MS_MISSED_SKIP:
        if (next <= now) {
            uint64_t behind = (now - next) / iv->period_ns + 1;
            next += behind * iv->period_ns;
            if (skipped)
                *skipped = behind;
        }
        break;
    }
    iv->next_ns = next;
    ms_timer_set_deadline(iv->timer, next);
    return MS_POLL_READY;
}

void ms_interval_free(ms_interval *iv) {
    if (!iv)
        return;
    ms_timer_free(iv->timer);
    free(iv);
}
