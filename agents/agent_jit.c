/*
 * agent_jit.c - an agent's JIT: whether its state compiles, decided once
 * (agent_jit_decide), and the switch to the interpreter when LuaJIT
 * cannot allocate machine code for it.
 *
 * The decision, in order: jit = false and sandboxed agents interpret; an
 * agent with a memory limit interprets (below); past jit_agent_limit
 * agents with the JIT on, new ones interpret; and otherwise the JIT is
 * given while the machine-code window has room (jitwin.c).
 *
 * The fallback.  LuaJIT 2.1 as Debian 12 ships it (2022) answers a failed
 * machine-code allocation by aborting the trace, flushing every trace of
 * the state and clearing its penalty cache, so a hot loop starts compiling
 * again at once and fails again, each time probing the window with 31
 * mmap calls: the retry storm (upstream's 2023 LuaJIT switches the JIT off
 * when a state's first allocation fails).  A state given the JIT gets a
 * trace event handler (jit.attach) that does the same here: when a trace
 * aborts with "failed to allocate mcode memory" while the state holds no
 * machine code (no trace completed since the last flush), it switches the
 * state's JIT off; LuaJIT's own flush follows the event, and the state
 * interprets from then on.  A state that holds machine code and needs
 * more (maxmcode reached, or the window full) is flushed by LuaJIT and
 * starts again; if that first allocation fails too, it is switched off
 * the same way.  The handler only flips the engine flag: flushing inside
 * the event would free the trace LuaJIT is still aborting.
 *
 * LuaJIT keeps one handler per event, so jit.attach(f, "trace") from the
 * agent's code would replace ours: the agent's jit.attach is wrapped, and
 * its trace handler is called by ours, after ours, with the same values.
 *
 * All of this runs on the agent's poll thread, in its state.
 */
#include <lauxlib.h>
#include <luajit.h>
#include <string.h>

#include "agent.h"
#include "host.h"
#include "jitwin.h"
#include "preempt.h"

/* LuaJIT 2.1's trace error "failed to allocate mcode memory" (its place in
 * lj_traceerr.h, the same in Debian 12's and OpenResty's 2.1 builds;
 * spec/jit_window_spec.lua checks it against jit.vmdef). */
#define TRERR_MCODEAL 27

/* Registry keys (their addresses): the agent's own trace handler, and
 * LuaJIT's jit.attach. */
static const char user_trace_key, real_attach_key;

static int jit_on_refused(lua_State *L) {
    return luaL_error(L, "jit.on: the JIT stays off in an agent with a memory_limit (see "
                         "docs/host.md, \"Memory limits and the JIT\")");
}

static int jit_on_no_room(lua_State *L) {
    return luaL_error(L, "jit.on: the JIT was switched off in this agent because LuaJIT could "
                         "not allocate machine code for it (see docs/host.md, \"The JIT and "
                         "its window\")");
}

/* Replaces jit.on in the state's jit library table (if it has one) by f. */
static void replace_jit_on(lua_State *L, lua_CFunction f) {
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "jit");
        if (lua_istable(L, -1)) {
            lua_pushcfunction(L, f);
            lua_setfield(L, -2, "on");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void fall_back(agent *a, lua_State *L) {
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    a->jit_fell_back = true;
    if (a->jit_counted) {
        atomic_fetch_sub(&a->h->jit_agents, 1);
        a->jit_counted = false;
    }
    jitwin_fallback();
    replace_jit_on(L, jit_on_no_room);
}

/* The trace event handler: (what, tr, func, pc, otr, oex); for "abort",
 * otr is the error's number. */
static int on_trace(lua_State *L) {
    agent *a = agent_from_state(L);
    const char *what = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : "";
    if (a && !a->jit_fell_back) {
        if (strcmp(what, "stop") == 0)
            a->jit_mcode = true;
        else if (strcmp(what, "flush") == 0)
            a->jit_mcode = false;
        else if (strcmp(what, "abort") == 0 && lua_type(L, 5) == LUA_TNUMBER &&
                 lua_tointeger(L, 5) == TRERR_MCODEAL && !a->jit_mcode)
            fall_back(a, L);
    }
    lua_pushlightuserdata(L, (void *)&user_trace_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_isfunction(L, -1)) {
        lua_insert(L, 1);
        lua_call(L, lua_gettop(L) - 1, 0);
    }
    return 0;
}

/* jit.attach as the agent's code sees it: a trace handler is kept for
 * on_trace to call; anything else goes to LuaJIT's.  jit.attach(f)
 * detaches f from every event, the trace one included. */
static int wrapped_attach(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    bool trace = lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "trace") == 0;
    if (trace || lua_isnoneornil(L, 2)) {
        lua_pushlightuserdata(L, (void *)&user_trace_key);
        lua_rawget(L, LUA_REGISTRYINDEX);
        bool is_user = lua_rawequal(L, -1, 1);
        lua_pop(L, 1);
        if (trace || is_user) {
            lua_pushlightuserdata(L, (void *)&user_trace_key);
            if (trace)
                lua_pushvalue(L, 1);
            else
                lua_pushnil(L);
            lua_rawset(L, LUA_REGISTRYINDEX);
        }
        if (trace)
            return 0;
    }
    lua_pushlightuserdata(L, (void *)&real_attach_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 0);
    return 0;
}

/* With the jit library table on top: attaches on_trace and wraps
 * jit.attach.  Protected (the caller's poll is). */
static void install_guard(lua_State *L) {
    lua_getfield(L, -1, "attach");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushlightuserdata(L, (void *)&real_attach_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushcfunction(L, on_trace);
    lua_pushliteral(L, "trace");
    lua_call(L, 2, 0);
    lua_pushcfunction(L, wrapped_attach);
    lua_setfield(L, -2, "attach");
}

/* Whether the host allows a's state the JIT: jit_agent_limit first (the
 * operator's bound), then the window. */
static bool may_compile(agent *a) {
    host *h = a->h;
    pthread_mutex_lock(&h->lock); /* ms.tune may change the limit */
    uint32_t limit = h->jit_agent_limit;
    pthread_mutex_unlock(&h->lock);
    if (atomic_fetch_add(&h->jit_agents, 1) >= limit) {
        atomic_fetch_sub(&h->jit_agents, 1);
        atomic_fetch_add_explicit(&h->jit_limited, 1, memory_order_relaxed);
        return false;
    }
    if (!jitwin_grant(h->rt)) {
        atomic_fetch_sub(&h->jit_agents, 1);
        return false;
    }
    a->jit_counted = true;
    return true;
}

int agent_jit_profile_refused(lua_State *L) {
    return luaL_error(L, "jit.profile is not available in an agent: LuaJIT's profiler serves "
                         "one VM per process and ms-host keeps it to stop compiled code; profile "
                         "an agent with ms.profiler.run or GET /debug/profile (docs/observability.md)");
}

void agent_jit_decide(agent *a) {
    if (a->jit_decided || !a->own_state)
        return;
    a->jit_decided = true;
    lua_State *L = a->L;
    lua_getglobal(L, "jit"); /* opens the library (lazy_global): the JIT is on */
    /* Before anything compiles (and whether or not the JIT stays on: an
     * agent may switch it on later), so that every trace can be left
     * when the agent is stopped. */
    preempt_prepare(L);
    lua_getfield(L, LUA_REGISTRYINDEX, "_PRELOAD");
    if (lua_istable(L, -1)) {
        lua_pushcfunction(L, agent_jit_profile_refused);
        lua_setfield(L, -2, "jit.profile");
    }
    lua_pop(L, 1);
    if (a->mem_limit && lua_istable(L, -1)) {
        /* LuaJIT as Debian 12 ships it (2.1, 2022) cannot unwind a memory
         * error raised in compiled code or on a trace exit: the process
         * crashes in its unwinder (fixed upstream in 2023, commits
         * 2d8300c1 and d5bbf9cd).  A limit makes such an error likely, so
         * a limited agent interprets, and may not switch the JIT on. */
        lua_pushcfunction(L, jit_on_refused);
        lua_setfield(L, -2, "on");
        lua_pop(L, 1);
        luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
        return;
    }
    if (!a->jit_off && lua_istable(L, -1) && may_compile(a)) {
        install_guard(L);
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
}
