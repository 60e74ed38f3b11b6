/*
 * task.c - task lifecycle: allocation, references, wakers, the run /
 * complete / cancel transitions, join handles and the poll context.
 *
 * Every transition of the state word is one CAS loop that decides from one
 * snapshot, so a wake, an abort, a poll's end and a join can race in any
 * order; task.h lists what each bit means.  Completion publishes the output
 * with the COMPLETE store (release); a joiner reads it after seeing COMPLETE
 * (acquire).
 */
#define _GNU_SOURCE
#include "task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "park.h"
#include "runtime.h"

/* ---- allocation and references ---- */

ms_task *task_alloc(ms_runtime *rt, task_kind kind, bool with_handle) {
    sched_worker *w = sched_current_worker_any();
    ms_task *t = w ? task_pool_get(&w->tasks, &w->sched->tasks) : NULL;
    if (t)
        memset(t, 0, sizeof *t);
    else if (!(t = calloc(1, sizeof *t)))
        return NULL;
    t->kind = (uint8_t)kind;
    t->rt = rt;
    /* ASYNC: registry + queue (+ handle).  BLOCKING: queue (+ handle). */
    uint32_t refs = (kind == TASK_ASYNC ? 2 : 1) + (with_handle ? 1 : 0);
    atomic_init(&t->refs, refs);
    atomic_init(&t->state, TASK_NOTIFIED | (with_handle ? TASK_JOIN_INTEREST : 0));
    /* A new task is queued right after this, so its scheduling delay runs
     * from now. */
    if (kind == TASK_ASYNC && rt->cfg.metrics_histograms)
        t->scheduled_ns = ms_now_ns();
    return t;
}

static void task_free(ms_task *t) {
    free(t->errmsg);
    sched_worker *w = sched_current_worker_any();
    if (!w || !task_pool_put(&w->tasks, &w->sched->tasks, t))
        free(t);
}

void task_ref(ms_task *t) {
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void task_unref_n(ms_task *t, uint32_t n) {
    uint32_t prev = atomic_fetch_sub_explicit(&t->refs, n, memory_order_acq_rel);
    if (prev == n)
        task_free(t);
}

void task_unref(ms_task *t) {
    task_unref_n(t, 1);
}

/* ---- waking ---- */

void task_schedule(ms_task *t, bool is_yield) {
    if (t->rt->cfg.metrics_histograms)
        t->scheduled_ns = ms_now_ns();
    sched_schedule(&t->rt->sched, t, is_yield);
}

static void task_wake_by_ref(ms_task *t) {
    uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (s & (TASK_COMPLETE | TASK_NOTIFIED))
            return;
        if (t->kind == TASK_BLOCKING)
            return; /* queued or running once: nothing to re-schedule */
        if (s & TASK_RUNNING) {
            /* The runner sees NOTIFIED after the poll and queues it. */
            if (atomic_compare_exchange_weak_explicit(&t->state, &s, s | TASK_NOTIFIED,
                                                      memory_order_acq_rel,
                                                      memory_order_acquire))
                return;
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&t->state, &s, s | TASK_NOTIFIED,
                                                  memory_order_acq_rel, memory_order_acquire)) {
            task_ref(t); /* the queue's reference */
            task_schedule(t, false);
            return;
        }
    }
}

static ms_waker vt_clone(void *data) {
    task_ref(data);
    return (ms_waker){&task_waker_vtable, data};
}
static void vt_wake(void *data) {
    task_wake_by_ref(data);
    task_unref(data);
}
static void vt_wake_by_ref(void *data) {
    task_wake_by_ref(data);
}
static void vt_drop(void *data) {
    task_unref(data);
}

const ms_waker_vtable task_waker_vtable = {vt_clone, vt_wake, vt_wake_by_ref, vt_drop};

/* ---- claim, complete ---- */

task_claim task_claim_for_run(ms_task *t) {
    uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (s & (TASK_RUNNING | TASK_COMPLETE))
            return CLAIM_NONE;
        uint32_t next = (s & ~TASK_NOTIFIED) | TASK_RUNNING;
        if (atomic_compare_exchange_weak_explicit(&t->state, &s, next, memory_order_acq_rel,
                                                  memory_order_acquire))
            return (s & TASK_CANCELLED) ? CLAIM_CANCEL : CLAIM_RUN;
    }
}

/* Ends a task the caller holds RUNNING for: drops its state, publishes the
 * result, wakes the joiner, and releases the queue reference (and, for
 * ASYNC, the registry's). */
static void task_complete(ms_task *t, int result, void *output, char *errmsg) {
    ms_runtime *rt = t->rt;
    if (t->kind == TASK_ASYNC && t->u.a.drop)
        t->u.a.drop(t->u.a.state);
    t->result = result;
    t->output = output;
    t->errmsg = errmsg;
    if (result == MS_E_TASK_CANCELLED)
        atomic_fetch_add_explicit(&rt->cancelled, 1, memory_order_relaxed);
    else if (result != 0)
        atomic_fetch_add_explicit(&rt->failed, 1, memory_order_relaxed);
    bool async = t->kind == TASK_ASYNC;
    if (async)
        own_remove(&rt->owned, t);

    uint32_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
    uint32_t next;
    do {
        next = (s & ~(TASK_RUNNING | TASK_NOTIFIED)) | TASK_COMPLETE;
    } while (!atomic_compare_exchange_weak_explicit(&t->state, &s, next, memory_order_acq_rel,
                                                    memory_order_relaxed));
    /* From here on rt may be gone (a shutdown that saw the registry empty
     * can finish), so it is not touched again. */
    if (s & TASK_JOIN_WAKER) {
        if (s & TASK_JOIN_INTEREST) {
            ms_waker_wake_by_ref(&t->join_waker);
            uint32_t after = atomic_fetch_and_explicit(&t->state, ~(uint32_t)TASK_JOIN_WAKER,
                                                       memory_order_acq_rel);
            if (!(after & TASK_JOIN_INTEREST))
                ms_waker_drop(&t->join_waker); /* the handle went meanwhile */
        } else {
            ms_waker_drop(&t->join_waker);
        }
    }
    task_unref_n(t, async ? 2 : 1);
}

static char *dup_msg(const char *fmt, va_list ap) {
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    return msg;
}

/* ---- running ---- */

/* Claims t, popped from a queue, for running.  False when there is nothing
 * to run: someone else owns or ended it (the queue's reference is dropped),
 * or it was aborted (it is completed as cancelled). */
static bool task_begin(ms_task *t) {
    switch (task_claim_for_run(t)) {
    case CLAIM_NONE:
        task_unref(t);
        return false;
    case CLAIM_CANCEL:
        task_complete(t, MS_E_TASK_CANCELLED, NULL, NULL);
        return false;
    case CLAIM_RUN:
        break;
    }
    return true;
}

void task_run(ms_task *t, struct sched_worker *w, uint32_t budget) {
    if (!task_begin(t))
        return;
    /* Histograms: one clock read here ends the scheduling delay and starts
     * the poll, one after the poll ends it (and, for a task woken during
     * its poll, starts its next scheduling delay). */
    bool timed = w && t->rt->cfg.metrics_histograms;
    uint64_t start = 0, end = 0;
    if (timed) {
        start = ms_now_ns();
        met_hist_record(&w->m.schedule_delay,
                        start > t->scheduled_ns ? start - t->scheduled_ns : 0);
    }
    ms_cx cx = {
        .rt = t->rt,
        .task = t,
        .worker = w,
        .waker = {&task_waker_vtable, t},
        .budget = budget,
    };
    if (w)
        met_set(&w->m.current_task, t->id);
    ms_poll r = t->u.a.poll(&cx, t->u.a.state);
    if (w) {
        met_set(&w->m.current_task, 0);
        sched_count_poll(w);
        if (timed) {
            end = ms_now_ns();
            met_hist_record(&w->m.poll_duration, end > start ? end - start : 0);
        }
    }
    if (r == MS_POLL_READY) {
        task_complete(t, 0, cx.output, NULL);
        return;
    }
    if (r != MS_POLL_PENDING) {
        if (r != MS_POLL_ERROR) {
            free(cx.fail_msg);
            cx.fail_msg = NULL;
            if (asprintf(&cx.fail_msg, "poll function returned %d, not a ms_poll value",
                         (int)r) < 0)
                cx.fail_msg = NULL;
            cx.fail_code = MS_E_INTERNAL;
        }
        task_complete(t, cx.fail_code ? cx.fail_code : MS_E_TASK_FAILED, NULL, cx.fail_msg);
        return;
    }
    free(cx.fail_msg);
    uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (s & TASK_CANCELLED) {
            /* Aborted during the poll: cancel now rather than poll again. */
            task_complete(t, MS_E_TASK_CANCELLED, NULL, NULL);
            return;
        }
        if (s & TASK_NOTIFIED) {
            /* Woken during the poll: keep NOTIFIED, requeue with our ref.
             * We still hold RUNNING, so the stamp is ours to write.  The
             * task could not be queued before its poll ended, so its wait
             * starts at the poll's end, which saves a clock read per
             * yield. */
            if (timed)
                t->scheduled_ns = end;
            if (atomic_compare_exchange_weak_explicit(&t->state, &s, s & ~TASK_RUNNING,
                                                      memory_order_acq_rel,
                                                      memory_order_acquire)) {
                sched_schedule(&t->rt->sched, t, true);
                return;
            }
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&t->state, &s, s & ~TASK_RUNNING,
                                                  memory_order_acq_rel, memory_order_acquire)) {
            task_unref(t);
            return;
        }
    }
}

/* The failure a blocking job reported with ms_blocking_fail, per thread
 * while the job runs. */
typedef struct blocking_failure {
    bool active;
    int code;
    char *msg;
} blocking_failure;
static __thread blocking_failure tls_blocking;

int ms_blocking_fail(int code, const char *fmt, ...) {
    if (!tls_blocking.active)
        return MS_E_WRONG_THREAD;
    free(tls_blocking.msg);
    va_list ap;
    va_start(ap, fmt);
    tls_blocking.msg = dup_msg(fmt, ap);
    va_end(ap);
    tls_blocking.code = code < 0 ? code : MS_E_TASK_FAILED;
    return 0;
}

void task_run_blocking(ms_task *t) {
    if (!task_begin(t))
        return;
    tls_blocking = (blocking_failure){.active = true};
    void *out = t->u.b.fn(t->u.b.arg);
    blocking_failure f = tls_blocking;
    tls_blocking = (blocking_failure){0};
    if (f.code)
        task_complete(t, f.code, NULL, f.msg);
    else
        task_complete(t, 0, out, NULL);
}

void task_cancel_queued(ms_task *t) {
    atomic_fetch_or_explicit(&t->state, TASK_CANCELLED, memory_order_acq_rel);
    if (task_claim_for_run(t) == CLAIM_NONE)
        task_unref(t);
    else
        task_complete(t, MS_E_TASK_CANCELLED, NULL, NULL);
}

void task_cancel_owned(ms_task *t) {
    /* Queues are drained by now, so the refs are the registry's, the
     * caller's and any handle's or waker's: complete drops the first two. */
    atomic_fetch_or_explicit(&t->state, TASK_CANCELLED, memory_order_acq_rel);
    if (task_claim_for_run(t) == CLAIM_NONE) {
        task_unref(t);
        return;
    }
    task_complete(t, MS_E_TASK_CANCELLED, NULL, NULL);
}

/* ---- join handles ---- */

static int task_take_result(ms_task *t, void **output, ms_error *err) {
    if (output)
        *output = t->result == 0 ? t->output : NULL;
    if (t->result != 0) {
        if (t->result == MS_E_TASK_CANCELLED)
            ms_error_set(err, t->result, "task %llu was cancelled", (unsigned long long)t->id);
        else
            ms_error_set(err, t->result, "task %llu failed: %s", (unsigned long long)t->id,
                         t->errmsg ? t->errmsg : ms_err_name(t->result));
    }
    return t->result;
}

/* Registers w as the join waker unless the task completed.  Returns false
 * if it completed (the result can be read). */
static bool task_set_join_waker(ms_task *t, const ms_waker *w) {
    uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    if (s & TASK_COMPLETE)
        return false;
    if (s & TASK_JOIN_WAKER) {
        /* Same waker already registered: nothing to do. */
        if (ms_waker_will_wake(&t->join_waker, w))
            return true;
        /* Take the slot back before replacing it. */
        for (;;) {
            if (s & TASK_COMPLETE)
                return false;
            if (atomic_compare_exchange_weak_explicit(&t->state, &s, s & ~TASK_JOIN_WAKER,
                                                      memory_order_acq_rel,
                                                      memory_order_acquire))
                break;
        }
    }
    ms_waker_drop(&t->join_waker);
    t->join_waker = ms_waker_clone(w);
    /* Acquire: seeing COMPLETE here lets the caller read the result. */
    s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (s & TASK_COMPLETE) {
            ms_waker_drop(&t->join_waker);
            return false;
        }
        if (atomic_compare_exchange_weak_explicit(&t->state, &s, s | TASK_JOIN_WAKER,
                                                  memory_order_acq_rel, memory_order_acquire))
            return true;
    }
}

ms_poll ms_task_poll_join(ms_task *t, ms_cx *cx, void **output, int *result, ms_error *err) {
    if (!ms_coop_proceed(cx))
        return MS_POLL_PENDING;
    if (atomic_load_explicit(&t->state, memory_order_acquire) & TASK_COMPLETE ||
        !task_set_join_waker(t, ms_cx_waker(cx))) {
        int r = task_take_result(t, output, err);
        if (result)
            *result = r;
        return MS_POLL_READY;
    }
    return MS_POLL_PENDING;
}

int ms_task_join(ms_task *t, int64_t timeout_ms, void **output, ms_error *err) {
    if (sched_current_worker_any())
        return ms_error_set(err, MS_E_WRONG_THREAD,
                            "ms_task_join would block worker thread; use ms_task_poll_join");
    if (!(atomic_load_explicit(&t->state, memory_order_acquire) & TASK_COMPLETE)) {
        park *p = park_thread_current();
        if (!p)
            return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a thread parker");
        ms_waker w = park_thread_waker(p);
        uint64_t deadline = timeout_ms >= 0 ? ms_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
        bool waiting = task_set_join_waker(t, &w);
        ms_waker_drop(&w);
        while (waiting &&
               !(atomic_load_explicit(&t->state, memory_order_acquire) & TASK_COMPLETE)) {
            int64_t left = -1;
            if (timeout_ms >= 0) {
                uint64_t now = ms_now_ns();
                if (now >= deadline)
                    return ms_error_set(err, MS_E_TIMEOUT,
                                        "task %llu did not finish within %lld ms",
                                        (unsigned long long)t->id, (long long)timeout_ms);
                left = (int64_t)(deadline - now);
            }
            park_wait(p, left);
        }
    }
    return task_take_result(t, output, err);
}

void ms_task_abort(ms_task *t) {
    uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (s & (TASK_COMPLETE | TASK_CANCELLED))
            return;
        bool sleeping = !(s & (TASK_RUNNING | TASK_NOTIFIED)) && t->kind == TASK_ASYNC;
        uint32_t next = s | TASK_CANCELLED | (sleeping ? TASK_NOTIFIED : 0);
        if (atomic_compare_exchange_weak_explicit(&t->state, &s, next, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            if (sleeping) {
                task_ref(t);
                task_schedule(t, false);
            }
            return;
        }
    }
}

bool ms_task_is_finished(const ms_task *t) {
    return atomic_load_explicit(&((ms_task *)t)->state, memory_order_acquire) & TASK_COMPLETE;
}

uint64_t ms_task_id(const ms_task *t) {
    return t->id;
}

void ms_task_release(ms_task *t) {
    if (!t)
        return;
    uint32_t prev = atomic_fetch_and_explicit(&t->state, ~(uint32_t)TASK_JOIN_INTEREST,
                                              memory_order_acq_rel);
    /* With JOIN_WAKER clear the slot is ours; with it set, the completer
     * drops it. */
    if (!(prev & TASK_JOIN_WAKER))
        ms_waker_drop(&t->join_waker);
    task_unref(t);
}

/* ---- the poll context ---- */

const ms_waker *ms_cx_waker(ms_cx *cx) {
    return &cx->waker;
}

ms_runtime *ms_cx_runtime(ms_cx *cx) {
    return cx->rt;
}

ms_task *ms_cx_task(ms_cx *cx) {
    return cx->task;
}

void ms_cx_set_output(ms_cx *cx, void *output) {
    cx->output = output;
}

ms_poll ms_cx_fail(ms_cx *cx, int code, const char *fmt, ...) {
    free(cx->fail_msg);
    va_list ap;
    va_start(ap, fmt);
    cx->fail_msg = dup_msg(fmt, ap);
    va_end(ap);
    cx->fail_code = code < 0 ? code : MS_E_TASK_FAILED;
    return MS_POLL_ERROR;
}

ms_poll ms_cx_poll_with_waker(ms_cx *cx, const ms_waker *w, ms_poll_fn fn, void *state) {
    ms_cx sub = *cx;
    sub.waker = *w;
    ms_poll r = fn(&sub, state);
    cx->budget = sub.budget;
    cx->output = sub.output;
    if (sub.fail_msg != cx->fail_msg) {
        free(cx->fail_msg);
        cx->fail_msg = sub.fail_msg;
        cx->fail_code = sub.fail_code;
    }
    return r;
}

ms_poll ms_cx_yield(ms_cx *cx) {
    ms_waker_wake_by_ref(&cx->waker);
    return MS_POLL_PENDING;
}

bool ms_coop_proceed(ms_cx *cx) {
    if (cx->budget > 0) {
        cx->budget--;
        return true;
    }
    if (cx->worker)
        sched_count_forced_yield(cx->worker);
    ms_cx_yield(cx);
    return false;
}
