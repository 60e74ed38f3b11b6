/*
 * lms.c - the `ms` Lua module: tasks and time, agents and messages,
 * handles, metrics, and ms.run.
 *
 * Every function checks its arguments and raises an error that names the
 * argument (luaL_argerror/luaL_check*).  Functions that wait yield to the
 * agent's scheduler through ops.c, and so must run in an agent's task.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

/* ---- handles ---- */

static lms_mt handle_mt(xh_type t) {
    switch (t) {
    case XH_AGENT: return LMS_MT_AGENT;
    case XH_SEM: return LMS_MT_SEMAPHORE;
    case XH_CHAN: return LMS_MT_CHANNEL;
    case XH_REPLY: return LMS_MT_REPLY;
    }
    return LMS_MT_AGENT;
}


void lh_ref_handle(xh_type type, void *ptr) {
    switch (type) {
    case XH_AGENT: agent_ref(ptr); break;
    case XH_REPLY: reply_ref(ptr); break;
    case XH_SEM: ms_sem_ref(ptr); break;
    case XH_CHAN: ms_chan_ref(ptr); break;
    }
}

void lh_unref_handle(xh_type type, void *ptr) {
    switch (type) {
    case XH_AGENT: agent_unref(ptr); break;
    case XH_REPLY: reply_unref(ptr); break;
    case XH_SEM: ms_sem_unref(ptr); break;
    case XH_CHAN: ms_chan_unref(ptr); break;
    }
}

/* Agent handles are cached per state in a weak table keyed by the agent,
 * so an agent receiving many messages from one sender does not build a
 * new handle (and finalizer) for each. */
static const char agent_handles_key; /* its address keys the cache in the registry */

static bool push_cached_agent(lua_State *L, void *ptr) {
    lua_pushlightuserdata(L, (void *)&agent_handles_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushlightuserdata(L, (void *)&agent_handles_key);
        lua_pushvalue(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
    lua_pushlightuserdata(L, ptr);
    lua_rawget(L, -2);
    lhandle *h = lua_touserdata(L, -1);
    if (h && h->ptr == ptr) {
        lua_remove(L, -2);
        return true; /* the cached handle */
    }
    lua_pop(L, 1); /* leaves the cache table */
    return false;
}

void lh_push_handle(lua_State *L, xh_type type, void *ptr) {
    if (type == XH_AGENT && push_cached_agent(L, ptr)) {
        lh_unref_handle(type, ptr); /* the cached handle holds its own */
        return;
    }
    lhandle *h = lua_newuserdata(L, sizeof *h);
    h->type = type;
    h->ptr = ptr;
    h->lc = NULL;
    lms_push_mt(L, handle_mt(type));
    lua_setmetatable(L, -2);
    if (type == XH_AGENT) {
        /* stack: cache, handle */
        lua_pushlightuserdata(L, ptr);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
        lua_remove(L, -2);
    }
}

void lh_push_agent(lua_State *L, agent *a) {
    agent_ref(a);
    lh_push_handle(L, XH_AGENT, a);
}

void *lh_to_handle(lua_State *L, int idx, xh_type *type) {
    lhandle *h = lua_touserdata(L, idx);
    if (!h || !lua_getmetatable(L, idx))
        return NULL;
    lua_getfield(L, -1, "__ms_handle");
    bool ok = lua_toboolean(L, -1);
    lua_pop(L, 2);
    if (!ok || !h->ptr)
        return NULL;
    *type = h->type;
    return h->ptr;
}

static lhandle *check_handle(lua_State *L, int idx, xh_type type) {
    lhandle *h = lms_check_udata(L, idx, handle_mt(type));
    if (!h->ptr)
        luaL_argerror(L, idx, "handle already released");
    return h;
}

agent *lh_check_agent(lua_State *L, int idx) {
    return check_handle(L, idx, XH_AGENT)->ptr;
}

static int handle_gc(lua_State *L) {
    lhandle *h = lua_touserdata(L, 1);
    if (h && h->ptr) {
        lh_unref_handle(h->type, h->ptr);
        h->ptr = NULL;
    }
    if (h && h->lc) {
        lchan_unref(h->lc);
        h->lc = NULL;
    }
    return 0;
}

bool lh_before_export(lua_State *L, int idx, char *err, size_t errlen) {
    lhandle *h = lua_touserdata(L, idx);
    if (h && h->type == XH_CHAN && lchan_is_local(h->lc))
        return lchan_share(L, idx, h->lc, h->ptr, err, errlen);
    return true;
}

/* ---- arguments ---- */

static double opt_timeout(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx))
        return -1;
    double t = luaL_checknumber(L, idx);
    if (t < 0 || t != t)
        luaL_argerror(L, idx, "timeout must be a number of seconds >= 0");
    return t;
}

static double check_seconds(lua_State *L, int idx) {
    double s = luaL_checknumber(L, idx);
    if (s < 0 || s != s || s > 7 * 24 * 3600.0)
        luaL_argerror(L, idx, "seconds must be between 0 and one week");
    return s;
}

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
    task_handle *h = lua_newuserdata(L, sizeof *h);
    memset(h, 0, sizeof *h);
    ltask_ref(lt);
    h->lt = lt;
    h->id = lt->id;
    lms_push_mt(L, LMS_MT_TASK);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lt->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
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
    lua_getfield(L, -1, "message");
    fprintf(stderr, "ms-host: agent %s: task %llu failed and was never joined: %s\n",
            a ? a->name : "?", (unsigned long long)h->id,
            lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error)");
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
    double timeout = opt_timeout(L, 2);
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
    double s = check_seconds(L, 1);
    return op_sleep(L, ltask_current(L, "ms.sleep"), s);
}

static int l_now(lua_State *L) {
    lua_pushnumber(L, (double)ms_now_ns() / 1e9);
    return 1;
}

static int l_timeout(lua_State *L) {
    double s = check_seconds(L, 1);
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
        host_untrack_interval(&iv->iv);
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
    double s = check_seconds(L, 1);
    static const char *const policies[] = {"burst", "delay", "skip", NULL};
    int policy = luaL_checkoption(L, 2, "burst", policies);
    if (s < 0.001)
        return luaL_argerror(L, 1, "an interval is at least 0.001 seconds");
    agent *a = agent_from_state(L);
    lint *iv = lua_newuserdata(L, sizeof *iv);
    iv->iv = NULL;
    iv->waiter = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, interval_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    ms_error err;
    if (!a || ms_interval_new(a->h->rt, (uint64_t)(s * 1000 + 0.5), (ms_missed_tick)policy,
                              &iv->iv, &err) != 0)
        return luaL_error(L, "ms.interval: %s", a ? err.message : "no runtime (use ms.run)");
    host_track_interval(&iv->iv);
    lua_pushcclosure(L, interval_next, 1);
    return 1;
}

/* ---- agents ---- */

static int l_agent_spawn(lua_State *L) {
    char err[512];
    agent *a = agent_spawn(L, 1, err, sizeof err);
    if (!a)
        return luaL_error(L, "ms.agent.spawn: %s", err);
    lh_push_handle(L, XH_AGENT, a); /* the creation reference */
    return 1;
}

static int a_send(lua_State *L) {
    agent *target = lh_check_agent(L, 1);
    luaL_checkany(L, 2);
    char err[300];
    msg *m = msg_new();
    if (!m)
        return luaL_error(L, "send: out of memory");
    if (!xfer_encode(L, 2, m->body, "message", err, sizeof err)) {
        msg_free(m);
        return luaL_error(L, "send: %s", err);
    }
    agent *self = agent_from_state(L);
    if (self) {
        agent_ref(self);
        m->sender = self;
    }
    int rc = agent_deliver(target, m, err, sizeof err);
    if (rc != 0) {
        msg_free(m);
        lua_pushnil(L);
        lerr_push(L, rc, err, NULL);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int a_call(lua_State *L) {
    agent *target = lh_check_agent(L, 1);
    luaL_checkany(L, 2);
    double timeout = opt_timeout(L, 3);
    ltask *lt = ltask_current(L, "agent:call");
    if (target == lt->a)
        return luaL_argerror(L, 1, "an agent cannot call itself (it would wait for itself)");
    return op_call(L, lt, target, 2, timeout);
}

static int a_stop(lua_State *L) {
    agent *a = lh_check_agent(L, 1);
    agent_stop(a, luaL_optstring(L, 2, "killed"));
    return 0;
}

static int a_info(lua_State *L, agent *a) {
    pthread_mutex_lock(&a->mlock);
    lua_createtable(L, 0, 8);
    lua_pushnumber(L, (double)a->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, a->name);
    lua_setfield(L, -2, "name");
    static const char *st[] = {"starting", "running", "exited"};
    lua_pushstring(L, st[a->state]);
    lua_setfield(L, -2, "state");
    lua_pushnumber(L, (double)mbox_len(&a->mbox));
    lua_setfield(L, -2, "mailbox");
    lua_pushnumber(L, (double)mbox_popped(&a->mbox));
    lua_setfield(L, -2, "received");
    lua_pushnumber(L, (double)atomic_load_explicit(&a->mem_used, memory_order_relaxed));
    lua_setfield(L, -2, "memory");
    lua_pushnumber(L, (double)a->mem_limit);
    lua_setfield(L, -2, "memory_limit");
    lua_pushnumber(L, (double)atomic_load_explicit(&a->polls, memory_order_relaxed));
    lua_setfield(L, -2, "polls");
    lua_pushnumber(L, (double)a->restarts);
    lua_setfield(L, -2, "restarts");
    if (a->state == AG_EXITED) {
        lua_pushstring(L, a->exit_reason);
        lua_setfield(L, -2, "exit_reason");
    }
    pthread_mutex_unlock(&a->mlock);
    return 1;
}

static int a_index_info(lua_State *L) {
    return a_info(L, lh_check_agent(L, 1));
}

static int a_id(lua_State *L) {
    lua_pushnumber(L, (double)lh_check_agent(L, 1)->id);
    return 1;
}

static int a_name(lua_State *L) {
    lua_pushstring(L, lh_check_agent(L, 1)->name);
    return 1;
}

static int a_tostring(lua_State *L) {
    agent *a = lh_check_agent(L, 1);
    lua_pushfstring(L, "ms.agent(%d %s)", (int)a->id, a->name);
    return 1;
}

static int a_eq(lua_State *L) {
    xh_type t1, t2;
    void *p1 = lh_to_handle(L, 1, &t1), *p2 = lh_to_handle(L, 2, &t2);
    lua_pushboolean(L, p1 && p1 == p2 && t1 == t2);
    return 1;
}

static int l_recv(lua_State *L) {
    double timeout = opt_timeout(L, 1);
    return op_recv(L, ltask_current(L, "ms.recv"), timeout);
}

static int l_monitor(lua_State *L) {
    agent *target = lh_check_agent(L, 1);
    agent *self = agent_from_state(L);
    if (!self)
        return luaL_error(L, "ms.monitor: no agent runs in this Lua state");
    agent_add_monitor(target, self);
    return 0;
}

static int l_self(lua_State *L) {
    agent *self = agent_from_state(L);
    if (!self)
        return luaL_error(L, "ms.self: no agent runs in this Lua state");
    lh_push_agent(L, self);
    return 1;
}

static int l_agents(lua_State *L) {
    host *h = host_get();
    lua_newtable(L);
    if (!h)
        return 1;
    pthread_mutex_lock(&h->lock);
    int i = 0;
    for (agent *a = h->agents; a; a = a->next_reg) {
        a_info(L, a);
        lua_rawseti(L, -2, ++i);
    }
    pthread_mutex_unlock(&h->lock);
    return 1;
}

static int l_whereis(lua_State *L) {
    agent *a = agent_whereis(luaL_checkstring(L, 1));
    if (!a) {
        lua_pushnil(L);
        return 1;
    }
    lh_push_handle(L, XH_AGENT, a);
    return 1;
}

/* reply(value): answers an agent:call. */
static int r_call(lua_State *L) {
    lhandle *h = check_handle(L, 1, XH_REPLY);
    xfer *body = xfer_new();
    char err[300];
    if (!body)
        return luaL_error(L, "reply: out of memory");
    lua_settop(L, 2);
    if (!xfer_encode(L, 2, body, "reply", err, sizeof err)) {
        xfer_free(body);
        return luaL_error(L, "reply: %s", err);
    }
    if (!reply_fill(h->ptr, body)) {
        xfer_free(body);
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* The exit notice a monitor receives, built without a Lua state. */
xfer *lms_exit_notice(agent *target) {
    xfer *x = xfer_new();
    if (!x)
        return NULL;
    pthread_mutex_lock(&target->mlock);
    uint32_t pairs = 5 + (target->exit_message ? 1 : 0) + (target->exit_traceback ? 1 : 0);
    xfer_put_table(x, pairs);
    xfer_put_str(x, "event");
    xfer_put_str(x, "exit");
    xfer_put_str(x, "agent");
    xfer_put_handle(x, XH_AGENT, target);
    xfer_put_str(x, "name");
    xfer_put_str(x, target->name);
    xfer_put_str(x, "reason");
    xfer_put_str(x, target->exit_reason);
    xfer_put_str(x, "unread");
    xfer_put_num(x, (double)target->unread_at_exit);
    if (target->exit_message) {
        xfer_put_str(x, "message");
        xfer_put_str(x, target->exit_message);
    }
    if (target->exit_traceback) {
        xfer_put_str(x, "traceback");
        xfer_put_str(x, target->exit_traceback);
    }
    pthread_mutex_unlock(&target->mlock);
    return x;
}

/* ---- semaphores and permits ---- */

typedef struct lpermit {
    ms_permit p;                /* p.sem holds a reference while p.n > 0 */
} lpermit;

void lh_push_permit(lua_State *L, ms_sem *s, uint64_t n) {
    lpermit *p = lua_newuserdata(L, sizeof *p);
    p->p.sem = s;
    p->p.n = n;
    lms_push_mt(L, LMS_MT_PERMIT);
    lua_setmetatable(L, -2);
}

static int permit_release(lua_State *L) {
    lpermit *p = lms_check_udata(L, 1, LMS_MT_PERMIT);
    if (p->p.sem) {
        ms_sem_release(p->p.sem, p->p.n);
        ms_sem_unref(p->p.sem);
        p->p.sem = NULL;
        p->p.n = 0;
    }
    return 0;
}

static int permit_count(lua_State *L) {
    lpermit *p = lms_check_udata(L, 1, LMS_MT_PERMIT);
    lua_pushnumber(L, (double)p->p.n);
    return 1;
}

/* A whole number of permits >= min (at most MS_SEM_MAX_PERMITS). */
static uint64_t check_whole(lua_State *L, int idx, double n, double min) {
    if (n > (double)MS_SEM_MAX_PERMITS)
        luaL_argerror(L, idx, "too many permits");
    if (n < min || n != (double)(uint64_t)n)
        luaL_argerror(L, idx, min >= 1 ? "permits must be a whole number >= 1"
                                       : "permits must be a whole number >= 0");
    return (uint64_t)n;
}

static uint64_t check_permits(lua_State *L, int idx) {
    return check_whole(L, idx, luaL_optnumber(L, idx, 1), 1);
}

static int l_semaphore(lua_State *L) {
    uint64_t n = check_whole(L, 1, luaL_checknumber(L, 1), 0);
    ms_sem *s;
    if (ms_sem_new(n, &s) != 0)
        return luaL_error(L, "ms.semaphore: out of memory");
    lh_push_handle(L, XH_SEM, s);
    return 1;
}

static ms_sem *check_sem(lua_State *L, int idx) {
    return check_handle(L, idx, XH_SEM)->ptr;
}

/* s:acquire([n][, timeout]) -> permit | nil, err */
static int s_acquire(lua_State *L) {
    ms_sem *s = check_sem(L, 1);
    uint64_t n = check_permits(L, 2);
    double timeout = opt_timeout(L, 3);
    ltask *lt = ltask_current(L, "semaphore:acquire");
    return op_sem_acquire(L, lt, s, n, timeout);
}

static int s_try_acquire(lua_State *L) {
    ms_sem *s = check_sem(L, 1);
    uint64_t n = check_permits(L, 2);
    int rc = ms_sem_try_acquire(s, n);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc == MS_E_CLOSED ? "closed" : "unavailable");
        return 2;
    }
    lh_push_permit(L, ms_sem_ref(s), n);
    return 1;
}

static int s_available(lua_State *L) {
    lua_pushnumber(L, (double)ms_sem_available(check_sem(L, 1)));
    return 1;
}

static int s_add_permits(lua_State *L) {
    ms_sem *s = check_sem(L, 1);
    uint64_t n = check_whole(L, 2, luaL_checknumber(L, 2), 0);
    if (ms_sem_add_permits(s, n) != 0)
        return luaL_argerror(L, 2, "too many permits");
    return 0;
}

static int s_forget(lua_State *L) {
    ms_sem *s = check_sem(L, 1);
    uint64_t n = check_whole(L, 2, luaL_checknumber(L, 2), 0);
    lua_pushnumber(L, (double)ms_sem_forget(s, n));
    return 1;
}

/* sem:reduce_permits(n) -> removed now, still owed (taken from later
 * releases) */
static int s_reduce_permits(lua_State *L) {
    ms_sem *s = check_sem(L, 1);
    uint64_t n = check_whole(L, 2, luaL_checknumber(L, 2), 0);
    uint64_t owed;
    lua_pushnumber(L, (double)ms_sem_reduce_permits(s, n, &owed));
    lua_pushnumber(L, (double)owed);
    return 2;
}

static int s_close(lua_State *L) {
    ms_sem_close(check_sem(L, 1));
    return 0;
}

static int s_tostring(lua_State *L) {
    ms_sem *s = check_sem(L, 1);
    lua_pushfstring(L, "ms.semaphore(%d available)", (int)ms_sem_available(s));
    return 1;
}

/* ---- channels ---- */

static void drop_xfer(void *v) {
    xfer_free(v);
}

static int l_channel(lua_State *L) {
    double cap = luaL_optnumber(L, 1, 0);
    if (cap < 0 || cap != (double)(size_t)cap)
        return luaL_argerror(L, 1, "capacity must be a whole number (0 = unbounded)");
    ms_chan *ch;
    if (ms_chan_new((size_t)cap, drop_xfer, &ch) != 0)
        return luaL_error(L, "ms.channel: out of memory");
    lchan *lc = lchan_new((size_t)cap);
    if (!lc) {
        ms_chan_unref(ch);
        return luaL_error(L, "ms.channel: out of memory");
    }
    lh_push_handle(L, XH_CHAN, ch);
    ((lhandle *)lua_touserdata(L, -1))->lc = lc;
    /* The local queue (lchan.c): the handle's environment. */
    lua_createtable(L, cap >= 1 && cap <= 64 ? (int)cap : 4, 0);
    lua_setfenv(L, -2);
    return 1;
}


/* Whether this call may take the local fast path; a local channel used
 * where it may not (the blocking pool, outside ms.run) is shared first. */
static bool use_local(lua_State *L, lhandle *h) {
    if (!lchan_is_local(h->lc))
        return false;
    if (lchan_can_run(L))
        return true;
    char err[300];
    if (!lchan_share(L, 1, h->lc, h->ptr, err, sizeof err))
        luaL_error(L, "channel: %s", err);
    return false;
}

static xfer *encode_arg(lua_State *L, int idx, const char *fname) {
    char err[300];
    xfer *x = xfer_new();
    if (!x)
        luaL_error(L, "%s: out of memory", fname);
    if (!xfer_encode(L, idx, x, "value", err, sizeof err)) {
        xfer_free(x);
        luaL_error(L, "%s: %s", fname, err);
    }
    return x;
}

static int c_send(lua_State *L) {
    lhandle *h = check_handle(L, 1, XH_CHAN);
    luaL_checkany(L, 2);
    double timeout = opt_timeout(L, 3);
    if (use_local(L, h)) {
        lchan_prepare(L, "channel:send");
        if (lchan_is_local(h->lc)) /* the value may have held this handle */
            return lchan_send(L, h->lc, timeout);
    }
    ltask *lt = ltask_current(L, "channel:send");
    xfer *x = encode_arg(L, 2, "channel:send");
    return op_chan_send(L, lt, h->ptr, x, timeout);
}

static int c_try_send(lua_State *L) {
    lhandle *h = check_handle(L, 1, XH_CHAN);
    luaL_checkany(L, 2);
    if (use_local(L, h)) {
        lchan_prepare(L, "channel:try_send");
        if (lchan_is_local(h->lc))
            return lchan_try_send(L, h->lc);
    }
    xfer *x = encode_arg(L, 2, "channel:try_send");
    int rc = ms_chan_try_send(h->ptr, x);
    if (rc != 0) {
        xfer_free(x);
        lua_pushnil(L);
        lua_pushstring(L, rc == MS_E_CLOSED ? "closed" : rc == MS_E_EXHAUSTED ? "full" : "error");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int c_recv(lua_State *L) {
    lhandle *h = check_handle(L, 1, XH_CHAN);
    double timeout = opt_timeout(L, 2);
    if (use_local(L, h))
        return lchan_recv(L, h->lc, timeout);
    return op_chan_recv(L, ltask_current(L, "channel:recv"), h->ptr, timeout);
}

static int c_try_recv(lua_State *L) {
    lhandle *h = check_handle(L, 1, XH_CHAN);
    if (use_local(L, h))
        return lchan_try_recv(L, h->lc);
    void *v;
    int rc = ms_chan_try_recv(h->ptr, &v);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc == MS_E_CLOSED ? "closed" : "empty");
        return 2;
    }
    xfer_decode(L, v);
    xfer_free(v);
    return 1;
}

static int c_close(lua_State *L) {
    lhandle *h = check_handle(L, 1, XH_CHAN);
    if (use_local(L, h))
        lchan_close(L, h->lc);
    else
        ms_chan_close(h->ptr);
    return 0;
}

/* Buffered values; a local channel's are in lchan, a shared one's in the
 * core channel. */
static size_t chan_len(lhandle *h) {
    return lchan_is_local(h->lc) ? lchan_len(h->lc) : ms_chan_len(h->ptr);
}

static int c_len(lua_State *L) {
    lua_pushnumber(L, (double)chan_len(check_handle(L, 1, XH_CHAN)));
    return 1;
}

static int c_tostring(lua_State *L) {
    lhandle *h = check_handle(L, 1, XH_CHAN);
    lua_pushfstring(L, "ms.channel(%d queued, capacity %d)", (int)chan_len(h),
                    (int)ms_chan_capacity(h->ptr));
    return 1;
}

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

static int l_metrics(lua_State *L) {
    host *h = host_get();
    if (!h)
        return luaL_error(L, "ms.metrics: no runtime (use ms.run)");
    ms_metrics *m = ms_metrics_snapshot(h->rt);
    if (!m)
        return luaL_error(L, "ms.metrics: out of memory");
    push_snapshot(L, m);
    ms_metrics_free(m);
    /* The host's live settings, as they are now (not part of a snapshot). */
    SETNUM("tune_changes", atomic_load_explicit(&h->tune_changes, memory_order_relaxed));
    pthread_mutex_lock(&h->lock);
    SETNUM("mailbox_limit", h->mailbox_limit);
    SETNUM("agent_memory_limit", h->default_mem_limit);
    SETNUM("jit_agent_limit", h->jit_agent_limit);
    pthread_mutex_unlock(&h->lock);
    l_agents(L);
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
        push_snapshot(L, snap[i]);
        SETNUM("time", when[i]);
        free(snap[i]);
    }
    return 2;
}

/* ---- errors ---- */

static int err_tostring(lua_State *L) {
    lua_getfield(L, 1, "code");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "%s: %s", lua_tostring(L, -2) ? lua_tostring(L, -2) : "Error",
                    lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    return 1;
}

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
        cfg.on_stall = host_on_stall;
        ms_runtime *rt;
        ms_error err;
        if (ms_runtime_new(&cfg, &rt, &err) != 0)
            return luaL_error(L, "ms.run: %s: %s", ms_err_name(err.code), err.message);
        h = host_init(rt, true);
        made = true;
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "path");
        h->lua_path = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_getfield(L, -2, "cpath");
        h->lua_cpath = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 3);
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
    if (!agent_from_state(L))
        return luaL_error(L, "ms.on_shutdown: no agent runs in this Lua state");
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
    double timeout = opt_timeout(L, 1);
    if (!host_get())
        return luaL_error(L, "ms.shutdown: no runtime (use ms.run)");
    host_begin_shutdown("ms.shutdown", timeout);
    return 0;
}

/* ---- parts of ms written in Lua ---- */

/* ms's __index: ms.supervisor, ms.retry, ms.circuit_breaker, ms.tune and
 * ms.tuner are the Lua modules ms.<name> (lua/ms/<name>.lua), loaded on first use
 * and then kept in the ms table. */
static int ms_lazy_index(lua_State *L) {
    static const char *const lazy[] = {"supervisor", "retry", "circuit_breaker", "tune",
                                       "tuner", NULL};
    const char *k = lua_tostring(L, 2);
    if (!k)
        return 0;
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
static void new_handle_mt(lua_State *L, const char *name, const luaL_Reg *methods, int nmethods,
                          lua_CFunction tostring, lua_CFunction call) {
    luaL_newmetatable(L, name);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "__ms_handle");
    lua_pushcfunction(L, handle_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, a_eq);
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
static void add_checked_methods(lua_State *L, const luaL_Reg *methods) {
    lua_getfield(L, -1, "__index");
    for (const luaL_Reg *r = methods; r->name; r++) {
        lua_pushvalue(L, -2);
        lua_pushcclosure(L, r->func, 1);
        lua_setfield(L, -2, r->name);
    }
    lua_pop(L, 1);
}

static void build_agent_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"send", a_send}, {"call", a_call}, {"stop", a_stop}, {"info", a_index_info},
        {"id", a_id},     {"name", a_name}, {NULL, NULL}};
    new_handle_mt(L, "ms.agent", NULL, 6, a_tostring, NULL);
    add_checked_methods(L, methods);
}

static void build_reply_mt(lua_State *L) {
    new_handle_mt(L, "ms.reply", NULL, 0, NULL, r_call);
}

static void build_semaphore_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"acquire", s_acquire}, {"try_acquire", s_try_acquire}, {"available", s_available},
        {"add_permits", s_add_permits}, {"forget", s_forget},
        {"reduce_permits", s_reduce_permits}, {"close", s_close}, {NULL, NULL}};
    new_handle_mt(L, "ms.semaphore", methods, 7, s_tostring, NULL);
}

static void build_channel_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"send", c_send}, {"try_send", c_try_send}, {"recv", c_recv},
        {"try_recv", c_try_recv}, {"close", c_close}, {"len", c_len}, {NULL, NULL}};
    new_handle_mt(L, "ms.channel", NULL, 6, c_tostring, NULL);
    add_checked_methods(L, methods);
}

static void build_permit_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"release", permit_release}, {"count", permit_count}, {NULL, NULL}};
    luaL_newmetatable(L, "ms.permit");
    lua_pushcfunction(L, permit_release);
    lua_setfield(L, -2, "__gc");
    lua_createtable(L, 0, 2);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
}

static void build_task_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"join", t_join}, {"abort", t_abort}, {"status", t_status}, {NULL, NULL}};
    luaL_newmetatable(L, "ms.task");
    lua_pushcfunction(L, t_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_createtable(L, 0, 3);
    lua_setfield(L, -2, "__index");
    add_checked_methods(L, methods);
}

/* A failed task's handle: the task metatable plus the finalizer that
 * reports a failure nobody joined. */
static void build_failed_task_mt(lua_State *L) {
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

static void build_error_mt(lua_State *L) {
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
    [LMS_MT_AGENT] = {"ms.agent", build_agent_mt},
    [LMS_MT_REPLY] = {"ms.reply", build_reply_mt},
    [LMS_MT_SEMAPHORE] = {"ms.semaphore", build_semaphore_mt},
    [LMS_MT_CHANNEL] = {"ms.channel", build_channel_mt},
    [LMS_MT_PERMIT] = {"ms.permit", build_permit_mt},
    [LMS_MT_TASK] = {"ms.task", build_task_mt},
    [LMS_MT_FAILED_TASK] = {"ms.task.failed", build_failed_task_mt},
    [LMS_MT_ERROR] = {"ms.error", build_error_mt},
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
    static const luaL_Reg fns[] = {
        {"spawn", l_spawn},       {"yield", l_yield},     {"sleep", l_sleep},
        {"now", l_now},           {"timeout", l_timeout}, {"interval", l_interval},
        {"blocking", l_blocking}, {"recv", l_recv},       {"monitor", l_monitor},
        {"self", l_self},         {"agents", l_agents},
        {"run", l_run},           {"semaphore", l_semaphore}, {"channel", l_channel},
        {"on_shutdown", l_on_shutdown}, {"shutdown", l_shutdown},
        {"metrics_history", l_metrics_history},
        {NULL, NULL}};
    /* Sized for fns, agent, events, metrics, version, _tune and the lazily
     * loaded Lua modules (ms_lazy_index): no rehash while it fills. */
    lua_createtable(L, 0, (int)(sizeof fns / sizeof fns[0]) + 10);
    luaL_register(L, NULL, fns);
    static const luaL_Reg agent_fns[] = {
        {"spawn", l_agent_spawn}, {"whereis", l_whereis}, {NULL, NULL}};
    lua_createtable(L, 0, 2);
    luaL_register(L, NULL, agent_fns);
    lua_setfield(L, -2, "agent");
    events_push_module(L);
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_metrics, 1);
    lua_setfield(L, -3, "metrics");
    lua_setfield(L, -2, "events");
    lua_pushliteral(L, MS_VERSION_STRING);
    lua_setfield(L, -2, "version");
    tune_push_primitive(L);
    lua_setfield(L, -2, "_tune");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, ms_lazy_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    return 1;
}
