/*
 * lms_cluster.c - ms.cluster and the cluster-wide whereis (cluster.h).
 *
 *   ms.cluster.id()      this host's id (16 hex digits), nil outside a cluster
 *   ms.cluster.hosts()   { { id, self, lost, silent, build }, ... }
 *   ms.cluster.stats()   the cluster's counters (also ms.metrics().cluster)
 *
 * A whereis that finds nothing on this host asks every known host and
 * yields until the owner answers (cluster_lookup_poll); the task waits,
 * never the worker.
 */
#include <lauxlib.h>
#include <stdlib.h>

#include "agent.h"
#include "cluster.h"
#include "hold.h"
#include "lhandle.h"
#include "lms_cluster.h"
#include "ltask.h"
#include "ops.h"

static int l_id(lua_State *L) {
    if (!cluster_on()) {
        lua_pushnil(L);
        return 1;
    }
    char hex[17];
    cluster_id_hex(cluster_self(), hex);
    lua_pushstring(L, hex);
    return 1;
}

static int l_hosts(lua_State *L) {
    cluster_host_info *rows;
    size_t n;
    if (!cluster_hosts(&rows, &n))
        return luaL_error(L, "ms.cluster.hosts: out of memory");
    hold_push(rows, free); /* a raise below must not leak it */
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        char hex[17];
        cluster_id_hex(rows[i].id, hex);
        lua_createtable(L, 0, 5);
        lua_pushstring(L, hex);
        lua_setfield(L, -2, "id");
        lua_pushboolean(L, rows[i].self);
        lua_setfield(L, -2, "self");
        lua_pushboolean(L, rows[i].lost);
        lua_setfield(L, -2, "lost");
        lua_pushnumber(L, rows[i].silent);
        lua_setfield(L, -2, "silent");
        lua_pushstring(L, rows[i].build);
        lua_setfield(L, -2, "build");
        lua_rawseti(L, -2, (int)i + 1);
    }
    hold_pop(rows);
    free(rows);
    return 1;
}

#define SETNUM(k, v) (lua_pushnumber(L, (double)(v)), lua_setfield(L, -2, k))

void lms_cluster_push_stats(lua_State *L) {
    cluster_stats s;
    cluster_get_stats(&s);
    lua_createtable(L, 0, 20);
    lua_pushboolean(L, s.on);
    lua_setfield(L, -2, "on");
    lua_pushstring(L, s.state);
    lua_setfield(L, -2, "state");
    SETNUM("sends", s.sends);
    SETNUM("calls", s.calls);
    SETNUM("replies", s.replies);
    SETNUM("bytes_out", s.bytes_out);
    SETNUM("bytes_in", s.bytes_in);
    SETNUM("received", s.received);
    SETNUM("rejected", s.rejected);
    SETNUM("reconnects", s.reconnects);
    SETNUM("hosts_known", s.hosts_known);
    SETNUM("hosts_lost", s.hosts_lost);
    SETNUM("calls_failed", s.calls_failed);
    SETNUM("fenced", s.fenced);
    SETNUM("call_latency_sum_us", s.call_latency_sum_us);
    /* { { le = bound_us, count = cumulative }, ... } as Prometheus counts. */
    lua_createtable(L, CLUSTER_LAT_BUCKETS, 0);
    uint64_t cum = 0;
    for (int i = 0; i < CLUSTER_LAT_BUCKETS; i++) {
        cum += s.call_latency[i];
        lua_createtable(L, 0, 2);
        if (i < CLUSTER_LAT_BUCKETS - 1)
            SETNUM("le_us", cluster_latency_bounds_us[i]);
        else
            lua_pushliteral(L, "+Inf"), lua_setfield(L, -2, "le_us");
        SETNUM("count", cum);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "call_latency");
}

static int l_stats(lua_State *L) {
    lms_cluster_push_stats(L);
    return 1;
}

/* ---- whereis ---- */

static ms_poll whereis_poll(ltask *lt, ms_cx *cx) {
    cluster_lookup *lk = lt->op.u.any[0];
    agent *found = NULL;
    if (cluster_lookup_poll(lk, ms_cx_waker(cx), &found) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    cluster_lookup_release(lk);
    lt->op.u.any[0] = NULL;
    if (found)
        lh_push_handle(lt->co, XH_AGENT, found); /* takes the reference */
    else
        lua_pushnil(lt->co);
    lt->nres = 1;
    return MS_POLL_READY;
}

static void whereis_cancel(ltask *lt) {
    cluster_lookup_release(lt->op.u.any[0]);
    lt->op.u.any[0] = NULL;
}

int lms_cluster_whereis(lua_State *L, const char *name) {
    if (!cluster_on()) {
        lua_pushnil(L);
        return 1;
    }
    ltask *lt = ltask_current(L, "ms.agent.whereis");
    char err[200];
    cluster_lookup *lk = cluster_lookup_start(name, err, sizeof err);
    if (!lk)
        return luaL_error(L, "%s", err);
    lt->op.u.any[0] = lk;
    return op_suspend(L, lt, whereis_poll, whereis_cancel, 0);
}

void lms_cluster_register(lua_State *L, int ms_idx) {
    static const luaL_Reg fns[] = {{"id", l_id}, {"hosts", l_hosts}, {"stats", l_stats},
                                   {NULL, NULL}};
    lua_createtable(L, 0, 3);
    luaL_register(L, NULL, fns);
    lua_setfield(L, ms_idx, "cluster");
}
