/*
 * ops.h - pending operations: what a coroutine task waits on (a sleep, a
 * join, a receive, a call, a blocking job, a channel or semaphore wait,
 * an interval tick), polled by the agent's scheduler with the task's own
 * waker; and reply slots for agent:call.
 */
#ifndef MS_AGENTS_OPS_H
#define MS_AGENTS_OPS_H

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "fwd.h"
#include "ms.h"

/* The userdata behind an ms.interval iterator.  iv and waiter: agent
 * thread only.  The host keeps every live one on a list (tprev, tnext,
 * under the host's lock; host_track_interval) so that it can free what is
 * left at shutdown: adding and removing are O(1), whatever the number of
 * intervals. */
struct lint {
    ms_interval *iv;
    ltask *waiter;              /* the task waiting on it, or NULL */
    lint *tprev, *tnext;        /* the host's list, under the host's lock */
};

typedef ms_poll (*lop_poll_fn)(ltask *lt, ms_cx *cx);
typedef void (*lop_cancel_fn)(ltask *lt);

/* What a waiting task waits on, as the task dump (tasks.c) shows it. */
typedef struct lop_desc {
    char what[112];             /* "agent db (#12)", "channel 0x7f.. (send)" */
    uint64_t agent_id;          /* the agent it waits for (a call), else 0 */
} lop_desc;

/* An operation's kind: every operation that suspends a task names one in
 * lop.kind (a static descriptor beside its poll function, set just before
 * it suspends), so that a new operation describes itself without the dump
 * knowing it.  describe runs
 * on the agent's thread during a dump, with the task suspended on the
 * operation; it reads the op's fields and writes d (what is already 0);
 * it must not call Lua or take a lock that the operation's wakers hold
 * for long.  NULL describe: the name alone. */
typedef struct lop_kind {
    const char *name;           /* "receive", "call", "sleep", ... */
    void (*describe)(const ltask *lt, lop_desc *d);
} lop_kind;

struct lop {
    lop_poll_fn poll;           /* NULL: no operation (a plain yield) */
    lop_cancel_fn cancel;
    /* What it waits on (NULL: shown as "an operation"), and since when
     * (the start of the agent's poll in which the wait began, in cpuclock
     * ticks: no extra clock read).  Set with the poll function. */
    const lop_kind *kind;
    uint64_t since;
    ms_timer *deadline;         /* optional timeout */
    bool timed_out;
    /* Completed only by a call on the agent's own thread, never by a
     * wake: the poll right after the yield is skipped (lchan.c). */
    bool parked;
    /* Made by its poll right before the task's next resume, never before
     * (a send deferred by the send slice, lms_agent.c): the task waits
     * READY in the run queue meanwhile, and an abort cancels it (the
     * message is then not sent, and the send never returned). */
    bool at_resume;
    union {
        struct { ms_timer *t; uint64_t until_ns; } sleep;
        /* handle_ref anchors the target's handle, where the outcome
         * will be; abort: ms.timeout's join, which aborts on cancel. */
        struct { ltask *target; int handle_ref; bool registered, abort; } join;
        struct { int dummy; } recv;
        struct { reply_slot *slot; uint64_t target_id; } call;
        struct { ms_task *job; lua_State *co; int co_ref; int nargs; } blocking;
        struct { lint *iv; } interval;
        void *any[6];
    } u;
    /* Operation-specific storage (sync waiters), see ops.c. */
    char store[128] __attribute__((aligned(16)));
};

/* Polls lt's operation once (agent thread; may decode into lt's state, so
 * it runs inside the agent's protected poll). */
ms_poll op_poll_now(ltask *lt, ms_cx *cx);
int op_sleep(lua_State *L, ltask *lt, double seconds);
int op_yield(lua_State *L, ltask *lt);
/* Joins the task whose handle is at handle_idx; abort: ms.timeout's join,
 * which aborts the target when it times out. */
int op_join(lua_State *L, ltask *lt, int handle_idx, double timeout, bool abort);
int op_recv(lua_State *L, ltask *lt, double timeout);
int op_call(lua_State *L, ltask *lt, agent *target, int msg_idx, double timeout);
int op_blocking(lua_State *L, ltask *lt, int nargs);
int op_interval_next(lua_State *L, ltask *lt, lint *iv);
void op_cancel(ltask *lt);
/* Clears lt's operation (and frees its deadline timer). */
void op_reset(ltask *lt);
/* The same, leaving the operation store as it is. */
void op_reset_light(ltask *lt);
/* Arms lt's operation deadline (timeout < 0: none); raises on failure. */
void op_set_deadline(lua_State *L, ltask *lt, double timeout);
/* Records poll/cancel as lt's operation and yields the top nvals values
 * of L (they stay on the suspended coroutine's stack).  Set lt->op.kind
 * first, so that a dump can say what the task waits on. */
int op_suspend(lua_State *L, ltask *lt, lop_poll_fn poll, lop_cancel_fn cancel, int nvals);
/* Yields with the top n values of L as the results of an operation that
 * is already complete: the task goes to the back of the run queue. */
int op_yield_results(lua_State *L, ltask *lt, int n);
/* Returns the top n values of L as the results of an operation that
 * completed at once, without a trip through the scheduler; to stay fair
 * to the agent's other coroutines, every OP_FAST_STREAK-th such return in
 * one run of a coroutine yields anyway (op_yield_results). */
#define OP_FAST_STREAK 64
int op_return_fast(lua_State *L, ltask *lt, int n);
/* Turns lt's pending operation into a core channel send of v (taking it)
 * or a receive on ch, keeping its deadline; not polled yet. */
void op_chan_send_adopt(ltask *lt, ms_chan *ch, xfer *v);
void op_chan_recv_adopt(ltask *lt, ms_chan *ch);
int op_sem_acquire(lua_State *L, ltask *lt, ms_sem *s, uint64_t n, double timeout);
int op_chan_send(lua_State *L, ltask *lt, ms_chan *ch, xfer *value, double timeout);
int op_chan_recv(lua_State *L, ltask *lt, ms_chan *ch, double timeout);

/* Reply slots: refcounted, any thread. */
reply_slot *reply_new(void);
void reply_ref(reply_slot *r);
void reply_unref(reply_slot *r);
/* Fills the slot once; false if already filled or abandoned.  body NULL:
 * the answer could not be built (out of memory); the caller gets nil and
 * "no reply: ..." at once instead of waiting for the handle to go. */
bool reply_fill(reply_slot *r, xfer *body);
/* cluster.c: a slot whose caller is on another host.  forward(ctx, body)
 * runs once, with the answer (taken over) or NULL when none will come
 * (the slot dropped unanswered); set before the slot is shared. */
void reply_set_forward(reply_slot *r, void (*forward)(void *ctx, xfer *body), void *ctx);

#endif
