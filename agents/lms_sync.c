/*
 * lms_sync.c - ms's semaphores (with permit objects) and channels (local
 * while their handle stays in one agent: lchan.c).
 */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "hold.h"
#include "lchan.h"
#include "lhandle.h"
#include "lms.h"
#include "lms_sync.h"
#include "ltask.h"
#include "ops.h"
#include "xfer.h"

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
    return lh_check(L, idx, XH_SEM)->ptr;
}

/* s:acquire([n][, timeout]) -> permit | nil, err */
static int s_acquire(lua_State *L) {
    ms_sem *s = check_sem(L, 1);
    uint64_t n = check_permits(L, 2);
    double timeout = lms_opt_timeout(L, 3);
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

static void release_lchan(void *lc) {
    lchan_unref(lc);
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
    hold_push(lc, release_lchan);
    lh_push_handle(L, XH_CHAN, ch);
    ((lhandle *)lua_touserdata(L, -1))->lc = lc;
    hold_pop(lc);
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
    lhandle *h = lh_check(L, 1, XH_CHAN);
    luaL_checkany(L, 2);
    double timeout = lms_opt_timeout(L, 3);
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
    lhandle *h = lh_check(L, 1, XH_CHAN);
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
    lhandle *h = lh_check(L, 1, XH_CHAN);
    double timeout = lms_opt_timeout(L, 2);
    if (use_local(L, h))
        return lchan_recv(L, h->lc, timeout);
    return op_chan_recv(L, ltask_current(L, "channel:recv"), h->ptr, timeout);
}

static int c_try_recv(lua_State *L) {
    lhandle *h = lh_check(L, 1, XH_CHAN);
    if (use_local(L, h))
        return lchan_try_recv(L, h->lc);
    void *v;
    int rc = ms_chan_try_recv(h->ptr, &v);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc == MS_E_CLOSED ? "closed" : "empty");
        return 2;
    }
    hold_push(v, drop_xfer);
    xfer_decode(L, v);
    hold_pop(v);
    xfer_free(v);
    return 1;
}

static int c_close(lua_State *L) {
    lhandle *h = lh_check(L, 1, XH_CHAN);
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
    lua_pushnumber(L, (double)chan_len(lh_check(L, 1, XH_CHAN)));
    return 1;
}

static int c_tostring(lua_State *L) {
    lhandle *h = lh_check(L, 1, XH_CHAN);
    lua_pushfstring(L, "ms.channel(%d queued, capacity %d)", (int)chan_len(h),
                    (int)ms_chan_capacity(h->ptr));
    return 1;
}

void lms_build_semaphore_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"acquire", s_acquire}, {"try_acquire", s_try_acquire}, {"available", s_available},
        {"add_permits", s_add_permits}, {"forget", s_forget},
        {"reduce_permits", s_reduce_permits}, {"close", s_close}, {NULL, NULL}};
    lms_new_handle_mt(L, "ms.semaphore", methods, 7, s_tostring, NULL);
}

void lms_build_channel_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"send", c_send}, {"try_send", c_try_send}, {"recv", c_recv},
        {"try_recv", c_try_recv}, {"close", c_close}, {"len", c_len}, {NULL, NULL}};
    lms_new_handle_mt(L, "ms.channel", NULL, 6, c_tostring, NULL);
    lms_add_checked_methods(L, methods);
}

void lms_build_permit_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"release", permit_release}, {"count", permit_count}, {NULL, NULL}};
    luaL_newmetatable(L, "ms.permit");
    lua_pushcfunction(L, permit_release);
    lua_setfield(L, -2, "__gc");
    lua_createtable(L, 0, 2);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
}

const luaL_Reg lms_sync_functions[] = {
    {"semaphore", l_semaphore}, {"channel", l_channel}, {NULL, NULL}};
