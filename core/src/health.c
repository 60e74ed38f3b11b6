/*
 * health.c - the health monitor.
 *
 * A worker that stays in one poll for long (an endless loop, a blocking
 * call on a worker) stalls every task behind it in its LIFO slot, and the
 * operator should hear about it.  Workers publish the id of the task they
 * poll (two relaxed stores per poll) and count their polls; this thread
 * looks every threshold/4 (at least 10 ms, at most 250 ms): a worker busy
 * with the same task and the same poll count since the last look is
 * stalled from then on.  Past the threshold it is reported once through
 * on_stall and counted, and (replace_stalled_workers) a stand-in worker is
 * brought in so the runtime keeps its parallelism; when the poll ends, the
 * recovery is reported and the stand-in retires.
 * Nothing here touches a task: ids only, so a task that ends meanwhile is
 * no hazard.
 *
 * Idle cost: one wake-up per interval (4 to 100 a second), a few loads
 * per worker.  With stall_threshold_ms = 0 there is no thread at all.
 */
#define _GNU_SOURCE
#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "thread.h"

/* Every active worker stalled (stand-ins included, none left to bring in)
 * while tasks wait: nothing else runs until a stalled poll ends, so the
 * embedder is asked, at every look, to cut those polls short. */
static void relieve_starvation(health *h, uint64_t now_ms) {
    sched *s = &h->rt->sched;
    uint32_t active = sched_active(s), n = sched_started(s);
    if (!h->rt->cfg.on_starved || active == 0)
        return;
    for (uint32_t i = 0; i < active && i < n; i++)
        if (!h->reported[i])
            return;
    if (!sched_work_pending(s))
        return;
    for (uint32_t i = 0; i < active && i < n; i++) {
        /* When the poll ends, what waits in the injection queue (a timer's
         * or a signal's wake) goes first, ahead of the local queue. */
        sched_prefer_inject(s, i);
        ms_stall st = {i, h->last_task[i], now_ms - h->since_ms[i], false, h->replaced[i]};
        h->rt->cfg.on_starved(h->rt->cfg.stall_ud, &st);
    }
}

static void check(health *h, uint64_t now_ms) {
    sched *s = &h->rt->sched;
    uint32_t n = sched_started(s);
    for (uint32_t i = 0; i < n; i++) {
        met_worker *m = &s->workers[i].m;
        uint64_t task = met_get(&m->current_task);
        uint64_t polls = met_get(&m->polls);
        bool same = task != 0 && task == h->last_task[i] && polls == h->last_polls[i];
        if (!same) {
            if (h->replaced[i]) {
                h->replaced[i] = false;
                sched_replacement(s, -1);
            }
            if (h->reported[i] && h->rt->cfg.on_stall) {
                ms_stall st = {i, h->last_task[i], now_ms - h->since_ms[i], true, false};
                h->rt->cfg.on_stall(h->rt->cfg.stall_ud, &st);
            }
            h->reported[i] = false;
            h->last_task[i] = task;
            h->last_polls[i] = polls;
            h->since_ms[i] = now_ms;
            met_set(&m->stalled_ms, 0);
            continue;
        }
        /* In one poll since the last look: a task it woke waits in its
         * LIFO slot, where no other worker can steal it, for as long as the
         * poll lasts; hand it over now rather than at the stall. */
        sched_rescue_lifo(s, i);
        uint64_t stalled = now_ms - h->since_ms[i];
        if (stalled >= h->threshold_ms) {
            met_set(&m->stalled_ms, stalled);
            if (!h->reported[i]) {
                h->reported[i] = true;
                atomic_fetch_add_explicit(&h->stalls_total, 1, memory_order_relaxed);
                /* Only an active worker's stall costs the runtime a worker;
                 * a retiring one is on its way out anyway. */
                if (h->rt->cfg.replace_stalled_workers && i < sched_active(s)) {
                    /* Counted before the stand-in starts, so anything the
                     * stand-in runs already sees it in the metrics. */
                    atomic_fetch_add_explicit(&h->replacements_total, 1, memory_order_relaxed);
                    if (sched_replacement(s, +1))
                        h->replaced[i] = true;
                    else
                        atomic_fetch_sub_explicit(&h->replacements_total, 1,
                                                  memory_order_relaxed);
                }
                if (h->rt->cfg.on_stall) {
                    ms_stall st = {i, task, stalled, false, h->replaced[i]};
                    h->rt->cfg.on_stall(h->rt->cfg.stall_ud, &st);
                }
            }
        }
    }
    relieve_starvation(h, now_ms);
}

static void *hlth_main(void *arg) {
    health *h = arg;
    rt_set_current(h->rt);
    while (!atomic_load_explicit(&h->stop, memory_order_acquire)) {
        park_wait(&h->parker, (int64_t)h->interval_ms * 1000000);
        if (atomic_load_explicit(&h->stop, memory_order_acquire))
            break;
        check(h, ms_now_ns() / 1000000u);
    }
    char name[32];
    snprintf(name, sizeof name, "%s-health", h->rt->cfg.thread_name);
    thr_stop_hook(&h->rt->cfg, name);
    rt_set_current(NULL);
    return NULL;
}

int hlth_start(health *h, ms_runtime *rt, ms_error *err) {
    memset(h, 0, sizeof *h);
    h->rt = rt;
    h->threshold_ms = rt->cfg.stall_threshold_ms;
    atomic_init(&h->stop, false);
    atomic_init(&h->stalls_total, 0);
    atomic_init(&h->replacements_total, 0);
    park_init(&h->parker);
    if (h->threshold_ms == 0)
        return 0;
    uint64_t iv = h->threshold_ms / 4;
    h->interval_ms = iv < 10 ? 10 : iv > 250 ? 250 : iv;
    uint32_t n = rt->sched.max_workers;
    h->last_polls = calloc(n, sizeof *h->last_polls);
    h->last_task = calloc(n, sizeof *h->last_task);
    h->since_ms = calloc(n, sizeof *h->since_ms);
    h->reported = calloc(n, sizeof *h->reported);
    h->replaced = calloc(n, sizeof *h->replaced);
    if (!h->last_polls || !h->last_task || !h->since_ms || !h->reported || !h->replaced) {
        hlth_stop(h);
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for the health monitor");
    }
    char name[32];
    snprintf(name, sizeof name, "%s-health", rt->cfg.thread_name);
    int rc = thr_spawn(&rt->cfg, name, hlth_main, h, false, &h->thread, err);
    if (rc != 0) {
        hlth_stop(h);
        return rc;
    }
    h->started = true;
    return 0;
}

void hlth_stop(health *h) {
    atomic_store_explicit(&h->stop, true, memory_order_release);
    park_unpark(&h->parker);
    if (h->started) {
        pthread_join(h->thread, NULL);
        h->started = false;
    }
    free(h->last_polls);
    free(h->last_task);
    free(h->since_ms);
    free(h->reported);
    free(h->replaced);
    h->last_polls = h->last_task = h->since_ms = NULL;
    h->reported = h->replaced = NULL;
}
