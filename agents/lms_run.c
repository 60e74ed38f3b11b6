/*
 * lms_run.c - ms.run (a host from plain LuaJIT: fn runs as the main agent
 * on the workers while the caller waits), ms.on_shutdown, ms.shutdown.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "host.h"
#include "lerr.h"
#include "lifecycle.h"
#include "lms.h"
#include "lms_run.h"

/* ---- ms.run ---- */

static int l_run(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (agent_from_state(L))
        return luaL_error(L, "ms.run: already inside an agent (ms.run does not nest)");
    host *h = host_get();
    bool made = false;
    if (!h) {
        ms_config cfg;
        ms_config_default(&cfg);
        if (lua_istable(L, 2)) {
            lua_pushnil(L);
            while (lua_next(L, 2)) {
                ms_error err;
                lua_pushvalue(L, -2);
                const char *k = lua_tostring(L, -1);
                const char *v = lua_isboolean(L, -2) ? (lua_toboolean(L, -2) ? "true" : "false")
                                                     : lua_tostring(L, -2);
                if (!k || !v || ms_config_set(&cfg, k, v, &err) != 0)
                    return luaL_error(L, "ms.run: %s", k && v ? err.message : "bad option");
                lua_pop(L, 2);
            }
        }
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "path");
        lua_getfield(L, -2, "cpath");
        ms_error err;
        h = host_open(&cfg, lua_tostring(L, -2), lua_tostring(L, -1), &err);
        lua_pop(L, 3);
        if (!h)
            return luaL_error(L, "ms.run: %s: %s", ms_err_name(err.code), err.message);
        made = true;
    }
    lua_settop(L, 1);
    ms_error err;
    int rc = agent_run_main(L, 0, &err);
    /* agent_run_main pushed the error value (or nil). */
    if (made)
        host_shutdown();
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lerr_push(L, rc, err.message, NULL);
    }
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/* ---- lifecycle ---- */

/* ms.on_shutdown(fn): fn runs when the host shuts down gracefully (in
 * registration order, after the agent's tasks were stopped). */
static int l_on_shutdown(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    agent *self = agent_from_state(L);
    if (!self)
        return luaL_error(L, "ms.on_shutdown: no agent runs in this Lua state");
    /* Cleanup to do: the agent handles stops itself from now on. */
    atomic_store_explicit(&self->traps_exit, true, memory_order_relaxed);
    lua_getfield(L, LUA_REGISTRYINDEX, "ms.on_shutdown");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "ms.on_shutdown");
    }
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    return 0;
}

/* ms.shutdown([timeout]): starts a graceful shutdown of the whole host. */
static int l_shutdown(lua_State *L) {
    double timeout = lms_opt_timeout(L, 1);
    if (!host_get())
        return luaL_error(L, "ms.shutdown: no runtime (use ms.run)");
    lifecycle_begin_shutdown("ms.shutdown", timeout);
    return 0;
}

const luaL_Reg lms_run_functions[] = {
    {"run", l_run}, {"on_shutdown", l_on_shutdown}, {"shutdown", l_shutdown}, {NULL, NULL}};
