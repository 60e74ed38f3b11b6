/*
 * blocking.h - the blocking thread pool.
 *
 * Jobs wait in one FIFO queue under the pool's mutex.  A job either goes
 * to an idle thread (signalled on the condition variable; `notified` counts
 * signals not yet taken, so two jobs never count on the same idle thread)
 * or, when none is idle and fewer than max threads exist, to a new thread.
 * A thread idle for keep_alive exits, and so does one over max_threads
 * when the operator lowers it (after its current job: nothing is cut
 * short).  An exiting thread leaves its id in
 * `exited`; the next spawn (or shutdown) joins it, so no thread outlives a
 * shutdown that met its deadline, and nothing it allocated is left behind.
 */
#ifndef MS_BLOCKING_H
#define MS_BLOCKING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ms.h"

typedef struct blk_pool {
    ms_runtime *rt;             /* immutable */
    pthread_mutex_t lock;
    pthread_cond_t work_cond;   /* idle threads wait here */
    pthread_cond_t exit_cond;   /* shutdown waits here for threads == 0 */
    /* Everything below up to the gauges is under lock. */
    ms_task *head, *tail;
    uint32_t threads, idle, notified, max_threads;
    uint32_t leaving;           /* surplus threads on their way out (max lowered) */
    uint64_t keep_alive_ns;     /* live-tunable (blk_tune) */
    uint64_t next_name;
    bool shutdown;
    pthread_t *exited;          /* threads that returned, to be joined */
    uint32_t nexited, exited_cap;
    /* Gauges mirrored for metrics: written under lock, read without. */
    _Atomic uint64_t queue_depth;
    _Atomic uint32_t threads_gauge, idle_gauge;
    _Atomic uint64_t jobs_total;
} blk_pool;

void blk_init(blk_pool *p, ms_runtime *rt, const ms_config *cfg);
int blk_spawn(blk_pool *p, ms_task *t, ms_error *err);
/* Refuses new jobs, cancels queued ones (returns how many via *cancelled)
 * and waits for running threads until deadline_ns.  Returns the number of
 * threads still running then. */
uint32_t blk_shutdown(blk_pool *p, uint64_t deadline_ns, uint64_t *cancelled);
void blk_destroy(blk_pool *p);
/* Live tuning: a higher ceiling starts threads for jobs already waiting; a
 * lower one lets the surplus leave as each finishes its job. */
int blk_tune(blk_pool *p, uint32_t max_threads, uint64_t keep_alive_ms, ms_error *err);
void blk_limits(blk_pool *p, uint32_t *max_threads, uint64_t *keep_alive_ms);

#endif
