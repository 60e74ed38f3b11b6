/*
 * test_tune.c - live tuning: the worker pool grows and shrinks under load
 * without losing a task or running one twice; the blocking pool's ceiling
 * and keep-alive change for threads that already exist; the scheduler's
 * knobs change; bad values and fixed fields are refused with the words a
 * profile would get; a stalled worker gets a stand-in.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ms.h"
#include "test.h"
#include "test_rt.h"

static ms_runtime *start_max(uint32_t workers, uint32_t max) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = workers;
    cfg.max_worker_threads = max;
    return start_config(&cfg);
}

static int tune(ms_runtime *rt, const char *k, const char *v) {
    ms_error err;
    int rc = ms_runtime_tune(rt, k, v, &err);
    if (rc != 0)
        fprintf(stderr, "tune %s=%s: %s\n", k, v, err.message);
    return rc;
}

/* ---- every task runs exactly once while the pool is resized ---- */

typedef struct load {
    _Atomic uint32_t *runs; /* per task: how many times its last poll ran */
    _Atomic int done;
} load;

typedef struct job {
    load *l;
    uint32_t id;
    uint32_t yields; /* polls left before it finishes */
} job;

static ms_poll job_poll(ms_cx *cx, void *state) {
    job *j = state;
    if (j->yields > 0) {
        j->yields--;
        return ms_cx_yield(cx);
    }
    atomic_fetch_add(&j->l->runs[j->id], 1);
    atomic_fetch_add(&j->l->done, 1);
    return MS_POLL_READY;
}

static void job_drop(void *state) {
    free(state);
}

typedef struct resizer {
    ms_runtime *rt;
    _Atomic bool stop;
    _Atomic int resizes;
    uint32_t max;
} resizer;

static void *resize_loop(void *arg) {
    resizer *r = arg;
    unsigned seed = 12345;
    while (!atomic_load(&r->stop)) {
        char n[16];
        snprintf(n, sizeof n, "%u", 1 + rand_r(&seed) % r->max);
        if (tune(r->rt, "worker_threads", n) != 0)
            abort();
        atomic_fetch_add(&r->resizes, 1);
        usleep(200 + rand_r(&seed) % 800);
    }
    return NULL;
}

TEST(resizing_under_load_runs_every_task_exactly_once) {
    const uint32_t max = 6;
    ms_runtime *rt = start_max(2, max);
    long n = test_scaled(200000, 5000);
    load l = {.runs = calloc((size_t)n, sizeof(_Atomic uint32_t))};
    CHECK(l.runs != NULL);
    resizer r = {.rt = rt, .max = max};
    pthread_t th;
    CHECK_INT_EQ(pthread_create(&th, NULL, resize_loop, &r), 0);
    for (long i = 0; i < n; i++) {
        job *j = malloc(sizeof *j);
        j->l = &l;
        j->id = (uint32_t)i;
        j->yields = (uint32_t)(i % 4);
        CHECK_INT_EQ(ms_spawn(rt, job_poll, j, job_drop, NULL), 0);
        if (i % 1000 == 0)
            usleep(50); /* let the resizer interleave with the spawns */
    }
    bool all = false;
    for (int i = 0; i < 60000 && !all; i++) {
        all = atomic_load(&l.done) >= n;
        if (!all)
            usleep(500);
    }
    atomic_store(&r.stop, true);
    pthread_join(th, NULL);
    CHECK_INT_EQ(atomic_load(&l.done), n);
    long wrong = 0;
    for (long i = 0; i < n; i++)
        wrong += atomic_load(&l.runs[i]) != 1;
    CHECK_INT_EQ(wrong, 0);
    CHECK(atomic_load(&r.resizes) > 0);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m->worker_resizes > 0);
    CHECK(m->max_workers == max);
    CHECK(m->workers <= max);
    ms_metrics_free(m);
    free(l.runs);
    stop(rt);
}

/* Tasks that spawn tasks from the workers (local queues, LIFO slots)
 * while the pool shrinks to one and grows back. */
typedef struct tree {
    _Atomic long nodes;
    long limit;
} tree;

typedef struct node {
    tree *t;
    int depth;
} node;

static ms_poll node_poll(ms_cx *cx, void *state) {
    node *nd = state;
    atomic_fetch_add(&nd->t->nodes, 1);
    if (nd->depth > 0) {
        for (int i = 0; i < 2; i++) {
            node *c = malloc(sizeof *c);
            c->t = nd->t;
            c->depth = nd->depth - 1;
            if (ms_spawn(ms_runtime_current(), node_poll, c, job_drop, NULL) != 0)
                free(c);
        }
    }
    return MS_POLL_READY;
}

TEST(a_spawn_tree_completes_while_the_pool_shrinks_to_one_and_regrows) {
    ms_runtime *rt = start_max(4, 8);
    int depth = test_scale() >= 1 ? 16 : 12;
    tree t = {.limit = (1L << (depth + 1)) - 1};
    resizer r = {.rt = rt, .max = 8};
    pthread_t th;
    CHECK_INT_EQ(pthread_create(&th, NULL, resize_loop, &r), 0);
    node *root = malloc(sizeof *root);
    root->t = &t;
    root->depth = depth;
    CHECK_INT_EQ(ms_spawn(rt, node_poll, root, job_drop, NULL), 0);
    for (int i = 0; i < 60000 && atomic_load(&t.nodes) < t.limit; i++)
        usleep(500);
    atomic_store(&r.stop, true);
    pthread_join(th, NULL);
    CHECK_INT_EQ(atomic_load(&t.nodes), t.limit);
    stop(rt);
}

static ms_poll count_poll(ms_cx *cx, void *state) {
    atomic_fetch_add((_Atomic int *)state, 1);
    return MS_POLL_READY;
}

TEST(shrinking_retires_the_highest_workers_and_growing_brings_them_back) {
    ms_runtime *rt = start_max(4, 6);
    CHECK_INT_EQ(tune(rt, "worker_threads", "1"), 0);
    /* Retired workers say so in the metrics once they have noticed. */
    bool settled = false;
    for (int i = 0; i < 20000 && !settled; i++) {
        ms_metrics *m = ms_metrics_snapshot(rt);
        settled = m->active_workers == 1 && m->workers == 4 && m->worker[0].active &&
                  !m->worker[1].active && !m->worker[2].active && !m->worker[3].active;
        ms_metrics_free(m);
        if (!settled)
            usleep(500);
    }
    CHECK(settled);
    _Atomic int ran = 0;
    for (int i = 0; i < 1000; i++)
        CHECK_INT_EQ(ms_spawn(rt, count_poll, &ran, NULL, NULL), 0);
    CHECK(wait_int(&ran, 1000));

    CHECK_INT_EQ(tune(rt, "worker_threads", "6"), 0);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->active_workers, 6);
    CHECK_INT_EQ(m->workers, 6); /* two new threads started */
    ms_metrics_free(m);
    ms_config live;
    ms_runtime_live_config(rt, &live);
    CHECK_INT_EQ(live.worker_threads, 6);
    for (int i = 0; i < 1000; i++)
        CHECK_INT_EQ(ms_spawn(rt, count_poll, &ran, NULL, NULL), 0);
    CHECK(wait_int(&ran, 2000));
    stop(rt);
}

TEST(out_of_range_and_fixed_fields_are_refused_naming_them) {
    ms_runtime *rt = start_max(2, 4);
    ms_error err;
    CHECK_INT_EQ(ms_runtime_tune(rt, "worker_threads", "5", &err), MS_E_CONFIG_INVALID);
    CHECK_STR_CONTAINS(err.message, "worker_threads = 5");
    CHECK_STR_CONTAINS(err.message, "max_worker_threads");
    CHECK_INT_EQ(ms_runtime_tune(rt, "worker_threads", "0", &err), MS_E_CONFIG_INVALID);
    CHECK_STR_CONTAINS(err.message, "worker_threads");
    CHECK_INT_EQ(ms_runtime_tune(rt, "budget", "lots", &err), MS_E_CONFIG_INVALID);
    CHECK_STR_CONTAINS(err.message, "budget");
    CHECK_STR_CONTAINS(err.message, "lots");
    CHECK_INT_EQ(ms_runtime_tune(rt, "thread_stack_size", "1M", &err), MS_E_CONFIG_INVALID);
    CHECK_STR_CONTAINS(err.message, "thread_stack_size cannot change while the runtime runs");
    CHECK_INT_EQ(ms_runtime_tune(rt, "wroker_threads", "2", &err), MS_E_CONFIG_INVALID);
    CHECK_STR_CONTAINS(err.message, "worker_threads"); /* the suggestion */
    /* Nothing changed. */
    ms_config live;
    ms_runtime_live_config(rt, &live);
    CHECK_INT_EQ(live.worker_threads, 2);
    CHECK_INT_EQ(live.budget, 128);
    CHECK(ms_config_is_live("thread_keep_alive"));
    CHECK(!ms_config_is_live("enable_io"));
    stop(rt);
}

TEST(budget_and_global_queue_interval_change_live) {
    ms_runtime *rt = start(2);
    CHECK_INT_EQ(tune(rt, "budget", "7"), 0);
    CHECK_INT_EQ(tune(rt, "global_queue_interval", "3"), 0);
    CHECK_INT_EQ(ms_runtime_budget(rt), 7);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->budget, 7);
    CHECK_INT_EQ(m->global_queue_interval, 3);
    ms_metrics_free(m);
    _Atomic int ran = 0;
    for (int i = 0; i < 500; i++)
        CHECK_INT_EQ(ms_spawn(rt, count_poll, &ran, NULL, NULL), 0);
    CHECK(wait_int(&ran, 500));
    stop(rt);
}

/* ---- hand-overs between ms_block_on and a worker ---- */

/* A thread in ms_block_on and a worker task take turns: each round the
 * thread pings and waits for the task's pong.  Every hand-over is a wake
 * of a thread that may be about to sleep, asleep or just woken. */
typedef struct pingpong {
    pthread_mutex_t lock;
    int ping, pong, rounds;      /* under lock */
    ms_waker main_w, task_w;     /* under lock */
} pingpong;

static ms_poll pong_poll(ms_cx *cx, void *state) {
    pingpong *p = state;
    pthread_mutex_lock(&p->lock);
    ms_waker_store(&p->task_w, ms_cx_waker(cx));
    bool answered = p->pong < p->ping;
    if (answered)
        p->pong++;
    bool done = p->pong >= p->rounds;
    ms_waker w = ms_waker_clone(&p->main_w);
    pthread_mutex_unlock(&p->lock);
    if (answered)
        ms_waker_wake(&w);
    else
        ms_waker_drop(&w);
    return done ? MS_POLL_READY : MS_POLL_PENDING;
}

static ms_poll ping_poll(ms_cx *cx, void *state) {
    pingpong *p = state;
    pthread_mutex_lock(&p->lock);
    ms_waker_store(&p->main_w, ms_cx_waker(cx));
    if (p->pong < p->ping) {
        pthread_mutex_unlock(&p->lock);
        return MS_POLL_PENDING; /* still waiting for the answer */
    }
    if (p->ping == p->rounds) {
        pthread_mutex_unlock(&p->lock);
        return MS_POLL_READY;
    }
    p->ping++;
    ms_waker w = ms_waker_clone(&p->task_w);
    pthread_mutex_unlock(&p->lock);
    ms_waker_wake(&w);
    return MS_POLL_PENDING;
}

TEST(hand_overs_between_block_on_and_a_worker_lose_no_wake) {
    ms_runtime *rt = start(2);
    ms_error err;
    /* park_spin_us is gone (it no longer paid: docs/scheduler.md). */
    CHECK_INT_EQ(ms_runtime_tune(rt, "park_spin_us", "20", &err), MS_E_CONFIG_INVALID);
    CHECK_STR_CONTAINS(err.message, "park_spin_us");
    for (int i = 0; i < 3; i++) {
        pingpong p = {.rounds = (int)test_scaled(3000, 300)};
        pthread_mutex_init(&p.lock, NULL);
        ms_task *h;
        CHECK_INT_EQ(ms_spawn(rt, pong_poll, &p, NULL, &h), 0);
        CHECK_INT_EQ(ms_block_on(rt, ping_poll, &p, NULL, &err), 0);
        CHECK_INT_EQ(ms_task_join(h, 20000, NULL, &err), 0);
        ms_task_release(h);
        CHECK_INT_EQ(p.ping, p.rounds);
        CHECK_INT_EQ(p.pong, p.rounds);
        ms_waker_drop(&p.main_w);
        ms_waker_drop(&p.task_w);
        pthread_mutex_destroy(&p.lock);
    }
    stop(rt);
}

/* ---- the blocking pool ---- */

typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int arrived, need;
    bool open;
} gate;

/* Each job waits until `need` jobs are inside at once: with fewer threads
 * than that, they only finish once the ceiling is raised. */
static void *meet(void *arg) {
    gate *g = arg;
    pthread_mutex_lock(&g->lock);
    g->arrived++;
    pthread_cond_broadcast(&g->cond);
    while (g->arrived < g->need && !g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

TEST(raising_max_blocking_threads_starts_threads_for_waiting_jobs) {
    ms_runtime *rt = start(1);
    CHECK_INT_EQ(tune(rt, "max_blocking_threads", "1"), 0);
    gate g = {.need = 4};
    pthread_mutex_init(&g.lock, NULL);
    pthread_cond_init(&g.cond, NULL);
    ms_task *h[4];
    for (int i = 0; i < 4; i++)
        CHECK_INT_EQ(ms_spawn_blocking(rt, meet, &g, &h[i]), 0);
    /* One thread, and it waits for the other three jobs. */
    pthread_mutex_lock(&g.lock);
    while (g.arrived < 1)
        pthread_cond_wait(&g.cond, &g.lock);
    pthread_mutex_unlock(&g.lock);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->blocking_threads, 1);
    CHECK_INT_EQ(m->max_blocking_threads, 1);
    ms_metrics_free(m);
    CHECK_INT_EQ(tune(rt, "max_blocking_threads", "4"), 0);
    for (int i = 0; i < 4; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 20000, NULL, NULL), 0);
        ms_task_release(h[i]);
    }
    stop(rt);
}

TEST(lowering_max_blocking_threads_lets_the_surplus_leave) {
    ms_runtime *rt = start(1);
    gate g = {.need = 6};
    pthread_mutex_init(&g.lock, NULL);
    pthread_cond_init(&g.cond, NULL);
    ms_task *h[6];
    for (int i = 0; i < 6; i++)
        CHECK_INT_EQ(ms_spawn_blocking(rt, meet, &g, &h[i]), 0);
    for (int i = 0; i < 6; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 20000, NULL, NULL), 0);
        ms_task_release(h[i]);
    }
    /* Six idle threads with a minute of keep-alive; lower the ceiling. */
    CHECK_INT_EQ(tune(rt, "max_blocking_threads", "2"), 0);
    bool shrunk = false;
    for (int i = 0; i < 40000 && !shrunk; i++) {
        ms_metrics *m = ms_metrics_snapshot(rt);
        shrunk = m->blocking_threads == 2;
        ms_metrics_free(m);
        if (!shrunk)
            usleep(500);
    }
    CHECK(shrunk);
    /* Jobs still run, two at a time. */
    g.need = 0;
    for (int i = 0; i < 6; i++)
        CHECK_INT_EQ(ms_spawn_blocking(rt, meet, &g, &h[i]), 0);
    for (int i = 0; i < 6; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 20000, NULL, NULL), 0);
        ms_task_release(h[i]);
    }
    stop(rt);
}

static void *nothing(void *arg) {
    return arg;
}

TEST(a_shorter_keep_alive_applies_to_threads_already_idle) {
    ms_runtime *rt = start(1);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn_blocking(rt, nothing, NULL, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    CHECK_INT_EQ(tune(rt, "thread_keep_alive", "20ms"), 0);
    bool gone = false;
    for (int i = 0; i < 40000 && !gone; i++) {
        ms_metrics *m = ms_metrics_snapshot(rt);
        gone = m->blocking_threads == 0;
        CHECK_INT_EQ(m->thread_keep_alive_ms, 20);
        ms_metrics_free(m);
        if (!gone)
            usleep(500);
    }
    CHECK(gone);
    stop(rt);
}

/* ---- a stand-in for a stalled worker ---- */

static ms_poll stuck_poll(ms_cx *cx, void *state) {
    while (!atomic_load((_Atomic bool *)state))
        usleep(1000);
    return MS_POLL_READY;
}

TEST(a_stalled_worker_gets_a_stand_in_that_leaves_when_it_recovers) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 1;
    cfg.max_worker_threads = 2;
    cfg.stall_threshold_ms = 40;
    ms_runtime *rt;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    _Atomic bool release = false;
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, stuck_poll, &release, NULL, &h), 0);
    /* With its only worker stuck, these run only on a stand-in. */
    _Atomic int ran = 0;
    for (int i = 0; i < 100; i++)
        CHECK_INT_EQ(ms_spawn(rt, count_poll, &ran, NULL, NULL), 0);
    CHECK(wait_int(&ran, 100));
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->worker_replacements, 1);
    CHECK_INT_EQ(m->active_workers, 2);
    ms_metrics_free(m);
    atomic_store(&release, true);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    bool back = false;
    for (int i = 0; i < 40000 && !back; i++) {
        m = ms_metrics_snapshot(rt);
        back = m->active_workers == 1;
        ms_metrics_free(m);
        if (!back)
            usleep(500);
    }
    CHECK(back);
    stop(rt);
}

TEST(max_worker_threads_below_worker_threads_is_refused) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 4;
    cfg.max_worker_threads = 2;
    ms_error err;
    CHECK_INT_EQ(ms_config_validate(&cfg, &err), MS_E_CONFIG_INVALID);
    CHECK_STR_CONTAINS(err.message, "max_worker_threads = 2 is below worker_threads = 4");
    cfg.max_worker_threads = 0;
    CHECK_INT_EQ(ms_config_validate(&cfg, NULL), 0);
    CHECK(ms_config_max_workers(&cfg) >= 4);
}

TEST_MAIN()
