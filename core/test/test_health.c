/*
 * test_health.c - the health monitor reports a worker stuck in one poll,
 * with the task's id, once, and again when it recovers; the other workers
 * keep running meanwhile.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <unistd.h>

#include "ms.h"
#include "test.h"

typedef struct log {
    _Atomic int stalls, recoveries;
    _Atomic uint64_t task_id, stalled_ms, recovered_ms;
} log_t;

static void on_stall(void *ud, const ms_stall *s) {
    log_t *l = ud;
    if (s->recovered) {
        atomic_store(&l->recovered_ms, s->stalled_ms);
        atomic_fetch_add(&l->recoveries, 1);
    } else {
        atomic_store(&l->task_id, s->task_id);
        atomic_store(&l->stalled_ms, s->stalled_ms);
        atomic_fetch_add(&l->stalls, 1);
    }
}

static ms_poll spin_poll(ms_cx *cx, void *state) {
    /* A poll that does not return for 300 ms: an endless loop, shortened. */
    usleep(300 * 1000);
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
    cfg.on_stall = on_stall;
    cfg.stall_ud = &l;
    ms_runtime *rt;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, spin_poll, NULL, NULL, &h), 0);
    /* Meanwhile the other worker keeps running tasks. */
    _Atomic int ran = 0;
    for (int i = 0; i < 100; i++)
        CHECK_INT_EQ(ms_spawn(rt, quick_poll, &ran, NULL, NULL), 0);
    for (int i = 0; i < 400 && atomic_load(&ran) < 100; i++)
        usleep(1000);
    CHECK_INT_EQ(atomic_load(&ran), 100);
    CHECK_INT_EQ(ms_task_join(h, 10000, NULL, NULL), 0);
    for (int i = 0; i < 1000 && atomic_load(&l.recoveries) == 0; i++)
        usleep(1000);
    CHECK_INT_EQ(atomic_load(&l.stalls), 1);
    CHECK_INT_EQ(atomic_load(&l.recoveries), 1);
    CHECK_INT_EQ(atomic_load(&l.task_id), ms_task_id(h));
    CHECK(atomic_load(&l.stalled_ms) >= 100);
    CHECK(atomic_load(&l.recovered_ms) >= atomic_load(&l.stalled_ms));
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->stalls_total, 1);
    ms_metrics_free(m);
    ms_task_release(h);
    ms_runtime_free(rt);
}

TEST(busy_but_progressing_workers_are_not_reported) {
    log_t l = {0};
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 2;
    cfg.stall_threshold_ms = 50;
    cfg.on_stall = on_stall;
    cfg.stall_ud = &l;
    ms_runtime *rt;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    _Atomic int ran = 0;
    uint64_t end = ms_now_ns() + 200 * 1000000ull;
    while (ms_now_ns() < end)
        ms_spawn(rt, quick_poll, &ran, NULL, NULL);
    ms_runtime_shutdown(rt, MS_SHUTDOWN_DRAIN, 10000, NULL);
    CHECK_INT_EQ(atomic_load(&l.stalls), 0);
    ms_runtime_free(rt);
}

TEST(a_zero_threshold_turns_the_monitor_off) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 1;
    cfg.stall_threshold_ms = 0;
    ms_runtime *rt;
    CHECK_INT_EQ(ms_runtime_new(&cfg, &rt, NULL), 0);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->stalls_total, 0);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

TEST_MAIN()
