/*
 * sched.h - the multi-threaded work-stealing scheduler.
 *
 * Each worker thread has a bounded local queue (rq.h) that other workers
 * steal half of when they run dry, a LIFO slot holding the task it woke
 * most recently (run next, for message-passing locality), and a parker.
 * Tasks woken or spawned from outside the workers go to the shared
 * injection queue (inject.h); idle.h decides who sleeps and who searches.
 */
#ifndef MS_SCHED_H
#define MS_SCHED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "idle.h"
#include "inject.h"
#include "metrics.h"
#include "park.h"
#include "rq.h"
#include "task_pool.h"

/* The LIFO slot may run this many tasks in a row before the worker goes
 * back to its queue, so two tasks waking each other cannot starve it. */
#define SCHED_MAX_LIFO_POLLS 3
/* Task ids are handed to workers in blocks to keep the id counter off the
 * hot path. */
#define SCHED_ID_BLOCK 1024

typedef struct sched_worker {
    met_worker m;               /* written by this worker only */
    rq queue;                   /* see rq.h */
    park parker;                /* unparked by notifiers and shutdown */

    /* The task to run next (the LIFO slot).  Filled and emptied by the
     * owner; also emptied by the health monitor when the owner has been
     * in one poll for a check interval (sched_rescue_lifo), so that a task
     * woken by a poll that never ends is not stranded behind it.  Hence
     * atomic: every take is an exchange. */
    _Atomic(ms_task *) lifo;
    /* Set by the health monitor when every worker is stalled and tasks
     * wait (sched_prefer_inject): this worker's next pick takes from the
     * injection queue first, where a timer's or a signal's wake lands.
     * Exchanged by the worker (relaxed: a hint). */
    _Atomic bool inject_first;

    /* Owner-only fields. */
    task_mag tasks;             /* recycled task blocks (task_pool.h) */
    uint32_t tick;
    uint64_t rng;
    bool searching;
    bool late;                  /* started by a resize: not counted by idle_init */
    uint64_t polls_at_wake;     /* to count wake-ups that found nothing */
    uint64_t id_next, id_end;   /* this worker's block of task ids */

    /* Immutable after start. */
    uint32_t index;
    struct sched *sched;

    /* Set by whoever starts the thread (under resize_lock), read by
     * sched_stop under the same lock. */
    pthread_t thread;
    bool started;
    char name[32];
} __attribute__((aligned(64))) sched_worker;

typedef struct sched {
    ms_runtime *rt;             /* immutable */
    uint32_t max_workers;       /* immutable: the workers array's length */
    uint32_t event_interval;    /* immutable */
    sched_worker *workers;      /* immutable array of max_workers */
    /* Live-tunable knobs: written by ms_runtime_tune (relaxed), read
     * by the workers with relaxed loads once per tick or poll; a worker
     * may use the old value for a few more tasks, which is harmless. */
    _Atomic uint32_t global_queue_interval, budget;
    /* Threads started so far: indexes below it have a thread.  Only
     * grows; written under resize_lock with release stores, read anywhere
     * with acquire loads (it bounds loops over the workers). */
    _Atomic uint32_t nstarted;
    /* Active workers = min(max_workers, target + replacements); the same
     * number as idle.nactive, kept here on the scheduler's read-mostly
     * line for the workers' per-tick check.  Written under resize_lock. */
    _Atomic uint32_t nactive;
    pthread_mutex_t resize_lock;
    uint32_t target;            /* under resize_lock: what the operator asked */
    uint32_t replacements;      /* under resize_lock: stand-ins for stuck workers */
    _Atomic uint64_t resizes;   /* changes of nactive, for metrics */
    inj inject;
    idle idle;
    task_depot tasks;           /* recycled task blocks; its own lock */
    /* Set once by shutdown (release); workers read it (acquire) each
     * event_interval ticks and when they wake. */
    _Atomic bool stopping;
    _Atomic uint64_t next_id_block;
} sched;

int sched_init(sched *s, ms_runtime *rt, const ms_config *cfg, ms_error *err);
int sched_start(sched *s, ms_error *err);
/* Sets the number of workers the operator wants active (1..max_workers):
 * growing starts or wakes workers, shrinking retires the highest indexes
 * once their current poll ends.  No task is lost or run twice: a retiring
 * worker's queued tasks move to the injection queue. */
int sched_resize(sched *s, uint32_t n, ms_error *err);
/* The health monitor brings in (+1) or lets go of (-1) a stand-in for a
 * worker stuck in one poll.  Returns false if none could be added. */
bool sched_replacement(sched *s, int delta);
/* Health monitor: worker i has been in one poll since its last look.
 * Moves the task in its LIFO slot, if any, to the injection queue and
 * wakes a parked worker for it.  Returns whether there was one. */
bool sched_rescue_lifo(sched *s, uint32_t i);
/* Whether tasks wait in the injection queue or a worker's queue (a
 * snapshot; any thread). */
bool sched_work_pending(sched *s);
/* Worker i's next pick takes from the injection queue first (any thread). */
void sched_prefer_inject(sched *s, uint32_t i);
uint32_t sched_active(sched *s);
uint32_t sched_started(sched *s);
/* Tells the workers to exit and joins them until deadline_ns.  Returns the
 * number still running at the deadline. */
uint32_t sched_stop(sched *s, uint64_t deadline_ns);
/* After sched_stop: cancels every queued task.  Returns how many. */
uint64_t sched_cancel_queued(sched *s);
void sched_destroy(sched *s);

/* Queues a task that was just notified (the queue reference is taken).
 * On a worker of this scheduler it goes local; elsewhere to the injection
 * queue; after shutdown it is cancelled on the spot. */
void sched_schedule(sched *s, ms_task *t, bool is_yield);
/* Assigns an id and queues a freshly spawned task. */
uint64_t sched_next_id(sched *s);

/* The calling thread's worker if it belongs to s, else NULL. */
sched_worker *sched_current_worker(sched *s);
/* The calling thread's worker of any runtime, else NULL. */
sched_worker *sched_current_worker_any(void);

void sched_count_poll(sched_worker *w);
void sched_count_forced_yield(sched_worker *w);

#endif
