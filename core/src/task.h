/*
 * task.h - the task object, its state machine and the poll context.
 *
 * A task is a poll function with its state (kind ASYNC, run by workers) or
 * a function run once on the blocking pool (kind BLOCKING).  Both share the
 * state word, the references and the join protocol, so one join handle type
 * serves both.
 *
 * State bits (task.state, changed only by CAS or fetch_or/and, acq_rel):
 *   RUNNING        a thread owns the task's poll state (claimed it);
 *   NOTIFIED       the task is in a run queue, or was woken while RUNNING
 *                  and must be queued again after the poll;
 *   COMPLETE       finished, failed or cancelled; terminal;
 *   CANCELLED      abort requested: the next claim cancels instead of
 *                  polling;
 *   JOIN_INTEREST  a join handle exists;
 *   JOIN_WAKER     join_waker holds the joiner's waker.  While set (and not
 *                  COMPLETE) only the completing thread may read the slot;
 *                  while clear only the handle's owner may touch it.
 *
 * References (task.refs): one for the registry of live tasks while the
 * task has not completed (ASYNC only), one per queue entry (NOTIFIED),
 * one for the join handle, one per waker clone.  The last unref frees.
 */
#ifndef MS_TASK_H
#define MS_TASK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ms.h"

enum {
    TASK_RUNNING = 1u << 0,
    TASK_NOTIFIED = 1u << 1,
    TASK_COMPLETE = 1u << 2,
    TASK_CANCELLED = 1u << 3,
    TASK_JOIN_INTEREST = 1u << 4,
    TASK_JOIN_WAKER = 1u << 5,
};

typedef enum task_kind { TASK_ASYNC = 0, TASK_BLOCKING = 1 } task_kind;

struct sched_worker;

struct ms_task {
    _Atomic uint32_t state;
    _Atomic uint32_t refs;
    uint8_t kind;               /* immutable */
    bool own_linked;            /* under the registry shard lock */
    uint64_t id;                /* immutable */
    ms_runtime *rt;             /* immutable; never touched after COMPLETE */
    /* Link for the injection or blocking queue; written by whoever holds
     * the queue's lock. */
    ms_task *next;
    /* Registry links, under the registry shard lock. */
    ms_task *own_prev, *own_next;
    /* When the task was last scheduled (ms_now_ns), for the scheduling-
     * delay histogram; written only with ms_config.metrics_histograms.
     * Writer: the one thread that queues the task - the spawner (in
     * task_alloc), the waker whose CAS set NOTIFIED on an idle task, or the
     * runner requeueing it after a poll - always before the queue push
     * that publishes the task.  Reader: the worker that popped it, after
     * its claim.  The push (release store or queue lock) and the pop
     * (acquire) order the write before the read; no one else writes it
     * meanwhile, since NOTIFIED or RUNNING is set from the writer's CAS
     * until the reader's claim, and every writer needs both clear (or
     * holds RUNNING itself). */
    uint64_t scheduled_ns;

    /* Owned by the thread holding RUNNING; published to joiners by the
     * release in the COMPLETE transition. */
    union {
        struct { ms_poll_fn poll; void *state; ms_drop_fn drop; } a;
        struct { ms_blocking_fn fn; void *arg; } b;
    } u;
    void *output;
    int result;                 /* 0, MS_E_TASK_FAILED, MS_E_TASK_CANCELLED, ... */
    char *errmsg;               /* heap, on failure */

    ms_waker join_waker;        /* see JOIN_WAKER */
};

/* The context of one poll.  Lives on the polling thread's stack. */
struct ms_cx {
    ms_runtime *rt;
    ms_task *task;              /* NULL inside ms_block_on */
    struct sched_worker *worker;/* NULL off the workers */
    ms_waker waker;             /* borrowed for the poll's duration */
    uint32_t budget;
    void *output;
    int fail_code;
    char *fail_msg;             /* heap */
};

extern const ms_waker_vtable task_waker_vtable;

ms_task *task_alloc(ms_runtime *rt, task_kind kind, bool with_handle);
void task_ref(ms_task *t);
void task_unref(ms_task *t);
void task_unref_n(ms_task *t, uint32_t n);

typedef enum task_claim { CLAIM_NONE, CLAIM_RUN, CLAIM_CANCEL } task_claim;
/* Takes RUNNING for a task popped from a queue (or found by shutdown).
 * CLAIM_NONE: someone else completed or owns it; drop the queue ref. */
task_claim task_claim_for_run(ms_task *t);

/* Polls an ASYNC task popped from a queue on worker w (NULL: not on a
 * worker, e.g. cancelled at shutdown).  Consumes the queue reference. */
void task_run(ms_task *t, struct sched_worker *w, uint32_t budget);
/* Runs a BLOCKING task popped from the blocking queue.  Consumes the queue
 * reference. */
void task_run_blocking(ms_task *t);
/* Cancels a task popped from a queue without polling it (shutdown).
 * Consumes the queue reference. */
void task_cancel_queued(ms_task *t);
/* Cancels a task taken from the registry (shutdown).  Consumes one ref the
 * caller took. */
void task_cancel_owned(ms_task *t);

/* Schedules t after a wake (a reference for the queue is already taken). */
void task_schedule(ms_task *t, bool is_yield);

#endif
