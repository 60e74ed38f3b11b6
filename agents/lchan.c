/*
 * lchan.c - the same-agent fast path of ms.channel.
 *
 * A channel made by ms.channel starts *local*: its handle exists only in
 * the state that made it, so every sender and receiver is a coroutine of
 * that one agent, run on the agent's thread.  While local, a channel needs
 * neither the core channel's lock nor atomics nor the value encoding:
 *
 *   - buffered values are Lua values in a table attached to the handle
 *     (its environment), at [head, head + len);
 *   - a waiting receiver gets the value pushed straight onto its
 *     coroutine's stack and joins the agent's run queue (no waker, no
 *     wake-up through the executor);
 *   - a waiting sender keeps its value on its own suspended stack; the
 *     receive that makes room moves it into the buffer (FIFO, as the core
 *     channel does);
 *   - numbers, strings, booleans and nil travel as they are; anything else
 *     is still copied (encoded and decoded in place), because a channel
 *     always hands over a copy and refuses what cannot cross.
 *
 * An operation that can complete at once does so without yielding
 * (op_return_fast: every OP_FAST_STREAK-th such completion in one run of
 * a coroutine yields anyway, results intact).
 *
 * The handle can leave the state only through xfer_encode (a message, a
 * spawn's args, a value on another channel).  That *shares* the channel
 * (lchan_share): its buffered values are encoded into the core ms_chan in
 * order, its waiting coroutines are moved onto the core queues in order,
 * and from then on every operation takes the core path.  Sharing is one
 * way.  Operations from outside a task on the agent's thread (the blocking
 * pool, plain Lua outside ms.run) share first, so the fast path always has
 * the agent's run queue and poll context at hand.
 *
 * Costs: an lchan is one small allocation plus the queue table; a local
 * send or receive is a few table accesses.  Values left in a local channel
 * when its agent ends are ordinary Lua values of that state: lua_close (or
 * the GC) frees them.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent.h"
#include "hold.h"
#include "lchan.h"
#include "lerr.h"
#include "ltask.h"
#include "ops.h"
#include "xfer.h"

enum { LW_QUEUED = 1, LW_DONE = 2 };

/* A coroutine waiting on a local channel; lives in its op store. */
typedef struct lwait {
    lchan *lc;                  /* a reference */
    ltask *lt;
    struct lwait *prev, *next;
    int state;
    bool sending;               /* on the senders' list, else the receivers' */
} lwait;

_Static_assert(sizeof(lwait) <= sizeof(((lop *)0)->store), "lwait fits the op store");

typedef struct lwait_list {
    lwait *head, *tail;
} lwait_list;

/* Owned by the one state holding the handle, used only by the thread
 * running that state: no field needs synchronisation. */
struct lchan {
    int refs;                   /* the handle + each waiting coroutine */
    bool shared;                /* the core ms_chan holds everything now */
    bool closed;
    size_t capacity;            /* 0 = unbounded */
    double head;                /* the queue table's first index */
    size_t len;                 /* buffered values */
    lwait_list senders, receivers;
};

lchan *lchan_new(size_t capacity) {
    lchan *lc = calloc(1, sizeof *lc);
    if (!lc)
        return NULL;
    lc->refs = 1;
    lc->capacity = capacity;
    lc->head = 1;
    return lc;
}

void lchan_unref(lchan *lc) {
    if (lc && --lc->refs == 0)
        free(lc);
}

bool lchan_is_local(const lchan *lc) {
    return lc && !lc->shared;
}

size_t lchan_len(const lchan *lc) {
    return lc->len;
}

bool lchan_can_run(lua_State *L) {
    agent *a = agent_from_state(L);
    return a && a->cx && a->current && a->current->co == L;
}

/* ---- waiter lists ---- */

static void list_push(lwait_list *l, lwait *w) {
    w->next = NULL;
    w->prev = l->tail;
    if (l->tail)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
}

static void list_remove(lwait_list *l, lwait *w) {
    if (w->prev)
        w->prev->next = w->next;
    else
        l->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        l->tail = w->prev;
    w->prev = w->next = NULL;
}

static lwait *list_pop(lwait_list *l) {
    lwait *w = l->head;
    if (w)
        list_remove(l, w);
    return w;
}

/* The waiter's results are on its stack: it runs next in line. */
static void complete(lwait *w) {
    lchan *lc = w->lc;
    w->state = LW_DONE;
    w->lc = NULL;
    ltask_make_ready(w->lt); /* clears the op store, w included */
    lchan_unref(lc);
}

static ms_poll wait_poll(ltask *lt, ms_cx *cx) {
    (void)cx;
    lwait *w = (lwait *)lt->op.store;
    /* complete() makes the task ready without polling; this only keeps a
     * stray poll (a timer's wake) from finishing early. */
    return w->state == LW_DONE ? MS_POLL_READY : MS_POLL_PENDING;
}

static void wait_cancel(ltask *lt) {
    lwait *w = (lwait *)lt->op.store;
    if (w->state == LW_QUEUED && w->lc) {
        lchan *lc = w->lc;
        list_remove(w->sending ? &lc->senders : &lc->receivers, w);
        w->lc = NULL;
        w->state = 0;
        lchan_unref(lc);
    }
}

static void wait_describe(const ltask *lt, lop_desc *d) {
    const lwait *w = (const lwait *)lt->op.store;
    snprintf(d->what, sizeof d->what, "%p (local)", (void *)w->lc);
}

static const lop_kind lchan_send_kind = {"channel send", wait_describe};
static const lop_kind lchan_recv_kind = {"channel receive", wait_describe};

static int wait_on(lua_State *L, ltask *lt, lchan *lc, lwait_list *l, double timeout,
                   int nvals) {
    op_set_deadline(L, lt, timeout); /* may raise: before anything is linked */
    lwait *w = (lwait *)lt->op.store;
    w->lc = lc;
    lc->refs++;
    w->lt = lt;
    w->state = LW_QUEUED;
    w->sending = l == &lc->senders;
    list_push(l, w);
    /* Only this agent's own code completes the wait; a poll is needed
     * only to arm the deadline's timer. */
    lt->op.parked = !lt->op.deadline;
    lt->op.kind = w->sending ? &lchan_send_kind : &lchan_recv_kind;
    return op_suspend(L, lt, wait_poll, wait_cancel, nvals);
}

/* ---- the queue table (the handle's environment, at index 1) ---- */

/* Keys stay below INT_MAX: a queue that never empties is renumbered
 * from 1 now and then (rare: after a billion values). */
static void buf_renumber(lua_State *L, lchan *lc, int q) {
    for (size_t i = 0; i < lc->len; i++) {
        lua_rawgeti(L, q, (int)(lc->head + (double)i));
        lua_pushnil(L);
        lua_rawseti(L, q, (int)(lc->head + (double)i));
        lua_rawseti(L, q, (int)(1 + i));
    }
    lc->head = 1;
}

static void buf_push(lua_State *L, lchan *lc, int vidx) {
    lua_getfenv(L, 1);
    if (lc->head + (double)lc->len >= (double)(1 << 30))
        buf_renumber(L, lc, lua_gettop(L));
    lua_pushvalue(L, vidx);
    lua_rawseti(L, -2, (int)(lc->head + (double)lc->len));
    lua_pop(L, 1);
    lc->len++;
}

/* Pushes the front value. */
static void buf_pop(lua_State *L, lchan *lc) {
    lua_getfenv(L, 1);
    int k = (int)lc->head;
    lua_rawgeti(L, -1, k);
    lua_pushnil(L);
    lua_rawseti(L, -3, k);
    lua_remove(L, -2);
    lc->len--;
    /* Emptied: start again at 1, so a busy channel reuses one slot of the
     * table's array part instead of walking up its keys. */
    lc->head = lc->len ? lc->head + 1 : 1;
}

static bool buf_full(const lchan *lc) {
    return lc->capacity && lc->len >= lc->capacity;
}

/* ---- sending ---- */

/* Replaces the value at 2 by what the receiver gets: itself for plain
 * values, a copy for tables and handles (refused as by any send). */
static void release_xfer(void *x) {
    xfer_free(x);
}

void lchan_prepare(lua_State *L, const char *fname) {
    int t = lua_type(L, 2);
    if (t == LUA_TNUMBER || t == LUA_TSTRING || t == LUA_TBOOLEAN || t == LUA_TNIL)
        return;
    char err[300];
    xfer *x = xfer_new();
    if (!x) {
        luaL_error(L, "%s: out of memory", fname);
        return;
    }
    /* On the heap and held (hold.h): encoding and decoding may raise. */
    hold_push(x, release_xfer);
    bool encoded = xfer_encode(L, 2, x, "value", err, sizeof err);
    if (encoded)
        xfer_decode(L, x);
    hold_pop(x);
    xfer_free(x);
    if (!encoded) {
        luaL_error(L, "%s: %s", fname, err);
        return;
    }
    lua_replace(L, 2);
}

/* Gives the value at vidx to the head receiver. */
static void hand_to_receiver(lua_State *L, lchan *lc, int vidx) {
    lwait *r = list_pop(&lc->receivers);
    lua_State *co = r->lt->co;
    lua_checkstack(co, 2);
    lua_pushvalue(L, vidx);
    lua_xmove(L, co, 1);
    r->lt->nres = 1;
    complete(r);
}

static int finish_fast(lua_State *L, int n) {
    return op_return_fast(L, agent_from_state(L)->current, n);
}

static int push_closed_send(lua_State *L) {
    lua_pushnil(L);
    lerr_push(L, MS_E_CLOSED, "the channel is closed", NULL);
    return 2;
}

/* 0: sent, 1: full, 2: closed. */
static int try_put(lua_State *L, lchan *lc) {
    if (lc->closed)
        return 2;
    if (lc->receivers.head) {
        hand_to_receiver(L, lc, 2);
        return 0;
    }
    if (buf_full(lc))
        return 1;
    buf_push(L, lc, 2);
    return 0;
}

int lchan_send(lua_State *L, lchan *lc, double timeout) {
    ltask *lt = ltask_current(L, "channel:send");
    lua_settop(L, 2);
    int r = try_put(L, lc);
    if (r == 2)
        return push_closed_send(L);
    if (r == 0) {
        lua_pushboolean(L, 1);
        return finish_fast(L, 1);
    }
    /* Full: wait with the value on our own stack (the top one). */
    return wait_on(L, lt, lc, &lc->senders, timeout, 1);
}

int lchan_try_send(lua_State *L, lchan *lc) {
    lua_settop(L, 2);
    int r = try_put(L, lc);
    if (r == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, r == 2 ? "closed" : "full");
    return 2;
}

/* ---- receiving ---- */

/* Pushes the front value; the head sender's value takes the freed room
 * and its send completes. */
static void take(lua_State *L, lchan *lc) {
    buf_pop(L, lc);
    lwait *s = lc->senders.head;
    if (s && !buf_full(lc)) {
        list_remove(&lc->senders, s);
        lua_State *co = s->lt->co;
        /* Its value is the one it yielded, at the bottom of its stack. */
        lua_getfenv(L, 1);
        lua_xmove(co, L, 1); /* the value is the top of co */
        lua_rawseti(L, -2, (int)(lc->head + (double)lc->len));
        lua_pop(L, 1);
        lc->len++;
        lua_settop(co, 0);
        lua_pushboolean(co, 1);
        s->lt->nres = 1;
        complete(s);
    }
}

int lchan_recv(lua_State *L, lchan *lc, double timeout) {
    ltask *lt = ltask_current(L, "channel:recv");
    lua_settop(L, 1);
    if (lc->len > 0) {
        take(L, lc);
        return finish_fast(L, 1);
    }
    if (lc->closed) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return finish_fast(L, 2);
    }
    return wait_on(L, lt, lc, &lc->receivers, timeout, 0);
}

int lchan_try_recv(lua_State *L, lchan *lc) {
    lua_settop(L, 1);
    if (lc->len > 0) {
        take(L, lc);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, lc->closed ? "closed" : "empty");
    return 2;
}

/* ---- close ---- */

void lchan_close(lua_State *L, lchan *lc) {
    (void)L;
    if (lc->closed)
        return;
    lc->closed = true;
    /* Senders wait only on a full buffer and receivers only on an empty
     * one, so at most one list is non-empty; both fail now, in order. */
    lwait *w;
    while ((w = list_pop(&lc->senders))) {
        lua_State *co = w->lt->co;
        lua_settop(co, 0); /* the value was not sent */
        lua_checkstack(co, 2);
        lua_pushnil(co);
        lerr_push(co, MS_E_CLOSED, "the channel is closed", NULL);
        w->lt->nres = 2;
        complete(w);
    }
    while ((w = list_pop(&lc->receivers))) {
        lua_State *co = w->lt->co;
        lua_checkstack(co, 2);
        lua_pushnil(co);
        lua_pushliteral(co, "closed");
        w->lt->nres = 2;
        complete(w);
    }
}

/* ---- sharing ---- */

bool lchan_share(lua_State *L, int idx, lchan *lc, ms_chan *ch, char *err, size_t errlen) {
    if (lc->shared)
        return true;
    /* First, so that a value holding this very handle does not recurse. */
    lc->shared = true;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    agent *a = agent_from_state(L);
    bool ok = true;
    err[0] = '\0';
    lua_checkstack(L, 4);
    lua_getfenv(L, idx);
    int q = lua_gettop(L);
    /* The buffer first: it is older than any waiting sender's value, and
     * it fits (len <= capacity on a fresh, empty core channel). */
    while (lc->len > 0) {
        int k = (int)lc->head;
        lua_rawgeti(L, q, k);
        lua_pushnil(L);
        lua_rawseti(L, q, k);
        lc->head++;
        lc->len--;
        xfer *x = xfer_new();
        if (!x || !xfer_encode(L, -1, x, "value", err, errlen) || ms_chan_try_send(ch, x) != 0) {
            if (x && !err[0])
                snprintf(err, errlen, "out of memory");
            xfer_free(x);
            ok = false; /* the value is lost; only out of memory gets here */
        }
        lua_pop(L, 1);
    }
    lc->head = 1;
    lua_pop(L, 1);
    /* Then the waiters, in their order, each on the core queues.  With the
     * poll context at hand they queue now; otherwise (a blocking job
     * sharing the handle) they re-poll in wake order. */
    lwait *w;
    while ((w = list_pop(&lc->senders))) {
        ltask *lt = w->lt;
        lua_State *co = lt->co;
        xfer *x = xfer_new();
        char e2[200] = "";
        if (!x || !xfer_encode(co, -1, x, "value", e2, sizeof e2)) {
            /* Only out of memory: fail this send as the core would. */
            xfer_free(x);
            lua_settop(co, 0);
            lua_pushnil(co);
            lerr_push(co, MS_E_NO_MEMORY, "cannot send: out of memory", NULL);
            lt->nres = 2;
            w->lc = NULL;
            lchan_unref(lc);
            if (a && a->cx)
                ltask_make_ready(lt);
            else {
                w->state = LW_DONE;
                ltask_wake_by_ref(lt);
            }
            continue;
        }
        lua_settop(co, 0);
        w->lc = NULL;
        lchan_unref(lc);
        op_chan_send_adopt(lt, ch, x);
        if (a && a->cx)
            ltask_poll_op(lt, a->cx);
        else
            ltask_wake_by_ref(lt);
    }
    while ((w = list_pop(&lc->receivers))) {
        ltask *lt = w->lt;
        w->lc = NULL;
        lchan_unref(lc);
        op_chan_recv_adopt(lt, ch);
        if (a && a->cx)
            ltask_poll_op(lt, a->cx);
        else
            ltask_wake_by_ref(lt);
    }
    if (lc->closed)
        ms_chan_close(ch);
    return ok;
}
