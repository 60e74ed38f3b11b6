/*
 * test_metrics.c - runtime metrics: what each snapshot field counts, as a
 * user reading a snapshot would check it, and the JSON rendering.
 *
 * Every test builds its own runtime so that counters start at zero.
 * Nothing here asserts on timing; the waits have generous bounds only so
 * that a hang becomes a failure.
 */
#define _GNU_SOURCE
#include "ms.h"
#include "test.h"

#include <cjson/cJSON.h>
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

static ms_runtime *start_with(uint32_t workers, uint32_t budget) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = workers;
    if (budget)
        cfg.budget = budget;
    ms_runtime *rt = NULL;
    ms_error err;
    if (ms_runtime_new(&cfg, &rt, &err) != 0) {
        fprintf(stderr, "ms_runtime_new: %s\n", err.message);
        return NULL;
    }
    return rt;
}

/* Waits until *v >= want or timeout_ms passes; returns the last value. */
static uint64_t wait_count(_Atomic uint64_t *v, uint64_t want, uint64_t timeout_ms) {
    uint64_t start = ms_now_ns();
    uint64_t now;
    while ((now = atomic_load(v)) < want && elapsed_ms(start) < timeout_ms)
        sleep_ms(1);
    return now;
}

/* A task that is ready on its first poll, counting the poll. */
static _Atomic uint64_t simple_polls;

static ms_poll ready_poll(ms_cx *cx, void *state) {
    atomic_fetch_add(&simple_polls, 1);
    ms_cx_set_output(cx, state);
    return MS_POLL_READY;
}

/* A task that yields `left` times, then is ready. */
typedef struct yielder {
    int left;
    int polls;
} yielder;

static ms_poll yield_poll(ms_cx *cx, void *state) {
    yielder *y = state;
    y->polls++;
    if (y->left-- > 0)
        return ms_cx_yield(cx);
    return MS_POLL_READY;
}

/* A task that is pending forever: it keeps no waker, so only an abort or
 * shutdown ends it. */
static _Atomic uint64_t forever_polls;

static ms_poll forever_poll(ms_cx *cx, void *state) {
    atomic_fetch_add(&forever_polls, 1);
    return MS_POLL_PENDING;
}

/* ------------------------------------------------------------------------
 * Static fields
 * ---------------------------------------------------------------------- */

TEST(workers_and_limits_match_the_config) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 3;
    cfg.max_blocking_threads = 17;
    ms_runtime *rt = NULL;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK_INT_EQ(m->workers, 3);
    CHECK_INT_EQ(m->max_blocking_threads, 17);
    CHECK(m->uptime_ns > 0);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

TEST(local_queue_capacity_is_256_on_every_worker) {
    ms_runtime *rt = start_with(3, 0);
    CHECK(rt);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    for (uint32_t i = 0; i < m->workers; i++)
        CHECK_INT_EQ(m->worker[i].local_queue_capacity, 256);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

TEST(a_fresh_runtime_has_counted_nothing) {
    ms_runtime *rt = start_with(2, 0);
    CHECK(rt);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK_INT_EQ(m->spawned_tasks, 0);
    CHECK_INT_EQ(m->remote_spawned_tasks, 0);
    CHECK_INT_EQ(m->alive_tasks, 0);
    CHECK_INT_EQ(m->failed_tasks, 0);
    CHECK_INT_EQ(m->cancelled_tasks, 0);
    CHECK_INT_EQ(m->poll_count, 0);
    CHECK_INT_EQ(m->blocking_threads, 0);
    CHECK_INT_EQ(m->blocking_jobs_total, 0);
    CHECK_INT_EQ(m->injection_queue_depth, 0);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

/* ------------------------------------------------------------------------
 * Task counters
 * ---------------------------------------------------------------------- */

/* A parent that spawns `children` ready tasks from its worker and waits
 * for them all. */
typedef struct parent {
    int children;
    int spawned, joined;
    ms_task *kids[16];
    int failed_spawns;
} parent;

static ms_poll parent_poll(ms_cx *cx, void *state) {
    parent *p = state;
    for (; p->spawned < p->children; p->spawned++)
        if (ms_spawn(ms_cx_runtime(cx), ready_poll, NULL, NULL, &p->kids[p->spawned]) != 0)
            return ms_cx_fail(cx, MS_E_TASK_FAILED, "child spawn failed");
    while (p->joined < p->children) {
        int result;
        if (ms_task_poll_join(p->kids[p->joined], cx, NULL, &result, NULL) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        ms_task_release(p->kids[p->joined++]);
    }
    return MS_POLL_READY;
}

TEST(spawned_tasks_counts_remote_spawns_and_spawns_from_tasks) {
    ms_runtime *rt = start_with(2, 0);
    CHECK(rt);
    enum { PARENTS = 5, CHILDREN = 7 };
    parent ps[PARENTS];
    ms_task *h[PARENTS];
    for (int i = 0; i < PARENTS; i++) {
        ps[i] = (parent){.children = CHILDREN};
        CHECK_INT_EQ(ms_spawn(rt, parent_poll, &ps[i], NULL, &h[i]), 0);
    }
    for (int i = 0; i < PARENTS; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 10000, NULL, NULL), 0);
        ms_task_release(h[i]);
    }
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    uint64_t from_workers = 0;
    for (uint32_t i = 0; i < m->workers; i++)
        from_workers += m->worker[i].spawned_tasks;
    CHECK_INT_EQ(m->remote_spawned_tasks, PARENTS);
    CHECK_INT_EQ(from_workers, PARENTS * CHILDREN);
    CHECK_INT_EQ(m->spawned_tasks, PARENTS + PARENTS * CHILDREN);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

/* A blocking job that spawns a ready task and returns its handle. */
static void *spawn_from_job(void *arg) {
    ms_task *child = NULL;
    if (ms_spawn(arg, ready_poll, NULL, NULL, &child) != 0)
        return NULL;
    return child;
}

TEST(spawns_from_blocking_threads_count_as_remote) {
    ms_runtime *rt = start_with(2, 0);
    CHECK(rt);
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn_blocking(rt, spawn_from_job, rt, &t), 0);
    void *out = NULL;
    CHECK_INT_EQ(ms_task_join(t, 10000, &out, NULL), 0);
    ms_task_release(t);
    ms_task *child = out;
    CHECK(child);
    CHECK_INT_EQ(ms_task_join(child, 10000, NULL, NULL), 0);
    ms_task_release(child);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK_INT_EQ(m->remote_spawned_tasks, 1);
    CHECK_INT_EQ(m->spawned_tasks, 1);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

/* Tasks that park their waker in a slot for the test to wake. */
typedef struct parked_task {
    pthread_mutex_t *mu;
    ms_waker waker; /* under mu */
    bool woken;     /* under mu */
    _Atomic int registered;
} parked_task;

static ms_poll parked_poll(ms_cx *cx, void *state) {
    parked_task *p = state;
    pthread_mutex_lock(p->mu);
    bool woken = p->woken;
    if (!woken)
        ms_waker_store(&p->waker, ms_cx_waker(cx));
    pthread_mutex_unlock(p->mu);
    if (woken)
        return MS_POLL_READY;
    atomic_store(&p->registered, 1);
    return MS_POLL_PENDING;
}

TEST(alive_tasks_counts_waiting_tasks_and_returns_to_zero_after_joins) {
    ms_runtime *rt = start_with(2, 0);
    CHECK(rt);
    enum { N = 40 };
    static parked_task ps[N];
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    ms_task *h[N];
    for (int i = 0; i < N; i++) {
        ps[i] = (parked_task){.mu = &mu};
        CHECK_INT_EQ(ms_spawn(rt, parked_poll, &ps[i], NULL, &h[i]), 0);
    }
    uint64_t start = ms_now_ns();
    for (int i = 0; i < N; i++)
        while (!atomic_load(&ps[i].registered) && elapsed_ms(start) < 10000)
            sleep_ms(1);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK_INT_EQ(m->alive_tasks, N); /* waiting, not finished */
    ms_metrics_free(m);

    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&mu);
        ps[i].woken = true;
        ms_waker_wake(&ps[i].waker);
        pthread_mutex_unlock(&mu);
    }
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 10000, NULL, NULL), 0);
        ms_task_release(h[i]);
    }
    m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK_INT_EQ(m->alive_tasks, 0);
    ms_metrics_free(m);
    ms_runtime_free(rt);
    pthread_mutex_destroy(&mu);
}

TEST(poll_count_covers_every_poll_of_every_task) {
    ms_runtime *rt = start_with(2, 0);
    CHECK(rt);
    enum { N = 50, YIELDS = 9 };
    yielder ys[N];
    ms_task *h[N];
    for (int i = 0; i < N; i++) {
        ys[i] = (yielder){.left = YIELDS};
        CHECK_INT_EQ(ms_spawn(rt, yield_poll, &ys[i], NULL, &h[i]), 0);
    }
    uint64_t polled = 0;
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 10000, NULL, NULL), 0);
        ms_task_release(h[i]);
        polled += (uint64_t)ys[i].polls;
    }
    CHECK_INT_EQ(polled, N * (YIELDS + 1));
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK(m->poll_count >= polled);
    uint64_t per_worker = 0;
    for (uint32_t i = 0; i < m->workers; i++)
        per_worker += m->worker[i].poll_count;
    CHECK_INT_EQ(per_worker, m->poll_count); /* the total is the workers' sum */
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

static ms_poll failing_poll(ms_cx *cx, void *state) {
    return ms_cx_fail(cx, MS_E_TASK_FAILED, "disk %s is on fire", "sda");
}

TEST(failed_tasks_counts_a_task_that_fails) {
    ms_runtime *rt = start_with(2, 0);
    CHECK(rt);
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn(rt, failing_poll, NULL, NULL, &t), 0);
    ms_error err = {0};
    CHECK_INT_EQ(ms_task_join(t, 10000, NULL, &err), MS_E_TASK_FAILED);
    CHECK_STR_CONTAINS(err.message, "disk sda is on fire");
    ms_task_release(t);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK_INT_EQ(m->failed_tasks, 1);
    CHECK_INT_EQ(m->cancelled_tasks, 0);
    CHECK_INT_EQ(m->alive_tasks, 0);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

TEST(cancelled_tasks_counts_aborted_tasks) {
    ms_runtime *rt = start_with(2, 0);
    CHECK(rt);
    atomic_store(&forever_polls, 0);
    enum { N = 3 };
    ms_task *h[N];
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(ms_spawn(rt, forever_poll, NULL, NULL, &h[i]), 0);
    CHECK_INT_EQ(wait_count(&forever_polls, N, 10000), N);
    for (int i = 0; i < N; i++)
        ms_task_abort(h[i]);
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 10000, NULL, NULL), MS_E_TASK_CANCELLED);
        ms_task_release(h[i]);
    }
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK_INT_EQ(m->cancelled_tasks, N);
    CHECK_INT_EQ(m->failed_tasks, 0);
    CHECK_INT_EQ(m->alive_tasks, 0);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

/* ------------------------------------------------------------------------
 * Scheduler counters
 * ---------------------------------------------------------------------- */

/* Calls ms_coop_proceed until the budget runs out, once; then is ready on
 * the poll after. */
typedef struct greedy {
    int polls;
    int proceeds_first_poll; /* how many ms_coop_proceed calls returned true */
} greedy;

static ms_poll greedy_poll(ms_cx *cx, void *state) {
    greedy *g = state;
    if (g->polls++ > 0)
        return MS_POLL_READY;
    while (ms_coop_proceed(cx)) {
        if (++g->proceeds_first_poll > 1000)
            return ms_cx_fail(cx, MS_E_TASK_FAILED, "budget never ran out");
    }
    return MS_POLL_PENDING; /* the runtime arranged the re-poll */
}

TEST(forced_yields_counts_polls_cut_short_by_the_budget) {
    ms_runtime *rt = start_with(2, 4);
    CHECK(rt);
    greedy g = {0};
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn(rt, greedy_poll, &g, NULL, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 10000, NULL, NULL), 0);
    ms_task_release(t);
    CHECK_INT_EQ(g.proceeds_first_poll, 4); /* the configured budget */
    CHECK_INT_EQ(g.polls, 2);               /* re-polled without any wake */
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK_INT_EQ(m->forced_yields, 1);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

TEST(park_count_grows_while_the_runtime_idles) {
    ms_runtime *rt = start_with(2, 0);
    CHECK(rt);
    sleep_ms(50);
    uint64_t start = ms_now_ns();
    uint64_t parks = 0;
    bool all_parked = false;
    while (elapsed_ms(start) < 10000) {
        ms_metrics *m = ms_metrics_snapshot(rt);
        CHECK(m);
        parks = m->park_count;
        all_parked = true;
        for (uint32_t i = 0; i < m->workers; i++)
            all_parked = all_parked && m->worker[i].parked && m->worker[i].park_count > 0;
        ms_metrics_free(m);
        if (parks > 0 && all_parked)
            break;
        sleep_ms(5);
    }
    CHECK(parks > 0);
    CHECK(all_parked);
    ms_runtime_free(rt);
}

/* Waits until every worker reports parked; false after timeout_ms. */
static bool wait_all_parked(ms_runtime *rt, uint64_t timeout_ms) {
    uint64_t start = ms_now_ns();
    while (elapsed_ms(start) < timeout_ms) {
        ms_metrics *m = ms_metrics_snapshot(rt);
        if (!m)
            return false;
        bool all = true;
        for (uint32_t i = 0; i < m->workers; i++)
            all = all && m->worker[i].parked;
        ms_metrics_free(m);
        if (all)
            return true;
        sleep_ms(2);
    }
    return false;
}

TEST(busy_time_does_not_grow_while_the_runtime_idles) {
    ms_runtime *rt = start_with(2, 0);
    CHECK(rt);
    /* Some work first, so that the workers have been busy and parked. */
    enum { N = 20 };
    yielder ys[N];
    ms_task *h[N];
    for (int i = 0; i < N; i++) {
        ys[i] = (yielder){.left = 50};
        CHECK_INT_EQ(ms_spawn(rt, yield_poll, &ys[i], NULL, &h[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 10000, NULL, NULL), 0);
        ms_task_release(h[i]);
    }
    CHECK(wait_all_parked(rt, 20000));
    /* Two snapshots 200 ms apart with every worker parked in both and no
     * park in between (nobody woke): busy time did not move at all.  A
     * window in which something woke a worker proves nothing and is
     * tried again (up to 20 s, a hang guard). */
    bool quiet = false;
    uint64_t before = 0, after = 0;
    uint64_t give_up = ms_now_ns() + 20000000000ull;
    while (!quiet && ms_now_ns() < give_up) {
        ms_metrics *a = ms_metrics_snapshot(rt);
        sleep_ms(200);
        ms_metrics *b = ms_metrics_snapshot(rt);
        bool all_parked = true;
        for (uint32_t i = 0; i < a->workers; i++)
            all_parked = all_parked && a->worker[i].parked && b->worker[i].parked;
        quiet = all_parked && a->park_count == b->park_count;
        before = a->busy_ns;
        after = b->busy_ns;
        ms_metrics_free(a);
        ms_metrics_free(b);
    }
    CHECK(quiet);
    CHECK_INT_EQ(after, before);
    ms_runtime_free(rt);
}

/* Keeps one worker going back and forth between busy and parked: spawns a
 * ready task, joins it, again, until told to stop. */
typedef struct churner {
    ms_runtime *rt;
    _Atomic int stop;
    _Atomic uint64_t tasks;
} churner;

static void *churn_main(void *arg) {
    churner *c = arg;
    while (!atomic_load(&c->stop)) {
        ms_task *t = NULL;
        if (ms_spawn(c->rt, ready_poll, NULL, NULL, &t) != 0)
            break;
        ms_task_join(t, 10000, NULL, NULL);
        ms_task_release(t);
        atomic_fetch_add(&c->tasks, 1);
    }
    return NULL;
}

TEST(busy_time_never_decreases_between_snapshots) {
    /* busy_ns is a running total: a later snapshot may never show less than
     * an earlier one, whatever the worker was doing when each was taken.
     * One worker parks and wakes continuously while this thread takes
     * snapshots back to back. */
    ms_runtime *rt = start_with(1, 0);
    CHECK(rt);
    static churner c;
    c.rt = rt;
    atomic_store(&c.stop, 0);
    atomic_store(&c.tasks, 0);
    pthread_t th;
    CHECK_INT_EQ(pthread_create(&th, NULL, churn_main, &c), 0);
    long snapshots = test_scaled(2000000, 50000), taken = 0;
    uint64_t prev_busy = 0, prev_total = 0;
    uint64_t drop = 0, drop_total = 0;
    for (; taken < snapshots; taken++) {
        ms_metrics *m = ms_metrics_snapshot(rt);
        if (!m)
            break;
        uint64_t busy = m->worker[0].busy_ns, total = m->busy_ns;
        ms_metrics_free(m);
        if (busy < prev_busy)
            drop = prev_busy - busy;
        if (total < prev_total)
            drop_total = prev_total - total;
        if (drop || drop_total)
            break;
        prev_busy = busy;
        prev_total = total;
    }
    atomic_store(&c.stop, 1);
    pthread_join(th, NULL);
    ms_runtime_free(rt);
    if (drop || drop_total)
        TEST_FAIL_AT(__FILE__, __LINE__,
                     "busy_ns went backwards after %ld snapshots (%llu tasks run): "
                     "worker[0] by %llu ns, total by %llu ns",
                     taken, (unsigned long long)atomic_load(&c.tasks),
                     (unsigned long long)drop, (unsigned long long)drop_total);
    CHECK(atomic_load(&c.tasks) > 0);
}

/* Spawns `n` children from its worker in one poll, never yielding. */
typedef struct spawner {
    int n;
    int failed;
} spawner;

static _Atomic uint64_t fan_done;

static ms_poll fan_child_poll(ms_cx *cx, void *state) {
    atomic_fetch_add(&fan_done, 1);
    return MS_POLL_READY;
}

static ms_poll fan_parent_poll(ms_cx *cx, void *state) {
    spawner *s = state;
    for (int i = 0; i < s->n; i++)
        if (ms_spawn(ms_cx_runtime(cx), fan_child_poll, NULL, NULL, NULL) != 0)
            s->failed++;
    return MS_POLL_READY;
}

TEST(overflow_count_grows_when_the_local_queue_overflows_and_every_task_runs) {
    /* One worker: nobody steals, so 1000 local spawns must overflow the
     * 256-slot queue. */
    ms_runtime *rt = start_with(1, 0);
    CHECK(rt);
    atomic_store(&fan_done, 0);
    spawner s = {.n = 1000};
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn(rt, fan_parent_poll, &s, NULL, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 10000, NULL, NULL), 0);
    ms_task_release(t);
    CHECK_INT_EQ(s.failed, 0);
    CHECK_INT_EQ(wait_count(&fan_done, 1000, 10000), 1000);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK(m->overflow_count > 0);
    CHECK(m->worker[0].overflow_count > 0);
    CHECK_INT_EQ(m->worker[0].spawned_tasks, 1000);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

/* ------------------------------------------------------------------------
 * JSON
 * ---------------------------------------------------------------------- */

/* The key is present, a number, and equal to want. */
static bool json_number_is(const cJSON *o, const char *key, uint64_t want) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) {
        fprintf(stderr, "  JSON key \"%s\" missing or not a number\n", key);
        return false;
    }
    if (v->valuedouble != (double)want) {
        fprintf(stderr, "  JSON key \"%s\" is %.0f, snapshot has %llu\n", key, v->valuedouble,
                (unsigned long long)want);
        return false;
    }
    return true;
}

static void check_json(const ms_metrics *m, bool pretty) {
    char *json = ms_metrics_to_json(m, pretty);
    CHECK(json);
    cJSON *root = cJSON_Parse(json);
    ms_free(json);
    CHECK(root);
    CHECK(cJSON_IsObject(root));

    const struct { const char *key; uint64_t v; } top[] = {
        {"uptime_ns", m->uptime_ns},
        {"workers", m->workers},
        {"blocking_threads", m->blocking_threads},
        {"idle_blocking_threads", m->idle_blocking_threads},
        {"max_blocking_threads", m->max_blocking_threads},
        {"spawned_tasks", m->spawned_tasks},
        {"remote_spawned_tasks", m->remote_spawned_tasks},
        {"alive_tasks", m->alive_tasks},
        {"failed_tasks", m->failed_tasks},
        {"cancelled_tasks", m->cancelled_tasks},
        {"injection_queue_depth", m->injection_queue_depth},
        {"blocking_queue_depth", m->blocking_queue_depth},
        {"blocking_jobs_total", m->blocking_jobs_total},
        {"timers_active", m->timers_active},
        {"timers_fired", m->timers_fired},
        {"park_count", m->park_count},
        {"noop_count", m->noop_count},
        {"steal_count", m->steal_count},
        {"steal_operations", m->steal_operations},
        {"poll_count", m->poll_count},
        {"busy_ns", m->busy_ns},
        {"forced_yields", m->forced_yields},
        {"overflow_count", m->overflow_count},
        {"local_schedule_count", m->local_schedule_count},
        {"local_queue_depth", m->local_queue_depth},
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        ok = json_number_is(root, top[i].key, top[i].v) && ok;

    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "per_worker");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != (int)m->workers) {
        fprintf(stderr, "  per_worker is not an array of %u entries\n", m->workers);
        ok = false;
    }
    for (uint32_t w = 0; ok && w < m->workers; w++) {
        const cJSON *o = cJSON_GetArrayItem(arr, (int)w);
        const ms_worker_metrics *x = &m->worker[w];
        const struct { const char *key; uint64_t v; } per[] = {
            {"index", w},
            {"park_count", x->park_count},
            {"noop_count", x->noop_count},
            {"steal_count", x->steal_count},
            {"steal_operations", x->steal_operations},
            {"poll_count", x->poll_count},
            {"busy_ns", x->busy_ns},
            {"forced_yields", x->forced_yields},
            {"overflow_count", x->overflow_count},
            {"local_schedule_count", x->local_schedule_count},
            {"spawned_tasks", x->spawned_tasks},
            {"local_queue_depth", x->local_queue_depth},
            {"local_queue_capacity", x->local_queue_capacity},
        };
        for (size_t i = 0; i < sizeof per / sizeof per[0]; i++)
            ok = json_number_is(o, per[i].key, per[i].v) && ok;
        const cJSON *parked = cJSON_GetObjectItemCaseSensitive(o, "parked");
        if (!cJSON_IsBool(parked) || cJSON_IsTrue(parked) != x->parked) {
            fprintf(stderr, "  per_worker[%u].parked missing or wrong\n", w);
            ok = false;
        }
    }
    cJSON_Delete(root);
    CHECK(ok);
}

TEST(json_has_every_snapshot_field_with_its_value) {
    ms_runtime *rt = start_with(3, 0);
    CHECK(rt);
    /* Put something in the counters so that zeros are not all we compare. */
    ms_task *t = NULL;
    CHECK_INT_EQ(ms_spawn(rt, failing_poll, NULL, NULL, &t), 0);
    CHECK_INT_EQ(ms_task_join(t, 10000, NULL, NULL), MS_E_TASK_FAILED);
    ms_task_release(t);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK_INT_EQ(m->failed_tasks, 1);
    check_json(m, false);
    check_json(m, true);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

TEST(json_per_worker_has_one_entry_per_worker) {
    for (uint32_t workers = 1; workers <= 4; workers++) {
        ms_runtime *rt = start_with(workers, 0);
        CHECK(rt);
        ms_metrics *m = ms_metrics_snapshot(rt);
        CHECK(m);
        char *json = ms_metrics_to_json(m, false);
        CHECK(json);
        cJSON *root = cJSON_Parse(json);
        ms_free(json);
        CHECK(root);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "per_worker");
        CHECK(cJSON_IsArray(arr));
        CHECK_INT_EQ(cJSON_GetArraySize(arr), workers);
        CHECK(json_number_is(root, "workers", workers));
        cJSON_Delete(root);
        ms_metrics_free(m);
        ms_runtime_free(rt);
    }
}

/* ------------------------------------------------------------------------
 * The table of metrics
 * ---------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

TEST(every_described_metric_is_well_formed) {
    size_t n = 0;
    const ms_metric_desc *d = ms_metric_descs(&n);
    CHECK(d != NULL);
    CHECK(n > 30);
    bool seen_worker = false;
    for (size_t i = 0; i < n; i++) {
        CHECK(d[i].key && d[i].name && d[i].prom && d[i].help);
        CHECK(strncmp(d[i].prom, "ms_", 3) == 0);
        CHECK(ends_with(d[i].help, "."));
        CHECK(strchr(d[i].help, '\n') == NULL);
        /* Prometheus: counters and only counters end in _total; times are
         * in seconds. */
        CHECK(ends_with(d[i].prom, "_total") == (d[i].type == MS_METRIC_COUNTER));
        if (d[i].unit != MS_UNIT_NONE)
            CHECK(strstr(d[i].prom, "_seconds") != NULL);
        CHECK((d[i].type == MS_METRIC_HISTOGRAM) == (d[i].value == MS_METRIC_HIST));
        /* A name differs from the key only by dropping a time unit. */
        if (strcmp(d[i].name, d[i].key) != 0)
            CHECK(d[i].unit != MS_UNIT_NONE && strncmp(d[i].key, d[i].name,
                                                       strlen(d[i].name)) == 0);
        /* Runtime metrics first. */
        if (d[i].scope == MS_METRIC_WORKER)
            seen_worker = true;
        else
            CHECK(!seen_worker && d[i].sum_offset == MS_METRIC_NO_SUM);
        for (size_t j = 0; j < i; j++) {
            CHECK(strcmp(d[i].prom, d[j].prom) != 0);
            if (d[i].scope == d[j].scope)
                CHECK(strcmp(d[i].key, d[j].key) != 0);
        }
    }
    CHECK_INT_EQ(ms_metric_unit_ns(MS_UNIT_NONE), 1);
    CHECK_INT_EQ(ms_metric_unit_ns(MS_UNIT_NS), 1);
    CHECK_INT_EQ(ms_metric_unit_ns(MS_UNIT_US), 1000);
    CHECK_INT_EQ(ms_metric_unit_ns(MS_UNIT_MS), 1000000);
}

/* Is key a key of the table (in scope), or one of the structural extras? */
static bool described(const char *key, ms_metric_scope scope, bool sums, bool histograms) {
    size_t n;
    const ms_metric_desc *d = ms_metric_descs(&n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(d[i].key, key) != 0 || (d[i].value == MS_METRIC_HIST && !histograms))
            continue;
        if (d[i].scope == scope || (sums && d[i].sum_offset != MS_METRIC_NO_SUM))
            return true;
    }
    return false;
}

/* The JSON of a snapshot has exactly the described keys with their
 * values, runtime and per worker, plus "histograms", "per_worker" and
 * each worker's "index". */
static void check_json_keys(bool histograms) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 2;
    cfg.metrics_histograms = histograms;
    ms_runtime *rt = NULL;
    ms_error err;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, &err), 0);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    char *json = ms_metrics_to_json(m, false);
    CHECK(json);
    cJSON *root = cJSON_Parse(json);
    ms_free(json);
    CHECK(root);
    bool ok = true;
    size_t found = 0;
    for (const cJSON *item = root->child; item; item = item->next) {
        if (!strcmp(item->string, "histograms") || !strcmp(item->string, "per_worker"))
            continue;
        found++;
        if (!described(item->string, MS_METRIC_RUNTIME, true, histograms)) {
            fprintf(stderr, "  JSON key \"%s\" is not described\n", item->string);
            ok = false;
        }
    }
    size_t n, want = 0, want_worker = 0;
    const ms_metric_desc *d = ms_metric_descs(&n);
    for (size_t i = 0; i < n; i++) {
        if (d[i].value == MS_METRIC_HIST && !histograms)
            continue;
        if (d[i].scope == MS_METRIC_RUNTIME || d[i].sum_offset != MS_METRIC_NO_SUM) {
            want++;
            if (d[i].value != MS_METRIC_BOOL)
                ok = json_number_is(root, d[i].key, ms_metric_get(m, &d[i], MS_METRIC_TOTAL)) &&
                     ok;
        }
        if (d[i].scope == MS_METRIC_WORKER)
            want_worker++;
    }
    CHECK_INT_EQ(found, want);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "per_worker");
    CHECK(cJSON_GetArraySize(arr) == 2);
    for (uint32_t w = 0; w < 2; w++) {
        const cJSON *o = cJSON_GetArrayItem(arr, (int)w);
        size_t keys = 0;
        for (const cJSON *item = o->child; item; item = item->next) {
            if (!strcmp(item->string, "index"))
                continue;
            keys++;
            if (!described(item->string, MS_METRIC_WORKER, false, histograms)) {
                fprintf(stderr, "  per-worker JSON key \"%s\" is not described\n", item->string);
                ok = false;
            }
        }
        CHECK_INT_EQ(keys, want_worker);
        for (size_t i = 0; i < n; i++) {
            if (d[i].scope != MS_METRIC_WORKER)
                continue;
            if (d[i].value == MS_METRIC_HIST) {
                CHECK((ms_metric_histogram(m, &d[i], w) != NULL));
                continue;
            }
            CHECK(ms_metric_histogram(m, &d[i], w) == NULL);
            if (d[i].value != MS_METRIC_BOOL)
                ok = json_number_is(o, d[i].key, ms_metric_get(m, &d[i], w)) && ok;
        }
    }
    cJSON_Delete(root);
    CHECK(ok);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

TEST(json_has_exactly_the_described_keys) {
    check_json_keys(false);
    check_json_keys(true);
}

TEST_MAIN()
