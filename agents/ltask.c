/*
 * ltask.c - coroutine tasks and the agent's cooperative scheduler.
 *
 * An agent's poll (agent.c) takes the coroutines woken since the last
 * poll, re-polls their pending operations, and resumes the ready ones in
 * FIFO order until none is ready or the coop budget is spent.  A
 * coroutine that calls a blocking ms.* function yields all the way back
 * here with an operation (ops.h); it is resumed with the operation's
 * results.  A wake concerns one coroutine: its waker pushes it on the
 * agent's woken stack and wakes the agent's task.
 *
 * Costs: a wake is an exchange plus a CAS push plus the task wake; a
 * resume is lua_resume.  An idle agent holds its Lua state and nothing
 * runs for it.
 *
 * Everything here runs on the thread polling the agent, inside its
 * protected poll, except the wakers (any thread, atomics only).
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "lerr.h"
#include "lms_task.h"
#include "ltask.h"
#include "ops.h"

void ltask_ref(ltask *lt) {
    atomic_fetch_add_explicit(&lt->refs, 1, memory_order_relaxed);
}

void ltask_unref(ltask *lt) {
    if (atomic_fetch_sub_explicit(&lt->refs, 1, memory_order_acq_rel) == 1) {
        agent *a = lt->a;
        free(lt);
        agent_unref(a);
    }
}

/* The woken stack of an agent that has been torn down (ltask_drop_woken):
 * a wake that comes later (a timer firing before the state's finalizers
 * cancel it, a channel shared with another agent) drops its reference
 * instead of queueing, since nobody will drain the stack again; queued,
 * the reference would keep the ltask, and through it the agent, for ever. */
#define WOKEN_CLOSED ((ltask *)(uintptr_t)1)

void ltask_wake_by_ref(ltask *lt) {
    if (atomic_exchange_explicit(&lt->notified, 1, memory_order_acq_rel))
        return; /* already on the stack, not yet drained */
    agent *a = lt->a;
    ltask_ref(lt); /* the stack's reference */
    ltask *head = atomic_load_explicit(&a->woken, memory_order_relaxed);
    do {
        if (head == WOKEN_CLOSED) {
            ltask_unref(lt);
            return;
        }
        lt->next_woken = head;
    } while (!atomic_compare_exchange_weak_explicit(&a->woken, &head, lt, memory_order_release,
                                                    memory_order_relaxed));
    ms_waker_wake_by_ref(&a->self_waker);
}

static void runq_push(agent *a, ltask *lt);

void ltask_make_ready(ltask *lt) {
    op_reset_light(lt);
    lt->status = LT_READY;
    runq_push(lt->a, lt);
}

void ltask_poll_op(ltask *lt, ms_cx *cx) {
    if (lt->status == LT_WAITING && op_poll_now(lt, cx) == MS_POLL_READY) {
        lt->status = LT_READY;
        runq_push(lt->a, lt);
    }
}

static ms_waker lw_clone(void *data) {
    ltask_ref(data);
    return (ms_waker){&ltask_waker_vtable, data};
}
static void lw_wake(void *data) {
    ltask_wake_by_ref(data);
    ltask_unref(data);
}
static void lw_wake_by_ref(void *data) {
    ltask_wake_by_ref(data);
}
static void lw_drop(void *data) {
    ltask_unref(data);
}
const ms_waker_vtable ltask_waker_vtable = {lw_clone, lw_wake, lw_wake_by_ref, lw_drop};

static void runq_push(agent *a, ltask *lt) {
    lt->next_run = NULL;
    if (a->runq_tail)
        a->runq_tail->next_run = lt;
    else
        a->runq_head = lt;
    a->runq_tail = lt;
}

static void runq_push_front(agent *a, ltask *lt) {
    lt->next_run = a->runq_head;
    a->runq_head = lt;
    if (!a->runq_tail)
        a->runq_tail = lt;
}

static ltask *runq_pop(agent *a) {
    ltask *lt = a->runq_head;
    if (lt) {
        a->runq_head = lt->next_run;
        if (!a->runq_head)
            a->runq_tail = NULL;
        lt->next_run = NULL;
    }
    return lt;
}

static void runq_remove(agent *a, ltask *lt) {
    ltask *prev = NULL;
    for (ltask *p = a->runq_head; p; prev = p, p = p->next_run) {
        if (p != lt)
            continue;
        if (prev)
            prev->next_run = p->next_run;
        else
            a->runq_head = p->next_run;
        if (a->runq_tail == p)
            a->runq_tail = prev;
        p->next_run = NULL;
        return;
    }
}

ltask *ltask_spawn(agent *a, lua_State *L, int nargs) {
    /* A finalizer run while the state closes must not start a task that
     * nothing would ever end. */
    if (a->tearing_down)
        luaL_error(L, "agent %s has exited: no new task", a->name);
    /* The coroutine first: making it may raise, and nothing in C is taken
     * yet. */
    lua_State *co = lua_newthread(L);
    int co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ltask *lt = calloc(1, sizeof *lt);
    if (!lt) {
        luaL_unref(L, LUA_REGISTRYINDEX, co_ref);
        return NULL;
    }
    atomic_init(&lt->refs, 1); /* the scheduler's */
    atomic_init(&lt->notified, 0);
    agent_ref(a);
    lt->a = a;
    lt->id = ++a->next_ltask_id;
    lt->handle_ref = LUA_NOREF;
    lt->co = co;
    lt->co_ref = co_ref;
    lua_xmove(L, lt->co, nargs + 1);
    lt->nres = nargs;
    lt->status = LT_READY;
    lt->next_all = a->all;
    if (a->all)
        a->all->prev_all = lt;
    a->all = lt;
    runq_push(a, lt);
    return lt;
}

ltask *ltask_current(lua_State *L, const char *fname) {
    agent *a = agent_from_state(L);
    if (!a || !a->current || a->current->co != L) {
        luaL_error(L,
                   "%s must be called from an agent's task (ms.run, ms-host run, ms.spawn or an "
                   "agent), not from a plain coroutine%s",
                   fname, a ? "" : " (no agent runs in this Lua state)");
        return NULL;
    }
    ltask *lt = a->current;
    /* LuaJIT cannot yield across a C function (a table.sort comparator, a
     * string.gsub callback, a metamethod, require running a module's top
     * level): say so, naming the call, rather than its bare message. */
    if (!lua_isyieldable(L))
        luaL_error(L,
                   "%s cannot wait here: it was called from inside a C function (a table.sort "
                   "comparator, a string.gsub callback, a metamethod, or require running a "
                   "module's top level), which a task cannot yield across",
                   fname);
    /* A running task has no operation pending; one left over would be from
     * a call whose yield failed, and must not be waited on. */
    if (lt->op.poll)
        op_cancel(lt);
    return lt;
}

int ltask_wait(lua_State *L, ltask *lt) {
    return lua_yield(L, 0);
}

/* Ends lt (done, failed or aborted): its handle (which has the results or
 * error by now) gets the status, its joiners are woken to read it there,
 * and the coroutine goes. */
static void ltask_finish(agent *a, ltask *lt, lt_status st) {
    lt->status = st;
    task_handle_release(a->L, lt, st);
    for (ltask *j = lt->joiners; j;) {
        ltask *next = j->join_next;
        j->join_next = NULL;
        ltask_wake_by_ref(j);
        ltask_unref(j);
        j = next;
    }
    lt->joiners = NULL;
    if (lt->prev_all)
        lt->prev_all->next_all = lt->next_all;
    else if (a->all == lt)
        a->all = lt->next_all;
    if (lt->next_all)
        lt->next_all->prev_all = lt->prev_all;
    lt->next_all = lt->prev_all = NULL;
    luaL_unref(a->L, LUA_REGISTRYINDEX, lt->co_ref);
    lt->co_ref = LUA_NOREF;
    lt->co = NULL;
}

/* An aborted task's message that its code never saw is unread. */
static void drop_held(agent *a, ltask *lt) {
    if (lt->holds_msg) {
        lt->holds_msg = false;
        a->unread_dropped++;
    }
}

void ltask_abort(ltask *lt) {
    agent *a = lt->a;
    if (lt->status == LT_DONE || lt->status == LT_FAILED || lt->status == LT_ABORTED ||
        lt->status == LT_RUNNING)
        return;
    if (lt->status == LT_WAITING || lt->op.at_resume)
        op_cancel(lt);
    drop_held(a, lt);
    runq_remove(a, lt);
    ltask_finish(a, lt, LT_ABORTED);
    ltask_unref(lt); /* the scheduler's reference */
}

ltask *ltask_next_ready(agent *a) {
    return runq_pop(a);
}

void ltask_abort_all(agent *a) {
    while (a->all) {
        ltask *lt = a->all;
        if (lt->status == LT_WAITING || lt->op.at_resume)
            op_cancel(lt);
        drop_held(a, lt);
        runq_remove(a, lt);
        ltask_finish(a, lt, LT_ABORTED);
        ltask_unref(lt);
    }
}

void ltask_drop_woken(agent *a) {
    ltask *w = atomic_exchange(&a->woken, WOKEN_CLOSED);
    while (w && w != WOKEN_CLOSED) {
        ltask *next = w->next_woken;
        ltask_unref(w);
        w = next;
    }
}

/* The stack is LIFO: it is reversed so that wakes are served in order. */
void ltask_drain_woken(agent *a, ms_cx *cx) {
    ltask *w = atomic_exchange_explicit(&a->woken, NULL, memory_order_acquire);
    ltask *fifo = NULL;
    while (w) {
        ltask *next = w->next_woken;
        w->next_woken = fifo;
        fifo = w;
        w = next;
    }
    while (fifo) {
        ltask *lt = fifo;
        fifo = lt->next_woken;
        atomic_store_explicit(&lt->notified, 0, memory_order_release);
        /* The reference is dropped before the poll: a poll that raises
         * (a finalizer run while it decodes) must not leak it; the
         * scheduler's own reference keeps lt alive meanwhile. */
        bool waiting = lt->status == LT_WAITING;
        ltask_unref(lt);
        if (waiting && op_poll_now(lt, cx) == MS_POLL_READY) {
            lt->status = LT_READY;
            runq_push(a, lt);
        }
    }
}

/* A failed coroutine: its error value (kept for joins and, for the main
 * one, for the exit).  The raised value is read without running any of
 * its code (lerr_message); a non-string one stays reachable as
 * err.value. */
static bool resume_failed(agent *a, ltask *lt, int rc) {
    lua_State *L = a->L;
    bool oom = rc == LUA_ERRMEM || atomic_exchange(&a->oom, false);
    if (oom)
        lua_gc(L, LUA_GCCOLLECT, 0);
    /* Kept in the agent, not in locals, until the next failure or the
     * agent's end: what follows allocates in L and may raise, and the
     * protected poll must not leak them then. */
    free(a->fail_traceback);
    a->fail_traceback = NULL;
    a->fail_traceback = lerr_traceback(L, lt->co);
    free(a->fail_message);
    a->fail_message = lerr_message(lt->co);
    const char *m = a->fail_message, *tb = a->fail_traceback;
    int code = oom ? MS_E_NO_MEMORY : MS_E_TASK_FAILED;
    lerr_push(L, code, m, tb);
    if (!oom && lua_gettop(lt->co) > 0 && lua_type(lt->co, -1) != LUA_TSTRING) {
        lua_xmove(lt->co, L, 1);
        lua_setfield(L, -2, "value");
    }
    bool main = lt->is_main;
    bool stopped = atomic_load_explicit(&a->stop_requested, memory_order_acquire);
    if (main) {
        lua_pushvalue(L, -1);
        a->exit_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        agent_exit(a, oom ? "oom" : stopped ? "killed" : "error",
                   stopped ? MS_E_TASK_CANCELLED : code, m, tb);
    }
    task_handle_set_error(L, lt);
    ltask_finish(a, lt, LT_FAILED);
    ltask_unref(lt);
    return main;
}

bool ltask_resume(agent *a, ltask *lt, ms_cx *cx) {
    a->current = lt;
    a->cx = cx;
    a->fast_streak = 0;
    lt->status = LT_RUNNING;
    /* A deferred send is made now, with nothing between it and the task
     * seeing its result: no stop can leave a message sent whose send
     * never returned. */
    if (lt->op.at_resume)
        op_poll_now(lt, cx);
    int nargs = lt->nres;
    lt->nres = 0;
    lt->holds_msg = false; /* its code gets the message now */
    a->enforce_limit = true;
    agent *outer = agent_running();
    agent_set_running(a);
    int rc = lua_resume(lt->co, nargs);
    agent_set_running(outer);
    a->enforce_limit = false;
    a->current = NULL;
    a->cx = NULL;
    if (rc == LUA_YIELD) {
        if (!lt->op.poll) {
            /* ms.yield, or a coroutine.yield at the top of a task: the
             * yielded values are dropped and the task goes to the back.
             * A time slice's yield (agent.c, stop_hook) goes to the
             * front: the agent's other tasks never run in the middle of
             * code that did not yield. */
            lua_settop(lt->co, 0);
            lt->status = LT_READY;
            if (a->sliced)
                runq_push_front(a, lt);
            else
                runq_push(a, lt);
            return false;
        }
        if (lt->op.at_resume) {
            lt->status = LT_READY;
            runq_push(a, lt);
            return false;
        }
        lt->status = LT_WAITING;
        if (!lt->op.parked && op_poll_now(lt, cx) == MS_POLL_READY) {
            lt->status = LT_READY;
            runq_push(a, lt);
        }
        return false;
    }
    if (rc != 0)
        return resume_failed(a, lt, rc);
    task_handle_set_results(a->L, lt, lt->co, lua_gettop(lt->co));
    bool main = lt->is_main;
    ltask_finish(a, lt, LT_DONE);
    ltask_unref(lt);
    return main;
}
