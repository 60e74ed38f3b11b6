/*
 * test_sched.c - the executor's contract, from the outside: every task
 * runs exactly once, no wake-up is lost, wakes while running re-poll once,
 * aborts and failures surface through join handles, and the workers keep
 * going through all of it.  Stress sizes scale with MS_TEST_SCALE.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "ms.h"
#include "test.h"
#include "test_rt.h"

/* ---- every task runs exactly once ---- */

typedef struct once_task {
    _Atomic uint32_t *runs;     /* one slot per task */
    _Atomic uint64_t *drops;
    uint32_t index;
} once_task;

static ms_poll once_poll(ms_cx *cx, void *state) {
    once_task *t = state;
    atomic_fetch_add(&t->runs[t->index], 1);
    return MS_POLL_READY;
}

static void once_drop(void *state) {
    once_task *t = state;
    atomic_fetch_add(t->drops, 1);
}

typedef struct spawner {
    once_task *tasks;
    uint32_t from, to;
} spawner;

/* A task that spawns a range of once_tasks from inside the runtime. */
static ms_poll spawner_poll(ms_cx *cx, void *state) {
    spawner *s = state;
    for (uint32_t i = s->from; i < s->to; i++)
        if (ms_spawn(ms_cx_runtime(cx), once_poll, &s->tasks[i], once_drop, NULL) != 0)
            return ms_cx_fail(cx, MS_E_TASK_FAILED, "spawn %u failed", i);
    return MS_POLL_READY;
}

static void wait_for(_Atomic uint64_t *counter, uint64_t want) {
    for (int i = 0; i < 60000 && atomic_load(counter) < want; i++)
        usleep(500);
}

static void run_million(uint32_t workers) {
    uint32_t n = (uint32_t)test_scaled(1000000, 20000);
    _Atomic uint32_t *runs = calloc(n, sizeof *runs);
    once_task *tasks = calloc(n, sizeof *tasks);
    _Atomic uint64_t drops = 0;
    for (uint32_t i = 0; i < n; i++)
        tasks[i] = (once_task){runs, &drops, i};
    ms_runtime *rt = start(workers);
    /* Half from outside (injection queue), half from inside tasks (local
     * queues, overflow, stealing). */
    uint32_t half = n / 2, chunks = 16;
    spawner sp[16];
    for (uint32_t c = 0; c < chunks; c++) {
        sp[c] = (spawner){tasks, half + c * (n - half) / chunks, half + (c + 1) * (n - half) / chunks};
        CHECK_INT_EQ(ms_spawn(rt, spawner_poll, &sp[c], NULL, NULL), 0);
    }
    for (uint32_t i = 0; i < half; i++)
        CHECK_INT_EQ(ms_spawn(rt, once_poll, &tasks[i], once_drop, NULL), 0);
    wait_for(&drops, n);
    CHECK_INT_EQ(atomic_load(&drops), n);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m->spawned_tasks == (uint64_t)n + chunks);
    ms_metrics_free(m);
    stop(rt);
    for (uint32_t i = 0; i < n; i++)
        if (atomic_load(&runs[i]) != 1) {
            TEST_FAIL_AT(__FILE__, __LINE__, "task %u ran %u times", i, atomic_load(&runs[i]));
            break;
        }
    free(runs);
    free(tasks);
}

TEST(a_million_tasks_run_exactly_once_on_2_workers) { run_million(2); }
TEST(a_million_tasks_run_exactly_once_on_4_workers) { run_million(4); }
TEST(a_million_tasks_run_exactly_once_on_8_workers) { run_million(8); }

/* ---- spawn storms from many threads ---- */

typedef struct storm {
    ms_runtime *rt;
    once_task *tasks;
    uint32_t from, to;
    int failures;
} storm;

static void *storm_thread(void *arg) {
    storm *s = arg;
    for (uint32_t i = s->from; i < s->to; i++)
        if (ms_spawn(s->rt, once_poll, &s->tasks[i], once_drop, NULL) != 0)
            s->failures++;
    return NULL;
}

TEST(spawn_storm_from_many_threads_runs_every_task_once) {
    enum { THREADS = 8 };
    uint32_t n = (uint32_t)test_scaled(400000, 8000);
    _Atomic uint32_t *runs = calloc(n, sizeof *runs);
    once_task *tasks = calloc(n, sizeof *tasks);
    _Atomic uint64_t drops = 0;
    for (uint32_t i = 0; i < n; i++)
        tasks[i] = (once_task){runs, &drops, i};
    ms_runtime *rt = start(4);
    pthread_t th[THREADS];
    storm st[THREADS];
    for (int i = 0; i < THREADS; i++) {
        st[i] = (storm){rt, tasks, i * n / THREADS, (i + 1) * n / THREADS, 0};
        pthread_create(&th[i], NULL, storm_thread, &st[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT_EQ(st[i].failures, 0);
    }
    wait_for(&drops, n);
    CHECK_INT_EQ(atomic_load(&drops), n);
    stop(rt);
    for (uint32_t i = 0; i < n; i++)
        CHECK_INT_EQ(atomic_load(&runs[i]), 1);
    free(runs);
    free(tasks);
}

/* ---- wakes from foreign threads ---- */

/* A task that needs `target` signals.  Signallers bump `signals` and wake
 * whatever waker the task last stored.  A lost wake-up leaves the task
 * pending forever and the join times out. */
typedef struct waiter {
    pthread_mutex_t lock;
    ms_waker waker;             /* under lock */
    _Atomic uint32_t signals;
    uint32_t target;
    uint32_t polls;
} waiter;

static ms_poll waiter_poll(ms_cx *cx, void *state) {
    waiter *w = state;
    w->polls++;
    pthread_mutex_lock(&w->lock);
    ms_waker_store(&w->waker, ms_cx_waker(cx));
    pthread_mutex_unlock(&w->lock);
    /* Check after storing: a signal before the store is seen here, one
     * after it wakes the stored waker. */
    if (atomic_load(&w->signals) >= w->target)
        return MS_POLL_READY;
    return MS_POLL_PENDING;
}

static void waiter_drop(void *state) {
    waiter *w = state;
    pthread_mutex_lock(&w->lock);
    ms_waker_drop(&w->waker);
    pthread_mutex_unlock(&w->lock);
}

typedef struct signaller {
    waiter *waiters;
    uint32_t nwaiters, rounds, seed;
} signaller;

static void *signal_thread(void *arg) {
    signaller *s = arg;
    for (uint32_t r = 0; r < s->rounds; r++) {
        for (uint32_t i = 0; i < s->nwaiters; i++) {
            waiter *w = &s->waiters[(i + s->seed) % s->nwaiters];
            atomic_fetch_add(&w->signals, 1);
            pthread_mutex_lock(&w->lock);
            ms_waker wk = ms_waker_clone(&w->waker);
            pthread_mutex_unlock(&w->lock);
            ms_waker_wake(&wk);
        }
    }
    return NULL;
}

TEST(wakes_from_foreign_threads_are_never_lost) {
    enum { SIGNALLERS = 4 };
    uint32_t nwaiters = (uint32_t)test_scaled(2000, 100);
    uint32_t rounds = (uint32_t)test_scaled(200, 20);
    waiter *ws = calloc(nwaiters, sizeof *ws);
    ms_task **hs = calloc(nwaiters, sizeof *hs);
    ms_runtime *rt = start(4);
    for (uint32_t i = 0; i < nwaiters; i++) {
        pthread_mutex_init(&ws[i].lock, NULL);
        ws[i].target = SIGNALLERS * rounds;
        CHECK_INT_EQ(ms_spawn(rt, waiter_poll, &ws[i], waiter_drop, &hs[i]), 0);
    }
    pthread_t th[SIGNALLERS];
    signaller sg[SIGNALLERS];
    for (int i = 0; i < SIGNALLERS; i++) {
        sg[i] = (signaller){ws, nwaiters, rounds, (uint32_t)i * 7919u};
        pthread_create(&th[i], NULL, signal_thread, &sg[i]);
    }
    for (int i = 0; i < SIGNALLERS; i++)
        pthread_join(th[i], NULL);
    uint64_t polls = 0;
    for (uint32_t i = 0; i < nwaiters; i++) {
        ms_error err;
        CHECK_INT_EQ(ms_task_join(hs[i], 20000, NULL, &err), 0);
        ms_task_release(hs[i]);
        polls += ws[i].polls;
        pthread_mutex_destroy(&ws[i].lock);
    }
    /* Wakes coalesce: far fewer polls than wakes, but at least one each. */
    CHECK(polls >= nwaiters);
    stop(rt);
    free(ws);
    free(hs);
}

/* ---- wake semantics ---- */

typedef struct self_waker {
    int polls;
    int wakes_per_poll;
    ms_waker kept;
} self_waker;

static ms_poll self_wake_poll(ms_cx *cx, void *state) {
    self_waker *s = state;
    if (++s->polls == 1) {
        for (int i = 0; i < s->wakes_per_poll; i++)
            ms_waker_wake_by_ref(ms_cx_waker(cx));
        return MS_POLL_PENDING;
    }
    return MS_POLL_READY;
}

TEST(many_wakes_while_running_reschedule_exactly_once) {
    ms_runtime *rt = start(2);
    self_waker s = {0, 10, {0}};
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, self_wake_poll, &s, NULL, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 10000, NULL, NULL), 0);
    CHECK_INT_EQ(s.polls, 2);
    ms_task_release(h);
    stop(rt);
}

static ms_poll keep_waker_poll(ms_cx *cx, void *state) {
    self_waker *s = state;
    s->polls++;
    s->kept = ms_waker_clone(ms_cx_waker(cx));
    return MS_POLL_READY;
}

TEST(wake_after_completion_does_nothing) {
    ms_runtime *rt = start(2);
    self_waker s = {0};
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, keep_waker_poll, &s, NULL, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 10000, NULL, NULL), 0);
    for (int i = 0; i < 5; i++)
        ms_waker_wake_by_ref(&s.kept);
    ms_waker_wake(&s.kept);
    CHECK(ms_waker_is_null(&s.kept));
    usleep(20000);
    CHECK_INT_EQ(s.polls, 1);
    ms_task_release(h);
    stop(rt);
}

/* ---- join, output, failure ---- */

static ms_poll answer_poll(ms_cx *cx, void *state) {
    ms_cx_set_output(cx, (void *)(intptr_t)42);
    return MS_POLL_READY;
}

TEST(join_after_completion_returns_the_output) {
    ms_runtime *rt = start(2);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, answer_poll, NULL, NULL, &h), 0);
    while (!ms_task_is_finished(h))
        usleep(1000);
    void *out = NULL;
    CHECK_INT_EQ(ms_task_join(h, 0, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, 42);
    /* Joining again gives the same answer. */
    CHECK_INT_EQ(ms_task_join(h, -1, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, 42);
    ms_task_release(h);
    stop(rt);
}

static ms_poll failing_poll(ms_cx *cx, void *state) {
    return ms_cx_fail(cx, MS_E_TASK_FAILED, "disk %s is full", "sda1");
}

TEST(a_failing_task_reports_through_join_and_workers_keep_running) {
    ms_runtime *rt = start(2);
    for (int i = 0; i < 100; i++) {
        ms_task *h;
        CHECK_INT_EQ(ms_spawn(rt, failing_poll, NULL, NULL, &h), 0);
        ms_error err = {0};
        CHECK_INT_EQ(ms_task_join(h, 10000, NULL, &err), MS_E_TASK_FAILED);
        CHECK_STR_CONTAINS(err.message, "disk sda1 is full");
        ms_task_release(h);
    }
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, answer_poll, NULL, NULL, &h), 0);
    void *out;
    CHECK_INT_EQ(ms_task_join(h, 10000, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, 42);
    ms_task_release(h);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->failed_tasks, 100);
    ms_metrics_free(m);
    stop(rt);
}

static ms_poll forever_poll(ms_cx *cx, void *state) {
    return MS_POLL_PENDING; /* keeps no waker: only abort can end it */
}

TEST(join_with_timeout_times_out_and_the_handle_stays_usable) {
    ms_runtime *rt = start(2);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, forever_poll, NULL, NULL, &h), 0);
    ms_error err;
    CHECK_INT_EQ(ms_task_join(h, 20, NULL, &err), MS_E_TIMEOUT);
    CHECK_STR_CONTAINS(err.message, "did not finish within 20 ms");
    ms_task_abort(h);
    CHECK_INT_EQ(ms_task_join(h, 10000, NULL, &err), MS_E_TASK_CANCELLED);
    ms_task_release(h);
    stop(rt);
}

/* ---- abort races ---- */

typedef struct racer {
    _Atomic int drops;
    _Atomic int finished;
    int yields;
} racer;

static ms_poll racer_poll(ms_cx *cx, void *state) {
    racer *r = state;
    if (r->yields-- > 0)
        return ms_cx_yield(cx);
    atomic_fetch_add(&r->finished, 1);
    return MS_POLL_READY;
}

static void racer_drop(void *state) {
    atomic_fetch_add(&((racer *)state)->drops, 1);
}

typedef struct aborter {
    ms_task **handles;
    uint32_t n;
} aborter;

static void *abort_thread(void *arg) {
    aborter *a = arg;
    for (uint32_t i = 0; i < a->n; i++)
        ms_task_abort(a->handles[(i * 7) % a->n]);
    return NULL;
}

TEST(abort_races_end_each_task_once_either_finished_or_cancelled) {
    uint32_t n = (uint32_t)test_scaled(50000, 2000);
    racer *rs = calloc(n, sizeof *rs);
    ms_task **hs = calloc(n, sizeof *hs);
    ms_runtime *rt = start(4);
    for (uint32_t i = 0; i < n; i++) {
        rs[i].yields = (int)(i % 5);
        CHECK_INT_EQ(ms_spawn(rt, racer_poll, &rs[i], racer_drop, &hs[i]), 0);
    }
    pthread_t th[2];
    aborter ab = {hs, n};
    pthread_create(&th[0], NULL, abort_thread, &ab);
    pthread_create(&th[1], NULL, abort_thread, &ab);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    uint32_t cancelled = 0, done = 0;
    for (uint32_t i = 0; i < n; i++) {
        int rc = ms_task_join(hs[i], 20000, NULL, NULL);
        if (rc == MS_E_TASK_CANCELLED)
            cancelled++;
        else if (rc == 0)
            done++;
        else
            CHECK_INT_EQ(rc, 0);
        ms_task_release(hs[i]);
        CHECK_INT_EQ(atomic_load(&rs[i].drops), 1);
        CHECK_INT_EQ(atomic_load(&rs[i].finished), rc == 0 ? 1 : 0);
    }
    CHECK_INT_EQ(cancelled + done, n);
    stop(rt);
    free(rs);
    free(hs);
}

/* ---- joining from tasks, block_on ---- */

typedef struct chain {
    int depth;
    ms_task *child;
} chain;

/* Each link spawns the next and joins it; the innermost returns 1; each
 * level adds 1. */
static ms_poll chain_poll(ms_cx *cx, void *state) {
    chain *c = state;
    if (c->depth == 0) {
        ms_cx_set_output(cx, (void *)(intptr_t)1);
        return MS_POLL_READY;
    }
    if (!c->child) {
        chain *next = calloc(1, sizeof *next);
        next->depth = c->depth - 1;
        if (ms_spawn(ms_cx_runtime(cx), chain_poll, next, free, &c->child) != 0)
            return ms_cx_fail(cx, MS_E_TASK_FAILED, "spawn failed");
    }
    void *out;
    int result;
    if (ms_task_poll_join(c->child, cx, &out, &result, NULL) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    ms_task_release(c->child);
    if (result != 0)
        return ms_cx_fail(cx, result, "child failed");
    ms_cx_set_output(cx, (void *)((intptr_t)out + 1));
    return MS_POLL_READY;
}

TEST(tasks_join_other_tasks_through_a_deep_chain) {
    ms_runtime *rt = start(4);
    chain root = {1000, NULL};
    void *out;
    ms_error err;
    CHECK_INT_EQ(ms_block_on(rt, chain_poll, &root, &out, &err), 0);
    CHECK_INT_EQ((intptr_t)out, 1001);
    stop(rt);
}

static ms_poll nested_block_on_poll(ms_cx *cx, void *state) {
    ms_error err;
    int rc = ms_block_on(ms_cx_runtime(cx), answer_poll, NULL, NULL, &err);
    ms_cx_set_output(cx, (void *)(intptr_t)rc);
    return MS_POLL_READY;
}

TEST(block_on_from_a_worker_is_refused) {
    ms_runtime *rt = start(2);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, nested_block_on_poll, NULL, NULL, &h), 0);
    void *out;
    CHECK_INT_EQ(ms_task_join(h, 10000, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, MS_E_WRONG_THREAD);
    ms_task_release(h);
    stop(rt);
}

/* ---- fairness ---- */

typedef struct spinner {
    _Atomic int *stop_flag;
    uint64_t yields;
} spinner;

static ms_poll spinner_poll(ms_cx *cx, void *state) {
    spinner *s = state;
    if (atomic_load(s->stop_flag))
        return MS_POLL_READY;
    s->yields++;
    return ms_cx_yield(cx);
}

static ms_poll set_flag_poll(ms_cx *cx, void *state) {
    atomic_store((_Atomic int *)state, 1);
    return MS_POLL_READY;
}

TEST(the_injection_queue_is_not_starved_by_yielding_tasks) {
    /* One worker kept busy by self-yielding tasks; a task spawned from
     * outside must still run (global_queue_interval) and stop them. */
    ms_runtime *rt = start(1);
    _Atomic int flag = 0;
    spinner sp[4];
    ms_task *h[4];
    for (int i = 0; i < 4; i++) {
        sp[i] = (spinner){&flag, 0};
        CHECK_INT_EQ(ms_spawn(rt, spinner_poll, &sp[i], NULL, &h[i]), 0);
    }
    usleep(10000);
    CHECK_INT_EQ(ms_spawn(rt, set_flag_poll, &flag, NULL, NULL), 0);
    for (int i = 0; i < 4; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 20000, NULL, NULL), 0);
        ms_task_release(h[i]);
    }
    stop(rt);
}

typedef struct pinger {
    struct pinger *peer;
    pthread_mutex_t *lock;
    ms_waker waker;             /* under *lock */
    _Atomic int *stop_flag;
} pinger;

/* Two tasks wake each other forever: each wake from a worker goes to the
 * LIFO slot, so without the LIFO guard a third task would never run. */
static ms_poll pinger_poll(ms_cx *cx, void *state) {
    pinger *p = state;
    if (atomic_load(p->stop_flag))
        return MS_POLL_READY;
    pthread_mutex_lock(p->lock);
    ms_waker_store(&p->waker, ms_cx_waker(cx));
    ms_waker peer = ms_waker_clone(&p->peer->waker);
    pthread_mutex_unlock(p->lock);
    ms_waker_wake(&peer);
    return MS_POLL_PENDING;
}

static void pinger_drop(void *state) {
    pinger *p = state;
    pthread_mutex_lock(p->lock);
    ms_waker_drop(&p->waker);
    pthread_mutex_unlock(p->lock);
}

static ms_poll stopper_poll(ms_cx *cx, void *state) {
    pinger *p = state;
    atomic_store(p->stop_flag, 1);
    pthread_mutex_lock(p->lock);
    ms_waker a = ms_waker_clone(&p->waker), b = ms_waker_clone(&p->peer->waker);
    pthread_mutex_unlock(p->lock);
    ms_waker_wake(&a);
    ms_waker_wake(&b);
    return MS_POLL_READY;
}

TEST(tasks_waking_each_other_cannot_starve_the_local_queue) {
    ms_runtime *rt = start(1);
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    _Atomic int flag = 0;
    pinger a = {0}, b = {0};
    a = (pinger){&b, &lock, {0}, &flag};
    b = (pinger){&a, &lock, {0}, &flag};
    ms_task *ha, *hb, *hs;
    CHECK_INT_EQ(ms_spawn(rt, pinger_poll, &a, pinger_drop, &ha), 0);
    CHECK_INT_EQ(ms_spawn(rt, pinger_poll, &b, pinger_drop, &hb), 0);
    usleep(10000);
    /* Spawned from outside, the stopper lands in the injection queue and
     * is pulled into the worker's local queue behind the ping-pong. */
    CHECK_INT_EQ(ms_spawn(rt, stopper_poll, &a, NULL, &hs), 0);
    CHECK_INT_EQ(ms_task_join(hs, 20000, NULL, NULL), 0);
    CHECK_INT_EQ(ms_task_join(ha, 20000, NULL, NULL), 0);
    CHECK_INT_EQ(ms_task_join(hb, 20000, NULL, NULL), 0);
    ms_task_release(ha);
    ms_task_release(hb);
    ms_task_release(hs);
    stop(rt);
}

/* ---- stealing ---- */

static ms_poll busy_poll(ms_cx *cx, void *state) {
    volatile uint64_t x = 0;
    for (int i = 0; i < 20000; i++)
        x += (uint64_t)i;
    atomic_fetch_add((_Atomic uint64_t *)state, 1);
    return MS_POLL_READY;
}

typedef struct fan {
    _Atomic uint64_t *done;
    int n;
    bool hold;                 /* keep the worker until the others ran */
    bool all_ran_while_held;
} fan;

/* Spawns n tasks onto its own worker's queue (fewer than the queue holds,
 * so nothing overflows), then keeps its worker until all but the one in
 * the LIFO slot (which only this worker runs) have run: those can only
 * have been stolen by the other worker.  Bounded at 20 s, a hang guard. */
static ms_poll fan_poll(ms_cx *cx, void *state) {
    fan *f = state;
    for (int i = 0; i < f->n; i++)
        ms_spawn(ms_cx_runtime(cx), busy_poll, (void *)f->done, NULL, NULL);
    if (!f->hold)
        return MS_POLL_READY;
    uint64_t give_up = ms_now_ns() + 20000000000ull;
    while (atomic_load(f->done) < (uint64_t)f->n - 1 && ms_now_ns() < give_up)
        usleep(100);
    f->all_ran_while_held = atomic_load(f->done) >= (uint64_t)f->n - 1;
    return MS_POLL_READY;
}

TEST(work_spawned_on_one_worker_is_stolen_by_an_idle_worker) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 2;
    cfg.stall_threshold_ms = 0; /* the fan holds its worker on purpose */
    ms_runtime *rt = start_config(&cfg);
    _Atomic uint64_t done = 0;
    fan f = {.done = &done, .n = 200, .hold = true};
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, fan_poll, &f, NULL, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 60000, NULL, NULL), 0);
    ms_task_release(h);
    CHECK(f.all_ran_while_held);
    wait_for(&done, 200);
    CHECK_INT_EQ(atomic_load(&done), 200);
    ms_metrics *m = ms_metrics_snapshot(rt);
    /* 199 tasks ran while the fan held its worker, none through the
     * injection queue (no overflow, nothing spawned from outside but the
     * fan): the other worker stole them. */
    CHECK_INT_EQ(m->overflow_count, 0);
    CHECK(m->steal_operations > 0);
    CHECK(m->steal_count >= 199);
    ms_metrics_free(m);
    stop(rt);
}

TEST(a_full_local_queue_overflows_to_the_injection_queue) {
    /* The other half of the placement rule: far more spawns than the
     * local queue holds, on one worker, move half of it out at a time. */
    ms_runtime *rt = start(1);
    _Atomic uint64_t done = 0;
    fan f = {.done = &done, .n = 2000};
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, fan_poll, &f, NULL, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 60000, NULL, NULL), 0);
    ms_task_release(h);
    wait_for(&done, 2000);
    CHECK_INT_EQ(atomic_load(&done), 2000);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m->overflow_count > 0);
    CHECK_INT_EQ(m->steal_operations, 0);
    ms_metrics_free(m);
    stop(rt);
}

/* ---- the poll context and wakers, directly ---- */

typedef struct cx_probe {
    ms_task *self;          /* ms_cx_task seen inside */
    uint64_t self_id;
    ms_runtime *rt;
    bool cx_waker_wakes_self;
} cx_probe;

static ms_poll cx_probe_poll(ms_cx *cx, void *state) {
    cx_probe *p = state;
    p->self = ms_cx_task(cx);
    p->self_id = p->self ? ms_task_id(p->self) : 0;
    p->rt = ms_cx_runtime(cx);
    /* Two borrows of the same context's waker wake the same task. */
    ms_waker a = ms_waker_clone(ms_cx_waker(cx));
    p->cx_waker_wakes_self = ms_waker_will_wake(&a, ms_cx_waker(cx));
    ms_waker_drop(&a);
    return MS_POLL_READY;
}

TEST(cx_task_is_the_running_task_and_null_inside_block_on) {
    ms_runtime *rt = start(2);
    cx_probe p = {0};
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, cx_probe_poll, &p, NULL, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    CHECK(p.self == h);
    CHECK_INT_EQ(p.self_id, ms_task_id(h));
    CHECK(p.rt == rt);
    CHECK(p.cx_waker_wakes_self);
    ms_task_release(h);
    cx_probe q = {0};
    q.self = (ms_task *)&q; /* overwritten with what ms_cx_task says */
    CHECK_INT_EQ(ms_block_on(rt, cx_probe_poll, &q, NULL, NULL), 0);
    CHECK(q.self == NULL);
    CHECK(q.rt == rt);
    CHECK(q.cx_waker_wakes_self);
    stop(rt);
}

/* A waker over a counter, for the waker functions themselves. */
typedef struct count_waker {
    _Atomic int clones, drops, wakes, by_ref;
} count_waker;

static const ms_waker_vtable count_vt;
static ms_waker count_clone(void *d) {
    atomic_fetch_add(&((count_waker *)d)->clones, 1);
    return (ms_waker){&count_vt, d};
}
static void count_wake(void *d) {
    atomic_fetch_add(&((count_waker *)d)->wakes, 1);
}
static void count_wake_by_ref(void *d) {
    atomic_fetch_add(&((count_waker *)d)->by_ref, 1);
}
static void count_drop(void *d) {
    atomic_fetch_add(&((count_waker *)d)->drops, 1);
}
static const ms_waker_vtable count_vt = {count_clone, count_wake, count_wake_by_ref, count_drop};
/* Same functions, another vtable: a different kind of waker. */
static const ms_waker_vtable other_vt = {count_clone, count_wake, count_wake_by_ref, count_drop};

TEST(waker_will_wake_compares_what_would_be_woken) {
    count_waker a = {0}, b = {0};
    ms_waker wa = {&count_vt, &a}, wa2 = {&count_vt, &a}, wb = {&count_vt, &b};
    ms_waker wo = {&other_vt, &a}, null1 = {0}, null2 = {0};
    CHECK(ms_waker_will_wake(&wa, &wa2));
    CHECK(ms_waker_will_wake(&wa, &wa));
    CHECK(!ms_waker_will_wake(&wa, &wb));
    CHECK(!ms_waker_will_wake(&wa, &wo));   /* same data, another vtable */
    CHECK(!ms_waker_will_wake(&wa, &null1));
    CHECK(ms_waker_will_wake(&null1, &null2));
    /* store: no clone when the slot already wakes the same thing... */
    ms_waker slot = {0};
    ms_waker_store(&slot, &wa);
    CHECK_INT_EQ(atomic_load(&a.clones), 1);
    ms_waker_store(&slot, &wa2);
    CHECK_INT_EQ(atomic_load(&a.clones), 1);
    CHECK_INT_EQ(atomic_load(&a.drops), 0);
    /* ...else the old one is dropped and the new one cloned. */
    ms_waker_store(&slot, &wb);
    CHECK_INT_EQ(atomic_load(&a.drops), 1);
    CHECK_INT_EQ(atomic_load(&b.clones), 1);
    ms_waker_wake_by_ref(&slot);
    CHECK_INT_EQ(atomic_load(&b.by_ref), 1);
    CHECK(!ms_waker_is_null(&slot));
    ms_waker_wake(&slot);
    CHECK_INT_EQ(atomic_load(&b.wakes), 1);
    CHECK(ms_waker_is_null(&slot));
    /* Null wakers: every operation does nothing. */
    ms_waker n = ms_waker_clone(&null1);
    CHECK(ms_waker_is_null(&n));
    ms_waker_wake_by_ref(&n);
    ms_waker_wake(&n);
    ms_waker_drop(&n);
    CHECK_INT_EQ(atomic_load(&a.wakes) + atomic_load(&a.by_ref), 0);
}

typedef struct with_waker {
    count_waker cw;
    bool inner_saw_it;
    uint32_t budget_spent_inside;
    int step;
} with_waker;

static ms_poll inner_poll(ms_cx *cx, void *state) {
    with_waker *w = state;
    ms_waker mine = {&count_vt, &w->cw};
    w->inner_saw_it = ms_waker_will_wake(ms_cx_waker(cx), &mine);
    /* Wakes go to the given waker, not the task's. */
    ms_waker_wake_by_ref(ms_cx_waker(cx));
    /* Spend budget inside: the outer context sees it spent. */
    for (w->budget_spent_inside = 0; ms_coop_proceed(cx); w->budget_spent_inside++)
        ;
    ms_cx_set_output(cx, (void *)(intptr_t)99);
    if (w->step == 1)
        return ms_cx_fail(cx, MS_E_EXHAUSTED, "inner failure %d", 7);
    return MS_POLL_PENDING;
}

static ms_poll outer_poll(ms_cx *cx, void *state) {
    with_waker *w = state;
    ms_waker mine = {&count_vt, &w->cw};
    ms_poll r = ms_cx_poll_with_waker(cx, &mine, inner_poll, w);
    if (w->step == 0) {
        /* The inner poll spent the budget: so has this one. */
        if (ms_coop_proceed(cx))
            return ms_cx_fail(cx, MS_E_INTERNAL, "the budget was not shared");
        w->step = 1;
        return r; /* pending; the forced yield re-polls the task */
    }
    return r; /* the inner failure, recorded in this task's context */
}

TEST(cx_poll_with_waker_swaps_the_waker_and_shares_budget_output_and_failure) {
    ms_runtime *rt = start(1);
    with_waker w = {0};
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, outer_poll, &w, NULL, &h), 0);
    ms_error err;
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, &err), MS_E_EXHAUSTED);
    CHECK_STR_CONTAINS(err.message, "inner failure 7");
    CHECK(w.inner_saw_it);
    CHECK_INT_EQ(w.step, 1);
    CHECK(w.budget_spent_inside <= ms_runtime_budget(rt));
    /* Two inner polls, each with two wakes on the given waker (its own
     * wake_by_ref and the re-poll that the spent budget arranges), and
     * never a clone kept or a consuming wake. */
    CHECK_INT_EQ(atomic_load(&w.cw.by_ref), 4);
    CHECK_INT_EQ(atomic_load(&w.cw.wakes), 0);
    CHECK_INT_EQ(atomic_load(&w.cw.clones), atomic_load(&w.cw.drops));
    ms_task_release(h);
    stop(rt);
}

TEST_MAIN()
