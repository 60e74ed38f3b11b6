/*
 * lms_cluster.c - ms.cluster and the cluster-wide whereis (cluster.h).
 *
 *   ms.cluster.id()      this host's id (16 hex digits), nil outside a cluster
 *   ms.cluster.hosts()   { { id, name, self, lost, silent, build }, ... }
 *   ms.cluster.stats()   the cluster's counters (also ms.metrics().cluster)
 *
 * A whereis that finds nothing on this host asks every known host and
 * yields until the owner answers (cluster_lookup_poll); the task waits,
 * never the worker.
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cluster.h"
#include "cluster_names.h"
#include "hold.h"
#include "lerr.h"
#include "lhandle.h"
#include "lms_cluster.h"
#include "ltask.h"
#include "ops.h"
#include "spawn.h"

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
        if (rows[i].name[0]) {
            lua_pushstring(L, rows[i].name);
            lua_setfield(L, -2, "name");
        }
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
    /* Where agent names are unique: "cluster" (JetStream), "host", "off". */
    lua_pushstring(L, !s.on ? "off" : s.names_cluster ? "cluster" : "host");
    lua_setfield(L, -2, "names");
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

static void release_xfer(void *x) {
    xfer_free(x);
}

/* ---- whereis ---- */

static ms_poll whereis_poll(ltask *lt, ms_cx *cx) {
    cluster_lookup *lk = lt->op.u.any[0];
    agent *found = NULL;
    char error[240];
    if (cluster_lookup_poll(lk, ms_cx_waker(cx), &found, error, sizeof error) ==
        MS_POLL_PENDING)
        return MS_POLL_PENDING;
    cluster_lookup_release(lk);
    lt->op.u.any[0] = NULL;
    lt->nres = 1;
    if (found) {
        lh_push_handle(lt->co, XH_AGENT, found); /* takes the reference */
    } else {
        lua_pushnil(lt->co);
        if (lt->op.u.any[1]) { /* a spawn: why not */
            lerr_push(lt->co, MS_E_INVALID_ARGUMENT,
                      error[0] ? error : "the host did not start the agent", NULL);
            lt->nres = 2;
        }
    }
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
    lt->op.u.any[1] = NULL;
    return op_suspend(L, lt, whereis_poll, whereis_cancel, 0);
}

/* ---- remote spawn ---- */

int lms_cluster_spawn(lua_State *L) {
    static const char *const allowed[] = {"host", "fn",   "file",      "module",
                                          "name", "args", "trap_exit", NULL};
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        bool ok = false;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (int i = 0; allowed[i]; i++)
                ok = ok || !strcmp(lua_tostring(L, -2), allowed[i]);
        if (!ok) {
            lua_pushvalue(L, -2);
            return luaL_error(L,
                              "ms.agent.spawn: a spawn on another host takes host, fn, file, "
                              "module, name, args and trap_exit only, not %s",
                              lua_tostring(L, -1) ? lua_tostring(L, -1) : "a non-string key");
        }
        lua_pop(L, 1);
    }
    if (!cluster_on())
        return luaL_error(L, "ms.agent.spawn: host given, but this host is in no cluster "
                             "(--cluster URL)");
    lua_getfield(L, 1, "host");
    uint64_t hid;
    if (lua_type(L, -1) != LUA_TSTRING || !cluster_id_parse(lua_tostring(L, -1), &hid))
        return luaL_error(L, "ms.agent.spawn: host must be a host id (16 hex digits, "
                             "ms.cluster.hosts()), got %s",
                          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                         : luaL_typename(L, -1));
    if (hid == cluster_self()) {
        /* This host: the ordinary spawn, of the table less host. */
        lua_createtable(L, 0, 6);
        lua_pushnil(L);
        while (lua_next(L, 1)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
        lua_pushnil(L);
        lua_setfield(L, -2, "host");
        lhandle *h = lh_new(L, XH_AGENT);
        char why[512];
        agent *a = spawn_agent(L, lua_gettop(L) - 1, why, sizeof why);
        if (!a)
            return luaL_error(L, "ms.agent.spawn: %s", why);
        h->ptr = a;
        return 1;
    }
    ltask *lt = ltask_current(L, "ms.agent.spawn");
    /* The request, as a table encoded here (path errors for args). */
    lua_createtable(L, 0, 5);
    int req = lua_gettop(L);
    int nsrc = 0;
    static const char *const srcs[] = {"fn", "file", "module"};
    for (int i = 0; i < 3; i++) {
        lua_getfield(L, 1, srcs[i]);
        if (!lua_isnil(L, -1)) {
            nsrc++;
            lua_pushstring(L, srcs[i]);
            lua_setfield(L, req, "src");
            if (i == 0) {
                if (!lua_isfunction(L, -1) || lua_iscfunction(L, -1))
                    return luaL_error(L, "ms.agent.spawn: fn must be a Lua function");
                const char *up = lua_getupvalue(L, -1, 1);
                if (up)
                    return luaL_error(L, "ms.agent.spawn: fn captures upvalues (%s); an agent "
                                         "on another host shares nothing: pass data in args",
                                      *up ? up : "?");
                lua_getglobal(L, "string");
                lua_getfield(L, -1, "dump");
                lua_pushvalue(L, -3);
                lua_call(L, 1, 1);
                lua_setfield(L, req, "text");
                lua_pop(L, 1);
            } else if (lua_type(L, -1) != LUA_TSTRING) {
                return luaL_error(L, "ms.agent.spawn: %s must be a string", srcs[i]);
            } else {
                lua_pushvalue(L, -1);
                lua_setfield(L, req, "text");
            }
        }
        lua_pop(L, 1);
    }
    if (nsrc != 1)
        return luaL_error(L, "ms.agent.spawn: give exactly one of fn, file or module (got %d)",
                          nsrc);
    lua_getfield(L, 1, "name");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "ms.agent.spawn: name must be a string");
    lua_setfield(L, req, "name");
    lua_getfield(L, 1, "args");
    lua_setfield(L, req, "args");
    lua_getfield(L, 1, "trap_exit");
    lua_pushboolean(L, lua_toboolean(L, -1));
    lua_setfield(L, req, "trap_exit");
    lua_pop(L, 1);
    lua_pushstring(L, cluster_build_id());
    lua_setfield(L, req, "build");
    xfer *x = xfer_new();
    if (!x)
        return luaL_error(L, "ms.agent.spawn: out of memory");
    char err[300];
    hold_push(x, release_xfer);
    bool encoded = xfer_encode(L, req, x, "spawn", err, sizeof err);
    hold_pop(x);
    if (!encoded) {
        xfer_free(x);
        return luaL_error(L, "ms.agent.spawn: %s", err);
    }
    cluster_lookup *lk = cluster_spawn_start(hid, x, err, sizeof err);
    if (!lk) {
        lua_pushnil(L);
        lerr_push(L, MS_E_INVALID_ARGUMENT, err, NULL);
        return 2;
    }
    lt->op.u.any[0] = lk;
    lt->op.u.any[1] = (void *)1;
    return op_suspend(L, lt, whereis_poll, whereis_cancel, 0);
}

/* ---- cluster-wide names (cluster_names.h) ----
 *
 * In a cluster whose broker has JetStream, ms.agent.spawn with a name
 * claims it in the cluster's bucket first, yielding until the registrar
 * answers, and spawns only if the name is ours: the spawn function is
 * then a Lua wrapper around the C one (below), which the C function
 * could not be (a C function cannot go on after a yield in Lua 5.1).
 * The claim is a token (a userdata) between claim and bind: collected
 * unbound (an error in between), it gives the name back. */

#define CLAIM_MT "ms.name_claim"

typedef struct claim_token {
    name_claim *c;              /* NULL once bound or dropped */
} claim_token;

static ms_poll claim_poll(ltask *lt, ms_cx *cx) {
    name_claim *c = lt->op.u.any[0];
    bool ok = false;
    char err[240];
    if (cluster_claim_poll(c, ms_cx_waker(cx), &ok, err, sizeof err) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (ok) {
        /* The claim is the token's from here (a memory error in the
         * allocation leaves it to claim_cancel). */
        claim_token *t = lua_newuserdata(lt->co, sizeof *t);
        t->c = NULL;
        luaL_getmetatable(lt->co, CLAIM_MT);
        lua_setmetatable(lt->co, -2);
        t->c = c;
        lt->op.u.any[0] = NULL;
        lt->nres = 1;
        return MS_POLL_READY;
    }
    lt->op.u.any[0] = NULL;
    cluster_claim_drop(c);
    lua_pushboolean(lt->co, 0);
    lua_pushstring(lt->co, err);
    lt->nres = 2;
    return MS_POLL_READY;
}

static void claim_cancel(ltask *lt) {
    cluster_claim_drop(lt->op.u.any[0]);
    lt->op.u.any[0] = NULL;
}

static const lop_kind claim_kind = {"name registration", NULL};

/* The longest a named spawn waits for the registry: its own bounds add
 * up to about 8.5 s in the worst case (a create, a get, a probe, a
 * delete and a create again), and jobs queued before it come first. */
#define CLAIM_TIMEOUT 10

/* claim(name) -> token | false, err (taken, no answer) | nil, "timeout" |
 * nothing (names are not cluster-wide: spawn as usual). */
static int l_claim(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    if (!cluster_names_on() || !*name)
        return 0;
    ltask *lt = ltask_current(L, "ms.agent.spawn");
    op_set_deadline(L, lt, CLAIM_TIMEOUT); /* may raise: nothing taken yet */
    name_claim *c = cluster_claim_start(name);
    if (!c)
        return luaL_error(L, "ms.agent.spawn: out of memory");
    lt->op.u.any[0] = c;
    lt->op.kind = &claim_kind;
    return op_suspend(L, lt, claim_poll, claim_cancel, 0);
}

static int l_bind(lua_State *L) {
    claim_token *t = luaL_checkudata(L, 1, CLAIM_MT);
    agent *a = lh_check_agent(L, 2);
    name_claim *c = t->c;
    t->c = NULL;
    if (c)
        cluster_claim_bind(c, a);
    return 0;
}

/* drop(token), and the token's __gc. */
static int l_drop(lua_State *L) {
    claim_token *t = luaL_checkudata(L, 1, CLAIM_MT);
    name_claim *c = t->c;
    t->c = NULL;
    cluster_claim_drop(c);
    return 0;
}

static const char spawn_wrapper[] =
    "local raw, claim, bind, drop = ...\n"
    "return function(t)\n"
    "  local name = type(t) == 'table' and t.host == nil and t.name_scope ~= 'host' and t.name\n"
    "  if type(name) == 'string' then\n"
    "    local token, err = claim(name)\n"
    "    if err == 'timeout' then\n"
    "      err = \"the name '\" .. name .. \"' could not be registered in the cluster: \" ..\n"
    "            'the registry did not answer in 10 s'\n"
    "    end\n"
    "    if err then error('ms.agent.spawn: ' .. err, 2) end\n"
    "    if token then\n"
    "      local ok, a = pcall(raw, t)\n"
    "      if not ok then drop(token) error(a, 2) end\n"
    "      if a:name() ~= name then\n" /* a table whose name changed between reads */
    "        a:stop('killed') drop(token)\n"
    "        error(\"ms.agent.spawn: the name changed from '\" .. name .. \"' while it was registered\", 2)\n"
    "      end\n"
    "      bind(token, a)\n"
    "      return a\n"
    "    end\n"
    "  end\n"
    "  return raw(t)\n"
    "end\n";

void lms_cluster_wrap_spawn(lua_State *L, int agent_idx) {
    if (!cluster_names_on())
        return; /* nothing to claim: the C function as it is */
    if (luaL_newmetatable(L, CLAIM_MT)) {
        lua_pushcfunction(L, l_drop);
        lua_setfield(L, -2, "__gc");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, spawn_wrapper, sizeof spawn_wrapper - 1, "=ms.agent.spawn") != 0)
        lua_error(L);
    lua_getfield(L, agent_idx, "spawn");
    lua_pushcfunction(L, l_claim);
    lua_pushcfunction(L, l_bind);
    lua_pushcfunction(L, l_drop);
    lua_call(L, 4, 1);
    lua_setfield(L, agent_idx, "spawn");
}

void lms_cluster_register(lua_State *L, int ms_idx) {
    static const luaL_Reg fns[] = {{"id", l_id}, {"hosts", l_hosts}, {"stats", l_stats},
                                   {NULL, NULL}};
    lua_createtable(L, 0, 3);
    luaL_register(L, NULL, fns);
    lua_setfield(L, ms_idx, "cluster");
}
