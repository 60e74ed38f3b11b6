/*
 * driver.c - the driver thread; see driver.h for the ownership rules.
 *
 * The loop sleeps in epoll until an I/O event, a signal, the wheel's next
 * expiry (one uv_timer armed for it) or a submission (uv_async).  Timers
 * fired in one pass are woken after the wheel lock is released, so a wake
 * that re-arms a timer cannot deadlock.
 */
#define _GNU_SOURCE
#include "driver.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client.h"
#include "stream.h"
#include "runtime.h"
#include "thread.h"
#include "timer.h"

uint64_t drv_now_ms(const driver *d) {
    return (ms_now_ns() - d->start_ns) / 1000000u;
}

uint64_t drv_deadline_ms(const driver *d, uint64_t deadline_ns) {
    if (deadline_ns <= d->start_ns)
        return 0;
    return (deadline_ns - d->start_ns + 999999u) / 1000000u;
}

driver *drv_of(ms_runtime *rt, bool need_time, bool need_io, const char *what, ms_error *err) {
    driver *d = rt->driver;
    if (!d || (need_time && !d->time) || (need_io && !d->io)) {
        ms_error_set(err, MS_E_NOT_ENABLED,
                     "%s used on a runtime built without it (set enable_%s = true)", what,
                     need_time ? "time" : "io");
        return NULL;
    }
    return d;
}

/* ---- timers ---- */

/* Driver-thread scratch space for the wakers of one pass. */
static __thread ms_waker *fire_buf;
static __thread size_t fire_cap;

static bool grow_fire_buf(void) {
    size_t cap = fire_cap ? fire_cap * 2 : 1024;
    ms_waker *grown = realloc(fire_buf, cap * sizeof *grown);
    if (!grown)
        return false;
    fire_buf = grown;
    fire_cap = cap;
    return true;
}

static void drv_tick_cb(uv_timer_t *t);

static void process_timers(driver *d) {
    uint64_t now = drv_now_ms(d);
    size_t n = 0;
    pthread_mutex_lock(&d->tlock);
    whl_entry *e = whl_advance(&d->wheel, now);
    while (e) {
        whl_entry *next = e->next;
        if (n == fire_cap && !grow_fire_buf())
            tmr_retry_locked(d, e); /* no memory now: due again in 1 ms */
        else
            fire_buf[n++] = tmr_fire_locked(e);
        e = next;
    }
    uint64_t next = whl_next(&d->wheel);
    d->next_wake = next;
    pthread_mutex_unlock(&d->tlock);
    atomic_fetch_add_explicit(&d->timers_fired, n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        ms_waker_wake(&fire_buf[i]);
    if (next == UINT64_MAX) {
        uv_timer_stop(&d->tick);
        return;
    }
    uint64_t now2 = drv_now_ms(d);
    uv_update_time(&d->loop);
    uv_timer_start(&d->tick, drv_tick_cb, next > now2 ? next - now2 : 0, 0);
}

static void drv_tick_cb(uv_timer_t *t) {
    process_timers(t->data);
}

/* ---- submissions ---- */

static void close_walk_cb(uv_handle_t *h, void *arg) {
    if (h->type == UV_PROCESS && !uv_is_closing(h)) {
        process_close_at_stop(h); /* one nobody owns any more is freed */
        return;
    }
    if ((h->type == UV_TCP || h->type == UV_NAMED_PIPE) && !uv_is_closing(h)) {
        stream_close_at_stop(h); /* its owner may let go later */
        return;
    }
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void async_cb(uv_async_t *a) {
    driver *d = a->data;
    pthread_mutex_lock(&d->lock);
    drv_op *op = d->head;
    d->head = d->tail = NULL;
    bool stopping = d->stopping;
    pthread_mutex_unlock(&d->lock);
    /* Each op leaves the batch under the lock, just before it runs: until
     * then it counts as queued, so a submit of it meanwhile (a task
     * asking again for the same op) neither relinks it, which would cut
     * this batch's chain, nor writes its next pointer while this thread
     * reads it.  Such a submit is served by this run of the op. */
    while (op) {
        pthread_mutex_lock(&d->lock);
        drv_op *next = op->next;
        op->next = NULL;
        op->queued = false;
        pthread_mutex_unlock(&d->lock);
        op->fn(d, op); /* may free the object op lives in */
        op = next;
    }
    if (d->time)
        process_timers(d);
    if (stopping) {
        /* The HTTP client first: its requests end with MS_HTTP_SHUTDOWN
         * and its handles close with callbacks that free their memory. */
        httpc_stop(d);
        /* Handles whose owners still live are closed here; their memory
         * stays with the owners, who free it after drv_wait_finished. */
        uv_walk(&d->loop, close_walk_cb, NULL);
    }
}

bool drv_submit(driver *d, drv_op *op) {
    pthread_mutex_lock(&d->lock);
    if (d->stopping) {
        pthread_mutex_unlock(&d->lock);
        return false;
    }
    if (!op->queued) {
        op->queued = true;
        op->next = NULL;
        if (d->tail)
            d->tail->next = op;
        else
            d->head = op;
        d->tail = op;
    }
    uv_async_send(&d->async);
    pthread_mutex_unlock(&d->lock);
    return true;
}

void drv_poke(driver *d) {
    pthread_mutex_lock(&d->lock);
    if (!d->stopping)
        uv_async_send(&d->async);
    pthread_mutex_unlock(&d->lock);
}

void drv_wait_finished(driver *d) {
    pthread_mutex_lock(&d->lock);
    while (d->started && !d->finished)
        pthread_cond_wait(&d->done_cond, &d->lock);
    pthread_mutex_unlock(&d->lock);
}

/* ---- lifecycle ---- */

int drv_init(driver *d, ms_runtime *rt, const ms_config *cfg, ms_error *err) {
    memset(d, 0, sizeof *d);
    d->rt = rt;
    d->time = cfg->enable_time || cfg->enable_all;
    d->io = cfg->enable_io || cfg->enable_all;
    if (d->io) {
        /* A write to a socket whose peer has gone raises SIGPIPE, whose
         * default action ends the process; libuv writes with write(2), so
         * the signal is ignored (as Tokio and Node do) and the write fails
         * with EPIPE, which the stream reports.  A handler the program
         * installed itself is left alone. */
        struct sigaction old;
        if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
            struct sigaction ign = {0};
            ign.sa_handler = SIG_IGN;
            sigaction(SIGPIPE, &ign, NULL);
        }
    }
    d->start_ns = ms_now_ns();
    int rc = uv_loop_init(&d->loop);
    if (rc != 0)
        return ms_error_set(err, MS_E_BUILD_FAILED, "cannot create the event loop: %s",
                            uv_strerror(rc));
    uv_async_init(&d->loop, &d->async, async_cb);
    d->async.data = d;
    uv_timer_init(&d->loop, &d->tick);
    d->tick.data = d;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->done_cond, NULL);
    pthread_mutex_init(&d->tlock, NULL);
    whl_init(&d->wheel);
    d->next_wake = UINT64_MAX;
    atomic_init(&d->timers_fired, 0);
    atomic_init(&d->timers_active, 0);
    atomic_init(&d->accept_errors, 0);
    atomic_init(&d->accept_pauses, 0);
    atomic_init(&d->http_conns_open, 0);
    atomic_init(&d->http_conns_opened, 0);
    return 0;
}

static void *drv_main(void *arg) {
    thr_unblock_signals();
    driver *d = arg;
    char name[32];
    snprintf(name, sizeof name, "%s-driver", d->rt->cfg.thread_name);
    rt_set_current(d->rt);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    thr_stop_hook(&d->rt->cfg, name);
    rt_set_current(NULL);
    pthread_mutex_lock(&d->lock);
    d->finished = true;
    pthread_cond_broadcast(&d->done_cond);
    pthread_mutex_unlock(&d->lock);
    free(fire_buf);
    fire_buf = NULL;
    fire_cap = 0;
    return NULL;
}

int drv_start(driver *d, ms_error *err) {
    char name[32];
    snprintf(name, sizeof name, "%s-driver", d->rt->cfg.thread_name);
    int rc = thr_spawn(&d->rt->cfg, name, drv_main, d, false, &d->thread, err);
    if (rc == 0)
        d->started = true;
    return rc;
}

void drv_stop(driver *d) {
    pthread_mutex_lock(&d->lock);
    bool was = d->stopping;
    d->stopping = true;
    if (d->started && !was)
        uv_async_send(&d->async);
    pthread_mutex_unlock(&d->lock);
    if (d->started) {
        pthread_join(d->thread, NULL);
        d->started = false;
    }
}

void drv_destroy(driver *d) {
    if (!d->finished) {
        /* Never started: close the loop's own handles here. */
        uv_close((uv_handle_t *)&d->async, NULL);
        uv_close((uv_handle_t *)&d->tick, NULL);
        uv_run(&d->loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&d->loop);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->done_cond);
    pthread_mutex_destroy(&d->tlock);
}
