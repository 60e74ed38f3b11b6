/*
 * timer.h - timers on the driver's wheel.
 */
#ifndef MS_TIMER_H
#define MS_TIMER_H

#include <stdatomic.h>
#include <stdbool.h>

#include "driver.h"
#include "ms.h"
#include "wheel.h"

struct ms_timer {
    whl_entry entry;            /* under d->tlock; first, for container_of */
    driver *d;                  /* immutable */
    ms_waker waker;             /* under d->tlock */
    /* Set under tlock by the driver when it fires, or by the owner when it
     * sees the deadline passed; cleared by the owner when re-armed.  Read
     * without the lock (acquire) as a fast path. */
    _Atomic bool fired;
    /* Owner-only (the one task or thread using the timer). */
    uint64_t deadline_ns;
    bool armed;
};

/* An interval is a timer re-armed at each tick (here so that tests can
 * read the deadline it computed: ms_timer_deadline(iv->timer)). */
struct ms_interval {
    ms_timer *timer;
    uint64_t period_ns;
    ms_missed_tick policy;
    uint64_t next_ns;           /* the tick being waited for */
};

/* Driver side, tlock held: marks the timer of e fired and hands back its
 * waker to wake after unlocking. */
ms_waker tmr_fire_locked(whl_entry *e);
/* Driver side, tlock held: puts e back to fire 1 ms later. */
void tmr_retry_locked(driver *d, whl_entry *e);

#endif
