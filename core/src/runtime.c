/*
 * runtime.c - building, shutting down and freeing a runtime.
 *
 * Shutdown order matters: close the task registry first (the linearisation
 * point after which spawns fail), drain until the deadline if asked, stop
 * and join the workers, cancel what the queues still hold, cancel tasks
 * that sat in no queue (found through the registry), then stop the blocking
 * pool.  Each step is bounded by the one deadline.
 */
#define _GNU_SOURCE
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "task.h"

static __thread ms_runtime *tls_runtime;

/* How long past the deadline joins may wait for threads that were only
 * waiting to be told to exit. */
#define SHUTDOWN_JOIN_GRACE_NS (100u * 1000u * 1000u)

int ms_runtime_new(const ms_config *cfg_in, ms_runtime **out, ms_error *err) {
    ms_config cfg;
    if (cfg_in)
        cfg = *cfg_in;
    else
        ms_config_default(&cfg);
    if (!out)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT, "ms_runtime_new: out is NULL");
    *out = NULL;
    int rc = ms_config_validate(&cfg, err);
    if (rc != 0)
        return rc;
    if (cfg.enable_all)
        cfg.enable_time = cfg.enable_io = true;

    ms_runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for the runtime");
    snprintf(rt->name, sizeof rt->name, "%s", cfg.thread_name);
    cfg.thread_name = rt->name;
    rt->cfg = cfg;
    rt->start_ns = ms_now_ns();
    atomic_init(&rt->remote_spawned, 0);
    atomic_init(&rt->failed, 0);
    atomic_init(&rt->cancelled, 0);
    atomic_init(&rt->closing, false);
    pthread_mutex_init(&rt->shutdown_lock, NULL);
    own_init(&rt->owned);
    blk_init(&rt->blocking, rt, &rt->cfg);
    rc = sched_init(&rt->sched, rt, &rt->cfg, err);
    if (rc != 0) {
        blk_destroy(&rt->blocking);
        own_destroy(&rt->owned);
        pthread_mutex_destroy(&rt->shutdown_lock);
        free(rt);
        return rc;
    }
    if (cfg.enable_time || cfg.enable_io) {
        rt->driver = calloc(1, sizeof *rt->driver);
        rc = rt->driver ? drv_init(rt->driver, rt, &rt->cfg, err)
                        : ms_error_set(err, MS_E_NO_MEMORY, "no memory for the driver");
        if (rc != 0) {
            free(rt->driver);
            rt->driver = NULL;
            sched_destroy(&rt->sched);
            blk_destroy(&rt->blocking);
            own_destroy(&rt->owned);
            pthread_mutex_destroy(&rt->shutdown_lock);
            free(rt);
            return rc;
        }
        rc = drv_start(rt->driver, err);
    }
    if (rc == 0)
        rc = sched_start(&rt->sched, err);
    if (rc == 0)
        rc = hlth_start(&rt->health, rt, err);
    if (rc != 0) {
        ms_runtime_shutdown(rt, MS_SHUTDOWN_CANCEL, 5000, NULL);
        ms_runtime_free(rt);
        if (err && err->code != MS_E_STARTUP_FAILED) {
            char why[MS_ERROR_MESSAGE_MAX];
            snprintf(why, sizeof why, "%s", err->message);
            ms_error_set(err, MS_E_STARTUP_FAILED, "runtime startup failed: %s", why);
        }
        return MS_E_STARTUP_FAILED;
    }
    *out = rt;
    return 0;
}

const ms_config *ms_runtime_config(const ms_runtime *rt) {
    return &rt->cfg;
}

void rt_set_current(ms_runtime *rt) {
    tls_runtime = rt;
}

ms_runtime *ms_runtime_current(void) {
    sched_worker *w = sched_current_worker_any();
    if (w)
        return w->sched->rt;
    return tls_runtime;
}

/* Sleeps in short, growing steps until the registry is empty or the
 * deadline passes.  Returns true if it emptied. */
static bool drain_until(ms_runtime *rt, uint64_t deadline_ns) {
    uint64_t step = 50 * 1000;
    for (;;) {
        if (own_count(&rt->owned) == 0)
            return true;
        uint64_t now = ms_now_ns();
        if (now >= deadline_ns)
            return false;
        uint64_t nap = step < deadline_ns - now ? step : deadline_ns - now;
        struct timespec ts = {(time_t)(nap / 1000000000u), (long)(nap % 1000000000u)};
        nanosleep(&ts, NULL);
        if (step < 5 * 1000 * 1000)
            step *= 2;
    }
}

int ms_runtime_shutdown(ms_runtime *rt, ms_shutdown_mode mode, uint64_t timeout_ms,
                        ms_shutdown_report *report) {
    if (!rt)
        return MS_E_INVALID_ARGUMENT;
    if (ms_runtime_current() == rt)
        return MS_E_WRONG_THREAD;
    pthread_mutex_lock(&rt->shutdown_lock);
    if (rt->shut_down) {
        if (report)
            *report = rt->report;
        int rc = rt->shutdown_rc;
        pthread_mutex_unlock(&rt->shutdown_lock);
        return rc;
    }
    uint64_t start = ms_now_ns();
    uint64_t deadline = start + timeout_ms * 1000000u;
    ms_shutdown_report rep = {0};

    atomic_store_explicit(&rt->closing, true, memory_order_release);
    uint64_t alive_before = own_count(&rt->owned);
    own_close(&rt->owned);
    if (mode == MS_SHUTDOWN_DRAIN)
        drain_until(rt, deadline);
    uint64_t cancelled_before = atomic_load(&rt->cancelled);

    /* Idle workers exit within microseconds of being told, but a drain
     * may have used the whole timeout: joins get a short grace so that
     * only a thread really stuck in user code counts as abandoned. */
    uint64_t join_deadline = deadline;
    uint64_t grace = ms_now_ns() + SHUTDOWN_JOIN_GRACE_NS;
    if (join_deadline < grace)
        join_deadline = grace;
    hlth_stop(&rt->health);
    uint32_t stuck = sched_stop(&rt->sched, join_deadline);
    if (stuck == 0) {
        /* Workers are joined: their queues are ours to empty. */
        sched_cancel_queued(&rt->sched);
        ms_task *t;
        while ((t = own_pop(&rt->owned)))
            task_cancel_owned(t);
    }
    rep.cancelled_tasks = atomic_load(&rt->cancelled) - cancelled_before;
    uint64_t left = own_count(&rt->owned);
    rep.drained_tasks = alive_before > left + rep.cancelled_tasks
                            ? alive_before - left - rep.cancelled_tasks
                            : 0;

    /* Cancelled tasks' drop functions may have queued closes for their
     * sockets and signal watchers: the driver runs those, then closes what
     * is left and exits. */
    if (rt->driver && stuck == 0)
        drv_stop(rt->driver);
    uint32_t blk_left = blk_shutdown(&rt->blocking, join_deadline, &rep.cancelled_blocking);
    rep.abandoned_threads = stuck + blk_left;
    rep.elapsed_ms = (ms_now_ns() - start) / 1000000u;
    rep.met_timeout = rep.abandoned_threads == 0 && rep.cancelled_tasks == 0 &&
                      rep.cancelled_blocking == 0 && ms_now_ns() <= deadline;
    if (mode == MS_SHUTDOWN_CANCEL)
        rep.met_timeout = rep.abandoned_threads == 0 && ms_now_ns() <= deadline;
    rt->leak = rep.abandoned_threads > 0;

    rt->report = rep;
    rt->shut_down = true;
    rt->shutdown_rc = rep.abandoned_threads == 0 ? 0 : MS_E_SHUTDOWN_FAILED;
    if (report)
        *report = rep;
    int rc = rt->shutdown_rc;
    pthread_mutex_unlock(&rt->shutdown_lock);
    return rc;
}

void ms_runtime_free(ms_runtime *rt) {
    if (!rt)
        return;
    ms_runtime_shutdown(rt, MS_SHUTDOWN_CANCEL, rt->cfg.shutdown_timeout_ms, NULL);
    if (rt->leak)
        return; /* a thread still uses it; freeing would be a use-after-free */
    sched_destroy(&rt->sched);
    blk_destroy(&rt->blocking);
    own_destroy(&rt->owned);
    if (rt->driver) {
        drv_destroy(rt->driver);
        free(rt->driver);
    }
    pthread_mutex_destroy(&rt->shutdown_lock);
    free(rt);
}

void ms_free(void *p) {
    free(p);
}
