/*
 * lms.c - the `ms` Lua module: its table, its lazily loaded Lua parts, the
 * handle metatables, and the argument helpers of its parts (lms_task.c,
 * lms_agent.c, lms_sync.c, lms_metrics.c, lms_run.c).
 *
 * Every function checks its arguments and raises an error that names the
 * argument (luaL_argerror/luaL_check*).  Functions that wait yield to the
 * agent's scheduler through ops.c, and so must run in an agent's task.
 */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "facts.h"
#include "lfs.h"
#include "lhandle.h"
#include "ljson.h"
#include "lms.h"
#include "lms_agent.h"
#include "lms_cluster.h"
#include "lms_metrics.h"
#include "lms_http.h"
#include "lms_net.h"
#include "lms_process.h"
#include "lms_run.h"
#include "lms_tasks.h"
#include "lms_sync.h"
#include "lms_task.h"
#include "tune.h"

/* ---- arguments ---- */

double lms_opt_timeout(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx))
        return -1;
    double t = luaL_checknumber(L, idx);
    if (t < 0 || t != t)
        luaL_argerror(L, idx, "timeout must be a number of seconds >= 0");
    return t;
}

double lms_check_seconds(lua_State *L, int idx) {
    double s = luaL_checknumber(L, idx);
    if (s < 0 || s != s || s > 7 * 24 * 3600.0)
        luaL_argerror(L, idx, "seconds must be between 0 and one week");
    return s;
}

/* ---- error values ---- */

static int err_tostring(lua_State *L) {
    lua_getfield(L, 1, "code");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "%s: %s", lua_tostring(L, -2) ? lua_tostring(L, -2) : "Error",
                    lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    return 1;
}

/* ---- parts of ms written in Lua ---- */

/* ms's __index: ms.supervisor, ms.retry, ms.circuit_breaker, ms.tune and
 * ms.tuner are the Lua modules ms.<name> (lua/ms/<name>.lua), loaded on first use
 * and then kept in the ms table; ms.net is built in C the same way. */
static int ms_lazy_index(lua_State *L) {
    static const char *const lazy[] = {"supervisor", "retry", "circuit_breaker", "tune",
                                       "tuner", NULL};
    const char *k = lua_tostring(L, 2);
    if (!k)
        return 0;
    /* ms.fs, ms.json (lfs.c, ljson.c), ms.net (lms_net.c), ms.process
     * (lms_process.c) and ms.http (lms_http.c) are C, built on first use
     * (most agents use none of them), then kept. */
    if (strcmp(k, "fs") == 0 || strcmp(k, "json") == 0 || strcmp(k, "net") == 0 ||
        strcmp(k, "process") == 0 || strcmp(k, "http") == 0) {
        if (k[0] == 'h')
            lms_http_push_module(L);
        else if (k[0] == 'f')
            lfs_push_module(L);
        else if (k[0] == 'j')
            ljson_push_module(L);
        else if (k[0] == 'n')
            lms_net_push_module(L);
        else
            lms_process_push_module(L);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -2);
        lua_rawset(L, 1);
        return 1;
    }
    for (int i = 0; lazy[i]; i++) {
        if (strcmp(k, lazy[i]) != 0)
            continue;
        lua_getglobal(L, "require");
        lua_pushfstring(L, "ms.%s", k);
        lua_call(L, 1, 1);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -2);
        lua_rawset(L, 1);
        return 1;
    }
    return 0;
}

/* ---- the module ---- */

/* The handles' metatables are built the first time a state needs one
 * (lms_push_mt), not when ms is opened: most agents only ever hold
 * a few kinds of handle, and building all seven was half the cost of
 * opening ms in a new agent. */
void lms_new_handle_mt(lua_State *L, const char *name, const luaL_Reg *methods, int nmethods,
                       lua_CFunction tostring, lua_CFunction call) {
    luaL_newmetatable(L, name);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "__ms_handle");
    lua_pushcfunction(L, lh_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, lh_eq);
    lua_setfield(L, -2, "__eq");
    if (tostring) {
        lua_pushcfunction(L, tostring);
        lua_setfield(L, -2, "__tostring");
    }
    if (call) {
        lua_pushcfunction(L, call);
        lua_setfield(L, -2, "__call");
    }
    lua_createtable(L, 0, nmethods);
    if (methods)
        luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
}

/* Each builder leaves the new metatable on the stack. */
/* Pushes closures of methods, each with the metatable at the top as its
 * upvalue, into its __index table: their handle check is then one
 * comparison (lms_check_udata). */
void lms_add_checked_methods(lua_State *L, const luaL_Reg *methods) {
    lua_getfield(L, -1, "__index");
    for (const luaL_Reg *r = methods; r->name; r++) {
        lua_pushvalue(L, -2);
        lua_pushcclosure(L, r->func, 1);
        lua_setfield(L, -2, r->name);
    }
    lua_pop(L, 1);
}


static void lms_build_error_mt(lua_State *L) {
    luaL_newmetatable(L, "ms.error");
    lua_pushcfunction(L, err_tostring);
    lua_setfield(L, -2, "__tostring");
}

/* Indexed by lms_mt.  Each state keeps its metatables in the registry
 * under their names (luaL_newmetatable, for luaL_checkudata) and under the
 * address of their entry here, which lms_push_mt looks up on every new
 * handle: a light userdata key is found without hashing a string. */
static const struct {
    const char *name;
    void (*build)(lua_State *L);
} metatables[LMS_MT_COUNT] = {
    [LMS_MT_AGENT] = {"ms.agent", lms_build_agent_mt},
    [LMS_MT_REPLY] = {"ms.reply", lms_build_reply_mt},
    [LMS_MT_SEMAPHORE] = {"ms.semaphore", lms_build_semaphore_mt},
    [LMS_MT_CHANNEL] = {"ms.channel", lms_build_channel_mt},
    [LMS_MT_PERMIT] = {"ms.permit", lms_build_permit_mt},
    [LMS_MT_TASK] = {"ms.task", lms_build_task_mt},
    [LMS_MT_FAILED_TASK] = {"ms.task.failed", lms_build_failed_task_mt},
    [LMS_MT_ERROR] = {"ms.error", lms_build_error_mt},
    [LMS_MT_SOCKET] = {"ms.socket", lms_build_socket_mt},
    [LMS_MT_LISTENER] = {"ms.listener", lms_build_listener_mt},
    [LMS_MT_PROCESS] = {"ms.process", lms_build_process_mt},
    [LMS_MT_UDP] = {"ms.udp", lms_build_udp_mt},
};

void lms_push_mt(lua_State *L, lms_mt which) {
    lua_pushlightuserdata(L, (void *)&metatables[which]);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_istable(L, -1))
        return;
    lua_pop(L, 1);
    metatables[which].build(L);
    lua_pushlightuserdata(L, (void *)&metatables[which]);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
}

void *lms_check_udata(lua_State *L, int idx, lms_mt which) {
    /* A method whose closure carries its metatable as upvalue 1 (see
     * build_agent_mt) checks by one comparison; otherwise, or on a
     * mismatch, luaL_checkudata decides and words the error.  (A
     * metatable not built yet is no metatable any userdata has, so the
     * by-name check needs no build.) */
    void *p = lua_touserdata(L, idx);
    if (p && lua_getmetatable(L, idx)) {
        bool ok = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
        if (ok)
            return p;
    }
    return luaL_checkudata(L, idx, metatables[which].name);
}

int luaopen_ms(lua_State *L) {
    static const luaL_Reg *const parts[] = {lms_task_functions, lms_agent_functions,
                                            lms_sync_functions, lms_run_functions,
                                            lms_tasks_functions};
    /* Sized for the functions, agent, events, metrics, version, _tune, the
     * descriptor primitives and the lazily loaded Lua modules
     * (ms_lazy_index): no rehash while it fills. */
    lua_createtable(L, 0, 40);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        luaL_register(L, NULL, parts[i]);
    lua_createtable(L, 0, 2);
    luaL_register(L, NULL, lms_agent_module);
    lms_cluster_wrap_spawn(L, lua_gettop(L)); /* names across hosts, if on */
    lua_setfield(L, -2, "agent");
    events_push_module(L);
    lms_metrics_register(L, lua_gettop(L) - 1);
    lua_setfield(L, -2, "events");
    lua_pushliteral(L, MS_VERSION_STRING);
    lua_setfield(L, -2, "version");
    tune_push_primitive(L);
    lua_setfield(L, -2, "_tune");
    facts_register(L);
    lms_tasks_register(L);
    lms_cluster_register(L, lua_gettop(L)); /* ms.cluster (lms_cluster.c) */
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, ms_lazy_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    return 1;
}
