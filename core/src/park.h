/*
 * park.h - a one-token thread parker on a Linux futex.
 *
 * A parker holds at most one wake-up token.  park_wait() consumes the token
 * if present, else sleeps until park_unpark() deposits one.  Because the
 * token is kept, an unpark that races ahead of the park is never lost;
 * several unparks before one park collapse into one token.
 *
 * Thread parkers (park_thread_*) are refcounted heap parkers, one per plain
 * thread, so that a waker for a thread blocked in ms_block_on or
 * ms_task_join may outlive the wait that created it.
 */
#ifndef MS_PARK_H
#define MS_PARK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ms.h"

typedef struct park {
    /* PARK_EMPTY, PARK_PARKED or PARK_NOTIFIED.  Written by the parking
     * thread (EMPTY<->PARKED) and by any unparker (->NOTIFIED), all with
     * seq_cst read-modify-writes. */
    _Atomic uint32_t state;
} park;

void park_init(park *p);
/* Sleeps until a token is available (or timeout_ns passes, when >= 0).
 * Returns true if a token was consumed, false on timeout. */
bool park_wait(park *p, int64_t timeout_ns);
/* Consumes the token if one is there; never sleeps. */
bool park_try(park *p);
/* Deposits the token and wakes the parked thread, if any.  Returns true
 * if the thread was actually asleep. */
bool park_unpark(park *p);

/* The calling plain thread's parker (created on first use, freed when the
 * thread exits and no waker refers to it). */
park *park_thread_current(void);
/* A waker that unparks the parker returned by park_thread_current(). */
ms_waker park_thread_waker(park *p);

#endif
