/*
 * test_blocking.c - the blocking pool: results through both kinds of join,
 * threads created on demand up to the limit and leaving when idle, FIFO
 * order of queued jobs, thread names and hooks, abort of a queued job,
 * shutdown with jobs queued and running, and a many-job stress.
 */
#define _GNU_SOURCE
#include "ms.h"
#include "task.h" /* struct ms_cx, to poll with a hand-made waker */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t elapsed_ms(uint64_t start_ns) {
    return (ms_now_ns() - start_ns) / 1000000u;
}

static ms_config config_with(uint32_t workers, uint32_t max_blocking) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = workers;
    cfg.max_blocking_threads = max_blocking;
    return cfg;
}

static ms_runtime *start(const ms_config *cfg) {
    ms_runtime *rt = NULL;
    ms_error err;
    if (ms_runtime_new(cfg, &rt, &err) != 0) {
        fprintf(stderr, "ms_runtime_new: %s\n", err.message);
        return NULL;
    }
    return rt;
}

/* A gate that jobs wait at until the test opens it; counts arrivals so the
 * test knows how many jobs are running. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    int entered;
} gate;

static void gate_init(gate *g) {
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = false;
    g->entered = 0;
}

static void gate_destroy(gate *g) {
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static void gate_pass(gate *g) {
    pthread_mutex_lock(&g->mu);
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g) {
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static int gate_entered(gate *g) {
    pthread_mutex_lock(&g->mu);
    int n = g->entered;
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* Waits (up to timeout_ms) until n jobs have arrived at the gate. */
static bool gate_wait_entered(gate *g, int n, uint64_t timeout_ms) {
    uint64_t start = ms_now_ns();
    while (gate_entered(g) < n) {
        if (elapsed_ms(start) > timeout_ms)
            return false;
        sleep_ms(1);
    }
    return true;
}

/* A job that records itself, waits at a gate and returns id * 10 + 1. */
typedef struct gated_job {
    gate *g;
    long id;
    pthread_mutex_t *order_mu; /* optional: append id to order[] */
    long *order;
    int *order_len;
    _Atomic int ran;
} gated_job;

static void *gated_fn(void *arg) {
    gated_job *j = arg;
    atomic_fetch_add(&j->ran, 1);
    if (j->g)
        gate_pass(j->g);
    if (j->order_mu) {
        pthread_mutex_lock(j->order_mu);
        j->order[(*j->order_len)++] = j->id;
        pthread_mutex_unlock(j->order_mu);
    }
    return (void *)(intptr_t)(j->id * 10 + 1);
}

typedef struct metrics_view {
    uint32_t threads, idle;
    uint64_t queue_depth, jobs_total;
} metrics_view;

static metrics_view blocking_metrics(ms_runtime *rt) {
    metrics_view v = {0};
    ms_metrics *m = ms_metrics_snapshot(rt);
    if (m) {
        v.threads = m->blocking_threads;
        v.idle = m->idle_blocking_threads;
        v.queue_depth = m->blocking_queue_depth;
        v.jobs_total = m->blocking_jobs_total;
        ms_metrics_free(m);
    }
    return v;
}

static void *add_one(void *arg) {
    return (void *)((intptr_t)arg + 1);
}

/* ------------------------------------------------------------------------
 * Results
 * ---------------------------------------------------------------------- */

TEST(join_from_a_plain_thread_returns_the_job_output) {
    ms_config cfg = config_with(2, 4);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn_blocking(rt, add_one, (void *)(intptr_t)41, &t), 0);
    void *out = NULL;
    ms_error err = {0};
    CHECK_INT_EQ(ms_task_join(t, 10000, &out, &err), 0);
    CHECK_INT_EQ((intptr_t)out, 42);
    CHECK(ms_task_is_finished(t));
    ms_task_release(t);
    ms_runtime_free(rt);
}

/* A poll function that spawns a blocking job on its first poll and then
 * polls its handle until it finishes. */
typedef struct poll_joiner {
    ms_task *job;
    intptr_t arg;
    int spawn_rc;
    int result;
    int polls;
} poll_joiner;

static ms_poll poll_joiner_poll(ms_cx *cx, void *state) {
    poll_joiner *p = state;
    p->polls++;
    if (!p->job) {
        p->spawn_rc = ms_spawn_blocking(ms_cx_runtime(cx), add_one, (void *)p->arg, &p->job);
        if (p->spawn_rc != 0)
            return ms_cx_fail(cx, p->spawn_rc, "spawn_blocking failed");
    }
    void *out = NULL;
    ms_error err = {0};
    if (ms_task_poll_join(p->job, cx, &out, &p->result, &err) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    ms_task_release(p->job);
    p->job = NULL;
    ms_cx_set_output(cx, out);
    return MS_POLL_READY;
}

TEST(poll_join_inside_block_on_returns_the_job_output) {
    ms_config cfg = config_with(2, 4);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    poll_joiner p = {.arg = 99, .result = -1};
    void *out = NULL;
    ms_error err = {0};
    CHECK_INT_EQ(ms_block_on(rt, poll_joiner_poll, &p, &out, &err), 0);
    CHECK_INT_EQ(p.spawn_rc, 0);
    CHECK_INT_EQ(p.result, 0);
    CHECK_INT_EQ((intptr_t)out, 100);
    ms_runtime_free(rt);
}

TEST(poll_join_inside_a_task_returns_the_job_output) {
    ms_config cfg = config_with(2, 4);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    poll_joiner p = {.arg = 7, .result = -1};
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn(rt, poll_joiner_poll, &p, NULL, &t), 0);
    void *out = NULL;
    ms_error err = {0};
    CHECK_INT_EQ(ms_task_join(t, 10000, &out, &err), 0);
    ms_task_release(t);
    CHECK_INT_EQ(p.spawn_rc, 0);
    CHECK_INT_EQ(p.result, 0);
    CHECK_INT_EQ((intptr_t)out, 8);
    ms_runtime_free(rt);
}

/* Joins that race their job's completion.  One blocking thread runs a
 * queue of short jobs of varying length while this thread joins them in
 * order, so joins keep landing while the job is finishing, often while the
 * joiner is registering its waker.  The joiner must read the result the
 * job published: any build checks the value, ThreadSanitizer checks that
 * the read is ordered after the job's writes. */
static void *spin_add_one(void *arg) {
    intptr_t i = (intptr_t)arg;
    volatile long sink = 0;
    for (long k = 0; k < (i % 13) * 50; k++)
        sink += k;
    return (void *)(i + 1);
}

TEST(join_racing_the_jobs_completion_reads_its_result) {
    ms_config cfg = config_with(2, 1);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    enum { BATCH = 200 };
    long rounds = test_scaled(50, 5), wrong = 0;
    ms_task *h[BATCH];
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < BATCH; i++)
            if (ms_spawn_blocking(rt, spin_add_one, (void *)(intptr_t)(r + i), &h[i]) != 0)
                h[i] = NULL;
        for (long i = 0; i < BATCH; i++) {
            void *out = NULL;
            if (!h[i] || ms_task_join(h[i], 10000, &out, NULL) != 0 ||
                (intptr_t)out != r + i + 1)
                wrong++;
            if (h[i])
                ms_task_release(h[i]);
        }
    }
    CHECK_INT_EQ(wrong, 0);
    ms_runtime_free(rt);
}

/* A poll function that joins a given job and outputs its result. */
typedef struct joiner_of {
    ms_task *job;
    int result;
} joiner_of;

static ms_poll joiner_of_poll(ms_cx *cx, void *state) {
    joiner_of *j = state;
    void *out = NULL;
    if (ms_task_poll_join(j->job, cx, &out, &j->result, NULL) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    ms_cx_set_output(cx, out);
    return MS_POLL_READY;
}

TEST(poll_join_racing_the_jobs_completion_reads_its_result) {
    ms_config cfg = config_with(2, 1);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    enum { BATCH = 200 };
    long rounds = test_scaled(50, 5), wrong = 0;
    ms_task *h[BATCH];
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < BATCH; i++)
            if (ms_spawn_blocking(rt, spin_add_one, (void *)(intptr_t)(r + i), &h[i]) != 0)
                h[i] = NULL;
        for (long i = 0; i < BATCH; i++) {
            if (!h[i]) {
                wrong++;
                continue;
            }
            joiner_of j = {.job = h[i], .result = -1};
            void *out = NULL;
            if (ms_block_on(rt, joiner_of_poll, &j, &out, NULL) != 0 || j.result != 0 ||
                (intptr_t)out != r + i + 1)
                wrong++;
            ms_task_release(h[i]);
        }
    }
    CHECK_INT_EQ(wrong, 0);
    ms_runtime_free(rt);
}

/* The same race made certain: a hand-made poll context whose waker's clone
 * (called while ms_task_poll_join registers the joiner) lets the job run to
 * its end before returning.  Registration then finds the job complete and
 * ms_task_poll_join reads the result at once.  The value must be the job's
 * output, and under ThreadSanitizer the read must be ordered after the
 * job's writes (the state load that saw COMPLETE must be an acquire). */
typedef struct slow_waker {
    gate *g;
    int clones, drops;
} slow_waker;

static const ms_waker_vtable slow_waker_vt;

static ms_waker slow_clone(void *data) {
    slow_waker *w = data;
    if (w->clones++ == 0) {
        gate_open(w->g); /* the job finishes while we are still cloning */
        sleep_ms(50);
    }
    return (ms_waker){&slow_waker_vt, data};
}
static void slow_drop(void *data) {
    ((slow_waker *)data)->drops++;
}
static void slow_wake(void *data) {
    slow_drop(data);
}
static void slow_wake_by_ref(void *data) {
}
static const ms_waker_vtable slow_waker_vt = {slow_clone, slow_wake, slow_wake_by_ref, slow_drop};

TEST(poll_join_that_sees_completion_while_registering_reads_the_result) {
    ms_config cfg = config_with(2, 1);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    static gate g;
    gate_init(&g);
    static gated_job job;
    job = (gated_job){.g = &g, .id = 6};
    ms_task *h = NULL;
    CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &job, &h), 0);
    CHECK(gate_wait_entered(&g, 1, 10000));

    slow_waker sw = {.g = &g};
    ms_cx cx = {.rt = rt, .waker = {&slow_waker_vt, &sw}, .budget = 128};
    void *out = NULL;
    int result = -1;
    ms_poll r = ms_task_poll_join(h, &cx, &out, &result, NULL);
    CHECK_INT_EQ(sw.clones, 1); /* registration did run into the completion */
    CHECK_INT_EQ(r, MS_POLL_READY);
    CHECK_INT_EQ(result, 0);
    CHECK_INT_EQ((intptr_t)out, 61);
    CHECK_INT_EQ(sw.drops, 1); /* the clone it made was given back */
    ms_task_release(h);
    ms_runtime_free(rt);
    gate_destroy(&g);
}

/* ------------------------------------------------------------------------
 * Threads on demand, queueing, keep-alive
 * ---------------------------------------------------------------------- */

TEST(threads_are_created_on_demand_up_to_max_blocking_threads) {
    ms_config cfg = config_with(2, 3);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    CHECK_INT_EQ(blocking_metrics(rt).threads, 0); /* none before the first job */

    static gate g;
    gate_init(&g);
    enum { JOBS = 10 };
    static gated_job jobs[JOBS];
    ms_task *h[JOBS];
    for (int i = 0; i < JOBS; i++) {
        jobs[i] = (gated_job){.g = &g, .id = i};
        CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &jobs[i], &h[i]), 0);
    }
    CHECK(gate_wait_entered(&g, 3, 10000));
    metrics_view v = blocking_metrics(rt);
    CHECK_INT_EQ(v.threads, 3);
    CHECK_INT_EQ(v.idle, 0);
    CHECK_INT_EQ(v.queue_depth, 7);
    CHECK_INT_EQ(v.jobs_total, 10);
    /* No fourth thread shows up to take a queued job. */
    sleep_ms(20);
    CHECK_INT_EQ(gate_entered(&g), 3);
    CHECK_INT_EQ(blocking_metrics(rt).threads, 3);

    gate_open(&g);
    for (int i = 0; i < JOBS; i++) {
        void *out = NULL;
        CHECK_INT_EQ(ms_task_join(h[i], 10000, &out, NULL), 0);
        CHECK_INT_EQ((intptr_t)out, i * 10 + 1);
        CHECK_INT_EQ(atomic_load(&jobs[i].ran), 1);
        ms_task_release(h[i]);
    }
    v = blocking_metrics(rt);
    CHECK_INT_EQ(v.queue_depth, 0);
    CHECK(v.threads <= 3);
    ms_runtime_free(rt);
    gate_destroy(&g);
}

TEST(queued_jobs_run_in_fifo_order) {
    ms_config cfg = config_with(2, 1);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    static gate g;
    gate_init(&g);
    enum { JOBS = 20 };
    static gated_job jobs[JOBS];
    static long order[JOBS];
    int order_len = 0;
    pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
    ms_task *h[JOBS];

    /* Job 0 holds the only thread while the others queue up behind it. */
    jobs[0] = (gated_job){.g = &g, .id = 0, .order_mu = &order_mu, .order = order,
                          .order_len = &order_len};
    CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &jobs[0], &h[0]), 0);
    CHECK(gate_wait_entered(&g, 1, 10000));
    for (int i = 1; i < JOBS; i++) {
        jobs[i] = (gated_job){.id = i, .order_mu = &order_mu, .order = order,
                              .order_len = &order_len};
        CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &jobs[i], &h[i]), 0);
    }
    CHECK_INT_EQ(blocking_metrics(rt).queue_depth, JOBS - 1);
    gate_open(&g);
    for (int i = 0; i < JOBS; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 10000, NULL, NULL), 0);
        ms_task_release(h[i]);
    }
    CHECK_INT_EQ(order_len, JOBS);
    for (int i = 0; i < JOBS; i++)
        CHECK_INT_EQ(order[i], i);
    ms_runtime_free(rt);
    gate_destroy(&g);
    pthread_mutex_destroy(&order_mu);
}

TEST(idle_threads_exit_after_keep_alive) {
    ms_config cfg = config_with(2, 4);
    cfg.thread_keep_alive_ms = 50;
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    static gate g;
    gate_init(&g);
    enum { JOBS = 4 };
    static gated_job jobs[JOBS];
    ms_task *h[JOBS];
    for (int i = 0; i < JOBS; i++) {
        jobs[i] = (gated_job){.g = &g, .id = i};
        CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &jobs[i], &h[i]), 0);
    }
    CHECK(gate_wait_entered(&g, JOBS, 10000));
    CHECK_INT_EQ(blocking_metrics(rt).threads, JOBS);
    gate_open(&g);
    for (int i = 0; i < JOBS; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 10000, NULL, NULL), 0);
        ms_task_release(h[i]);
    }
    uint64_t t0 = ms_now_ns();
    metrics_view v;
    while ((v = blocking_metrics(rt)).threads != 0 && elapsed_ms(t0) < 20000)
        sleep_ms(5);
    CHECK_INT_EQ(v.threads, 0);
    CHECK_INT_EQ(v.idle, 0);

    /* The pool is not spent: a new job gets a new thread. */
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn_blocking(rt, add_one, (void *)(intptr_t)1, &t), 0);
    void *out = NULL;
    CHECK_INT_EQ(ms_task_join(t, 10000, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, 2);
    ms_task_release(t);
    ms_runtime_free(rt);
    gate_destroy(&g);
}

static void *thread_name_fn(void *arg) {
    char *buf = arg;
    pthread_getname_np(pthread_self(), buf, 16);
    return buf;
}

TEST(idle_thread_is_counted_and_reused_for_the_next_job) {
    ms_config cfg = config_with(2, 4); /* keep-alive: the 60 s default */
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    char first[16] = "", second[16] = "";
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn_blocking(rt, thread_name_fn, first, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 10000, NULL, NULL), 0);
    ms_task_release(t);

    uint64_t t0 = ms_now_ns();
    metrics_view v;
    while ((v = blocking_metrics(rt)).idle != 1 && elapsed_ms(t0) < 20000)
        sleep_ms(1);
    CHECK_INT_EQ(v.idle, 1);
    CHECK_INT_EQ(v.threads, 1);

    CHECK_INT_EQ(ms_spawn_blocking(rt, thread_name_fn, second, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 10000, NULL, NULL), 0);
    ms_task_release(t);
    CHECK(first[0] != '\0');
    CHECK(strcmp(first, second) == 0); /* the same thread ran both */
    CHECK_INT_EQ(blocking_metrics(rt).threads, 1);
    ms_runtime_free(rt);
}

/* ------------------------------------------------------------------------
 * Names and hooks
 * ---------------------------------------------------------------------- */

TEST(blocking_threads_are_named_ms_blocking) {
    ms_config cfg = config_with(2, 4);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    char name[16] = "";
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn_blocking(rt, thread_name_fn, name, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 10000, NULL, NULL), 0);
    ms_task_release(t);
    CHECK(strncmp(name, "ms-blocking-", 12) == 0);
    ms_runtime_free(rt);
}

static ms_poll worker_name_poll(ms_cx *cx, void *state) {
    pthread_getname_np(pthread_self(), state, 16);
    return MS_POLL_READY;
}

TEST(worker_threads_are_named_ms_worker) {
    ms_config cfg = config_with(2, 4);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    char name[16] = "";
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn(rt, worker_name_poll, name, NULL, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 10000, NULL, NULL), 0);
    ms_task_release(t);
    CHECK(strncmp(name, "ms-worker-", 10) == 0);
    ms_runtime_free(rt);
}

static void *current_runtime_fn(void *arg) {
    return ms_runtime_current();
}

TEST(runtime_current_is_the_runtime_on_a_blocking_thread) {
    ms_config cfg = config_with(2, 4);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    CHECK(ms_runtime_current() == NULL);
    ms_task *t = NULL;
    void *out = NULL;
    CHECK_INT_EQ(ms_spawn_blocking(rt, current_runtime_fn, NULL, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 10000, &out, NULL), 0);
    ms_task_release(t);
    CHECK(out == rt);
    ms_runtime_free(rt);
}

#define HOOK_MAX 64

typedef struct hook_log {
    pthread_mutex_t mu;
    char started[HOOK_MAX][32];
    char stopped[HOOK_MAX][32];
    int nstarted, nstopped;
    int wrong_thread; /* a hook ran on a thread with another OS name */
} hook_log;

/* The OS name is the hook's name cut to 15 characters. */
static bool runs_on_named_thread(const char *name) {
    char os[16] = "";
    pthread_getname_np(pthread_self(), os, sizeof os);
    return strncmp(os, name, 15) == 0;
}

static void hook_start(void *ud, const char *name) {
    hook_log *l = ud;
    pthread_mutex_lock(&l->mu);
    if (l->nstarted < HOOK_MAX)
        snprintf(l->started[l->nstarted++], 32, "%s", name);
    if (!runs_on_named_thread(name))
        l->wrong_thread++;
    pthread_mutex_unlock(&l->mu);
}

static void hook_stop(void *ud, const char *name) {
    hook_log *l = ud;
    pthread_mutex_lock(&l->mu);
    if (l->nstopped < HOOK_MAX)
        snprintf(l->stopped[l->nstopped++], 32, "%s", name);
    if (!runs_on_named_thread(name))
        l->wrong_thread++;
    pthread_mutex_unlock(&l->mu);
}

static int count_name(char names[][32], int n, const char *name) {
    int c = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            c++;
    return c;
}

TEST(thread_hooks_run_once_per_thread_with_its_name) {
    static hook_log log;
    memset(&log, 0, sizeof log);
    pthread_mutex_init(&log.mu, NULL);
    ms_config cfg = config_with(2, 3);
    cfg.on_thread_start = hook_start;
    cfg.on_thread_stop = hook_stop;
    cfg.hook_ud = &log;
    ms_runtime *rt = start(&cfg);
    CHECK(rt);

    /* Three gated jobs force all three blocking threads into existence. */
    static gate g;
    gate_init(&g);
    static gated_job jobs[3];
    ms_task *h[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (gated_job){.g = &g, .id = i};
        CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &jobs[i], &h[i]), 0);
    }
    CHECK(gate_wait_entered(&g, 3, 10000));
    gate_open(&g);
    for (int i = 0; i < 3; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 10000, NULL, NULL), 0);
        ms_task_release(h[i]);
    }
    ms_shutdown_report rep;
    CHECK_INT_EQ(ms_runtime_shutdown(rt, MS_SHUTDOWN_CANCEL, 10000, &rep), 0);

    pthread_mutex_lock(&log.mu);
    int nstarted = log.nstarted, nstopped = log.nstopped, wrong = log.wrong_thread;
    pthread_mutex_unlock(&log.mu);
    /* 2 workers, 3 blocking threads, the driver (time and I/O are on by
     * default) and the health monitor. */
    CHECK_INT_EQ(nstarted, 2 + 3 + 1 + 1);
    CHECK_INT_EQ(count_name(log.started, nstarted, "ms-health"), 1);
    CHECK_INT_EQ(nstopped, nstarted);
    CHECK_INT_EQ(wrong, 0);
    CHECK_INT_EQ(count_name(log.started, nstarted, "ms-driver"), 1);
    CHECK_INT_EQ(count_name(log.started, nstarted, "ms-worker-0"), 1);
    CHECK_INT_EQ(count_name(log.started, nstarted, "ms-worker-1"), 1);
    int blocking = 0;
    for (int i = 0; i < nstarted; i++) {
        /* Every thread that started stopped exactly once, under the same name. */
        CHECK_INT_EQ(count_name(log.started, nstarted, log.started[i]), 1);
        CHECK_INT_EQ(count_name(log.stopped, nstopped, log.started[i]), 1);
        if (strncmp(log.started[i], "ms-blocking-", 12) == 0)
            blocking++;
    }
    CHECK_INT_EQ(blocking, 3);

    /* Nothing runs a hook after shutdown returned. */
    ms_runtime_free(rt);
    pthread_mutex_lock(&log.mu);
    CHECK_INT_EQ(log.nstarted, nstarted);
    CHECK_INT_EQ(log.nstopped, nstopped);
    pthread_mutex_unlock(&log.mu);
    pthread_mutex_destroy(&log.mu);
    gate_destroy(&g);
}

/* ------------------------------------------------------------------------
 * Abort and shutdown
 * ---------------------------------------------------------------------- */

TEST(abort_of_a_queued_job_cancels_it_without_running_it) {
    ms_config cfg = config_with(2, 1);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    static gate g;
    gate_init(&g);
    static gated_job busy, queued;
    busy = (gated_job){.g = &g, .id = 1};
    queued = (gated_job){.id = 2};
    ms_task *hb = NULL, *hq = NULL;
    CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &busy, &hb), 0);
    CHECK(gate_wait_entered(&g, 1, 10000));
    CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &queued, &hq), 0);
    ms_task_abort(hq);
    gate_open(&g);

    void *out = (void *)1;
    ms_error err = {0};
    CHECK_INT_EQ(ms_task_join(hq, 10000, &out, &err), MS_E_TASK_CANCELLED);
    CHECK_INT_EQ(err.code, MS_E_TASK_CANCELLED);
    CHECK(out == NULL);
    CHECK_INT_EQ(atomic_load(&queued.ran), 0);
    CHECK_INT_EQ(ms_task_join(hb, 10000, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, 11);
    ms_task_release(hb);
    ms_task_release(hq);

    /* The cancelled job stays unrun, and the pool keeps working. */
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn_blocking(rt, add_one, (void *)(intptr_t)5, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 10000, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, 6);
    ms_task_release(t);
    CHECK_INT_EQ(atomic_load(&queued.ran), 0);
    ms_runtime_free(rt);
    gate_destroy(&g);
}

TEST(abort_of_a_running_job_lets_it_finish_with_its_output) {
    ms_config cfg = config_with(2, 1);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    static gate g;
    gate_init(&g);
    static gated_job job;
    job = (gated_job){.g = &g, .id = 4};
    ms_task *h = NULL;
    CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &job, &h), 0);
    CHECK(gate_wait_entered(&g, 1, 10000));
    ms_task_abort(h); /* too late: a running job cannot be interrupted */
    gate_open(&g);
    void *out = NULL;
    CHECK_INT_EQ(ms_task_join(h, 10000, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, 41);
    ms_task_release(h);
    ms_runtime_free(rt);
    gate_destroy(&g);
}

/* Joins a queued job (which shutdown will cancel) and then opens the gate
 * that holds the running job: so the gate opens only once shutdown has
 * already cancelled the queue and is waiting for the running job. */
typedef struct opener {
    ms_task *queued;
    gate *g;
    int join_rc;
} opener;

static void *opener_main(void *arg) {
    opener *o = arg;
    o->join_rc = ms_task_join(o->queued, 20000, NULL, NULL);
    gate_open(o->g);
    return NULL;
}

TEST(shutdown_cancels_queued_jobs_and_waits_for_running_ones) {
    ms_config cfg = config_with(2, 1);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    static gate g;
    gate_init(&g);
    enum { QUEUED = 3 };
    static gated_job running, queued[QUEUED];
    running = (gated_job){.g = &g, .id = 0};
    ms_task *hr = NULL, *hq[QUEUED];
    CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &running, &hr), 0);
    CHECK(gate_wait_entered(&g, 1, 10000));
    for (int i = 0; i < QUEUED; i++) {
        queued[i] = (gated_job){.id = i + 1};
        CHECK_INT_EQ(ms_spawn_blocking(rt, gated_fn, &queued[i], &hq[i]), 0);
    }
    opener o = {.queued = hq[0], .g = &g, .join_rc = 1};
    pthread_t th;
    CHECK_INT_EQ(pthread_create(&th, NULL, opener_main, &o), 0);

    ms_shutdown_report rep = {0};
    int rc = ms_runtime_shutdown(rt, MS_SHUTDOWN_CANCEL, 20000, &rep);
    /* Shutdown returned, so the running job has finished... */
    bool finished_at_return = ms_task_is_finished(hr);
    pthread_join(th, NULL);
    CHECK_INT_EQ(rc, 0);
    CHECK(finished_at_return);
    CHECK_INT_EQ(rep.cancelled_blocking, QUEUED);
    CHECK_INT_EQ(rep.abandoned_threads, 0);
    CHECK_INT_EQ(o.join_rc, MS_E_TASK_CANCELLED);

    /* ...with its output, and the queued ones were cancelled unrun. */
    void *out = NULL;
    CHECK_INT_EQ(ms_task_join(hr, 0, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, 1);
    ms_task_release(hr);
    for (int i = 0; i < QUEUED; i++) {
        CHECK_INT_EQ(ms_task_join(hq[i], 0, NULL, NULL), MS_E_TASK_CANCELLED);
        CHECK_INT_EQ(atomic_load(&queued[i].ran), 0);
        ms_task_release(hq[i]);
    }
    ms_runtime_free(rt);
    gate_destroy(&g);
}

TEST(spawn_blocking_after_shutdown_fails_with_shutting_down) {
    ms_config cfg = config_with(2, 2);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    CHECK_INT_EQ(ms_runtime_shutdown(rt, MS_SHUTDOWN_CANCEL, 10000, NULL), 0);
    ms_task *t = (ms_task *)&t;
    CHECK_INT_EQ(ms_spawn_blocking(rt, add_one, NULL, &t), MS_E_SHUTTING_DOWN);
    CHECK(t == (ms_task *)&t); /* no handle was handed out */
    ms_runtime_free(rt);
}

/* ------------------------------------------------------------------------
 * Stress
 * ---------------------------------------------------------------------- */

static void *square_fn(void *arg) {
    intptr_t i = (intptr_t)arg;
    return (void *)(i * i + 3);
}

TEST(ten_thousand_jobs_all_complete_with_their_results) {
    ms_config cfg = config_with(2, 16);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    long n = test_scaled(10000, 500);
    ms_task **h = calloc((size_t)n, sizeof *h);
    CHECK(h);
    for (long i = 0; i < n; i++)
        CHECK_INT_EQ(ms_spawn_blocking(rt, square_fn, (void *)(intptr_t)i, &h[i]), 0);
    long wrong = 0;
    for (long i = 0; i < n; i++) {
        void *out = NULL;
        int rc = ms_task_join(h[i], 20000, &out, NULL);
        if (rc != 0 || (intptr_t)out != i * i + 3)
            wrong++;
        ms_task_release(h[i]);
    }
    free(h);
    CHECK_INT_EQ(wrong, 0);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK_INT_EQ(m->blocking_jobs_total, n);
    CHECK(m->blocking_threads <= 16);
    CHECK_INT_EQ(m->blocking_queue_depth, 0);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

static void *spawner_fn(void *arg) {
    /* Spawned from plain threads while others do the same. */
    ms_runtime *rt = arg;
    long wrong = 0;
    for (intptr_t i = 0; i < 200; i++) {
        ms_task *t = NULL;
        void *out = NULL;
        if (ms_spawn_blocking(rt, square_fn, (void *)i, &t) != 0) {
            wrong++;
            continue;
        }
        if (ms_task_join(t, 20000, &out, NULL) != 0 || (intptr_t)out != i * i + 3)
            wrong++;
        ms_task_release(t);
    }
    return (void *)wrong;
}

TEST(jobs_spawned_from_many_threads_all_complete) {
    ms_config cfg = config_with(2, 4);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    enum { SPAWNERS = 6 };
    pthread_t th[SPAWNERS];
    for (int i = 0; i < SPAWNERS; i++)
        CHECK_INT_EQ(pthread_create(&th[i], NULL, spawner_fn, rt), 0);
    long wrong = 0;
    for (int i = 0; i < SPAWNERS; i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        wrong += (long)r;
    }
    CHECK_INT_EQ(wrong, 0);
    ms_runtime_free(rt);
}

/* ------------------------------------------------------------------------
 * ms_blocking_fail
 * ---------------------------------------------------------------------- */

typedef struct fail_job {
    int code;
    int calls;          /* how many times to call ms_blocking_fail */
    int rc;             /* what the (last) call returned */
    bool leak_output;   /* return a non-NULL output anyway */
} fail_job;

static void *failing_fn(void *arg) {
    fail_job *j = arg;
    for (int i = 1; i <= j->calls; i++)
        j->rc = ms_blocking_fail(j->code, "attempt %d of %s", i, "the job");
    return j->leak_output ? (void *)j : NULL;
}

static ms_poll blocking_fail_in_poll(ms_cx *cx, void *state) {
    ms_cx_set_output(cx, (void *)(intptr_t)ms_blocking_fail(MS_E_IO, "from a worker"));
    return MS_POLL_READY;
}

TEST(blocking_fail_fails_the_job_with_its_code_and_last_message) {
    ms_config cfg = config_with(2, 1); /* one thread: every job on it */
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    fail_job j = {.code = MS_E_IO, .calls = 2, .leak_output = true};
    ms_task *t;
    CHECK_INT_EQ(ms_spawn_blocking(rt, failing_fn, &j, &t), 0);
    void *out = (void *)1;
    ms_error err;
    CHECK_INT_EQ(ms_task_join(t, 20000, &out, &err), MS_E_IO);
    CHECK_INT_EQ(j.rc, 0);
    CHECK(out == NULL); /* the job's return value is ignored */
    CHECK_STR_CONTAINS(err.message, "attempt 2 of the job");
    CHECK(strstr(err.message, "attempt 1") == NULL);
    ms_task_release(t);

    /* A code that is not an error code (0, positive) is a TaskFailed. */
    fail_job k = {.code = 0, .calls = 1};
    CHECK_INT_EQ(ms_spawn_blocking(rt, failing_fn, &k, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 20000, NULL, &err), MS_E_TASK_FAILED);
    CHECK_STR_CONTAINS(err.message, "attempt 1 of the job");
    ms_task_release(t);
    fail_job p = {.code = 5, .calls = 1};
    CHECK_INT_EQ(ms_spawn_blocking(rt, failing_fn, &p, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 20000, NULL, &err), MS_E_TASK_FAILED);
    ms_task_release(t);

    /* The failure belongs to that job only: the next job on the same
     * thread succeeds with its output. */
    CHECK_INT_EQ(ms_spawn_blocking(rt, add_one, (void *)(intptr_t)41, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 20000, &out, &err), 0);
    CHECK_INT_EQ((intptr_t)out, 42);
    ms_task_release(t);

    /* Any error code is kept as it is. */
    fail_job q = {.code = MS_E_EXHAUSTED, .calls = 1};
    CHECK_INT_EQ(ms_spawn_blocking(rt, failing_fn, &q, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 20000, NULL, &err), MS_E_EXHAUSTED);
    ms_task_release(t);
    ms_runtime_free(rt);
}

TEST(blocking_fail_outside_a_blocking_job_is_wrong_thread_and_does_nothing) {
    /* On a plain thread. */
    CHECK_INT_EQ(ms_blocking_fail(MS_E_IO, "not in a job"), MS_E_WRONG_THREAD);
    ms_config cfg = config_with(1, 1);
    ms_runtime *rt = start(&cfg);
    CHECK(rt);
    /* On a worker, inside a task's poll: refused, and the task is not
     * failed by it. */
    ms_task *t;
    CHECK_INT_EQ(ms_spawn(rt, blocking_fail_in_poll, NULL, NULL, &t), 0);
    void *out = NULL;
    CHECK_INT_EQ(ms_task_join(t, 20000, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, MS_E_WRONG_THREAD);
    ms_task_release(t);
    /* Inside ms_block_on. */
    CHECK_INT_EQ(ms_block_on(rt, blocking_fail_in_poll, NULL, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, MS_E_WRONG_THREAD);
    /* And a job after all that is unaffected. */
    CHECK_INT_EQ(ms_spawn_blocking(rt, add_one, (void *)(intptr_t)1, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 20000, &out, NULL), 0);
    CHECK_INT_EQ((intptr_t)out, 2);
    ms_task_release(t);
    ms_runtime_free(rt);
}

TEST_MAIN()
