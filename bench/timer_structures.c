/*
 * timer_structures - why the driver keeps timers in its own wheel rather
 * than one libuv timer (a binary heap) per ms_timer.  Single thread, no
 * runtime: 100,000 timers inserted with deadlines spread over 1..1000 ms,
 * then all cancelled (both structures), or all fired (the wheel, advanced
 * 1 ms at a time).  libuv's heap would also need one cross-thread
 * submission per timer, since its handles live on the driver thread; that
 * cost is not counted here.
 *
 *   timer_structures            prints NAME median_us=... min_us=... n=...
 */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "ms.h"
#include "wheel.h"

#define N 100000
#define RUNS 21

static uint64_t deadlines[N];

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, double *v) {
    qsort(v, RUNS, sizeof *v, cmp_double);
    printf("%s median_us=%.1f min_us=%.1f n=%d\n", name, v[RUNS / 2], v[0], RUNS);
}

static whl_entry entries[N];

static double wheel_run(int cancel) {
    wheel w;
    whl_init(&w);
    uint64_t t0 = ms_now_ns();
    for (int i = 0; i < N; i++) {
        entries[i].deadline = deadlines[i];
        whl_insert(&w, &entries[i]);
    }
    if (cancel) {
        for (int i = 0; i < N; i++)
            whl_remove(&w, &entries[i]);
    } else {
        int fired = 0;
        for (uint64_t now = 1; fired < N; now++)
            for (whl_entry *e = whl_advance(&w, now); e; e = e->next)
                fired++;
    }
    return (double)(ms_now_ns() - t0) / 1000.0;
}

static uv_timer_t handles[N];
static void on_timer(uv_timer_t *t) {
    (void)t;
}

static double uv_insert_cancel(uv_loop_t *loop) {
    uint64_t t0 = ms_now_ns();
    for (int i = 0; i < N; i++) {
        uv_timer_init(loop, &handles[i]);
        uv_timer_start(&handles[i], on_timer, deadlines[i], 0);
    }
    for (int i = 0; i < N; i++)
        uv_timer_stop(&handles[i]);
    double us = (double)(ms_now_ns() - t0) / 1000.0;
    for (int i = 0; i < N; i++)
        uv_close((uv_handle_t *)&handles[i], NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return us;
}

int main(void) {
    srand(1);
    for (int i = 0; i < N; i++)
        deadlines[i] = 1 + (uint64_t)rand() % 1000;
    double v[RUNS];
    for (int r = 0; r < RUNS; r++)
        v[r] = wheel_run(0);
    report("wheel_100k_insert_fire", v);
    for (int r = 0; r < RUNS; r++)
        v[r] = wheel_run(1);
    report("wheel_100k_insert_cancel", v);
    uv_loop_t loop;
    uv_loop_init(&loop);
    for (int r = 0; r < RUNS; r++)
        v[r] = uv_insert_cancel(&loop);
    report("uv_heap_100k_insert_cancel", v);
    uv_loop_close(&loop);
    return 0;
}
