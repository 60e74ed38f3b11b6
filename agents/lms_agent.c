/*
 * lms_agent.c - ms's agents and messages: ms.agent.spawn and whereis,
 * agent handles (send, call, stop, info, id, name), ms.recv and reply
 * handles, ms.monitor, ms.self, ms.agents.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cluster.h"
#include "host.h"
#include "hold.h"
#include "hostlog.h"
#include "lerr.h"
#include "lhandle.h"
#include "lms.h"
#include "lms_agent.h"
#include "lms_cluster.h"
#include "ltask.h"
#include "mail.h"
#include "ops.h"
#include "registry.h"
#include "spawn.h"
#include "xfer.h"

/* ---- agents ---- */

static int l_agent_spawn(lua_State *L) {
    lua_settop(L, 1);
    if (lua_istable(L, 1)) { /* lms_cluster.c: a spawn on another host */
        lua_getfield(L, 1, "host");
        bool remote = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (remote)
            return lms_cluster_spawn(L);
    }
    /* The handle before the agent: made after, a memory error would leave
     * the agent running, unknown to its spawner (a supervisor's child
     * nobody would stop). */
    lhandle *h = lh_new(L, XH_AGENT);
    char err[512];
    agent *a = spawn_agent(L, 1, err, sizeof err);
    if (!a)
        return luaL_error(L, "ms.agent.spawn: %s", err);
    h->ptr = a; /* the creation reference */
    return 1;
}

static void release_msg(void *m) {
    msg_free(m);
}

static void release_xfer(void *x) {
    xfer_free(x);
}

/* Delivers m (taking it) and pushes send's results on L: true, or nil
 * and the error.  Returns their number. */
static int deliver_push(lua_State *L, agent *target, msg *m) {
    char err[300];
    int rc = mail_deliver(target, m, err, sizeof err);
    if (rc != 0) {
        msg_free(m);
        lua_pushnil(L);
        lerr_push(L, rc, err, NULL);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* A send deferred by the send slice: made when its task resumes. */
static ms_poll deferred_send_poll(ltask *lt, ms_cx *cx) {
    (void)cx;
    agent *target = lt->op.u.any[0];
    lt->nres = deliver_push(lt->co, target, lt->op.u.any[1]);
    agent_unref(target);
    return MS_POLL_READY;
}

static void deferred_send_cancel(ltask *lt) {
    msg_free(lt->op.u.any[1]);
    agent_unref(lt->op.u.any[0]);
}

static const lop_kind deferred_send_kind = {"send (its agent let others run first)", NULL};

static int a_send(lua_State *L) {
    agent *target = lh_check_agent(L, 1);
    luaL_checkany(L, 2);
    char err[300];
    msg *m = msg_new();
    if (!m)
        return luaL_error(L, "send: out of memory");
    /* Encoding may raise (it can convert a key in place): held. */
    hold_push(m, release_msg);
    bool encoded = xfer_encode(L, 2, m->body, "message", err, sizeof err);
    hold_pop(m);
    if (!encoded) {
        msg_free(m);
        return luaL_error(L, "send: %s", err);
    }
    agent *self = agent_from_state(L);
    if (self) {
        agent_ref(self);
        m->sender = self;
    }
    /* A send never waits, so an agent sending in a loop would keep its
     * worker until the loop ends while its receivers' backlogs grow
     * without bound (four senders of 50,000 to one collector on one
     * worker: 191,000 queued at the deepest).  Past AGENT_SEND_SLICE sends in
     * one poll, the send is deferred: its task yields, its agent lets the
     * others run, and the message goes when the task resumes, just before
     * it sees the result (so a stop meanwhile leaves it unsent, and the
     * send unreturned).  Only the task's own coroutine yields, and only
     * where it can; elsewhere a send is made at once. */
    if (self && ++self->sends_in_slice > AGENT_SEND_SLICE && agent_in_task(L) &&
        lua_isyieldable(L)) {
        ltask *lt = self->current;
        self->sends_in_slice = 0;
        self->send_yield = true;
        agent_ref(target); /* dropped by the poll or the cancel */
        lt->op.u.any[0] = target;
        lt->op.u.any[1] = m;
        lt->op.kind = &deferred_send_kind;
        lt->op.at_resume = true;
        return op_suspend(L, lt, deferred_send_poll, deferred_send_cancel, 0);
    }
    return deliver_push(L, target, m);
}

static int a_call(lua_State *L) {
    agent *target = lh_check_agent(L, 1);
    luaL_checkany(L, 2);
    double timeout = lms_opt_timeout(L, 3);
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

/* Pushes an agent's row (a:info(), ms.agents(), ms.metrics().agents)
 * from a snapshot: nothing is built in Lua while a lock is held. */
static void push_info(lua_State *L, const agent_info *in) {
    lua_createtable(L, 0, 11);
    lua_pushnumber(L, (double)in->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, in->name);
    lua_setfield(L, -2, "name");
    static const char *st[] = {"starting", "running", "exited"};
    lua_pushstring(L, st[in->state]);
    lua_setfield(L, -2, "state");
    lua_pushnumber(L, (double)in->mailbox);
    lua_setfield(L, -2, "mailbox");
    lua_pushnumber(L, (double)in->received);
    lua_setfield(L, -2, "received");
    lua_pushnumber(L, (double)in->memory);
    lua_setfield(L, -2, "memory");
    lua_pushnumber(L, (double)in->memory_limit);
    lua_setfield(L, -2, "memory_limit");
    lua_pushnumber(L, (double)in->polls);
    lua_setfield(L, -2, "polls");
    lua_pushnumber(L, (double)in->restarts);
    lua_setfield(L, -2, "restarts");
    lua_pushnumber(L, (double)in->cpu_ns / 1e9);
    lua_setfield(L, -2, "cpu");
    lua_pushnumber(L, (double)in->io_handles);
    lua_setfield(L, -2, "io_handles");
    lua_pushboolean(L, in->traps_exit);
    lua_setfield(L, -2, "trap_exit");
    if (in->state == AG_EXITED) {
        lua_pushstring(L, in->exit_reason);
        lua_setfield(L, -2, "exit_reason");
    }
}

static int a_info(lua_State *L, agent *a) {
    agent_info in;
    agent_get_info(a, &in);
    push_info(L, &in);
    return 1;
}

static int a_index_info(lua_State *L) {
    return a_info(L, lh_check_agent(L, 1));
}

static int a_id(lua_State *L) {
    lua_pushnumber(L, (double)lh_check_agent(L, 1)->id);
    return 1;
}

/* a:host(): the id of the agent's host (16 hex digits), nil outside a
 * cluster.  With a:id() it names the agent across the cluster. */
static int a_host(lua_State *L) {
    agent *a = lh_check_agent(L, 1);
    uint64_t hid = a->remote_host ? a->remote_host : cluster_self();
    if (!hid) {
        lua_pushnil(L);
        return 1;
    }
    char hex[17];
    cluster_id_hex(hid, hex);
    lua_pushstring(L, hex);
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

static int l_recv(lua_State *L) {
    double timeout = lms_opt_timeout(L, 1);
    return op_recv(L, ltask_current(L, "ms.recv"), timeout);
}

/* ms.trap_exit([on]) -> whether it was on.  An agent that traps exits
 * handles stops itself: its supervisor sends it { event = "shutdown" } and
 * waits its shutdown time; one that does not is stopped at once. */
static int l_trap_exit(lua_State *L) {
    agent *self = agent_from_state(L);
    if (!self)
        return luaL_error(L, "ms.trap_exit: no agent runs in this Lua state");
    bool was = atomic_load_explicit(&self->traps_exit, memory_order_relaxed);
    if (!lua_isnoneornil(L, 1))
        atomic_store_explicit(&self->traps_exit, lua_toboolean(L, 1), memory_order_relaxed);
    lua_pushboolean(L, was);
    return 1;
}

static int l_monitor(lua_State *L) {
    agent *target = lh_check_agent_like(L, 1);
    agent *self = agent_from_state(L);
    if (!self)
        return luaL_error(L, "ms.monitor: no agent runs in this Lua state");
    if (!mail_add_monitor(target, self))
        return luaL_error(L, "ms.monitor: out of memory");
    return 0;
}

/* ms.link(a) / ms.unlink(a): see mail.c. */
static int l_link(lua_State *L) {
    agent *other = lh_check_agent_like(L, 1);
    agent *self = agent_from_state(L);
    if (!self)
        return luaL_error(L, "ms.link: no agent runs in this Lua state");
    mail_link(self, other);
    return 0;
}

static int l_unlink(lua_State *L) {
    agent *other = lh_check_agent_like(L, 1);
    agent *self = agent_from_state(L);
    if (!self)
        return luaL_error(L, "ms.unlink: no agent runs in this Lua state");
    mail_unlink(self, other);
    return 0;
}

static int l_self(lua_State *L) {
    agent *self = agent_from_state(L);
    if (!self)
        return luaL_error(L, "ms.self: no agent runs in this Lua state");
    lh_push_agent(L, self);
    return 1;
}

void lms_push_agents(lua_State *L) {
    agent_info *rows = NULL;
    size_t n = 0;
    host *h = host_get();
    if (h && !agent_list_info(h, &rows, &n))
        luaL_error(L, "ms.agents: out of memory");
    /* rows is C memory: a raise below (memory) must not leak it. */
    hold_push(rows, free);
    agent_info *ud = lua_newuserdata(L, n ? n * sizeof *rows : 1);
    hold_pop(rows);
    if (n)
        memcpy(ud, rows, n * sizeof *rows);
    free(rows);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        push_info(L, &ud[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_remove(L, -2);
}

static int l_agents(lua_State *L) {
    lms_push_agents(L);
    return 1;
}

static int l_whereis(lua_State *L) {
    agent *a = registry_whereis(luaL_checkstring(L, 1));
    if (!a) /* lms_cluster.c: the other hosts of the cluster, if any */
        return lms_cluster_whereis(L, lua_tostring(L, 1));
    lh_push_handle(L, XH_AGENT, a);
    return 1;
}

/* reply(value): answers an agent:call.  Out of memory, the caller is
 * answered "no reply" at once (it would otherwise wait until the reply
 * handle is collected) and the replier gets the error. */
static int r_call(lua_State *L) {
    lhandle *h = lh_check(L, 1, XH_REPLY);
    xfer *body = xfer_new();
    char err[300];
    if (!body) {
        reply_fill(h->ptr, NULL);
        return luaL_error(L, "reply: out of memory");
    }
    lua_settop(L, 2);
    hold_push(body, release_xfer);
    bool encoded = xfer_encode(L, 2, body, "reply", err, sizeof err);
    hold_pop(body);
    if (!encoded) {
        if (body->failed)
            reply_fill(h->ptr, NULL);
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

void lms_build_agent_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"send", a_send}, {"call", a_call}, {"stop", a_stop}, {"info", a_index_info},
        {"id", a_id},     {"name", a_name}, {"host", a_host}, {NULL, NULL}};
    lms_new_handle_mt(L, "ms.agent", NULL, 7, a_tostring, NULL);
    lms_add_checked_methods(L, methods);
}

void lms_build_reply_mt(lua_State *L) {
    lms_new_handle_mt(L, "ms.reply", NULL, 0, NULL, r_call);
}

/* ms.log(level, event, message): one line of the host's log (hostlog.h,
 * docs/logs.md) about the calling agent, in the host's format.  event is
 * a name the reader can filter on: letters, digits, '.', '_', '-'. */
static int l_log(lua_State *L) {
    const char *lvname = luaL_checkstring(L, 1);
    hostlog_level lv;
    if (!hostlog_parse_level(lvname, &lv))
        return luaL_argerror(L, 1, lua_pushfstring(L, "level must be error, warning, notice "
                                                   "or info, got '%s'", lvname));
    size_t elen;
    const char *event = luaL_checklstring(L, 2, &elen);
    bool ok = elen > 0 && elen <= 64;
    for (size_t i = 0; ok && i < elen; i++) {
        char c = event[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    }
    if (!ok)
        return luaL_argerror(L, 2, "event must be 1 to 64 letters, digits, '.', '_' or '-'");
    size_t len;
    const char *message = luaL_checklstring(L, 3, &len);
    agent *a = agent_from_state(L);
    hostlog_write(lv, event, a ? a->id : 0, a ? a->name : NULL, message, len);
    return 0;
}

const luaL_Reg lms_agent_functions[] = {
    {"recv", l_recv},     {"monitor", l_monitor}, {"self", l_self},
    {"agents", l_agents}, {"trap_exit", l_trap_exit}, {"link", l_link},
    {"unlink", l_unlink}, {"log", l_log},
    {NULL, NULL}};

const luaL_Reg lms_agent_module[] = {
    {"spawn", l_agent_spawn}, {"whereis", l_whereis}, {NULL, NULL}};
