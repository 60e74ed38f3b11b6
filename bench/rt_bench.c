/*
 * rt_bench.c - libms runtime benchmarks, the counterpart of the Tokio peer
 * (shared/peers/tokio/src/main.rs).
 *
 * Every workload has the same parameters as the peer's and the same number
 * of timed runs: ITERS for spawn_many_local, spawn_many_remote_idle,
 * ping_pong and chained_spawn, ITERS/10+1 for yield_many,
 * semaphore_contended and spawn_blocking_many, 5 for timers_100k_1ms.  Each
 * workload runs once untimed (warm-up), then n timed runs; the report line
 * is
 *
 *     NAME median_us=%.1f min_us=%.1f n=%d
 *
 * with median = sorted[n/2] and min = sorted[0], as the peer prints it.
 *
 * One runtime (defaults plus --workers) serves every workload; it is shut
 * down and freed at the end.  Any failed spawn, join or runtime call is
 * fatal (exit 1): a benchmark must not report times for work that did not
 * happen.
 *
 * Usage: rt_bench [--workers N] [--iters N] [NAME ...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ms.h"

/* Workload sizes, as in the peer. */
#define NUM_SPAWN 10000      /* spawn_many_*, spawn_blocking_many */
#define YIELD_TASKS 200      /* yield_many: tasks ... */
#define YIELD_COUNT 1000     /* ... each yielding this many times */
#define CHAIN_LENGTH 1000    /* chained_spawn */

#define DEFAULT_WORKERS 4
#define DEFAULT_ITERS 200

/* ------------------------------------------------------------------------
 * Fatal errors
 * ---------------------------------------------------------------------- */

static void fatal(const char *fmt, ...) MS_PRINTF(1, 2);

/* Prints the message and ends the process at once.  Callable from worker
 * threads, hence _exit after flushing rather than exit (no atexit handlers
 * racing the runtime's threads). */
static void fatal(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("rt_bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

/* A failed libms call: what was being done, the error name, the message. */
static void fatal_ms(const char *what, int code, const ms_error *err)
{
    const char *msg = err && err->message[0] ? err->message : "(no message)";
    fatal("%s failed: %s (%d): %s", what, ms_err_name(code), code, msg);
}

/* ------------------------------------------------------------------------
 * Latch: the main thread waits, outside the workers, until a count reaches
 * zero (the peer's std::sync::mpsc channel).  One latch lives in the bench
 * context for the whole program, so a task that counts down never touches
 * freed memory.
 * ---------------------------------------------------------------------- */

typedef struct latch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long count;
} latch;

static void latch_init(latch *l)
{
    if (pthread_mutex_init(&l->mu, NULL) != 0 || pthread_cond_init(&l->cv, NULL) != 0)
        fatal("latch: cannot initialise a mutex/condition variable");
    l->count = 0;
}

static void latch_destroy(latch *l)
{
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
}

static void latch_reset(latch *l, long count)
{
    pthread_mutex_lock(&l->mu);
    l->count = count;
    pthread_mutex_unlock(&l->mu);
}

static void latch_count_down(latch *l)
{
    pthread_mutex_lock(&l->mu);
    if (l->count <= 0) {
        pthread_mutex_unlock(&l->mu);
        fatal("latch counted down below zero (a task finished more than once?)");
    }
    if (--l->count == 0)
        pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void latch_wait(latch *l)
{
    pthread_mutex_lock(&l->mu);
    while (l->count > 0)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

/* ------------------------------------------------------------------------
 * Bench context: the runtime plus the shared state of the workloads.
 * ---------------------------------------------------------------------- */

typedef struct yield_state {
    struct bench_ctx *ctx;
    int left;                  /* yields still to do */
} yield_state;

typedef struct bench_ctx {
    ms_runtime *rt;
    latch done;
    atomic_long remaining;     /* spawn_many_local's countdown, chained_spawn's links */
    yield_state yielders[YIELD_TASKS];
} bench_ctx;

static void spawn_or_die(const char *what, ms_runtime *rt, ms_poll_fn poll, void *state,
                         ms_task **handle)
{
    int rc = ms_spawn(rt, poll, state, NULL, handle);
    if (rc != 0)
        fatal("%s failed: %s (%d)", what, ms_err_name(rc), rc);
}

static void block_on_or_die(const char *what, ms_runtime *rt, ms_poll_fn poll, void *state)
{
    ms_error err;
    void *out = NULL;
    memset(&err, 0, sizeof err);
    int rc = ms_block_on(rt, poll, state, &out, &err);
    if (rc != 0)
        fatal_ms(what, rc, &err);
}

/* A task that does nothing (the peer's `async {}`). */
static ms_poll empty_task(ms_cx *cx, void *state)
{
    (void)cx;
    (void)state;
    return MS_POLL_READY;
}

/* ------------------------------------------------------------------------
 * spawn_many_local: from inside one task, spawn NUM_SPAWN empty tasks; the
 * last to finish releases the main thread, which waits inside block_on.
 * ---------------------------------------------------------------------- */

static ms_poll sml_leaf(ms_cx *cx, void *state)
{
    (void)cx;
    bench_ctx *ctx = state;
    if (atomic_fetch_sub_explicit(&ctx->remaining, 1, memory_order_relaxed) == 1)
        latch_count_down(&ctx->done);
    return MS_POLL_READY;
}

static ms_poll sml_spawner(ms_cx *cx, void *state)
{
    bench_ctx *ctx = state;
    ms_runtime *rt = ms_cx_runtime(cx);
    for (int i = 0; i < NUM_SPAWN; i++)
        spawn_or_die("spawn_many_local: ms_spawn (leaf)", rt, sml_leaf, ctx, NULL);
    return MS_POLL_READY;
}

static ms_poll sml_root(ms_cx *cx, void *state)
{
    bench_ctx *ctx = state;
    atomic_store_explicit(&ctx->remaining, NUM_SPAWN, memory_order_relaxed);
    latch_reset(&ctx->done, 1);
    spawn_or_die("spawn_many_local: ms_spawn (spawner)", ms_cx_runtime(cx), sml_spawner, ctx,
                 NULL);
    latch_wait(&ctx->done);  /* like the peer's rx.recv() inside block_on */
    ms_cx_set_output(cx, NULL);
    return MS_POLL_READY;
}

static void bench_spawn_many_local(bench_ctx *ctx)
{
    block_on_or_die("spawn_many_local: ms_block_on", ctx->rt, sml_root, ctx);
}

/* ------------------------------------------------------------------------
 * Joining a list of handles in order from inside block_on.
 * ---------------------------------------------------------------------- */

typedef struct join_all {
    const char *what;
    ms_task **handles;
    int count;
    int next;                  /* index of the next handle to join */
    bool check_output;         /* output must equal expected[i] */
    void *const *expected;
} join_all;

static ms_poll join_all_poll(ms_cx *cx, join_all *j)
{
    while (j->next < j->count) {
        ms_task *t = j->handles[j->next];
        void *out = NULL;
        int result = 0;
        ms_error err;
        memset(&err, 0, sizeof err);
        ms_poll p = ms_task_poll_join(t, cx, &out, &result, &err);
        if (p == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (p != MS_POLL_READY)
            fatal("%s: ms_task_poll_join of task %d/%d returned poll state %d", j->what,
                  j->next, j->count, (int)p);
        if (result != 0) {
            char what[128];
            snprintf(what, sizeof what, "%s: join of task %d/%d", j->what, j->next, j->count);
            fatal_ms(what, result, &err);
        }
        if (j->check_output && out != j->expected[j->next])
            fatal("%s: task %d/%d returned %p, expected %p", j->what, j->next, j->count, out,
                  j->expected[j->next]);
        ms_task_release(t);
        j->handles[j->next] = NULL;
        j->next++;
    }
    return MS_POLL_READY;
}

static ms_task **alloc_handles(int n)
{
    ms_task **h = calloc((size_t)n, sizeof *h);
    if (!h)
        fatal("out of memory allocating %d task handles", n);
    return h;
}

/* ------------------------------------------------------------------------
 * spawn_many_remote_idle: from the main thread, spawn NUM_SPAWN empty tasks
 * keeping the handles, then join them all in order inside block_on.
 * ---------------------------------------------------------------------- */

static ms_poll smri_join(ms_cx *cx, void *state)
{
    ms_poll p = join_all_poll(cx, state);
    if (p == MS_POLL_READY)
        ms_cx_set_output(cx, NULL);
    return p;
}

static void bench_spawn_many_remote_idle(bench_ctx *ctx)
{
    ms_task **handles = alloc_handles(NUM_SPAWN);
    for (int i = 0; i < NUM_SPAWN; i++)
        spawn_or_die("spawn_many_remote_idle: ms_spawn", ctx->rt, empty_task, NULL,
                     &handles[i]);
    join_all j = {.what = "spawn_many_remote_idle", .handles = handles, .count = NUM_SPAWN};
    block_on_or_die("spawn_many_remote_idle: ms_block_on", ctx->rt, smri_join, &j);
    free(handles);
}

/* ------------------------------------------------------------------------
 * yield_many: YIELD_TASKS tasks spawned from the main thread each yield
 * YIELD_COUNT times, then count down the latch the main thread waits on.
 * ---------------------------------------------------------------------- */

static ms_poll yield_task(ms_cx *cx, void *state)
{
    yield_state *y = state;
    if (y->left > 0) {
        y->left--;
        ms_poll p = ms_cx_yield(cx);
        if (p != MS_POLL_PENDING)
            fatal("yield_many: ms_cx_yield returned %d, expected MS_POLL_PENDING", (int)p);
        return p;
    }
    latch_count_down(&y->ctx->done);
    return MS_POLL_READY;
}

static void bench_yield_many(bench_ctx *ctx)
{
    latch_reset(&ctx->done, YIELD_TASKS);
    for (int i = 0; i < YIELD_TASKS; i++) {
        ctx->yielders[i].ctx = ctx;
        ctx->yielders[i].left = YIELD_COUNT;
    }
    for (int i = 0; i < YIELD_TASKS; i++)
        spawn_or_die("yield_many: ms_spawn", ctx->rt, yield_task, &ctx->yielders[i], NULL);
    latch_wait(&ctx->done);
}

/* ------------------------------------------------------------------------
 * yield_many_resizing: yield_many while another thread changes the number
 * of active workers (ms_runtime_tune) between 1 and the configured count
 * every 200 us.  Ours only (Tokio cannot resize): read it against
 * yield_many in the same run for what resizing under load costs.
 * ---------------------------------------------------------------------- */

typedef struct resizer {
    ms_runtime *rt;
    uint32_t max;
    atomic_bool stop;
    long resizes;
} resizer;

static void *resize_loop(void *arg)
{
    resizer *r = arg;
    uint32_t n = 1;
    while (!atomic_load(&r->stop)) {
        char text[16];
        snprintf(text, sizeof text, "%u", n);
        ms_error err;
        int rc = ms_runtime_tune(r->rt, "worker_threads", text, &err);
        if (rc != 0)
            fatal_ms("yield_many_resizing: ms_runtime_tune", rc, &err);
        r->resizes++;
        n = n % r->max + 1;
        usleep(200);
    }
    return NULL;
}

static void bench_yield_many_resizing(bench_ctx *ctx)
{
    ms_config live;
    ms_runtime_live_config(ctx->rt, &live);
    resizer r = {.rt = ctx->rt, .max = live.worker_threads, .resizes = 0};
    atomic_init(&r.stop, false);
    pthread_t th;
    if (pthread_create(&th, NULL, resize_loop, &r) != 0)
        fatal("yield_many_resizing: cannot start the resizing thread");
    bench_yield_many(ctx);
    atomic_store(&r.stop, true);
    pthread_join(th, NULL);
    char text[16];
    snprintf(text, sizeof text, "%u", live.worker_threads);
    ms_error err;
    int rc = ms_runtime_tune(ctx->rt, "worker_threads", text, &err);
    if (rc != 0)
        fatal_ms("yield_many_resizing: ms_runtime_tune", rc, &err);
}

/* ------------------------------------------------------------------------
 * chained_spawn: a task started from block_on runs link(CHAIN_LENGTH);
 * link(n) spawns a task running link(n-1), and link(0) releases the main
 * thread, which waits inside block_on.  The links run one after another,
 * so the shared counter carries n from each link to the next.
 * ---------------------------------------------------------------------- */

static ms_poll chain_link(ms_cx *cx, void *state)
{
    bench_ctx *ctx = state;
    long n = atomic_load_explicit(&ctx->remaining, memory_order_relaxed);
    if (n == 0) {
        latch_count_down(&ctx->done);
    } else {
        atomic_store_explicit(&ctx->remaining, n - 1, memory_order_relaxed);
        spawn_or_die("chained_spawn: ms_spawn (link)", ms_cx_runtime(cx), chain_link, ctx,
                     NULL);
    }
    return MS_POLL_READY;
}

static ms_poll chain_root(ms_cx *cx, void *state)
{
    bench_ctx *ctx = state;
    atomic_store_explicit(&ctx->remaining, CHAIN_LENGTH, memory_order_relaxed);
    latch_reset(&ctx->done, 1);
    spawn_or_die("chained_spawn: ms_spawn (first link)", ms_cx_runtime(cx), chain_link, ctx,
                 NULL);
    latch_wait(&ctx->done);
    ms_cx_set_output(cx, NULL);
    return MS_POLL_READY;
}

static void bench_chained_spawn(bench_ctx *ctx)
{
    block_on_or_die("chained_spawn: ms_block_on", ctx->rt, chain_root, ctx);
}

/* ------------------------------------------------------------------------
 * spawn_blocking_many: inside block_on, spawn NUM_SPAWN trivial jobs on the
 * blocking pool, then join them all in order.  Each job returns its own
 * argument, and the join checks it, so every job is known to have run.
 * ---------------------------------------------------------------------- */

typedef struct sbm_state {
    bench_ctx *ctx;
    bool spawned;
    join_all join;
} sbm_state;

static void *sbm_job(void *arg)
{
    return arg;
}

/* Distinct non-NULL values for the jobs to hand back. */
static char sbm_tokens[NUM_SPAWN];
static void *sbm_expected[NUM_SPAWN];

static ms_poll sbm_poll(ms_cx *cx, void *state)
{
    sbm_state *s = state;
    if (!s->spawned) {
        ms_runtime *rt = ms_cx_runtime(cx);
        for (int i = 0; i < NUM_SPAWN; i++) {
            int rc = ms_spawn_blocking(rt, sbm_job, sbm_expected[i], &s->join.handles[i]);
            if (rc != 0)
                fatal("spawn_blocking_many: ms_spawn_blocking of job %d/%d failed: %s (%d)", i,
                      NUM_SPAWN, ms_err_name(rc), rc);
        }
        s->spawned = true;
    }
    ms_poll p = join_all_poll(cx, &s->join);
    if (p == MS_POLL_READY)
        ms_cx_set_output(cx, NULL);
    return p;
}

static void bench_spawn_blocking_many(bench_ctx *ctx)
{
    sbm_state s = {
        .ctx = ctx,
        .spawned = false,
        .join = {.what = "spawn_blocking_many",
                 .handles = alloc_handles(NUM_SPAWN),
                 .count = NUM_SPAWN,
                 .check_output = true,
                 .expected = sbm_expected},
    };
    block_on_or_die("spawn_blocking_many: ms_block_on", ctx->rt, sbm_poll, &s);
    free(s.join.handles);
}

/* ------------------------------------------------------------------------
 * timers_100k_1ms: inside block_on, spawn TIMER_TASKS tasks that each
 * sleep 1 ms on their own timer, then join them all.
 * ---------------------------------------------------------------------- */

#define TIMER_TASKS 100000

typedef struct sleep_task {
    ms_timer *timer;
} sleep_task;

static ms_poll sleep_task_poll(ms_cx *cx, void *state)
{
    sleep_task *t = state;
    if (!t->timer) {
        ms_error err;
        int rc = ms_timer_new(ms_cx_runtime(cx), &t->timer, &err);
        if (rc != 0)
            fatal_ms("timers_100k_1ms: ms_timer_new", rc, &err);
        ms_timer_set_after(t->timer, 1);
    }
    return ms_timer_poll(t->timer, cx);
}

static void sleep_task_drop(void *state)
{
    sleep_task *t = state;
    ms_timer_free(t->timer);
    t->timer = NULL;
}

typedef struct timers_state {
    sleep_task *tasks;
    bool spawned;
    join_all join;
} timers_state;

static ms_poll timers_poll(ms_cx *cx, void *state)
{
    timers_state *s = state;
    if (!s->spawned) {
        for (int i = 0; i < TIMER_TASKS; i++) {
            s->tasks[i].timer = NULL;
            int rc = ms_spawn(ms_cx_runtime(cx), sleep_task_poll, &s->tasks[i], sleep_task_drop,
                              &s->join.handles[i]);
            if (rc != 0)
                fatal("timers_100k_1ms: ms_spawn of task %d failed: %s (%d)", i, ms_err_name(rc),
                      rc);
        }
        s->spawned = true;
    }
    return join_all_poll(cx, &s->join);
}

static void bench_timers_many(bench_ctx *ctx)
{
    static sleep_task tasks[TIMER_TASKS];
    timers_state s = {
        .tasks = tasks,
        .join = {.what = "timers_100k_1ms", .handles = alloc_handles(TIMER_TASKS),
                 .count = TIMER_TASKS},
    };
    block_on_or_die("timers_100k_1ms: ms_block_on", ctx->rt, timers_poll, &s);
    free(s.join.handles);
}

/* ------------------------------------------------------------------------
 * ping_pong: inside block_on, a spawner task spawns NUM_PINGS tasks and is
 * joined; each of those spawns a peer and they exchange one message each
 * way through two oneshots (ping -> peer, peer -> ping); the last ping to
 * get its reply releases the main thread, which waits inside block_on.
 * ---------------------------------------------------------------------- */

#define NUM_PINGS 1000

typedef struct pong_state {
    ms_oneshot *in;            /* from the ping */
    ms_oneshot *out;           /* to the ping */
} pong_state;

typedef struct ping_state {
    bench_ctx *ctx;
    ms_oneshot *reply;         /* receiver side; NULL until the peer is spawned */
    pong_state peer;
} ping_state;

static ping_state ping_states[NUM_PINGS];

static ms_poll pong_task(ms_cx *cx, void *state)
{
    pong_state *p = state;
    void *v = NULL;
    int rc = 0;
    if (ms_oneshot_recv_poll(p->in, cx, &v, &rc) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (rc != 0)
        fatal("ping_pong: the peer's receive failed: %s (%d)", ms_err_name(rc), rc);
    ms_oneshot_close_rx(p->in);
    rc = ms_oneshot_send(p->out, NULL);
    if (rc != 0)
        fatal("ping_pong: the peer's send failed: %s (%d)", ms_err_name(rc), rc);
    ms_oneshot_close_tx(p->out);
    return MS_POLL_READY;
}

static ms_poll ping_task(ms_cx *cx, void *state)
{
    ping_state *p = state;
    if (!p->reply) {
        ms_oneshot *go, *back;
        if (ms_oneshot_new(NULL, &go) != 0 || ms_oneshot_new(NULL, &back) != 0)
            fatal("ping_pong: out of memory for a oneshot");
        p->peer = (pong_state){go, back};
        p->reply = back;
        spawn_or_die("ping_pong: ms_spawn (peer)", ms_cx_runtime(cx), pong_task, &p->peer, NULL);
        int rc = ms_oneshot_send(go, NULL);
        if (rc != 0)
            fatal("ping_pong: send failed: %s (%d)", ms_err_name(rc), rc);
        ms_oneshot_close_tx(go);
    }
    void *v = NULL;
    int rc = 0;
    if (ms_oneshot_recv_poll(p->reply, cx, &v, &rc) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (rc != 0)
        fatal("ping_pong: receive failed: %s (%d)", ms_err_name(rc), rc);
    ms_oneshot_close_rx(p->reply);
    p->reply = NULL;
    if (atomic_fetch_sub_explicit(&p->ctx->remaining, 1, memory_order_relaxed) == 1)
        latch_count_down(&p->ctx->done);
    return MS_POLL_READY;
}

static ms_poll ping_spawner(ms_cx *cx, void *state)
{
    bench_ctx *ctx = state;
    for (int i = 0; i < NUM_PINGS; i++) {
        ping_states[i] = (ping_state){.ctx = ctx};
        spawn_or_die("ping_pong: ms_spawn (ping)", ms_cx_runtime(cx), ping_task, &ping_states[i],
                     NULL);
    }
    return MS_POLL_READY;
}

typedef struct ping_root_state {
    bench_ctx *ctx;
    ms_task *spawner;
} ping_root_state;

static ms_poll ping_root(ms_cx *cx, void *state)
{
    ping_root_state *r = state;
    if (!r->spawner) {
        atomic_store_explicit(&r->ctx->remaining, NUM_PINGS, memory_order_relaxed);
        latch_reset(&r->ctx->done, 1);
        spawn_or_die("ping_pong: ms_spawn (spawner)", ms_cx_runtime(cx), ping_spawner, r->ctx,
                     &r->spawner);
    }
    join_all j = {.what = "ping_pong (spawner)", .handles = &r->spawner, .count = 1};
    if (join_all_poll(cx, &j) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    latch_wait(&r->ctx->done);  /* like the peer's done_rx.recv() inside block_on */
    ms_cx_set_output(cx, NULL);
    return MS_POLL_READY;
}

static void bench_ping_pong(bench_ctx *ctx)
{
    ping_root_state r = {.ctx = ctx};
    block_on_or_die("ping_pong: ms_block_on", ctx->rt, ping_root, &r);
}

/* ------------------------------------------------------------------------
 * semaphore_contended: inside block_on, spawn SEM_TASKS tasks that each
 * SEM_ROUNDS times acquire one permit of a SEM_PERMITS-permit semaphore,
 * yield while holding it, and release it; then join them all in order.
 * ---------------------------------------------------------------------- */

#define SEM_TASKS 1000
#define SEM_ROUNDS 100
#define SEM_PERMITS 10

typedef struct sem_task_state {
    ms_sem *sem;
    ms_sem_waiter w;
    int rounds_left;
    bool holding;
} sem_task_state;

static ms_poll sem_task(ms_cx *cx, void *state)
{
    sem_task_state *t = state;
    if (t->holding) {
        /* The yield while holding is over: the permit goes back. */
        ms_sem_release(t->sem, 1);
        t->holding = false;
        if (--t->rounds_left == 0)
            return MS_POLL_READY;
    }
    int rc = 0;
    if (ms_sem_acquire_poll(t->sem, &t->w, cx, &rc) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (rc != 0)
        fatal("semaphore_contended: acquire failed: %s (%d)", ms_err_name(rc), rc);
    t->holding = true;
    return ms_cx_yield(cx);
}

typedef struct sem_root_state {
    sem_task_state *tasks;
    bool spawned;
    join_all join;
} sem_root_state;

static ms_poll sem_root(ms_cx *cx, void *state)
{
    sem_root_state *s = state;
    if (!s->spawned) {
        for (int i = 0; i < SEM_TASKS; i++)
            spawn_or_die("semaphore_contended: ms_spawn", ms_cx_runtime(cx), sem_task,
                         &s->tasks[i], &s->join.handles[i]);
        s->spawned = true;
    }
    ms_poll p = join_all_poll(cx, &s->join);
    if (p == MS_POLL_READY)
        ms_cx_set_output(cx, NULL);
    return p;
}

static void bench_semaphore_contended(bench_ctx *ctx)
{
    static sem_task_state tasks[SEM_TASKS];
    ms_sem *sem = NULL;
    int rc = ms_sem_new(SEM_PERMITS, &sem);
    if (rc != 0)
        fatal("semaphore_contended: ms_sem_new failed: %s (%d)", ms_err_name(rc), rc);
    for (int i = 0; i < SEM_TASKS; i++) {
        tasks[i] = (sem_task_state){.sem = sem, .rounds_left = SEM_ROUNDS};
        ms_sem_waiter_init(&tasks[i].w, 1);
    }
    sem_root_state s = {
        .tasks = tasks,
        .join = {.what = "semaphore_contended", .handles = alloc_handles(SEM_TASKS),
                 .count = SEM_TASKS},
    };
    block_on_or_die("semaphore_contended: ms_block_on", ctx->rt, sem_root, &s);
    free(s.join.handles);
    if (ms_sem_available(sem) != SEM_PERMITS)
        fatal("semaphore_contended: %llu permits available at the end, expected %d",
              (unsigned long long)ms_sem_available(sem), SEM_PERMITS);
    ms_sem_unref(sem);
}

/* ------------------------------------------------------------------------
 * The table, in the peer's order.
 * ---------------------------------------------------------------------- */

typedef enum iters_rule {
    ITERS_ALL,      /* n = ITERS */
    ITERS_TENTH,    /* n = ITERS/10 + 1 */
    ITERS_FIXED_5   /* n = 5 (timers_100k_1ms in the peer) */
} iters_rule;

typedef struct bench {
    const char *name;
    void (*fn)(bench_ctx *ctx);
    iters_rule rule;
} bench;

static const bench benches[] = {
    {"spawn_many_local", bench_spawn_many_local, ITERS_ALL},
    {"spawn_many_remote_idle", bench_spawn_many_remote_idle, ITERS_ALL},
    {"yield_many", bench_yield_many, ITERS_TENTH},
    {"yield_many_resizing", bench_yield_many_resizing, ITERS_TENTH},
    {"ping_pong", bench_ping_pong, ITERS_ALL},
    {"chained_spawn", bench_chained_spawn, ITERS_ALL},
    {"semaphore_contended", bench_semaphore_contended, ITERS_TENTH},
    {"spawn_blocking_many", bench_spawn_blocking_many, ITERS_TENTH},
    {"timers_100k_1ms", bench_timers_many, ITERS_FIXED_5},
};
#define NUM_BENCHES ((int)(sizeof benches / sizeof benches[0]))

static int runs_for(iters_rule rule, int iters)
{
    switch (rule) {
    case ITERS_ALL: return iters;
    case ITERS_TENTH: return iters / 10 + 1;
    case ITERS_FIXED_5: return 5;
    }
    return iters;
}

static const bench *find_bench(const char *name)
{
    for (int i = 0; i < NUM_BENCHES; i++)
        if (strcmp(benches[i].name, name) == 0)
            return &benches[i];
    return NULL;
}

/* ------------------------------------------------------------------------
 * Timing
 * ---------------------------------------------------------------------- */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run_bench(bench_ctx *ctx, const bench *b, int iters)
{
    int n = runs_for(b->rule, iters);
    double *v = malloc((size_t)n * sizeof *v);
    if (!v)
        fatal("out of memory for %d samples", n);
    b->fn(ctx); /* warm-up */
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        b->fn(ctx);
        v[i] = now_us() - t0;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    printf("%s median_us=%.1f min_us=%.1f n=%d\n", b->name, v[n / 2], v[0], n);
    fflush(stdout);
    free(v);
}

/* ------------------------------------------------------------------------
 * Command line
 * ---------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: rt_bench [--workers N] [--iters N] [NAME ...]\n"
               "  --workers N  worker threads, 1..%d (default %d)\n"
               "  --iters N    timed runs, >= 1 (default %d; yield_many,\n"
               "               semaphore_contended and spawn_blocking_many run\n"
               "               N/10+1 times, timers_100k_1ms 5 times)\n"
               "  NAME         benchmarks to run (default: all):",
            MS_MAX_WORKERS, DEFAULT_WORKERS, DEFAULT_ITERS);
    for (int i = 0; i < NUM_BENCHES; i++)
        fprintf(f, " %s", benches[i].name);
    fputc('\n', f);
}

static void bad_arg(const char *fmt, ...) MS_PRINTF(1, 2);

static void bad_arg(const char *fmt, ...)
{
    va_list ap;
    fputs("rt_bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    usage(stderr);
    exit(2);
}

/* Parses a decimal integer in [lo, hi] for option opt, or exits 2. */
static int parse_int(const char *opt, const char *text, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi)
        bad_arg("%s: invalid value '%s' (expected an integer in %ld..%ld)", opt, text, lo, hi);
    return (int)v;
}

/* Matches "--opt VALUE" and "--opt=VALUE"; returns the value or NULL. */
static const char *option_value(const char *opt, int argc, char **argv, int *i)
{
    size_t len = strlen(opt);
    const char *a = argv[*i];
    if (strncmp(a, opt, len) != 0)
        return NULL;
    if (a[len] == '=')
        return a + len + 1;
    if (a[len] != '\0')
        return NULL;
    if (*i + 1 >= argc)
        bad_arg("%s: missing value", opt);
    return argv[++*i];
}

/* MS_BENCH_CONFIG="key=value,key=value" sets runtime fields by name
 * (ms_config_set), to compare one setting against the defaults, e.g.
 * MS_BENCH_CONFIG=metrics_histograms=true. */
static void apply_env_config(ms_config *cfg)
{
    const char *env = getenv("MS_BENCH_CONFIG");
    if (!env || !*env)
        return;
    char *copy = strdup(env);
    if (!copy)
        fatal("out of memory");
    char *save = NULL;
    for (char *pair = strtok_r(copy, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(pair, '=');
        if (!eq)
            bad_arg("MS_BENCH_CONFIG: '%s' is not key=value", pair);
        *eq = '\0';
        ms_error err;
        if (ms_config_set(cfg, pair, eq + 1, &err) != 0)
            bad_arg("MS_BENCH_CONFIG: %s", err.message);
    }
    free(copy);
}

int main(int argc, char **argv)
{
    int workers = DEFAULT_WORKERS;
    int iters = DEFAULT_ITERS;
    /* Room for every name given, or for all benchmarks when none is. */
    const bench **selected = calloc((size_t)argc + NUM_BENCHES, sizeof *selected);
    int nselected = 0;
    bool names_only = false;
    if (!selected)
        fatal("out of memory");

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v;
        if (!names_only && strcmp(a, "--") == 0) {
            names_only = true;
        } else if (!names_only && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            usage(stdout);
            free(selected);
            return 0;
        } else if (!names_only && (v = option_value("--workers", argc, argv, &i))) {
            workers = parse_int("--workers", v, 1, MS_MAX_WORKERS);
        } else if (!names_only && (v = option_value("--iters", argc, argv, &i))) {
            iters = parse_int("--iters", v, 1, INT_MAX / 2);
        } else if (!names_only && a[0] == '-') {
            bad_arg("unknown option '%s'", a);
        } else {
            const bench *b = find_bench(a);
            if (!b) {
                fprintf(stderr, "rt_bench: unknown benchmark '%s'; valid names:", a);
                for (int k = 0; k < NUM_BENCHES; k++)
                    fprintf(stderr, " %s", benches[k].name);
                fputc('\n', stderr);
                exit(2);
            }
            selected[nselected++] = b;
        }
    }
    if (nselected == 0)
        for (int k = 0; k < NUM_BENCHES; k++)
            selected[nselected++] = &benches[k];

    for (int i = 0; i < NUM_SPAWN; i++)
        sbm_expected[i] = &sbm_tokens[i];

#if defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
    /* The heap policy ms-host sets (ms-host/main.c): without it glibc gives
     * the heap's free top back after every burst of spawns and faults it
     * in again on the next; docs/scheduler.md, "Memory".  MS_BENCH_TRIM=0
     * leaves glibc's default, to measure the difference. */
    const char *trim = getenv("MS_BENCH_TRIM");
    if (!trim || strcmp(trim, "0") != 0) {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 64 << 20);
    }
#endif

    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = (uint32_t)workers;
    apply_env_config(&cfg);

    static bench_ctx ctx;
    ms_error err;
    memset(&err, 0, sizeof err);
    latch_init(&ctx.done);
    int rc = ms_runtime_new(&cfg, &ctx.rt, &err);
    if (rc != 0)
        fatal_ms("ms_runtime_new", rc, &err);

    for (int i = 0; i < nselected; i++)
        run_bench(&ctx, selected[i], iters);

    ms_shutdown_report report;
    memset(&report, 0, sizeof report);
    rc = ms_runtime_shutdown(ctx.rt, MS_SHUTDOWN_DRAIN, cfg.shutdown_timeout_ms, &report);
    if (rc != 0) {
        fprintf(stderr,
                "rt_bench: ms_runtime_shutdown failed: %s (%d): elapsed %llu ms, "
                "%u threads abandoned, %llu tasks cancelled\n",
                ms_err_name(rc), rc, (unsigned long long)report.elapsed_ms,
                report.abandoned_threads, (unsigned long long)report.cancelled_tasks);
        return 1;
    }
    ms_runtime_free(ctx.rt);
    latch_destroy(&ctx.done);
    free(selected);
    return 0;
}
