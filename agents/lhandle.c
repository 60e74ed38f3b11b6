/*
 * lhandle.c - shared objects as Lua userdata.  A handle holds one
 * reference to its object; collecting the handle drops it.  Agent handles
 * are cached per state (one userdata per agent), so a received message's
 * sender costs no new userdata.
 */
#include <lauxlib.h>
#include <string.h>

#include "agent.h"
#include "hold.h"
#include "lchan.h"
#include "lhandle.h"
#include "lms.h"
#include "lms_net.h"
#include "ops.h"

static lms_mt handle_mt(xh_type t) {
    switch (t) {
    case XH_AGENT: return LMS_MT_AGENT;
    case XH_SEM: return LMS_MT_SEMAPHORE;
    case XH_CHAN: return LMS_MT_CHANNEL;
    case XH_REPLY: return LMS_MT_REPLY;
    case XH_SOCK: return LMS_MT_SOCKET;
    }
    return LMS_MT_AGENT;
}


void lh_ref_handle(xh_type type, void *ptr) {
    switch (type) {
    case XH_AGENT: agent_ref(ptr); break;
    case XH_REPLY: reply_ref(ptr); break;
    case XH_SEM: ms_sem_ref(ptr); break;
    case XH_CHAN: ms_chan_ref(ptr); break;
    case XH_SOCK: lsock_ref(ptr); break;
    }
}

void lh_unref_handle(xh_type type, void *ptr) {
    switch (type) {
    case XH_AGENT: agent_unref(ptr); break;
    case XH_REPLY: reply_unref(ptr); break;
    case XH_SEM: ms_sem_unref(ptr); break;
    case XH_CHAN: ms_chan_unref(ptr); break;
    case XH_SOCK: lsock_unref(ptr); break;
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

static void release_agent(void *p) {
    agent_unref(p);
}
static void release_reply(void *p) {
    reply_unref(p);
}
static void release_sem(void *p) {
    ms_sem_unref(p);
}
static void release_chan(void *p) {
    ms_chan_unref(p);
}

void lh_push_handle(lua_State *L, xh_type type, void *ptr) {
    if (type == XH_SOCK) {
        lsock_push_received(L, ptr); /* it moves to this agent */
        return;
    }
    static void (*const release[])(void *) = {
        [XH_AGENT] = release_agent, [XH_REPLY] = release_reply, [XH_SEM] = release_sem,
        [XH_CHAN] = release_chan};
    /* The reference is held until the userdata that takes it has its
     * finalizer (hold.h): a raise before that would lose it. */
    hold_push(ptr, release[type]);
    if (type == XH_AGENT && push_cached_agent(L, ptr)) {
        hold_pop(ptr);
        lh_unref_handle(type, ptr); /* the cached handle holds its own */
        return;
    }
    lhandle *h = lua_newuserdata(L, sizeof *h);
    h->type = type;
    h->ptr = NULL;
    h->lc = NULL;
    lms_push_mt(L, handle_mt(type));
    lua_setmetatable(L, -2);
    h->ptr = ptr;
    hold_pop(ptr);
    if (type == XH_AGENT) {
        /* stack: cache, handle */
        lua_pushlightuserdata(L, ptr);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
        lua_remove(L, -2);
    }
}

lhandle *lh_new(lua_State *L, xh_type type) {
    lhandle *h = lua_newuserdata(L, sizeof *h);
    h->type = type;
    h->ptr = NULL;
    h->lc = NULL;
    lms_push_mt(L, handle_mt(type));
    lua_setmetatable(L, -2);
    return h;
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

lhandle *lh_check(lua_State *L, int idx, xh_type type) {
    lhandle *h = lms_check_udata(L, idx, handle_mt(type));
    if (!h->ptr)
        luaL_argerror(L, idx, "handle already released");
    return h;
}

agent *lh_check_agent_like(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TTABLE) {
        /* A handle that stands for an agent (ms.supervisor's) keeps it in
         * its raw field `agent`: read raw, no metamethod runs. */
        lua_pushliteral(L, "agent");
        lua_rawget(L, idx < 0 ? idx - 1 : idx);
        xh_type type;
        void *p = lh_to_handle(L, -1, &type);
        lua_pop(L, 1);
        if (p && type == XH_AGENT)
            return p;
    }
    return lh_check_agent(L, idx);
}

agent *lh_check_agent(lua_State *L, int idx) {
    return lh_check(L, idx, XH_AGENT)->ptr;
}

int lh_gc(lua_State *L) {
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

void lh_after_export(xfer *x) {
    for (uint32_t i = 0; i < x->nhandles; i++)
        if (x->handles[i].type == XH_SOCK && x->handles[i].ptr)
            lsock_exported(x->handles[i].ptr);
}

bool lh_before_export(lua_State *L, int idx, char *err, size_t errlen) {
    lhandle *h = lua_touserdata(L, idx);
    if (h && h->type == XH_SOCK)
        return lsock_can_export(L, idx, err, errlen);
    if (h && h->type == XH_CHAN && lchan_is_local(h->lc))
        return lchan_share(L, idx, h->lc, h->ptr, err, errlen);
    return true;
}

int lh_eq(lua_State *L) {
    xh_type t1, t2;
    void *p1 = lh_to_handle(L, 1, &t1), *p2 = lh_to_handle(L, 2, &t2);
    lua_pushboolean(L, p1 && p1 == p2 && t1 == t2);
    return 1;
}
