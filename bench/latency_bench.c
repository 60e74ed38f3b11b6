/*
 * latency_bench.c - how soon things happen: the upper bounds that the
 * tests no longer assert (a test on a loaded machine can only say that a
 * thing happened, in order, and never early; how late it was is measured
 * here).
 *
 *   timer_lateness          a timer's wake-up after its deadline (1..40 ms
 *                           sleeps, 2 workers): observed - computed deadline
 *   interval_burst_gap      MS_MISSED_BURST: the gap between two missed ticks
 *                           delivered after a stall (they should come back to
 *                           back, far under the 10 ms period)
 *   interval_delay_restart  MS_MISSED_DELAY: the time from a late tick to the
 *                           next, minus the 10 ms period
 *   stall_report_delay      the health monitor (threshold 100 ms): the time
 *                           from a poll's start to its stall report, minus
 *                           the threshold
 *   stuck_worker_bypass     one of 2 workers stuck: the time for 100 tasks
 *                           spawned from outside to run on the other
 *
 * Each prints `NAME median_us=%.1f min_us=%.1f max_us=%.1f n=%d` (the
 * format of bench/run, plus the maximum: lateness is about the tail).
 *
 * Usage: latency_bench [--workers N] [--iters N] [NAME ...]
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ms.h"

static int iters = 50;
static uint32_t workers = 2;

static void fatal(const char *what, int rc, const ms_error *err) {
    fprintf(stderr, "latency_bench: %s failed: %s (%d)%s%s\n", what, ms_err_name(rc), rc,
            err ? ": " : "", err ? err->message : "");
    _exit(1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, double *us, int n) {
    qsort(us, (size_t)n, sizeof *us, cmp_double);
    printf("%s median_us=%.1f min_us=%.1f max_us=%.1f n=%d\n", name, us[n / 2], us[0], us[n - 1],
           n);
    fflush(stdout);
}

static ms_runtime *start(uint32_t nworkers, uint64_t stall_ms,
                         void (*on_stall)(void *, const ms_stall *), void *ud) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = nworkers;
    cfg.stall_threshold_ms = stall_ms;
    cfg.replace_stalled_workers = false;
    cfg.on_stall = on_stall;
    cfg.stall_ud = ud;
    ms_runtime *rt;
    ms_error err;
    int rc = ms_runtime_new(&cfg, &rt, &err);
    if (rc != 0)
        fatal("ms_runtime_new", rc, &err);
    return rt;
}

/* ---- timer_lateness ---- */

typedef struct sleeper {
    ms_timer *t;
    uint64_t ms, deadline, woke;
} sleeper;

static ms_poll sleeper_poll(ms_cx *cx, void *state) {
    sleeper *s = state;
    if (!s->t) {
        int rc = ms_timer_new(ms_cx_runtime(cx), &s->t, NULL);
        if (rc != 0)
            return ms_cx_fail(cx, rc, "timer");
        ms_timer_set_after(s->t, s->ms);
        s->deadline = ms_timer_deadline(s->t);
    }
    if (ms_timer_poll(s->t, cx) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    s->woke = ms_now_ns();
    ms_timer_free(s->t);
    s->t = NULL;
    return MS_POLL_READY;
}

static void bench_timer_lateness(void) {
    enum { PER_ITER = 40 };
    ms_runtime *rt = start(workers, 0, NULL, NULL);
    int n = iters * PER_ITER;
    double *us = calloc((size_t)n, sizeof *us);
    sleeper *s = calloc(PER_ITER, sizeof *s);
    ms_task *h[PER_ITER];
    for (int it = 0; it < iters; it++) {
        for (int i = 0; i < PER_ITER; i++) {
            s[i] = (sleeper){.ms = 1 + (uint64_t)i};
            int rc = ms_spawn(rt, sleeper_poll, &s[i], NULL, &h[i]);
            if (rc != 0)
                fatal("ms_spawn", rc, NULL);
        }
        for (int i = 0; i < PER_ITER; i++) {
            ms_error err;
            int rc = ms_task_join(h[i], 60000, NULL, &err);
            if (rc != 0)
                fatal("join", rc, &err);
            ms_task_release(h[i]);
            us[it * PER_ITER + i] = (double)(s[i].woke - s[i].deadline) / 1000.0;
        }
    }
    report("timer_lateness", us, n);
    free(us);
    free(s);
    ms_runtime_free(rt);
}

/* ---- intervals ---- */

typedef struct ticker {
    ms_interval *iv;
    ms_missed_tick policy;
    int ticks;
    uint64_t tick_ns[8];
} ticker;

/* 10 ms period; a 35 ms stall after the second tick. */
static ms_poll ticker_poll(ms_cx *cx, void *state) {
    ticker *t = state;
    if (!t->iv) {
        ms_error err;
        int rc = ms_interval_new(ms_cx_runtime(cx), 10, t->policy, &t->iv, &err);
        if (rc != 0)
            return ms_cx_fail(cx, rc, "%s", err.message);
    }
    while (t->ticks < 8) {
        if (ms_interval_poll(t->iv, cx, NULL) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        t->tick_ns[t->ticks++] = ms_now_ns();
        if (t->ticks == 2)
            usleep(35000);
    }
    ms_interval_free(t->iv);
    t->iv = NULL;
    return MS_POLL_READY;
}

static void bench_interval(const char *name, ms_missed_tick policy) {
    ms_runtime *rt = start(workers, 0, NULL, NULL);
    double *us = calloc((size_t)iters, sizeof *us);
    for (int it = 0; it < iters; it++) {
        ticker t = {.policy = policy};
        ms_error err;
        int rc = ms_block_on(rt, ticker_poll, &t, NULL, &err);
        if (rc != 0)
            fatal("ms_block_on", rc, &err);
        if (policy == MS_MISSED_BURST) /* ticks 3 and 4 were both missed */
            us[it] = (double)(t.tick_ns[3] - t.tick_ns[2]) / 1000.0;
        else /* tick 3 is late; tick 4 a period after it */
            us[it] = (double)(t.tick_ns[3] - t.tick_ns[2]) / 1000.0 - 10000.0;
    }
    report(name, us, iters);
    free(us);
    ms_runtime_free(rt);
}

/* ---- the health monitor ---- */

typedef struct stall_probe {
    _Atomic uint64_t poll_start, reported_at;
    _Atomic int release;
} stall_probe;

static void on_stall(void *ud, const ms_stall *st) {
    stall_probe *p = ud;
    if (!st->recovered)
        atomic_store(&p->reported_at, ms_now_ns());
}

static ms_poll stuck_poll(ms_cx *cx, void *state) {
    stall_probe *p = state;
    atomic_store(&p->poll_start, ms_now_ns());
    while (!atomic_load(&p->release))
        usleep(200);
    return MS_POLL_READY;
}

static ms_poll count_poll(ms_cx *cx, void *state) {
    atomic_fetch_add((_Atomic int *)state, 1);
    return MS_POLL_READY;
}

static void bench_stall_report_delay(void) {
    int n = iters < 10 ? iters : 10; /* each takes over 100 ms */
    double *us = calloc((size_t)n, sizeof *us);
    for (int it = 0; it < n; it++) {
        stall_probe p = {0};
        ms_runtime *rt = start(workers, 100, on_stall, &p);
        ms_task *h;
        int rc = ms_spawn(rt, stuck_poll, &p, NULL, &h);
        if (rc != 0)
            fatal("ms_spawn", rc, NULL);
        while (!atomic_load(&p.reported_at))
            usleep(200);
        atomic_store(&p.release, 1);
        ms_task_join(h, 60000, NULL, NULL);
        ms_task_release(h);
        us[it] = (double)(atomic_load(&p.reported_at) - atomic_load(&p.poll_start)) / 1000.0 -
                 100000.0;
        ms_runtime_free(rt);
    }
    report("stall_report_delay", us, n);
    free(us);
}

static void bench_stuck_worker_bypass(void) {
    double *us = calloc((size_t)iters, sizeof *us);
    ms_runtime *rt = start(workers < 2 ? 2 : workers, 0, NULL, NULL);
    for (int it = 0; it < iters; it++) {
        stall_probe p = {0};
        ms_task *h;
        int rc = ms_spawn(rt, stuck_poll, &p, NULL, &h);
        if (rc != 0)
            fatal("ms_spawn", rc, NULL);
        while (!atomic_load(&p.poll_start))
            usleep(100);
        _Atomic int ran = 0;
        uint64_t t0 = ms_now_ns();
        for (int i = 0; i < 100; i++)
            if ((rc = ms_spawn(rt, count_poll, &ran, NULL, NULL)) != 0)
                fatal("ms_spawn", rc, NULL);
        while (atomic_load(&ran) < 100)
            ;
        us[it] = (double)(ms_now_ns() - t0) / 1000.0;
        atomic_store(&p.release, 1);
        ms_task_join(h, 60000, NULL, NULL);
        ms_task_release(h);
    }
    report("stuck_worker_bypass", us, iters);
    free(us);
    ms_runtime_free(rt);
}

int main(int argc, char **argv) {
    const char *names[16];
    int nnames = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            workers = (uint32_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (nnames < 16)
            names[nnames++] = argv[i];
    }
    if (iters < 1)
        iters = 1;
    if (workers < 1)
        workers = 1;
    static const struct {
        const char *name;
        int kind;
    } all[] = {{"timer_lateness", 0},     {"interval_burst_gap", 1},
               {"interval_delay_restart", 2}, {"stall_report_delay", 3},
               {"stuck_worker_bypass", 4}};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        bool want = nnames == 0;
        for (int i = 0; i < nnames; i++)
            want = want || strcmp(names[i], all[k].name) == 0;
        if (!want)
            continue;
        switch (all[k].kind) {
        case 0: bench_timer_lateness(); break;
        case 1: bench_interval("interval_burst_gap", MS_MISSED_BURST); break;
        case 2: bench_interval("interval_delay_restart", MS_MISSED_DELAY); break;
        case 3: bench_stall_report_delay(); break;
        case 4: bench_stuck_worker_bypass(); break;
        }
    }
    return 0;
}
