/*
 * ltask.h - coroutine tasks and the agent's cooperative scheduler.
 *
 * An ltask is a coroutine of an agent (ms.spawn, and the agent's main
 * function).  It runs until it finishes or yields with a pending operation
 * (ops.h); the operation is polled with the ltask's own waker, so a wake
 * re-polls only the coroutine it concerns.  The run queue and every field
 * not marked otherwise belong to the thread polling the agent.
 */
#ifndef MS_AGENTS_LTASK_H
#define MS_AGENTS_LTASK_H

#include <lua.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fwd.h"
#include "ms.h"
#include "ops.h"

typedef enum lt_status { LT_READY, LT_WAITING, LT_RUNNING, LT_DONE, LT_FAILED, LT_ABORTED } lt_status;

struct ltask {
    _Atomic uint32_t refs;      /* scheduler + Lua handle + wakers */
    agent *a;                   /* immutable; the ltask holds a ref */
    uint64_t id;                /* immutable */
    /* Agent thread only: */
    lua_State *co;
    int co_ref;                 /* registry ref anchoring co */
    lt_status status;
    bool is_main;
    int nres;                   /* values to pass to the next resume */
    lop op;
    ltask *next_run;            /* run queue */
    ltask *next_all, *prev_all; /* the agent's list of live ltasks */
    ltask *joiners;             /* waiting in join, linked by join_next */
    ltask *join_next;
    /* The task's handle (registry ref) while the task is unfinished, or
     * LUA_NOREF if it has none: its outcome goes there (lms_task.c). */
    int handle_ref;
    /* Set (exchange) by wakers on any thread, cleared by the scheduler. */
    _Atomic uint32_t notified;
    ltask *next_woken;          /* written by the one waker that set notified */
};

extern const ms_waker_vtable ltask_waker_vtable;
void ltask_ref(ltask *lt);
void ltask_unref(ltask *lt);

/* The running ltask of L's agent, or raises a Lua error naming fname when
 * L is not a coroutine the agent scheduler runs. */
ltask *ltask_current(lua_State *L, const char *fname);
/* Creates a coroutine task running the function at the top of L with the
 * nargs values below it (moved onto the coroutine); it joins the run
 * queue.  Allocates in L: raises on a memory error.  NULL without C
 * memory. */
ltask *ltask_spawn(agent *a, lua_State *L, int nargs);
void ltask_abort(ltask *lt);
/* Suspends the running ltask on its op: `return ltask_wait(L, lt);` */
int ltask_wait(lua_State *L, ltask *lt);
void ltask_wake_by_ref(ltask *lt);
/* On the agent's thread during a resume (a->cx set): lt's operation is
 * complete (its results pushed, nres set); it joins the run queue now. */
void ltask_make_ready(ltask *lt);
/* Polls lt's operation once now with cx (a->cx); ready ones join the run
 * queue. */
void ltask_poll_op(ltask *lt, ms_cx *cx);
/* Takes the coroutines woken since the last look and re-polls their
 * operations; the ready ones join the run queue. */
void ltask_drain_woken(agent *a, ms_cx *cx);
/* The next ready task, or NULL. */
ltask *ltask_next_ready(agent *a);
/* Resumes lt once and handles the outcome.  Returns true if the agent's
 * main coroutine ended (the agent's exit is then recorded). */
bool ltask_resume(agent *a, ltask *lt, ms_cx *cx);
/* Ends every coroutine of a, waiting or ready, as aborted. */
void ltask_abort_all(agent *a);
/* Drops the references on a's woken stack and closes it (the agent is
 * ending): a later wake pushes nothing. */
void ltask_drop_woken(agent *a);

#endif
