/*
 * ops.c - what a coroutine task can wait on.
 *
 * A blocking ms.* function records an operation in its ltask and yields
 * to the agent's scheduler, which polls the operation with the ltask's own
 * waker (op_poll_now).  When it is ready the poll pushes the results on
 * the coroutine's stack and the coroutine is resumed with them.  An
 * operation may carry a deadline; when it passes first, the operation is
 * cancelled and the coroutine gets nil, "timeout".
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cpuclock.h"
#include "hold.h"
#include "host.h"
#include "lerr.h"
#include "lhandle.h"
#include "lms_sync.h"
#include "lms_task.h"
#include "ltask.h"
#include "mail.h"
#include "ops.h"
#include "xfer.h"

/* ---- reply slots ---- */

struct reply_slot {
    _Atomic uint32_t refs;
    pthread_mutex_t lock;
    bool filled, caller_gone;
    xfer *body;                 /* under lock */
    ms_waker waker;             /* under lock: the waiting caller */
    /* cluster.c: the caller is on another host; the answer (or NULL: no
     * answer will come) goes to forward, exactly once.  Set before the
     * slot is shared. */
    void (*forward)(void *ctx, xfer *body);
    void *forward_ctx;
};

void reply_set_forward(reply_slot *r, void (*forward)(void *ctx, xfer *body), void *ctx) {
    r->forward = forward;
    r->forward_ctx = ctx;
}

reply_slot *reply_new(void) {
    reply_slot *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

/* The count changes under the lock: whoever takes it from 2 to 1 may still
 * need the slot (to wake the waiting caller) while the other holder drops
 * the last reference; with both under the lock, the last one frees only
 * once nobody else is inside. */
void reply_ref(reply_slot *r) {
    pthread_mutex_lock(&r->lock);
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&r->lock);
}

void reply_unref(reply_slot *r) {
    pthread_mutex_lock(&r->lock);
    uint32_t prev = atomic_fetch_sub_explicit(&r->refs, 1, memory_order_relaxed);
    if (prev == 1) {
        bool unanswered = r->forward && !r->filled;
        pthread_mutex_unlock(&r->lock);
        if (unanswered) /* cluster.c: the remote caller hears "no reply" */
            r->forward(r->forward_ctx, NULL);
        xfer_free(r->body);
        ms_waker_drop(&r->waker);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return;
    }
    /* Only one holder left: if it is the waiting caller, nobody can answer
     * any more, so wake it to report that. */
    ms_waker w = prev == 2 && !r->caller_gone ? ms_waker_clone(&r->waker) : (ms_waker){0};
    pthread_mutex_unlock(&r->lock);
    ms_waker_wake(&w);
}

bool reply_fill(reply_slot *r, xfer *body) {
    pthread_mutex_lock(&r->lock);
    if (r->filled || r->caller_gone) {
        pthread_mutex_unlock(&r->lock);
        return false;
    }
    r->filled = true;
    if (r->forward) { /* cluster.c: the answer travels to the caller's host */
        pthread_mutex_unlock(&r->lock);
        r->forward(r->forward_ctx, body);
        return true;
    }
    r->body = body;
    ms_waker w = ms_waker_clone(&r->waker);
    pthread_mutex_unlock(&r->lock);
    ms_waker_wake(&w);
    return true;
}

/* ---- the common part ---- */

static void op_clear(ltask *lt) {
    if (lt->op.deadline)
        ms_timer_free(lt->op.deadline);
    memset(&lt->op, 0, sizeof lt->op);
}

void op_reset(ltask *lt) {
    op_clear(lt);
}

/* op_clear without zeroing the store: every operation sets up its own
 * store before use, and this runs once per fast channel hand-over. */
void op_reset_light(ltask *lt) {
    if (lt->op.deadline)
        ms_timer_free(lt->op.deadline);
    lt->op.poll = NULL;
    lt->op.cancel = NULL;
    lt->op.kind = NULL;
    lt->op.deadline = NULL;
    lt->op.timed_out = false;
    lt->op.parked = false;
    memset(&lt->op.u, 0, sizeof lt->op.u);
}


static bool set_deadline(lua_State *L, ltask *lt, double timeout) {
    if (timeout < 0)
        return true;
    ms_error err;
    if (ms_timer_new(lt->a->h->rt, &lt->op.deadline, &err) != 0) {
        luaL_error(L, "%s", err.message);
        return false;
    }
    ms_timer_set_deadline(lt->op.deadline, ms_now_ns() + (uint64_t)(timeout * 1e9));
    return true;
}

void op_set_deadline(lua_State *L, ltask *lt, double timeout) {
    set_deadline(L, lt, timeout);
}

static ms_poll poll_adapter(ms_cx *cx, void *state) {
    ltask *lt = state;
    return lt->op.poll(lt, cx);
}

static ms_poll deadline_adapter(ms_cx *cx, void *state) {
    ltask *lt = state;
    return ms_timer_poll(lt->op.deadline, cx);
}

ms_poll op_poll_now(ltask *lt, ms_cx *cx) {
    ms_waker w = {&ltask_waker_vtable, lt};
    if (ms_cx_poll_with_waker(cx, &w, poll_adapter, lt) == MS_POLL_READY) {
        op_clear(lt);
        return MS_POLL_READY;
    }
    if (lt->op.deadline &&
        ms_cx_poll_with_waker(cx, &w, deadline_adapter, lt) == MS_POLL_READY) {
        if (lt->op.cancel)
            lt->op.cancel(lt);
        op_clear(lt);
        lua_settop(lt->co, 0);
        lua_pushnil(lt->co);
        lua_pushliteral(lt->co, "timeout");
        lt->nres = 2;
        return MS_POLL_READY;
    }
    return MS_POLL_PENDING;
}

void op_cancel(ltask *lt) {
    if (lt->op.cancel)
        lt->op.cancel(lt);
    op_clear(lt);
}

static uint64_t wait_start(ltask *lt) {
    uint64_t t = atomic_load_explicit(&lt->a->poll_since, memory_order_relaxed);
    return t ? t : cpuclock_ticks();
}

/* The caller has set lt->op.kind (what a dump says the task waits on). */
static int suspend(lua_State *L, ltask *lt, lop_poll_fn poll, lop_cancel_fn cancel) {
    lt->op.poll = poll;
    lt->op.cancel = cancel;
    lt->op.since = wait_start(lt);
    return lua_yield(L, 0);
}

int op_suspend(lua_State *L, ltask *lt, lop_poll_fn poll, lop_cancel_fn cancel, int nvals) {
    lt->op.poll = poll;
    lt->op.cancel = cancel;
    lt->op.since = wait_start(lt);
    return lua_yield(L, nvals);
}

/* The yielded values are still on the coroutine's stack: they become the
 * results as they are. */
static ms_poll done_poll(ltask *lt, ms_cx *cx) {
    (void)cx;
    lt->nres = (int)(intptr_t)lt->op.u.any[0];
    return MS_POLL_READY;
}

int op_yield_results(lua_State *L, ltask *lt, int n) {
    lt->op.u.any[0] = (void *)(intptr_t)n;
    return op_suspend(L, lt, done_poll, NULL, n);
}

int op_return_fast(lua_State *L, ltask *lt, int n) {
    agent *a = lt->a;
    if (++a->fast_streak < OP_FAST_STREAK)
        return n;
    a->fast_streak = 0;
    return op_yield_results(L, lt, n);
}

/* ---- yield ---- */

int op_yield(lua_State *L, ltask *lt) {
    return lua_yield(L, 0);
}

/* ---- sleep ---- */

static ms_poll sleep_poll(ltask *lt, ms_cx *cx) {
    if (ms_timer_poll(lt->op.u.sleep.t, cx) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    ms_timer_free(lt->op.u.sleep.t);
    lt->op.u.sleep.t = NULL;
    lt->nres = 0;
    return MS_POLL_READY;
}

static void sleep_cancel(ltask *lt) {
    ms_timer_free(lt->op.u.sleep.t);
    lt->op.u.sleep.t = NULL;
}

static void sleep_describe(const ltask *lt, lop_desc *d) {
    uint64_t until = lt->op.u.sleep.until_ns, now = ms_now_ns();
    snprintf(d->what, sizeof d->what, "%.3f s left", until > now ? (until - now) / 1e9 : 0.0);
}

static const lop_kind sleep_kind = {"sleep", sleep_describe};

int op_sleep(lua_State *L, ltask *lt, double seconds) {
    ms_error err;
    if (ms_timer_new(lt->a->h->rt, &lt->op.u.sleep.t, &err) != 0)
        return luaL_error(L, "ms.sleep: %s", err.message);
    lt->op.u.sleep.until_ns = ms_now_ns() + (uint64_t)(seconds * 1e9);
    ms_timer_set_deadline(lt->op.u.sleep.t, lt->op.u.sleep.until_ns);
    lt->op.kind = &sleep_kind;
    return suspend(L, lt, sleep_poll, sleep_cancel);
}

/* ---- join ---- */

static bool finished(ltask *t) {
    return t->status == LT_DONE || t->status == LT_FAILED || t->status == LT_ABORTED;
}

/* Lets go of the target and its handle. */
static void join_release(ltask *lt) {
    ltask_unref(lt->op.u.join.target);
    lt->op.u.join.target = NULL;
    luaL_unref(lt->a->L, LUA_REGISTRYINDEX, lt->op.u.join.handle_ref);
    lt->op.u.join.handle_ref = LUA_NOREF;
}

static ms_poll join_poll(ltask *lt, ms_cx *cx) {
    ltask *target = lt->op.u.join.target;
    if (finished(target)) {
        /* The outcome is in the handle by now (ltask_finish). */
        lua_State *co = lt->co;
        lua_rawgeti(co, LUA_REGISTRYINDEX, lt->op.u.join.handle_ref);
        int hidx = lua_gettop(co);
        lt->nres = task_handle_push_outcome(co, hidx);
        lua_remove(co, hidx);
        join_release(lt);
        return MS_POLL_READY;
    }
    if (!lt->op.u.join.registered) {
        lt->op.u.join.registered = true;
        ltask_ref(lt);
        lt->join_next = target->joiners;
        target->joiners = lt;
    }
    return MS_POLL_PENDING;
}

static void join_cancel(ltask *lt) {
    ltask *target = lt->op.u.join.target;
    if (!target)
        return;
    if (lt->op.u.join.registered) {
        for (ltask **p = &target->joiners; *p; p = &(*p)->join_next)
            if (*p == lt) {
                *p = lt->join_next;
                lt->join_next = NULL;
                ltask_unref(lt);
                break;
            }
    }
    /* ms.timeout: the timed-out work is aborted. */
    if (lt->op.u.join.abort)
        ltask_abort(target);
    join_release(lt);
}

static void join_describe(const ltask *lt, lop_desc *d) {
    const ltask *t = lt->op.u.join.target;
    if (t)
        snprintf(d->what, sizeof d->what, "task %llu%s", (unsigned long long)t->id,
                 lt->op.u.join.abort ? " (ms.timeout)" : "");
}

static const lop_kind join_kind = {"join", join_describe};

int op_join(lua_State *L, ltask *lt, int handle_idx, double timeout, bool abort) {
    task_handle *h = lua_touserdata(L, handle_idx);
    ltask *target = h->lt;
    if (target == lt)
        return luaL_error(L, "a task cannot join itself");
    /* Already finished: the outcome is returned at once. */
    if (!target)
        return op_return_fast(L, lt, task_handle_push_outcome(L, handle_idx));
    if (!set_deadline(L, lt, timeout))
        return 0;
    /* What may raise (memory) comes before the reference is taken. */
    lua_pushvalue(L, handle_idx);
    int handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ltask_ref(target);
    lt->op.u.join.target = target;
    lt->op.u.join.registered = false;
    lt->op.u.join.abort = abort;
    lt->op.u.join.handle_ref = handle_ref;
    lt->op.kind = &join_kind;
    return suspend(L, lt, join_poll, join_cancel);
}

/* ---- receive ---- */

/* Pushes a message's value and its sender (or reply slot) onto co and
 * frees it.  Returns the number of values pushed (2). */
static void release_msg(void *m) {
    msg_free(m);
}

static int push_message(lua_State *co, msg *m) {
    /* Held while it is decoded (hold.h): the decode allocates, and may
     * raise. */
    hold_push(m, release_msg);
    lua_checkstack(co, 3);
    xfer_decode(co, m->body);
    if (m->reply) {
        reply_slot *r = m->reply; /* the message's ref moves to the handle */
        m->reply = NULL;
        lh_push_handle(co, XH_REPLY, r);
    } else if (m->sender) {
        lh_push_agent(co, m->sender);
    } else {
        lua_pushnil(co);
    }
    hold_pop(m);
    msg_free(m);
    return 2;
}

static void release_reply(void *r) {
    reply_unref(r);
}

static void release_xfer(void *x) {
    xfer_free(x);
}

/* Decodes the blob x (heap, owned) onto L and frees it; held meanwhile. */
static void decode_owned(lua_State *L, xfer *x) {
    hold_push(x, release_xfer);
    xfer_decode(L, x);
    hold_pop(x);
    xfer_free(x);
}

static ms_poll recv_poll(ltask *lt, ms_cx *cx) {
    (void)cx;
    agent *a = lt->a;
    msg *m = mail_take(a);
    if (!m) {
        mail_wait(a, lt);
        /* A message linked before the registration was visible; one
         * linked after it comes with a wake (mail_deliver). */
        m = mail_take(a);
        if (!m)
            return MS_POLL_PENDING;
    }
    /* A producer that took the registration meanwhile wakes us once for
     * nothing, which a re-poll absorbs. */
    mail_unwait(a, lt);
    lt->nres = push_message(lt->co, m);
    lt->holds_msg = true; /* until the task's next resume */
    return MS_POLL_READY;
}

static void recv_cancel(ltask *lt) {
    mail_unwait(lt->a, lt);
}

static const lop_kind recv_kind = {"receive", NULL};

int op_recv(lua_State *L, ltask *lt, double timeout) {
    agent *a = lt->a;
    ltask *r = mail_receiver(a);
    if (r && r != lt)
        return luaL_error(L, "ms.recv: another task of this agent is already receiving; one "
                             "task at a time reads the mailbox");
    /* A message already there is taken at once, without a trip through
     * the scheduler: a collector drains its backlog in one run. */
    msg *m = mail_take(a);
    if (m) {
        int n = push_message(L, m);
        /* Every so often the fast path yields with the message as its
         * results: until the task resumes, it holds the message. */
        int ret = op_return_fast(L, lt, n);
        lt->holds_msg = lt->op.poll != NULL;
        return ret;
    }
    if (!set_deadline(L, lt, timeout))
        return 0;
    lt->op.kind = &recv_kind;
    return suspend(L, lt, recv_poll, recv_cancel);
}

/* ---- call ---- */

static ms_poll call_poll(ltask *lt, ms_cx *cx) {
    reply_slot *r = lt->op.u.call.slot;
    pthread_mutex_lock(&r->lock);
    if (r->filled && !r->body) {
        r->caller_gone = true;
        pthread_mutex_unlock(&r->lock);
        lua_pushnil(lt->co);
        lua_pushliteral(lt->co, "no reply: the answer could not be built (out of memory)");
        lt->nres = 2;
        reply_unref(r);
        lt->op.u.call.slot = NULL;
        return MS_POLL_READY;
    }
    if (r->filled) {
        xfer *body = r->body;
        r->body = NULL;
        r->caller_gone = true;
        pthread_mutex_unlock(&r->lock);
        decode_owned(lt->co, body);
        lt->nres = 1;
        reply_unref(r);
        lt->op.u.call.slot = NULL;
        return MS_POLL_READY;
    }
    if (atomic_load(&r->refs) == 1) {
        /* Every holder of the reply handle let go without answering. */
        r->caller_gone = true;
        pthread_mutex_unlock(&r->lock);
        lua_pushnil(lt->co);
        lua_pushliteral(lt->co, "no reply: the request was dropped without an answer");
        lt->nres = 2;
        reply_unref(r);
        lt->op.u.call.slot = NULL;
        return MS_POLL_READY;
    }
    ms_waker_store(&r->waker, ms_cx_waker(cx));
    pthread_mutex_unlock(&r->lock);
    return MS_POLL_PENDING;
}

static void call_cancel(ltask *lt) {
    reply_slot *r = lt->op.u.call.slot;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->caller_gone = true;
    ms_waker_drop(&r->waker);
    pthread_mutex_unlock(&r->lock);
    reply_unref(r);
    lt->op.u.call.slot = NULL;
}

/* The dump puts the target's name in (it has every agent's row). */
static void call_describe(const ltask *lt, lop_desc *d) {
    d->agent_id = lt->op.u.call.target_id;
}

static const lop_kind call_kind = {"call", call_describe};

/* Once the message is delivered nothing may fail before the task waits
 * (the callee would answer a slot nobody holds, and the slot would leak):
 * the deadline comes first. */
int op_call(lua_State *L, ltask *lt, agent *target, int msg_idx, double timeout) {
    char err[300];
    if (!set_deadline(L, lt, timeout))
        return 0;
    msg *m = msg_new();
    reply_slot *r = reply_new();
    if (!m || !r) {
        if (m)
            msg_free(m);
        if (r)
            reply_unref(r);
        op_reset_light(lt);
        return luaL_error(L, "call: out of memory");
    }
    /* Encoding may raise (it can convert a key in place): held. */
    hold_push(m, release_msg);
    hold_push(r, release_reply);
    bool encoded = xfer_encode(L, msg_idx, m->body, "message", err, sizeof err);
    hold_pop(r);
    hold_pop(m);
    if (!encoded) {
        msg_free(m);
        reply_unref(r);
        op_reset_light(lt);
        return luaL_error(L, "call: %s", err);
    }
    reply_ref(r); /* the message's */
    m->reply = r;
    m->sender = lt->a;
    agent_ref(lt->a);
    int rc = mail_deliver(target, m, err, sizeof err);
    if (rc != 0) {
        msg_free(m); /* drops the message's reply and sender references */
        reply_unref(r);
        op_reset_light(lt);
        lua_pushnil(L);
        lerr_push(L, rc, err, NULL);
        return 2;
    }
    lt->op.u.call.slot = r;
    lt->op.u.call.target_id = target->id;
    lt->op.kind = &call_kind;
    return suspend(L, lt, call_poll, call_cancel);
}

/* ---- blocking ---- */

static void *blocking_job(void *arg) {
    ltask *lt = arg;
    lua_State *bco = lt->op.u.blocking.co;
    lt->a->enforce_limit = true;
    int rc = lua_resume(bco, lt->op.u.blocking.nargs);
    lt->a->enforce_limit = false;
    /* Nothing that allocates here, outside the agent's protected poll (an
     * allocation may run a finalizer, which may raise): the outcome is
     * read by blocking_poll, from bco's stack as it was left.  1: done,
     * 2: failed, 3: yielded. */
    lt->op.u.any[4] = (void *)(intptr_t)(rc == 0 ? 1 : rc == LUA_YIELD ? 3 : 2);
    hold_release_all(); /* what a raise in fn left (hold.h) */
    agent *a = lt->a;
    agent_ref(a); /* once not busy, the agent may end at any moment */
    atomic_store_explicit(&a->blocking_busy, false, memory_order_release);
    /* A wake of this task while the job ran (a waker an earlier operation
     * left registered, firing late) found the agent busy: agent_poll
     * returned at once and left the task on the woken stack, marked
     * notified, so the join's own wake below finds it already notified
     * and wakes nobody.  Waking the agent itself drains that stack. */
    ms_waker_wake_by_ref(&a->self_waker);
    agent_unref(a);
    return NULL;
}

static ms_poll blocking_poll(ltask *lt, ms_cx *cx) {
    agent *a = lt->a;
    if (!lt->op.u.blocking.job) {
        /* Started here, after the coroutine has yielded: from now until
         * the job ends, only the blocking thread touches the state. */
        atomic_store_explicit(&a->blocking_busy, true, memory_order_release);
        if (ms_spawn_blocking(a->h->rt, blocking_job, lt, &lt->op.u.blocking.job) != 0) {
            atomic_store_explicit(&a->blocking_busy, false, memory_order_release);
            lua_pushnil(lt->co);
            lerr_push(lt->co, MS_E_SHUTTING_DOWN, "ms.blocking: the blocking pool refused the job",
                      NULL);
            lt->nres = 2;
            return MS_POLL_READY;
        }
    }
    int result;
    if (ms_task_poll_join(lt->op.u.blocking.job, cx, NULL, &result, NULL) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    ms_task_release(lt->op.u.blocking.job);
    lt->op.u.blocking.job = NULL;
    lua_State *bco = lt->op.u.blocking.co;
    lua_State *co = lt->co;
    intptr_t outcome = (intptr_t)lt->op.u.any[4];
    if (outcome == 3) {
        lua_pushnil(co);
        lerr_push(co, MS_E_TASK_FAILED,
                  "ms.blocking: the function yielded (blocking ms.* calls and coroutine yields "
                  "are not allowed on the blocking pool)",
                  NULL);
        lt->nres = 2;
    } else if (outcome == 1) {
        int n = lua_gettop(bco);
        lua_checkstack(co, n + 1);
        lua_pushboolean(co, 1);
        lua_xmove(bco, co, n);
        lt->nres = n + 1;
    } else {
        /* bco: the raised value on top of its stack as the failure left
         * it (the traceback reads that stack), read without running any
         * of its code. */
        /* Kept in the agent while the error value is built (it may
         * raise), as ltask.c does for a failed task. */
        free(a->fail_traceback);
        a->fail_traceback = NULL;
        a->fail_traceback = lerr_traceback(a->L, bco);
        free(a->fail_message);
        a->fail_message = lerr_message(bco);
        lua_pushnil(co);
        lerr_push(co, MS_E_TASK_FAILED,
                  a->fail_message ? a->fail_message : "ms.blocking: the function failed",
                  a->fail_traceback);
        lt->nres = 2;
    }
    luaL_unref(a->L, LUA_REGISTRYINDEX, lt->op.u.blocking.co_ref);
    return MS_POLL_READY;
}

static void blocking_cancel(ltask *lt) {
    /* A running job cannot be interrupted; the agent stays busy until it
     * ends (blocking_busy), then the coroutine is simply not resumed. */
    if (lt->op.u.blocking.job) {
        ms_task_release(lt->op.u.blocking.job);
        lt->op.u.blocking.job = NULL;
    }
}

static void blocking_describe(const ltask *lt, lop_desc *d) {
    snprintf(d->what, sizeof d->what, "%s", lt->op.u.blocking.job ? "ms.blocking job running"
                                                                  : "ms.blocking job queued");
}

static const lop_kind blocking_kind = {"blocking", blocking_describe};

int op_blocking(lua_State *L, ltask *lt, int nargs) {
    /* fn and its args are the top nargs + 1 values of L. */
    lua_State *bco = lua_newthread(L);
    lt->op.u.blocking.co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_xmove(L, bco, nargs + 1);
    lt->op.u.blocking.co = bco;
    lt->op.u.blocking.nargs = nargs;
    lt->op.u.blocking.job = NULL;
    lt->op.kind = &blocking_kind;
    return suspend(L, lt, blocking_poll, blocking_cancel);
}

/* ---- intervals ---- */

static ms_poll interval_poll(ltask *lt, ms_cx *cx) {
    uint64_t skipped = 0;
    if (ms_interval_poll(lt->op.u.interval.iv->iv, cx, &skipped) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    lt->op.u.interval.iv->waiter = NULL;
    lua_pushnumber(lt->co, ms_now_ns() / 1e9);
    lua_pushnumber(lt->co, (double)skipped);
    lt->nres = 2;
    return MS_POLL_READY;
}

static void interval_cancel(ltask *lt) {
    if (lt->op.u.interval.iv->waiter == lt)
        lt->op.u.interval.iv->waiter = NULL;
}

static const lop_kind interval_kind = {"interval", NULL};

int op_interval_next(lua_State *L, ltask *lt, lint *iv) {
    /* An interval has one timer and so wakes one waiter: a second task
     * would wait forever, so it is refused instead. */
    if (iv->waiter && iv->waiter != lt)
        return luaL_error(L, "ms.interval: another task is already waiting on this interval; "
                             "give each task its own ms.interval");
    iv->waiter = lt;
    lt->op.u.interval.iv = iv;
    lt->op.kind = &interval_kind;
    return suspend(L, lt, interval_poll, interval_cancel);
}

/* ---- semaphores ---- */

typedef struct sem_op {
    ms_sem *sem;                /* a reference */
    uint64_t n;
    ms_sem_waiter w;
} sem_op;

_Static_assert(sizeof(sem_op) <= sizeof(((lop *)0)->store), "sem_op fits the op store");

static ms_poll sem_poll(ltask *lt, ms_cx *cx) {
    sem_op *o = (sem_op *)lt->op.store;
    int rc;
    if (ms_sem_acquire_poll(o->sem, &o->w, cx, &rc) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (rc == 0) {
        lh_push_permit(lt->co, o->sem, o->n); /* the op's sem ref moves to the permit */
        lt->nres = 1;
    } else {
        lua_pushnil(lt->co);
        lerr_push(lt->co, rc, rc == MS_E_CLOSED ? "the semaphore is closed" : "cannot acquire",
                  NULL);
        lt->nres = 2;
        ms_sem_unref(o->sem);
    }
    o->sem = NULL;
    return MS_POLL_READY;
}

static void sem_cancel(ltask *lt) {
    sem_op *o = (sem_op *)lt->op.store;
    if (o->sem) {
        ms_sem_waiter_cancel(o->sem, &o->w);
        ms_sem_unref(o->sem);
        o->sem = NULL;
    }
}

static void sem_describe(const ltask *lt, lop_desc *d) {
    const sem_op *o = (const sem_op *)lt->op.store;
    snprintf(d->what, sizeof d->what, "%p, %llu permit%s wanted", (void *)o->sem,
             (unsigned long long)o->n, o->n == 1 ? "" : "s");
}

static const lop_kind sem_kind = {"semaphore", sem_describe};

int op_sem_acquire(lua_State *L, ltask *lt, ms_sem *s, uint64_t n, double timeout) {
    sem_op *o = (sem_op *)lt->op.store;
    if (!set_deadline(L, lt, timeout))
        return 0;
    o->sem = ms_sem_ref(s);
    o->n = n;
    ms_sem_waiter_init(&o->w, n);
    lt->op.kind = &sem_kind;
    return suspend(L, lt, sem_poll, sem_cancel);
}

/* ---- channels: values travel as xfer blobs ---- */

typedef struct chan_op {
    ms_chan *ch;                /* a reference */
    xfer *value;                /* send: ours until the channel takes it */
    ms_chan_waiter w;
} chan_op;

_Static_assert(sizeof(chan_op) <= sizeof(((lop *)0)->store), "chan_op fits the op store");

static void chan_describe(const ltask *lt, lop_desc *d) {
    const chan_op *o = (const chan_op *)lt->op.store;
    snprintf(d->what, sizeof d->what, "%p", (void *)o->ch);
}

static const lop_kind chan_send_kind = {"channel send", chan_describe};
static const lop_kind chan_recv_kind = {"channel receive", chan_describe};

static ms_poll chan_send_poll(ltask *lt, ms_cx *cx) {
    chan_op *o = (chan_op *)lt->op.store;
    int rc;
    if (ms_chan_send_poll(o->ch, &o->w, o->value, cx, &rc) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (rc == 0) {
        lua_pushboolean(lt->co, 1);
        lt->nres = 1;
    } else {
        xfer_free(o->value);
        lua_pushnil(lt->co);
        lerr_push(lt->co, rc, rc == MS_E_CLOSED ? "the channel is closed" : "cannot send", NULL);
        lt->nres = 2;
    }
    o->value = NULL;
    ms_chan_unref(o->ch);
    o->ch = NULL;
    return MS_POLL_READY;
}

static void chan_send_cancel(ltask *lt) {
    chan_op *o = (chan_op *)lt->op.store;
    if (!o->ch)
        return;
    if (!ms_chan_waiter_cancel(o->ch, &o->w))
        xfer_free(o->value); /* still ours: the send did not happen */
    o->value = NULL;
    ms_chan_unref(o->ch);
    o->ch = NULL;
}

int op_chan_send(lua_State *L, ltask *lt, ms_chan *ch, xfer *value, double timeout) {
    chan_op *o = (chan_op *)lt->op.store;
    if (!set_deadline(L, lt, timeout)) {
        xfer_free(value);
        return 0;
    }
    o->ch = ms_chan_ref(ch);
    o->value = value;
    ms_chan_waiter_init(&o->w);
    lt->op.kind = &chan_send_kind;
    return suspend(L, lt, chan_send_poll, chan_send_cancel);
}

void op_chan_send_adopt(ltask *lt, ms_chan *ch, xfer *v) {
    chan_op *o = (chan_op *)lt->op.store;
    o->ch = ms_chan_ref(ch);
    o->value = v;
    ms_chan_waiter_init(&o->w);
    lt->op.poll = chan_send_poll;
    lt->op.cancel = chan_send_cancel;
    lt->op.kind = &chan_send_kind;
    lt->op.parked = false;
}

static ms_poll chan_recv_poll(ltask *lt, ms_cx *cx);
static void chan_recv_cancel(ltask *lt);

void op_chan_recv_adopt(ltask *lt, ms_chan *ch) {
    chan_op *o = (chan_op *)lt->op.store;
    o->ch = ms_chan_ref(ch);
    o->value = NULL;
    ms_chan_waiter_init(&o->w);
    lt->op.poll = chan_recv_poll;
    lt->op.cancel = chan_recv_cancel;
    lt->op.kind = &chan_recv_kind;
    lt->op.parked = false;
}

static ms_poll chan_recv_poll(ltask *lt, ms_cx *cx) {
    chan_op *o = (chan_op *)lt->op.store;
    int rc;
    void *v = NULL;
    if (ms_chan_recv_poll(o->ch, &o->w, cx, &v, &rc) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (rc == 0) {
        decode_owned(lt->co, v);
        lt->nres = 1;
    } else {
        lua_pushnil(lt->co);
        lua_pushliteral(lt->co, "closed");
        lt->nres = 2;
    }
    ms_chan_unref(o->ch);
    o->ch = NULL;
    return MS_POLL_READY;
}

static void chan_recv_cancel(ltask *lt) {
    chan_op *o = (chan_op *)lt->op.store;
    if (o->ch) {
        ms_chan_waiter_cancel(o->ch, &o->w);
        ms_chan_unref(o->ch);
        o->ch = NULL;
    }
}

int op_chan_recv(lua_State *L, ltask *lt, ms_chan *ch, double timeout) {
    chan_op *o = (chan_op *)lt->op.store;
    if (!set_deadline(L, lt, timeout))
        return 0;
    o->ch = ms_chan_ref(ch);
    o->value = NULL;
    ms_chan_waiter_init(&o->w);
    lt->op.kind = &chan_recv_kind;
    return suspend(L, lt, chan_recv_poll, chan_recv_cancel);
}
