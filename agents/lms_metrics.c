/*
 * lms_metrics.c - ms.metrics() and ms.metrics_history(): a runtime
 * snapshot as Lua tables, with every agent's row.
 */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "host.h"
#include "lms_agent.h"
#include "lms_metrics.h"

/* ---- metrics ---- */

#define SETNUM(k, v)                           \
    do {                                       \
        lua_pushnumber(L, (double)(v));        \
        lua_setfield(L, -2, k);                \
    } while (0)

/* A histogram as { buckets = { {le = seconds, count = n}, ... }, count,
 * sum }: per-bucket counts (not cumulative), the last bucket's le is
 * math.huge. */
static void push_histogram(lua_State *L, const ms_histogram *hg) {
    lua_createtable(L, 0, 3);
    lua_createtable(L, MS_HIST_BUCKETS, 0);
    for (uint32_t i = 0; i < MS_HIST_BUCKETS; i++) {
        lua_createtable(L, 0, 2);
        uint64_t le = ms_histogram_bound_ns(i);
        SETNUM("le", le == UINT64_MAX ? HUGE_VAL : le / 1e9);
        SETNUM("count", hg->buckets[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "buckets");
    SETNUM("count", hg->count);
    SETNUM("sum", hg->sum_ns / 1e9);
}

/* Pushes the runtime part of ms.metrics() for snapshot m. */
static void push_snapshot(lua_State *L, const ms_metrics *m) {
    lua_createtable(L, 0, 34);
    SETNUM("uptime", m->uptime_ns / 1e9);
    SETNUM("workers", m->workers);
    SETNUM("active_workers", m->active_workers);
    SETNUM("max_workers", m->max_workers);
    SETNUM("worker_resizes", m->worker_resizes);
    SETNUM("worker_replacements", m->worker_replacements);
    SETNUM("global_queue_interval", m->global_queue_interval);
    SETNUM("budget", m->budget);
    SETNUM("park_spin_us", m->park_spin_us);
    SETNUM("thread_keep_alive", m->thread_keep_alive_ms / 1000.0);
    SETNUM("blocking_threads", m->blocking_threads);
    SETNUM("idle_blocking_threads", m->idle_blocking_threads);
    SETNUM("max_blocking_threads", m->max_blocking_threads);
    SETNUM("spawned_tasks", m->spawned_tasks);
    SETNUM("remote_spawned_tasks", m->remote_spawned_tasks);
    SETNUM("alive_tasks", m->alive_tasks);
    SETNUM("failed_tasks", m->failed_tasks);
    SETNUM("cancelled_tasks", m->cancelled_tasks);
    SETNUM("injection_queue_depth", m->injection_queue_depth);
    SETNUM("blocking_queue_depth", m->blocking_queue_depth);
    SETNUM("blocking_jobs_total", m->blocking_jobs_total);
    SETNUM("stalls_total", m->stalls_total);
    SETNUM("timers_active", m->timers_active);
    SETNUM("timers_fired", m->timers_fired);
    SETNUM("park_count", m->park_count);
    SETNUM("noop_count", m->noop_count);
    SETNUM("steal_count", m->steal_count);
    SETNUM("steal_operations", m->steal_operations);
    SETNUM("poll_count", m->poll_count);
    SETNUM("busy", m->busy_ns / 1e9);
    SETNUM("forced_yields", m->forced_yields);
    SETNUM("overflow_count", m->overflow_count);
    SETNUM("local_schedule_count", m->local_schedule_count);
    SETNUM("local_queue_depth", m->local_queue_depth);
    lua_pushboolean(L, m->histograms);
    lua_setfield(L, -2, "histograms");
    lua_createtable(L, (int)m->workers, 0);
    for (uint32_t i = 0; i < m->workers; i++) {
        const ms_worker_metrics *w = &m->worker[i];
        lua_createtable(L, 0, 16);
        SETNUM("index", i + 1);
        SETNUM("park_count", w->park_count);
        SETNUM("noop_count", w->noop_count);
        SETNUM("steal_count", w->steal_count);
        SETNUM("steal_operations", w->steal_operations);
        SETNUM("poll_count", w->poll_count);
        SETNUM("busy", w->busy_ns / 1e9);
        SETNUM("forced_yields", w->forced_yields);
        SETNUM("overflow_count", w->overflow_count);
        SETNUM("local_schedule_count", w->local_schedule_count);
        SETNUM("spawned_tasks", w->spawned_tasks);
        SETNUM("local_queue_depth", w->local_queue_depth);
        SETNUM("local_queue_capacity", w->local_queue_capacity);
        lua_pushboolean(L, w->parked);
        lua_setfield(L, -2, "parked");
        lua_pushboolean(L, w->active);
        lua_setfield(L, -2, "active");
        SETNUM("stalled", w->stalled_ms / 1000.0);
        if (m->histograms) {
            push_histogram(L, &w->poll_duration);
            lua_setfield(L, -2, "poll_duration");
            push_histogram(L, &w->schedule_delay);
            lua_setfield(L, -2, "schedule_delay");
        }
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "per_worker");
}


static int push_snapshot_call(lua_State *L) {
    const ms_metrics *m = lua_touserdata(L, 1);
    push_snapshot(L, m);
    return 1;
}

/* push_snapshot in a protected call: m is C memory the caller must free
 * whether or not building the table ran out of memory.  false: the error
 * is on the stack. */
static bool push_snapshot_protected(lua_State *L, const ms_metrics *m) {
    lua_pushcfunction(L, push_snapshot_call);
    lua_pushlightuserdata(L, (void *)m);
    return lua_pcall(L, 1, 1, 0) == 0;
}
static int l_metrics(lua_State *L) {
    host *h = host_get();
    if (!h)
        return luaL_error(L, "ms.metrics: no runtime (use ms.run)");
    ms_metrics *m = ms_metrics_snapshot(h->rt);
    if (!m)
        return luaL_error(L, "ms.metrics: out of memory");
    if (!push_snapshot_protected(L, m)) {
        ms_metrics_free(m);
        return lua_error(L);
    }
    ms_metrics_free(m);
    /* The host's live settings, as they are now (not part of a snapshot). */
    SETNUM("tune_changes", atomic_load_explicit(&h->tune_changes, memory_order_relaxed));
    pthread_mutex_lock(&h->lock);
    double mailbox_limit = (double)h->mailbox_limit;
    double mem_limit = (double)h->default_mem_limit;
    double jit_limit = (double)h->jit_agent_limit;
    pthread_mutex_unlock(&h->lock);
    SETNUM("mailbox_limit", mailbox_limit);
    SETNUM("agent_memory_limit", mem_limit);
    SETNUM("jit_agent_limit", jit_limit);
    lms_push_agents(L);
    lua_setfield(L, -2, "agents");
    lua_getfield(L, lua_upvalueindex(1), "stats");
    lua_call(L, 0, 1);
    lua_setfield(L, -2, "events");
    return 1;
}

/* ms.metrics_history() -> latest, previous: the metrics collector's last
 * two snapshots (the runtime part of ms.metrics(), plus `time`, seconds
 * since the epoch), nil where none was taken yet (no collector runs
 * without metrics_file).  The snapshots are copied under the host's
 * history lock, so the collector never waits on Lua. */
static int l_metrics_history(lua_State *L) {
    host *h = host_get();
    if (!h)
        return luaL_error(L, "ms.metrics_history: no runtime (use ms.run)");
    ms_metrics *snap[2] = {NULL, NULL};
    double when[2] = {0, 0};
    bool oom = false;
    pthread_mutex_lock(&h->hist_lock);
    const ms_metrics *src[2] = {h->hist_latest, h->hist_previous};
    when[0] = h->hist_latest_time;
    when[1] = h->hist_previous_time;
    for (int i = 0; i < 2; i++) {
        if (!src[i])
            continue;
        size_t size = sizeof *src[i] + src[i]->workers * sizeof(ms_worker_metrics);
        snap[i] = malloc(size);
        if (!snap[i]) {
            oom = true;
            continue;
        }
        memcpy(snap[i], src[i], size);
    }
    pthread_mutex_unlock(&h->hist_lock);
    if (oom) {
        free(snap[0]);
        free(snap[1]);
        return luaL_error(L, "ms.metrics_history: out of memory");
    }
    for (int i = 0; i < 2; i++) {
        if (!snap[i]) {
            lua_pushnil(L);
            continue;
        }
        bool ok = push_snapshot_protected(L, snap[i]);
        free(snap[i]);
        snap[i] = NULL;
        if (!ok) {
            free(snap[1]);
            return lua_error(L);
        }
        SETNUM("time", when[i]);
    }
    return 2;
}

void lms_metrics_register(lua_State *L, int ms_idx) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_metrics, 1);
    lua_setfield(L, ms_idx, "metrics");
    lua_pushcfunction(L, l_metrics_history);
    lua_setfield(L, ms_idx, "metrics_history");
}
