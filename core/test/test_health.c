/*
 * test_health.c - the health monitor reports a worker stuck in one poll,
 * with the task's id, once, and again when it recovers; the other workers
 * keep running meanwhile; workers that make progress are never reported;
 * and a zero threshold means no monitor at all.
 *
 * No check here depends on how fast anything runs: a stuck poll stays
 * stuck until the test releases it, and every wait has a generous bound
 * that only turns a hang into a failure.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "ms.h"
#include "test.h"

/* Waits until *v >= want, up to 20 s (a hang guard, not a timing check). */
static bool wait_at_least(_Atomic int *v, int want) {
    for (int i = 0; i < 20000 && atomic_load(v) < want; i++)
        usleep(1000);
    return atomic_load(v) >= want;
}

typedef struct log {
    _Atomic int stalls, recoveries;
    _Atomic uint64_t task_id, stalled_ms, recovered_ms;
    _Atomic uint32_t worker;
    _Atomic int replaced;
    _Atomic uint64_t reported[8]; /* the task ids of the first reports */
} log_t;

static void on_stall(void *ud, const ms_stall *s) {
    log_t *l = ud;
    if (s->recovered) {
        atomic_store(&l->recovered_ms, s->stalled_ms);
        atomic_fetch_add(&l->recoveries, 1);
    } else {
        atomic_store(&l->task_id, s->task_id);
        atomic_store(&l->stalled_ms, s->stalled_ms);
        atomic_store(&l->worker, s->worker);
        atomic_store(&l->replaced, s->replaced);
        int k = atomic_fetch_add(&l->stalls, 1);
        if (k < 8)
            atomic_store(&l->reported[k], s->task_id);
    }
}

/* A poll that does not return until the test says so: an endless loop
 * that the test can end. */
typedef struct stuck {
    _Atomic int entered;
    _Atomic int release;
    _Atomic uint64_t id;
} stuck;

static ms_poll stuck_poll(ms_cx *cx, void *state) {
    stuck *s = state;
    atomic_store(&s->id, ms_task_id(ms_cx_task(cx)));
    atomic_store(&s->entered, 1);
    while (!atomic_load(&s->release))
        usleep(1000);
    return MS_POLL_READY;
}

static ms_poll quick_poll(ms_cx *cx, void *state) {
    atomic_fetch_add((_Atomic int *)state, 1);
    return MS_POLL_READY;
}

TEST(a_worker_stuck_in_one_poll_is_reported_once_then_its_recovery) {
    log_t l = {0};
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 2;
    cfg.stall_threshold_ms = 100;
    /* No stand-in: the tasks below must run on the other, original worker. */
    cfg.replace_stalled_workers = false;
    cfg.on_stall = on_stall;
    cfg.stall_ud = &l;
    ms_runtime *rt;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    stuck s = {0};
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, stuck_poll, &s, NULL, &h), 0);
    CHECK(wait_at_least(&s.entered, 1));

    /* The other worker keeps running tasks while the first is stuck: all
     * 100 run before the stuck poll is allowed to end. */
    _Atomic int ran = 0;
    for (int i = 0; i < 100; i++)
        CHECK_INT_EQ(ms_spawn(rt, quick_poll, &ran, NULL, NULL), 0);
    CHECK(wait_at_least(&ran, 100));
    CHECK(!ms_task_is_finished(h));

    /* Reported once, naming the task, while it is still stuck. */
    CHECK(wait_at_least(&l.stalls, 1));
    CHECK_INT_EQ(atomic_load(&l.task_id), ms_task_id(h));
    CHECK_INT_EQ(atomic_load(&l.task_id), atomic_load(&s.id));
    CHECK(atomic_load(&l.stalled_ms) >= 100);
    CHECK_INT_EQ(atomic_load(&l.replaced), 0);
    CHECK_INT_EQ(atomic_load(&l.recoveries), 0);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->stalls_total, 1);
    CHECK(m->worker[atomic_load(&l.worker)].stalled_ms >= 100);
    CHECK_INT_EQ(m->worker_replacements, 0);
    ms_metrics_free(m);

    atomic_store(&s.release, 1);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    CHECK(wait_at_least(&l.recoveries, 1));
    CHECK_INT_EQ(atomic_load(&l.stalls), 1);
    CHECK_INT_EQ(atomic_load(&l.recoveries), 1);
    CHECK(atomic_load(&l.recovered_ms) >= atomic_load(&l.stalled_ms));
    m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->stalls_total, 1);
    ms_metrics_free(m);
    ms_task_release(h);
    ms_runtime_free(rt);
}

TEST(a_stuck_worker_gets_a_stand_in_that_retires_when_it_recovers) {
    log_t l = {0};
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 1;
    cfg.max_worker_threads = 2;
    cfg.stall_threshold_ms = 100;
    cfg.on_stall = on_stall;
    cfg.stall_ud = &l;
    ms_runtime *rt;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    stuck s = {0};
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, stuck_poll, &s, NULL, &h), 0);
    CHECK(wait_at_least(&s.entered, 1));
    /* The only worker is stuck: these can run only on a stand-in. */
    _Atomic int ran = 0;
    for (int i = 0; i < 10; i++)
        CHECK_INT_EQ(ms_spawn(rt, quick_poll, &ran, NULL, NULL), 0);
    CHECK(wait_at_least(&ran, 10));
    CHECK(!ms_task_is_finished(h));
    /* The report may reach the hook just after the stand-in started. */
    CHECK(wait_at_least(&l.stalls, 1));
    CHECK_INT_EQ(atomic_load(&l.stalls), 1);
    CHECK_INT_EQ(atomic_load(&l.replaced), 1);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->worker_replacements, 1);
    CHECK_INT_EQ(m->active_workers, 2);
    ms_metrics_free(m);
    atomic_store(&s.release, 1);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    CHECK(wait_at_least(&l.recoveries, 1));
    /* The stand-in retires once the stuck worker is back. */
    bool one = false;
    for (int i = 0; i < 20000 && !one; i++) {
        m = ms_metrics_snapshot(rt);
        one = m->active_workers == 1;
        ms_metrics_free(m);
        if (!one)
            usleep(1000);
    }
    CHECK(one);
    ms_task_release(h);
    ms_runtime_free(rt);
}

/* A task that keeps its worker busy with long polls (about 2 ms each) but
 * makes progress: every poll ends and the next begins, so the monitor sees
 * the same task id with a growing poll count. */
typedef struct progresser {
    _Atomic int *stop;
    _Atomic int *started;
    bool counted;
} progresser;

static ms_poll progress_poll(ms_cx *cx, void *state) {
    progresser *p = state;
    if (!p->counted) {
        p->counted = true;
        atomic_fetch_add(p->started, 1);
    }
    if (atomic_load(p->stop))
        return MS_POLL_READY;
    uint64_t end = ms_now_ns() + 2000000u;
    while (ms_now_ns() < end)
        ;
    return ms_cx_yield(cx);
}

TEST(busy_but_progressing_workers_are_not_reported) {
    /* Two workers busy with long but finishing polls, a third stuck for
     * good.  The stuck one is the control: once it has been reported, the
     * monitor has watched the busy ones for longer than the threshold, and
     * it must not have reported them. */
    log_t l = {0};
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 3;
    /* Long, so that only a worker really stuck is reported: a busy one
     * would have to be descheduled inside one 2 ms poll for a second. */
    cfg.stall_threshold_ms = 1000;
    cfg.replace_stalled_workers = false;
    cfg.on_stall = on_stall;
    cfg.stall_ud = &l;
    ms_runtime *rt;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    _Atomic int stop_flag = 0, started = 0;
    progresser ps[2] = {{&stop_flag, &started, false}, {&stop_flag, &started, false}};
    ms_task *hp[2];
    for (int i = 0; i < 2; i++)
        CHECK_INT_EQ(ms_spawn(rt, progress_poll, &ps[i], NULL, &hp[i]), 0);
    CHECK(wait_at_least(&started, 2));
    stuck s = {0};
    ms_task *hs;
    CHECK_INT_EQ(ms_spawn(rt, stuck_poll, &s, NULL, &hs), 0);
    CHECK(wait_at_least(&s.entered, 1));
    CHECK(wait_at_least(&l.stalls, 1));
    /* The one report is the control's. */
    CHECK_INT_EQ(atomic_load(&l.task_id), atomic_load(&s.id));
    /* Wait for a second full threshold, still watching. */
    uint64_t seen = 0;
    for (int i = 0; i < 20000; i++) {
        ms_metrics *m = ms_metrics_snapshot(rt);
        seen = m->worker[atomic_load(&l.worker)].stalled_ms;
        ms_metrics_free(m);
        if (seen >= 2 * cfg.stall_threshold_ms)
            break;
        usleep(1000);
    }
    CHECK(seen >= 2 * cfg.stall_threshold_ms);
    atomic_store(&stop_flag, 1);
    atomic_store(&s.release, 1);
    uint64_t pid[2];
    for (int i = 0; i < 2; i++) {
        CHECK_INT_EQ(ms_task_join(hp[i], 20000, NULL, NULL), 0);
        pid[i] = ms_task_id(hp[i]);
        ms_task_release(hp[i]);
    }
    CHECK_INT_EQ(ms_task_join(hs, 20000, NULL, NULL), 0);
    ms_task_release(hs);
    ms_runtime_shutdown(rt, MS_SHUTDOWN_DRAIN, 10000, NULL);
    int n = atomic_load(&l.stalls);
    for (int i = 0; i < n && i < 8; i++)
        if (atomic_load(&l.reported[i]) != atomic_load(&s.id))
            TEST_FAIL_AT(__FILE__, __LINE__, "report %d: task %llu (%s), not the stuck one", i,
                         (unsigned long long)atomic_load(&l.reported[i]),
                         atomic_load(&l.reported[i]) == pid[0] ||
                                 atomic_load(&l.reported[i]) == pid[1]
                             ? "a progressing one"
                             : "another");
    CHECK_INT_EQ(n, 1);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->stalls_total, 1);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

typedef struct names {
    _Atomic int health_threads;
    _Atomic int threads;
} names;

static void on_start(void *ud, const char *name) {
    names *n = ud;
    atomic_fetch_add(&n->threads, 1);
    if (strstr(name, "-health"))
        atomic_fetch_add(&n->health_threads, 1);
}

static ms_poll held_poll(ms_cx *cx, void *state) {
    /* Stuck for 300 ms: three times the shortest threshold there is. */
    uint64_t end = ms_now_ns() + 300 * 1000000ull;
    while (ms_now_ns() < end)
        usleep(1000);
    atomic_store((_Atomic int *)state, 1);
    return MS_POLL_READY;
}

TEST(a_zero_threshold_turns_the_monitor_off) {
    log_t l = {0};
    names n = {0};
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 1;
    cfg.stall_threshold_ms = 0;
    cfg.on_stall = on_stall;
    cfg.stall_ud = &l;
    cfg.on_thread_start = on_start;
    cfg.hook_ud = &n;
    ms_runtime *rt;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    CHECK_INT_EQ(ms_runtime_config(rt)->stall_threshold_ms, 0);
    /* A worker stuck longer than any threshold goes unreported. */
    _Atomic int done = 0;
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, held_poll, &done, NULL, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    CHECK_INT_EQ(atomic_load(&done), 1);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->stalls_total, 0);
    CHECK_INT_EQ(m->worker[0].stalled_ms, 0);
    ms_metrics_free(m);
    ms_runtime_free(rt);
    CHECK_INT_EQ(atomic_load(&l.stalls), 0);
    /* And there was no monitor thread at all: every thread the runtime
     * started has been joined by now, so its start hook has run. */
    CHECK(atomic_load(&n.threads) >= 1);
    CHECK_INT_EQ(atomic_load(&n.health_threads), 0);
}

TEST(a_nonzero_threshold_starts_one_monitor_thread) {
    /* The contrast to the test above: the hook does see a monitor. */
    names n = {0};
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 1;
    cfg.stall_threshold_ms = 100;
    cfg.on_thread_start = on_start;
    cfg.hook_ud = &n;
    ms_runtime *rt;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    CHECK(wait_at_least(&n.health_threads, 1));
    ms_runtime_free(rt);
    CHECK_INT_EQ(atomic_load(&n.health_threads), 1);
}

/* on_starved: the stalled poll is released by the callback, as ms-host's
 * preemption would end it. */
typedef struct starve_log {
    _Atomic int calls;
    _Atomic uint64_t task_id;
    stuck *s;
} starve_log;

static void on_starved(void *ud, const ms_stall *st) {
    starve_log *l = ud;
    atomic_store(&l->task_id, st->task_id);
    atomic_fetch_add(&l->calls, 1);
    atomic_store(&l->s->release, 1);
}

TEST(every_worker_stalled_with_tasks_waiting_calls_on_starved_for_the_stalled_poll) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 1;
    cfg.max_worker_threads = 1; /* no stand-in: the only worker is stuck */
    cfg.stall_threshold_ms = 40;
    stuck s = {0};
    starve_log l = {.s = &s};
    cfg.on_starved = on_starved;
    cfg.stall_ud = &l;
    ms_runtime *rt;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, stuck_poll, &s, NULL, &h), 0);
    CHECK(wait_at_least(&s.entered, 1));
    /* Stalled alone, nothing waiting: not starved. */
    usleep(200000);
    CHECK_INT_EQ(atomic_load(&l.calls), 0);
    /* A task waits that no worker can run: starved, and the callback
     * names the stalled poll; once it ends, the waiting task runs. */
    _Atomic int ran = 0;
    CHECK_INT_EQ(ms_spawn(rt, quick_poll, &ran, NULL, NULL), 0);
    CHECK(wait_at_least(&ran, 1));
    CHECK(atomic_load(&l.calls) >= 1);
    CHECK_INT_EQ(atomic_load(&l.task_id), ms_task_id(h));
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    ms_runtime_free(rt);
}

TEST_MAIN()
