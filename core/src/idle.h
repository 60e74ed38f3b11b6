/*
 * idle.h - which workers are asleep and which are searching for work.
 *
 * One atomic word packs the number of unparked workers (high 16 bits) and
 * the number of searching workers (low 16 bits); the list of sleeping
 * workers lives under a mutex.  The rules, after Tokio's scheduler:
 *
 *   - At most half the workers search (steal) at once, so an idle runtime
 *     does not burn every core scanning empty queues.
 *   - A notifier (a push to a queue others may take from) wakes a sleeper
 *     only when nobody is searching: a searcher will find the work.
 *   - The last searcher to park re-checks every queue after it stops
 *     counting as a searcher, which closes the window between a
 *     notifier's check and the searcher's sleep (both sides use seq_cst).
 *   - A worker woken by a notifier starts out searching; when a searcher
 *     finds work and it was the last one, it wakes another sleeper so that
 *     parallelism ramps up.
 *
 * The number of active workers changes at run time (sched_resize): a
 * retired worker counts neither as unparked nor as a sleeper, so "someone
 * is asleep" is "unparked < active".  While a resize is under way the two
 * counts may disagree for a moment (a worker told to retire still runs),
 * which at worst costs a notifier one look under the lock.
 */
#ifndef MS_IDLE_H
#define MS_IDLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct idle {
    _Atomic uint32_t state;     /* unparked << 16 | searching; seq_cst */
    /* Active workers: written by sched_resize (under its lock), read
     * anywhere with seq_cst loads. */
    _Atomic uint32_t nactive;
    pthread_mutex_t lock;
    uint32_t *sleepers;         /* under lock: stack of worker indexes */
    uint32_t nsleepers;         /* under lock; also mirrored in state */
    bool *asleep;               /* under lock: asleep[i] iff i in sleepers */
} idle;

/* Room for max workers, nactive of them active and unparked. */
int idle_init(idle *d, uint32_t max, uint32_t nactive);
void idle_destroy(idle *d);
bool idle_try_search(idle *d);
/* Returns true when the caller was the last searcher. */
bool idle_stop_search(idle *d);
/* Registers worker i as asleep.  Returns true when it was the last
 * searcher (the caller must then re-check the queues). */
bool idle_to_parked(idle *d, uint32_t i, bool searching);
/* Whether a notifier should wake someone (nobody searching, someone asleep). */
bool idle_should_wake(idle *d);
/* Picks a sleeper to wake and counts it as unparked and searching; -1 if
 * none or if someone started searching meanwhile. */
int idle_claim_sleeper(idle *d);
/* After a wake-up: true if worker i is no longer registered as asleep
 * (it was claimed), false if the wake-up was spurious. */
bool idle_was_claimed(idle *d, uint32_t i);
/* Removes i from the sleepers (shutdown, retirement) and counts it as
 * unparked; true if it was asleep, false if a notifier claimed it first
 * (then it counts as unparked and searching). */
bool idle_unregister(idle *d, uint32_t i);
/* A running worker retires: no longer unparked (nor searching, if it was).
 * Returns true when it was the last searcher (re-check the queues). */
bool idle_retire(idle *d, bool searching);
/* A retired or newly started worker becomes active, unparked and
 * searching. */
void idle_activate(idle *d);
void idle_set_active(idle *d, uint32_t n);
uint32_t idle_num_searching(idle *d);
uint32_t idle_num_unparked(idle *d);

#endif
