/*
 * lms_task.c - ms's tasks and time: ms.spawn and task handles (whose
 * outcome is kept in the handle, lms_task.h), yield, sleep, now, timeout,
 * interval, blocking.
 */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "hostlog.h"
#include "host.h"
#include "lms.h"
#include "lms_task.h"
#include "ltask.h"
#include "ops.h"

/* ---- tasks and time ---- */

/* A task handle has one of two metatables (a failed task's has __gc);
 * the methods carry the usual one as upvalue 1 (lms_check_udata). */
static task_handle *check_task(lua_State *L, int idx) {
    void *p = lua_touserdata(L, idx);
    if (p && lua_getmetatable(L, idx)) {
        bool ok = lua_rawequal(L, -1, lua_upvalueindex(1));
        if (!ok) {
            luaL_getmetatable(L, "ms.task.failed");
            ok = lua_rawequal(L, -1, -2);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (ok)
            return p;
    }
    return luaL_checkudata(L, idx, "ms.task");
}

static lt_status task_status(task_handle *h) {
    return h->lt ? h->lt->status : h->status;
}

void task_handle_push(lua_State *L, ltask *lt) {
    /* Every allocation first: a raise then leaves no reference behind. */
    task_handle *h = lua_newuserdata(L, sizeof *h);
    memset(h, 0, sizeof *h);
    lms_push_mt(L, LMS_MT_TASK);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ltask_ref(lt);
    h->lt = lt;
    h->id = lt->id;
    lt->handle_ref = ref;
}

/* Pushes lt's handle, or returns NULL (nothing pushed) if it has none. */
static task_handle *push_handle_of(lua_State *L, ltask *lt) {
    if (lt->handle_ref == LUA_NOREF)
        return NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->handle_ref);
    return lua_touserdata(L, -1);
}

/* Makes the value at the top of L the handle's env[1] (pops it); the
 * handle is just below it. */
static void set_env_value(lua_State *L) {
    lua_createtable(L, 1, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_setfenv(L, -2);
}

void task_handle_set_results(lua_State *L, ltask *lt, lua_State *co, int n) {
    task_handle *h = push_handle_of(L, lt);
    if (!h) {
        lua_settop(co, 0);
        return;
    }
    if (n <= 1) {
        /* Most tasks return nothing or one value: no table for that. */
        h->nresults = n;
        if (n == 1) {
            h->result_type = lua_type(co, -1);
            if (h->result_type == LUA_TNUMBER || h->result_type == LUA_TBOOLEAN) {
                h->result_num = h->result_type == LUA_TNUMBER ? lua_tonumber(co, -1)
                                                             : (double)lua_toboolean(co, -1);
                lua_pop(co, 1);
            } else {
                lua_xmove(co, L, 1);
                set_env_value(L);
            }
        }
    } else {
        h->nresults = -1;
        lua_createtable(co, n, 1);
        lua_insert(co, 1);
        for (int i = n; i >= 1; i--)
            lua_rawseti(co, 1, i);
        lua_pushinteger(co, n);
        lua_setfield(co, 1, "n");
        lua_xmove(co, L, 1);
        set_env_value(L);
    }
    lua_settop(co, 0);
    lua_pop(L, 1);
}

void task_handle_set_error(lua_State *L, ltask *lt) {
    if (!push_handle_of(L, lt)) {
        lua_pop(L, 1);
        return;
    }
    lua_insert(L, -2);
    set_env_value(L);
    /* The one kind of handle with a finalizer: a failure nobody joins is
     * reported when its handle goes. */
    lms_push_mt(L, LMS_MT_FAILED_TASK);
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}

void task_handle_release(lua_State *L, ltask *lt, lt_status st) {
    task_handle *h = push_handle_of(L, lt);
    if (!h)
        return;
    h->status = st;
    h->lt = NULL;
    ltask_unref(lt); /* the handle's reference */
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, lt->handle_ref);
    lt->handle_ref = LUA_NOREF;
}

/* Pushes env[1] of the handle at hidx. */
static void push_env_value(lua_State *co, int hidx) {
    lua_getfenv(co, hidx);
    lua_rawgeti(co, -1, 1);
    lua_remove(co, -2);
}

int task_handle_push_outcome(lua_State *co, int hidx) {
    task_handle *h = lua_touserdata(co, hidx);
    h->observed = true;
    lua_checkstack(co, 4);
    if (h->status == LT_ABORTED) {
        lua_pushnil(co);
        lua_pushliteral(co, "aborted");
        return 2;
    }
    if (h->status == LT_FAILED) {
        lua_pushnil(co);
        push_env_value(co, hidx);
        return 2;
    }
    lua_pushboolean(co, 1);
    if (h->nresults == 0)
        return 1;
    if (h->nresults == 1) {
        if (h->result_type == LUA_TNUMBER)
            lua_pushnumber(co, h->result_num);
        else if (h->result_type == LUA_TBOOLEAN)
            lua_pushboolean(co, h->result_num != 0);
        else
            push_env_value(co, hidx);
        return 2;
    }
    push_env_value(co, hidx);
    int t = lua_gettop(co);
    lua_getfield(co, t, "n");
    int n = (int)lua_tointeger(co, -1);
    lua_pop(co, 1);
    lua_checkstack(co, n);
    for (int i = 1; i <= n; i++)
        lua_rawgeti(co, t, i);
    lua_remove(co, t);
    return n + 1;
}

/* A failed task's handle going away unjoined: say so rather than lose it. */
static int failed_task_gc(lua_State *L) {
    task_handle *h = lua_touserdata(L, 1);
    if (h->observed)
        return 0;
    agent *a = agent_from_state(L);
    lua_getfenv(L, 1);
    lua_rawgeti(L, -1, 1);
    /* raw: a finalizer must not run the error value's metamethods */
    if (lua_istable(L, -1)) {
        lua_pushliteral(L, "message");
        lua_rawget(L, -2);
    } else {
        lua_pushnil(L);
    }
    hostlog(HOSTLOG_WARNING, "task.unjoined_failure", a ? a->id : 0, a ? a->name : NULL,
            "agent %s: task %llu failed and was never joined: %s", a ? a->name : "?",
            (unsigned long long)h->id,
            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error)");
    return 0;
}

static int l_spawn(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    agent *a = agent_from_state(L);
    if (!a)
        return luaL_error(L, "ms.spawn: no agent runs in this Lua state (use ms.run)");
    /* The stack is fn, args...: exactly what ltask_spawn takes. */
    ltask *lt = ltask_spawn(a, L, lua_gettop(L) - 1);
    if (!lt)
        return luaL_error(L, "ms.spawn: out of memory");
    task_handle_push(L, lt);
    /* Inside a poll the scheduler's loop picks the task up; from a
     * blocking job nothing would, so wake the agent then. */
    if (atomic_load_explicit(&a->blocking_busy, memory_order_acquire))
        ms_waker_wake_by_ref(&a->self_waker);
    return 1;
}

static int t_join(lua_State *L) {
    task_handle *h = check_task(L, 1);
    double timeout = lms_opt_timeout(L, 2);
    ltask *lt = ltask_current(L, "task:join");
    if (h->lt && h->lt->a != lt->a)
        return luaL_argerror(L, 1, "a task can only be joined from its own agent");
    return op_join(L, lt, 1, timeout, false);
}

static int t_abort(lua_State *L) {
    task_handle *h = check_task(L, 1);
    if (!h->lt)
        return 0; /* finished */
    agent *a = agent_from_state(L);
    if (a && a->current == h->lt)
        return luaL_error(L, "task:abort: a task cannot abort itself (return instead)");
    ltask_abort(h->lt);
    return 0;
}

static int t_status(lua_State *L) {
    static const char *names[] = {"ready", "waiting", "running", "done", "failed", "aborted"};
    lua_pushstring(L, names[task_status(check_task(L, 1))]);
    return 1;
}

static int t_tostring(lua_State *L) {
    lua_pushfstring(L, "ms.task(%d)", (int)check_task(L, 1)->id);
    return 1;
}

static int l_yield(lua_State *L) {
    return op_yield(L, ltask_current(L, "ms.yield"));
}

static int l_sleep(lua_State *L) {
    double s = lms_check_seconds(L, 1);
    return op_sleep(L, ltask_current(L, "ms.sleep"), s);
}

static int l_now(lua_State *L) {
    lua_pushnumber(L, (double)ms_now_ns() / 1e9);
    return 1;
}

static int l_timeout(lua_State *L) {
    double s = lms_check_seconds(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    ltask *lt = ltask_current(L, "ms.timeout");
    int nargs = lua_gettop(L) - 2;
    ltask *child = ltask_spawn(lt->a, L, nargs);
    if (!child)
        return luaL_error(L, "ms.timeout: out of memory");
    lua_settop(L, 0);
    task_handle_push(L, child); /* where the outcome goes; never seen by Lua code */
    return op_join(L, lt, 1, s, true);
}

static int l_blocking(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    ltask *lt = ltask_current(L, "ms.blocking");
    return op_blocking(L, lt, lua_gettop(L) - 1);
}

/* for tick in ms.interval(s[, policy]) do ... end */
static int interval_gc(lua_State *L) {
    lint *iv = lua_touserdata(L, 1);
    if (iv->iv) {
        host_untrack_interval(iv);
        ms_interval_free(iv->iv);
        iv->iv = NULL;
    }
    return 0;
}

static int interval_next(lua_State *L) {
    lint *iv = lua_touserdata(L, lua_upvalueindex(1));
    if (!iv->iv)
        return luaL_error(L, "ms.interval: the runtime has shut down");
    return op_interval_next(L, ltask_current(L, "ms.interval"), iv);
}

static int l_interval(lua_State *L) {
    double s = lms_check_seconds(L, 1);
    static const char *const policies[] = {"burst", "delay", "skip", NULL};
    int policy = luaL_checkoption(L, 2, "burst", policies);
    if (s < 0.001)
        return luaL_argerror(L, 1, "an interval is at least 0.001 seconds");
    agent *a = agent_from_state(L);
    lint *iv = lua_newuserdata(L, sizeof *iv);
    iv->iv = NULL;
    iv->waiter = NULL;
    iv->tprev = iv->tnext = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, interval_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    ms_error err;
    if (!a || ms_interval_new(a->h->rt, (uint64_t)(s * 1000 + 0.5), (ms_missed_tick)policy,
                              &iv->iv, &err) != 0)
        return luaL_error(L, "ms.interval: %s", a ? err.message : "no runtime (use ms.run)");
    host_track_interval(iv);
    lua_pushcclosure(L, interval_next, 1);
    return 1;
}

void lms_build_task_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"join", t_join}, {"abort", t_abort}, {"status", t_status}, {NULL, NULL}};
    luaL_newmetatable(L, "ms.task");
    lua_pushcfunction(L, t_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_createtable(L, 0, 3);
    lua_setfield(L, -2, "__index");
    lms_add_checked_methods(L, methods);
}

/* A failed task's handle: the task metatable plus the finalizer that
 * reports a failure nobody joined. */
void lms_build_failed_task_mt(lua_State *L) {
    lms_push_mt(L, LMS_MT_TASK);
    luaL_newmetatable(L, "ms.task.failed");
    lua_getfield(L, -2, "__index");
    lua_setfield(L, -2, "__index");
    lua_getfield(L, -2, "__tostring");
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, failed_task_gc);
    lua_setfield(L, -2, "__gc");
    lua_remove(L, -2);
}

const luaL_Reg lms_task_functions[] = {
    {"spawn", l_spawn},       {"yield", l_yield},     {"sleep", l_sleep},
    {"now", l_now},           {"timeout", l_timeout}, {"interval", l_interval},
    {"blocking", l_blocking}, {NULL, NULL}};
