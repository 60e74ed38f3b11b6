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
#include "lfs.h"
#include "lms_agent.h"
#include "lms_http_server.h"
#include "lms_http_client.h"
#include "lms_metrics.h"
#include "lms_cluster.h"
#include "tune.h"

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

/* Sets metric d of m (worker w, or MS_METRIC_TOTAL) in the table at the
 * top under its name: in seconds where the name drops the unit ("busy"
 * for busy_ns), else as stored; flags as booleans; histograms only when
 * the snapshot has them. */
static void set_metric(lua_State *L, const ms_metrics *m, const ms_metric_desc *d, uint32_t w) {
    if (d->value == MS_METRIC_HIST) {
        const ms_histogram *hg = ms_metric_histogram(m, d, w);
        if (!m->histograms || !hg)
            return;
        push_histogram(L, hg);
    } else if (d->value == MS_METRIC_BOOL) {
        lua_pushboolean(L, ms_metric_get(m, d, w) != 0);
    } else if (strcmp(d->name, d->key) != 0) {
        uint64_t per_second = 1000000000u / ms_metric_unit_ns(d->unit);
        lua_pushnumber(L, (double)ms_metric_get(m, d, w) / (double)per_second);
    } else {
        lua_pushnumber(L, (double)ms_metric_get(m, d, w));
    }
    lua_setfield(L, -2, d->name);
}

/* Pushes the runtime part of ms.metrics() for snapshot m: every metric of
 * libms's table (ms_metric_descs), the workers' sums at the top and each
 * worker's own in per_worker. */
static void push_snapshot(lua_State *L, const ms_metrics *m) {
    size_t n;
    const ms_metric_desc *d = ms_metric_descs(&n);
    lua_createtable(L, 0, (int)n + 8);
    for (size_t i = 0; i < n; i++)
        if (d[i].scope == MS_METRIC_RUNTIME || d[i].sum_offset != MS_METRIC_NO_SUM)
            set_metric(L, m, &d[i], MS_METRIC_TOTAL);
    lua_pushboolean(L, m->histograms);
    lua_setfield(L, -2, "histograms");
    lua_createtable(L, (int)m->workers, 0);
    for (uint32_t w = 0; w < m->workers; w++) {
        lua_createtable(L, 0, 20);
        SETNUM("index", w + 1);
        for (size_t i = 0; i < n; i++)
            if (d[i].scope == MS_METRIC_WORKER)
                set_metric(L, m, &d[i], w);
        lua_rawseti(L, -2, (int)w + 1);
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
    /* The host's live settings, as they are now (not part of a snapshot):
     * copied under the host's lock, set in the table after it. */
    SETNUM("tune_changes", atomic_load_explicit(&h->tune_changes, memory_order_relaxed));
    const char *names[16];
    double values[16];
    int nsettings = host_settings(h, names, values, 16);
    for (int i = 0; i < nsettings; i++)
        SETNUM(names[i], values[i]);
    lms_push_agents(L);
    lua_setfield(L, -2, "agents");
    lfs_push_metrics(L);
    /* The host's I/O figures (facts.h's io_metric_descs). */
    h = host_get();
    lua_createtable(L, 0, IM_COUNT + 1);
    for (int i = 0; h && i < IM_COUNT; i++) {
        lua_pushnumber(L, (double)atomic_load_explicit(&h->io[i], memory_order_relaxed));
        lua_setfield(L, -2, io_metric_descs[i].key);
    }
    lua_setfield(L, -2, "io");
    http_server_push_metrics(L); /* ms.http.serve's (lms_http_server.c) */
    lua_setfield(L, -2, "http");
    /* The JIT and its window (facts.h's jit_metric_descs). */
    uint64_t jit[JM_COUNT];
    jit_metric_values(h, jit);
    lua_createtable(L, 0, JM_COUNT);
    for (int i = 0; i < JM_COUNT; i++) {
        /* Times in seconds, as the per-agent cpu. */
        lua_pushnumber(L, jit_metric_descs[i].unit == MS_UNIT_NS ? (double)jit[i] / 1e9
                                                                 : (double)jit[i]);
        lua_setfield(L, -2, jit_metric_descs[i].key);
    }
    lua_setfield(L, -2, "jit");
    lms_http_push_metrics(L); /* the HTTP client's (lms_http_client.c) */
    lua_setfield(L, -2, "http_client");
    lua_getfield(L, lua_upvalueindex(1), "stats");
    lua_call(L, 0, 1);
    lua_setfield(L, -2, "events");
    lms_cluster_push_stats(L); /* lms_cluster.c */
    lua_setfield(L, -2, "cluster");
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
