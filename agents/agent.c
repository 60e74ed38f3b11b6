/*
 * agent.c - an agent's life: its state and allocator, starting, the
 * protected poll, graceful and forced stops, exit and teardown; and the
 * main agent of ms.run.
 *
 * The protected poll.  Everything the host does inside an agent's state
 * while polling it (decoding messages, building error values and task
 * results, opening libraries, resuming coroutines) runs inside one
 * lua_pcall on the agent's poll thread (a->Lp), so that a raise the host
 * did not expect -- a __gc finalizer run by a collection step during a
 * decode, an allocation failure in host bookkeeping -- ends this agent
 * with reason "error" or "oom" and never reaches LuaJIT's panic.  The
 * first poll, which opens the state, uses lua_cpcall (its closure is made
 * inside the protection); it leaves the poll function at the bottom of
 * Lp's stack, so later polls push it without allocating.  Closing a state
 * (lua_close) runs finalizers protected by itself.
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cluster.h"
#include "cluster_names.h"
#include "cpuclock.h"
#include "events.h"
#include "hold.h"
#include "iohandle.h"
#include "host.h"
#include "hostlog.h"
#include "lerr.h"
#include "libs.h"
#include "ltask.h"
#include "mail.h"
#include "ops.h"
#include "preempt.h"
#include "registry.h"
#include "profiler.h"
#include "smalloc.h"
#include "tasks.h"
#include "xfer.h"

/* Polls after which an agent counts as long-lived and may JIT-compile. */
#define JIT_AFTER_POLLS 32

/* ---- references ---- */

void agent_ref(agent *a) {
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
}

static void agent_free(agent *a) {
    if (a->remote_host) /* cluster.h: a proxy leaves the table first */
        cluster_proxy_free(a);
    /* A cluster name still held here (the exit normally releases it;
     * cluster_claim_bind covers an agent that ended before its bind). */
    cluster_names_agent_ended(a);
    /* Nobody can push any more (pushers hold references), so this
     * drains every message, unread ones included. */
    for (mlink *l; (l = mbox_pop(&a->mbox));)
        msg_free((msg *)l);
    for (uint32_t i = 0; i < a->nmonitors; i++) {
        agent_unref(a->monitors[i].watcher);
        msg_free(a->monitors[i].notice);
    }
    free(a->monitors);
    for (uint32_t i = 0; i < a->nlinks; i++)
        agent_unref(a->links[i]);
    free(a->links);
    xfer_free(a->args);
    free(a->src_text);
    free(a->stop_reason);
    free(a->exit_message);
    free(a->exit_traceback);
    free(a->fail_message);
    free(a->fail_traceback);
    for (int i = 0; i < a->argc; i++)
        free(a->argv[i]);
    free(a->argv);
    ms_waker_drop(&a->self_waker);
    if (a->task)
        ms_task_release(a->task);
    pthread_mutex_destroy(&a->mlock);
    free(a);
}

void agent_unref(agent *a) {
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
        agent_free(a);
}

agent *agent_new(host *h) {
    cpuclock_init();
    agent *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    atomic_init(&a->refs, 1);
    a->h = h;
    a->exit_ref = LUA_NOREF;
    a->main_ref = LUA_NOREF;
    a->Lp_ref = LUA_NOREF;
    pthread_mutex_init(&a->mlock, NULL);
    mbox_init(&a->mbox);
    pthread_mutex_lock(&h->lock); /* the defaults are live-tunable */
    a->mem_limit = h->default_mem_limit;
    a->runaway = h->runaway > 0 ? h->runaway : RUNAWAY_REPORT;
    atomic_init(&a->mailbox_limit, h->mailbox_limit);
    pthread_mutex_unlock(&h->lock);
    return a;
}

/* The agent whose task this thread is running (ltask_resume), or NULL. */
static __thread agent *tl_running;

agent *agent_running(void) {
    return tl_running;
}

void agent_set_running(agent *a) {
    tl_running = a;
}

static void *agent_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

bool agent_in_task(lua_State *L) {
    agent *r = tl_running;
    return r && r->current && r->current->co == L;
}

agent *agent_from_state(lua_State *L) {
    /* The running task's coroutine is by far the most common caller. */
    agent *r = tl_running;
    if (r && r->current && r->current->co == L)
        return r;
    /* An agent's own state carries the agent as its allocator's userdata:
     * no table lookup on every ms.* call.  The main agent of ms.run uses
     * its caller's state and is found through the registry. */
    void *ud;
    if (lua_getallocf(L, &ud) == agent_alloc)
        return ud;
    lua_getfield(L, LUA_REGISTRYINDEX, "ms.current_agent");
    agent *a = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return a;
}

/* ---- the allocator: one per agent, for its memory limit ---- */

static void *agent_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    agent *a = ud;
    size_t used = atomic_load_explicit(&a->mem_used, memory_order_relaxed);
    if (!ptr)
        osize = 0;
    if (nsize == 0) {
        sm_realloc(ptr, osize, 0);
        atomic_store_explicit(&a->mem_used, used - osize, memory_order_relaxed);
        return NULL;
    }
    if (a->mem_limit && a->enforce_limit && nsize > osize && used + (nsize - osize) > a->mem_limit) {
        atomic_store_explicit(&a->oom, true, memory_order_relaxed);
        return NULL;
    }
    void *p = sm_realloc(ptr, osize, nsize);
    if (p)
        atomic_store_explicit(&a->mem_used, used - osize + nsize, memory_order_relaxed);
    return p;
}

/* Installed by agent_stop on a running agent, with a count of 1: at the
 * next interpreted instruction it yields the running task out to the
 * scheduler, which then ends the agent.  A yield, not an error: pcall does
 * not catch it (LuaJIT yields across pcall), so `while true do pcall(f)
 * end` stops too.  Where the code cannot yield (inside a C function: a
 * table.sort comparator, a metamethod called from C) it raises instead,
 * which leaves that C function, and fires again at every instruction, to
 * yield at the first one back in yieldable code.  Compiled code (a trace)
 * calls no hooks: preempt_interrupt makes it leave to the interpreter,
 * where this fires (preempt.c; docs/host.md, "Stopping agents"). */
static void stop_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    agent *a = agent_from_state(L);
    if (a && a->own_state)
        preempt_clear(a->L);
    bool ending = !a || atomic_load_explicit(&a->stop_requested, memory_order_acquire) ||
                  (!a->shutdown_started &&
                   atomic_load_explicit(&a->shutdown_requested, memory_order_acquire));
    if (!ending) {
        /* A time slice (agent_interrupt while the host is starved): the
         * task yields once, to the front of its agent's queue, and the
         * agent's own hook is back. */
        if (!agent_in_task(L)) {
            /* In a coroutine of the agent's own code: a yield would end
             * its coroutine.resume early (a wrong answer), and the task
             * cannot be reached from here.  Its own hook is back; the
             * health monitor asks again while the host is starved. */
            libs_reset_hook(L);
            return;
        }
        if (!lua_isyieldable(L)) {
            /* Inside a C function (a sort's comparator, a metamethod):
             * try again a thousand instructions on, not at every one, which
             * would slow that code a hundredfold for as long as it runs. */
            lua_sethook(L, stop_hook, LUA_MASKCOUNT, 1000);
            return;
        }
        libs_reset_hook(L);
        a->sliced = true;
        lua_yield(L, 0);
        return;
    }
    if (lua_isyieldable(L))
        lua_yield(L, 0);
    luaL_error(L, "agent stopped");
}

/* Under a->mlock: makes the running task of a state of the agent's own
 * yield at its next instruction, compiled or not. */
static void interrupt_locked(agent *a) {
    /* lua_sethook may be called while the state runs (it is what Lua's own
     * interpreter does from its SIGINT handler); mlock keeps it away from
     * a state being closed.  Only for a state of the agent's own: ms.run's
     * main agent shares its global state (and so its hook) with the
     * caller. */
    if (!a->state_closing && a->own_state && a->L && a->state == AG_RUNNING) {
        lua_sethook(a->L, stop_hook, LUA_MASKCOUNT, 1);
        preempt_interrupt(a->L); /* after the hook: the trace's exit meets it */
    }
}

void agent_interrupt(agent *a) {
    if (a->remote_host)
        return;
    pthread_mutex_lock(&a->mlock);
    interrupt_locked(a);
    pthread_mutex_unlock(&a->mlock);
}

void agent_stop(agent *a, const char *reason) {
    agent_stop_as(a, "killed", reason);
}

void agent_stop_as(agent *a, const char *exit_reason, const char *reason) {
    if (a->remote_host) { /* cluster.h: a proxy's agent is stopped by its host */
        cluster_stop_remote(a, reason ? reason : exit_reason);
        return;
    }
    pthread_mutex_lock(&a->mlock);
    if (a->state != AG_EXITED && !a->stop_reason) {
        a->stop_reason = strdup(reason ? reason : exit_reason);
        snprintf(a->stop_exit_reason, sizeof a->stop_exit_reason, "%s", exit_reason);
    }
    /* Before the hook: a hook that fired first would take the stop for a
     * time slice and put the agent's own hook back. */
    atomic_store_explicit(&a->stop_requested, true, memory_order_release);
    interrupt_locked(a);
    pthread_mutex_unlock(&a->mlock);
    ms_waker_wake_by_ref(&a->self_waker);
}

/* ---- starting ---- */

static int load_main(lua_State *L) {
    agent *a = lua_touserdata(L, 1);
    int rc = 0;
    switch (a->src) {
    case SRC_FN:
        rc = luaL_loadbuffer(L, a->src_text, a->src_len, a->name);
        if (rc == 0 && a->n_ms_upvals) {
            lua_getglobal(L, "ms");
            for (int i = 0; i < a->n_ms_upvals; i++) {
                lua_pushvalue(L, -1);
                lua_setupvalue(L, -3, a->ms_upvals[i]);
            }
            lua_pop(L, 1);
        }
        break;
    case SRC_FILE:
        rc = luaL_loadfile(L, a->src_text);
        break;
    case SRC_MODULE:
        lua_getglobal(L, "require");
        lua_pushstring(L, a->src_text);
        lua_call(L, 1, 1);
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "main");
            lua_remove(L, -2);
        }
        if (!lua_isfunction(L, -1))
            return luaL_error(L, "module '%s' returned %s; an agent module returns its main "
                                 "function (or a table with a main function)",
                              a->src_text, luaL_typename(L, -1));
        break;
    case SRC_STATE:
        break;
    }
    if (rc != 0)
        return lua_error(L);
    return 1;
}

/* lua_newstate installs no panic handler: without one, an error outside
 * any protected call ends the process without a word. */
static int agent_panic(lua_State *L) {
    agent *a = agent_from_state(L);
    hostlog(HOSTLOG_ERROR, "agent.panic", a ? a->id : 0, a ? a->name : NULL,
            "agent %s: unprotected Lua error, the process must stop: %s", a ? a->name : "?",
            lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
    return 0; /* LuaJIT then exits */
}

static void agent_exit_ex(agent *a, const char *reason, int code, const char *message,
                          const char *traceback, bool at_shutdown);

/* Creates the agent's own state (nothing in it yet: libs_open and the
 * rest run in the first, protected, poll). */
static bool open_state(agent *a) {
    lua_State *L = lua_newstate(agent_alloc, a);
    if (!L)
        return false;
    /* Under mlock: agent_stop_as reads L and own_state from another
     * thread to install its hook (TSan, the supervisor spec in-process). */
    pthread_mutex_lock(&a->mlock);
    a->L = a->Lp = L;
    a->own_state = true;
    pthread_mutex_unlock(&a->mlock);
    lua_atpanic(L, agent_panic);
    /* The JIT is decided later (agent_jit_decide, agent_jit.c): every
     * state that compiles takes room in LuaJIT's one machine-code window,
     * so new agents get it while the window has room (and within
     * jit_agent_limit). */
    return true;
}

/* Pushes the main script's arguments (ms-host run) as the global arg
 * (arg[0] the script) and as values; returns how many were pushed. */
static int push_argv(lua_State *L, agent *a) {
    lua_createtable(L, a->argc, 1);
    lua_pushstring(L, a->src == SRC_FILE ? a->src_text : a->name);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < a->argc; i++) {
        lua_pushstring(L, a->argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    lua_checkstack(L, a->argc + 1);
    for (int i = 0; i < a->argc; i++)
        lua_pushstring(L, a->argv[i]);
    return a->argc;
}

/* The first poll's work in the state (protected): the libraries, the main
 * function and its task.  false: the agent has exited (load failure). */
static bool start_in_state(agent *a) {
    lua_State *L = a->L;
    if (a->src == SRC_STATE) {
        /* ms.run: the function and its arguments, left by agent_run_main. */
        lua_rawgeti(L, LUA_REGISTRYINDEX, a->main_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, a->main_ref);
        a->main_ref = LUA_NOREF;
        int t = lua_gettop(L), n = (int)lua_objlen(L, t);
        lua_checkstack(L, n + 1);
        for (int i = 1; i <= n; i++)
            lua_rawgeti(L, t, i);
        lua_remove(L, t);
        a->main = ltask_spawn(a, L, n - 1);
    } else {
        libs_open(L);
        lua_pushlightuserdata(L, a);
        lua_setfield(L, LUA_REGISTRYINDEX, "ms.current_agent");
        lua_pushcfunction(L, load_main);
        lua_pushlightuserdata(L, a);
        a->enforce_limit = true;
        int lrc = lua_pcall(L, 1, 1, 0);
        a->enforce_limit = false;
        if (lrc != 0) {
            bool oom = lrc == LUA_ERRMEM || atomic_exchange(&a->oom, false);
            char *m = lerr_message(L);
            char err[512];
            snprintf(err, sizeof err, "cannot start agent %s: %s%s", a->name, m ? m : "(error)",
                     oom ? " (memory_limit too small to start)" : "");
            free(m);
            agent_exit(a, oom ? "oom" : "error", oom ? MS_E_NO_MEMORY : MS_E_STARTUP_FAILED, err,
                       NULL);
            return false;
        }
        int nargs = 0;
        if (a->args) {
            xfer_decode(L, a->args);
            xfer_free(a->args);
            a->args = NULL;
            nargs = 1;
        } else if (a->main_agent) {
            nargs = push_argv(L, a);
        }
        a->main = ltask_spawn(a, L, nargs);
    }
    if (!a->main) {
        agent_exit(a, "error", MS_E_NO_MEMORY, "no memory for the main task", NULL);
        return false;
    }
    a->main->is_main = true;
    pthread_mutex_lock(&a->mlock);
    a->state = AG_RUNNING;
    pthread_mutex_unlock(&a->mlock);
    const char *keys[] = {"name", "id"};
    const char *strs[] = {a->name, NULL};
    double nums[] = {0, (double)a->id};
    events_publish_host("ms.agent.started", keys, strs, nums, 2);
    /* The main agent of ms-host run compiles from the start, as a plain
     * luajit script would. */
    if (a->main_agent)
        agent_jit_decide(a);
    return true;
}

/* ---- exit ---- */

/* The messages an agent never read go at its exit, not with its last
 * reference (a handle may keep the agent for long): a caller waiting on a
 * reply slot that one of them holds then hears at once that no answer
 * will come.  unread counts the pushes accepted before the close (the
 * messages tasks hold are not in the mailbox and go with them); one may
 * still be linking its message, so wait for it (a few instructions). */
static void drop_unread(agent *a, size_t unread) {
    while (unread > 0) {
        mlink *l = mbox_pop_unread(&a->mbox);
        if (!l) {
            sched_yield();
            continue;
        }
        msg_free((msg *)l);
        unread--;
    }
}

/* Records the agent's end and tells its monitors.  L is still open. */
static void agent_exit_ex(agent *a, const char *reason, int code, const char *message,
                          const char *traceback, bool at_shutdown) {
    /* Unread: what the mailbox still holds, plus the messages taken from
     * it for tasks whose code never saw them (aborted, or about to be in
     * the teardown).  Every message a send accepted is either returned by
     * ms.recv to the agent's code or counted here (docs/host.md). */
    size_t held = a->unread_dropped;
    for (ltask *lt = a->all; lt; lt = lt->next_all)
        held += lt->holds_msg;
    pthread_mutex_lock(&a->mlock);
    a->state = AG_EXITED;
    snprintf(a->exit_reason, sizeof a->exit_reason, "%s", reason);
    a->exit_code = code;
    a->exit_message = message ? strdup(message) : NULL;
    a->exit_traceback = traceback ? strdup(traceback) : NULL;
    size_t in_mbox = mbox_close(&a->mbox);
    size_t unread = in_mbox + held;
    a->unread_at_exit = unread;
    a->received_at_exit = mbox_popped(&a->mbox) - held;
    agent_monitor *mons = a->monitors;
    uint32_t nmons = a->nmonitors;
    a->monitors = NULL;
    a->nmonitors = a->mcap = 0;
    ltask *r = atomic_exchange_explicit(&a->receiver, NULL, memory_order_acq_rel);
    pthread_mutex_unlock(&a->mlock);
    if (r)
        ltask_unref(r);
    /* The name is free before anyone hears of the exit, so a supervisor
     * that restarts the agent on the notice can reuse it (in the cluster's
     * registry a moment later: cluster_names.h). */
    registry_remove(a->h, a);
    if (atomic_load_explicit(&a->name_claim, memory_order_relaxed))
        cluster_names_agent_ended(a);
    {
        const char *keys[] = {"name", "id", "reason", "unread", "message"};
        const char *strs[] = {a->name, NULL, reason, NULL, message};
        double nums[] = {0, (double)a->id, 0, (double)unread, 0};
        events_publish_host("ms.agent.exited", keys, strs, nums, message ? 5 : 4);
    }
    if (at_shutdown) {
        atomic_fetch_add(&a->h->stopped_at_shutdown, 1);
        atomic_fetch_add(&a->h->unread_at_shutdown, unread);
    } else if (unread > 0) {
        hostlog(HOSTLOG_WARNING, "agent.exit_unread", a->id, a->name,
                "agent %s (%llu) exited (%s) with %zu unread message%s", a->name,
                (unsigned long long)a->id, reason, unread, unread == 1 ? "" : "s");
    }
    for (uint32_t i = 0; i < nmons; i++) {
        mail_send_exit_notice(a, mons[i].watcher, mons[i].notice);
        agent_unref(mons[i].watcher);
    }
    free(mons);
    mail_exit_links(a, reason);
    drop_unread(a, in_mbox);
}

void agent_exit(agent *a, const char *reason, int code, const char *message,
                const char *traceback) {
    agent_exit_ex(a, reason, code, message, traceback, false);
}

/* The state-side part of the teardown (protected): every task aborted. */
static int teardown_in_state(lua_State *L) {
    ltask_abort_all(lua_touserdata(L, 1));
    return 0;
}

/* Cancels every coroutine, frees the messages nobody will read and closes
 * the state (if ours). */
static void agent_teardown(agent *a) {
    a->tearing_down = true;
    if (a->L)
        profiler_on_exit(a); /* before the state closes */
    /* The mailbox is closed (agent_exit): what is left in it is counted as
     * unread and freed now, on the agent's thread (its one consumer),
     * rather than with the agent: a message can hold a reference to the
     * agent itself (a send to self, a call's reply slot), and would keep
     * it alive for ever. */
    for (mlink *l; (l = mbox_pop_unread(&a->mbox));)
        msg_free((msg *)l);
    if (a->L && a->all && lua_cpcall(a->Lp, teardown_in_state, a) != 0) {
        /* A raise while aborting (a finalizer): what is left of the tasks
         * goes with the state. */
        lua_pop(a->Lp, 1);
        while (a->all) {
            ltask *lt = a->all;
            a->all = lt->next_all;
            lt->next_all = lt->prev_all = NULL;
            ltask_unref(lt);
        }
    }
    ltask_drop_woken(a);
    /* What it still holds open (sockets, processes) closes now, also for
     * ms.run's agent, whose state is not closed here. */
    ioh_close_all(a);
    if (a->own_state && a->L) {
        pthread_mutex_lock(&a->mlock);
        a->state_closing = true;
        pthread_mutex_unlock(&a->mlock);
        /* A stop's request to leave compiled code may still be set (the
         * agent was stopped while waiting): off before the finalizers. */
        preempt_clear(a->L);
        lua_close(a->L);
        pthread_mutex_lock(&a->mlock);
        a->L = a->Lp = NULL;
        pthread_mutex_unlock(&a->mlock);
    }
    if (a->jit_counted) {
        atomic_fetch_sub(&a->h->jit_agents, 1);
        a->jit_counted = false;
    }
    registry_remove(a->h, a);
}

/* Graceful stop: every task is aborted and one new main task runs the
 * agent's ms.on_shutdown handlers; when it ends, the agent ends with
 * reason "shutdown".  Returns false when there are no handlers. */
static const char shutdown_runner[] =
    "local handlers, name, log = ...\n"
    "for i = 1, #handlers do\n"
    "  local ok, err = pcall(handlers[i])\n"
    "  if not ok then\n"
    "    local shown, text = pcall(tostring, err)\n"
    "    log(('agent %s: on_shutdown handler %d failed: %s'):format(name, i, "
    "shown and type(text) == 'string' and text or '(an error value whose __tostring fails)'))\n"
    "  end\n"
    "end\n";

/* The runner's log: a host log line about the stopping agent (the
 * agent's own ms global may be gone or replaced by its code). */
static int shutdown_log(lua_State *L) {
    agent *a = agent_from_state(L);
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    hostlog_write(HOSTLOG_ERROR, "agent.on_shutdown_failed", a ? a->id : 0, a ? a->name : NULL,
                  text, len);
    return 0;
}

static bool begin_graceful_stop(agent *a) {
    ltask_abort_all(a);
    a->main = NULL;
    lua_State *L = a->L;
    lua_getfield(L, LUA_REGISTRYINDEX, "ms.on_shutdown");
    if (!lua_istable(L, -1) || lua_objlen(L, -1) == 0) {
        lua_pop(L, 1);
        return false;
    }
    if (luaL_loadbuffer(L, shutdown_runner, sizeof shutdown_runner - 1, "=on_shutdown") != 0) {
        lua_pop(L, 2);
        return false;
    }
    lua_insert(L, -2);
    lua_pushstring(L, a->name);
    lua_pushcfunction(L, shutdown_log);
    a->main = ltask_spawn(a, L, 3);
    if (!a->main)
        return false;
    a->main->is_main = true;
    return true;
}

static ms_poll finish_poll(ms_cx *cx, agent *a) {
    tasks_answer_exited(a);
    int code = a->exit_code;
    char reason[16];
    snprintf(reason, sizeof reason, "%s", a->exit_reason);
    char *message = a->exit_message ? strdup(a->exit_message) : NULL;
    agent_teardown(a);
    if (strcmp(reason, "normal") == 0 || strcmp(reason, "shutdown") == 0) {
        free(message);
        return MS_POLL_READY;
    }
    ms_poll p = ms_cx_fail(cx, code ? code : MS_E_TASK_FAILED, "agent %s: %s", a->name,
                           message ? message : reason);
    free(message);
    return p;
}

/* ---- the poll ---- */

/* What the protected part of a poll decided. */
typedef enum { STEP_PENDING, STEP_YIELD, STEP_FINISH } poll_step;

typedef struct poll_ctx {
    agent *a;
    ms_cx *cx;
    poll_step step;
} poll_ctx;

static poll_step exit_now(agent *a, const char *reason, int code, const char *message) {
    agent_exit(a, reason, code, message, NULL);
    return STEP_FINISH;
}

/* A stopped agent ends ("killed", or "runaway" for the health monitor's
 * policy), with the stop's reason as its message. */
static poll_step exit_stopped(agent *a) {
    pthread_mutex_lock(&a->mlock);
    char reason[128], exit_reason[16];
    snprintf(reason, sizeof reason, "%s", a->stop_reason ? a->stop_reason : "killed");
    snprintf(exit_reason, sizeof exit_reason, "%s",
             a->stop_exit_reason[0] ? a->stop_exit_reason : "killed");
    pthread_mutex_unlock(&a->mlock);
    return exit_now(a, exit_reason, MS_E_TASK_CANCELLED, reason);
}

/* The poll inside the agent's state: start, stop requests, then the
 * coroutines woken and ready, until none is left or the budget is spent. */
static poll_step poll_in_state(agent *a, ms_cx *cx) {
    if (!a->started) {
        a->started = true;
        if (!start_in_state(a))
            return STEP_FINISH;
    }
    if (atomic_load_explicit(&a->stop_requested, memory_order_acquire))
        return exit_stopped(a);
    if (!a->shutdown_started &&
        atomic_load_explicit(&a->shutdown_requested, memory_order_acquire)) {
        a->shutdown_started = true;
        if (!begin_graceful_stop(a))
            return exit_now(a, "shutdown", 0, NULL);
    }
    /* A task dump's request, a profile to start or stop: here, between
     * two resumes. */
    tasks_answer(a);
    profiler_poll(a);
    if (!a->jit_decided && a->own_state &&
        atomic_load_explicit(&a->polls, memory_order_relaxed) >= JIT_AFTER_POLLS)
        agent_jit_decide(a);

    /* Alternate between the coroutines woken (by this agent's own tasks or
     * from outside) and the ready ones until neither is left or the budget
     * is spent: a wake between two coroutines of this agent is served in
     * this poll, not after a trip through the executor. */
    uint32_t budget = ms_runtime_budget(a->h->rt);
    a->sends_in_slice = 0;
    for (;;) {
        ltask_drain_woken(a, cx);
        if (!a->runq_head)
            return STEP_PENDING;
        while (a->runq_head) {
            if (budget-- == 0)
                return STEP_YIELD; /* let other agents run */
            ltask *lt = ltask_next_ready(a);
            if (ltask_resume(a, lt, cx)) {
                pthread_mutex_lock(&a->mlock);
                bool running = a->state != AG_EXITED;
                pthread_mutex_unlock(&a->mlock);
                if (running)
                    agent_exit(a, a->shutdown_started ? "shutdown" : "normal", 0, NULL, NULL);
                return STEP_FINISH;
            }
            /* Stopped while it ran (the stop hook yielded it out). */
            if (atomic_load_explicit(&a->stop_requested, memory_order_acquire))
                return exit_stopped(a);
            /* Its time slice ended (agent_interrupt while the host was
             * starved): first again at the next
             * poll, before the agent's other tasks, so that they never run
             * in the middle of its code; other agents run meanwhile. */
            if (a->sliced) {
                a->sliced = false;
                atomic_fetch_add_explicit(&a->slices, 1, memory_order_relaxed);
                return STEP_YIELD;
            }
            /* It sent AGENT_SEND_SLICE messages without waiting: other
             * agents (its receivers among them) run before it goes on. */
            if (a->send_yield) {
                a->send_yield = false;
                return STEP_YIELD;
            }
            /* The host shuts down (agent_interrupt yielded it out): the
             * next poll starts the agent's shutdown. */
            if (!a->shutdown_started &&
                atomic_load_explicit(&a->shutdown_requested, memory_order_acquire))
                return STEP_YIELD;
            if (atomic_load_explicit(&a->blocking_busy, memory_order_acquire))
                return STEP_PENDING;
            /* Coroutines woken meanwhile queue up now, behind the ready
             * ones: a coroutine that keeps yielding cannot hold them back
             * for a whole budget. */
            if (atomic_load_explicit(&a->woken, memory_order_relaxed))
                ltask_drain_woken(a, cx);
        }
    }
}

static int protected_poll(lua_State *L) {
    poll_ctx *pc = lua_touserdata(L, -1);
    lua_pop(L, 1);
    pc->step = poll_in_state(pc->a, pc->cx);
    return 0;
}

/* The first poll: leaves protected_poll at the bottom of Lp's stack for
 * the next ones, then polls. */
static const char poll_fn_key = 0; /* the registry key of protected_poll */

static int first_protected_poll(lua_State *L) {
    poll_ctx *pc = lua_touserdata(L, 1);
    /* This call's own stack goes when it returns: the function waits in
     * the registry until agent_poll moves it to the bottom of the stack. */
    lua_pushlightuserdata(L, (void *)&poll_fn_key);
    lua_pushcfunction(L, protected_poll);
    lua_rawset(L, LUA_REGISTRYINDEX);
    pc->step = poll_in_state(pc->a, pc->cx);
    return 0;
}

/* A raise escaped the host's own work in the state: the agent ends. */
static poll_step poll_raised(agent *a, int rc) {
    bool oom = rc == LUA_ERRMEM || atomic_exchange(&a->oom, false);
    char *m = lerr_message(a->Lp);
    lua_settop(a->Lp, a->poll_fn_ready ? 1 : 0);
    char text[600];
    snprintf(text, sizeof text, "%s (raised in the host's work for the agent: a finalizer or "
             "metamethod run by the collector, or memory)", m ? m : "(no message)");
    free(m);
    pthread_mutex_lock(&a->mlock);
    bool exited = a->state == AG_EXITED;
    pthread_mutex_unlock(&a->mlock);
    if (!exited)
        agent_exit(a, oom ? "oom" : "error", oom ? MS_E_NO_MEMORY : MS_E_TASK_FAILED, text,
                   NULL);
    return STEP_FINISH;
}

static ms_poll poll_agent(ms_cx *cx, agent *a) {
    if (atomic_load_explicit(&a->blocking_busy, memory_order_acquire))
        return MS_POLL_PENDING; /* a blocking job owns the state */
    if (ms_waker_is_null(&a->self_waker)) {
        a->self_waker = ms_waker_clone(ms_cx_waker(cx));
        atomic_store(&a->waker_ready, true);
    }
    if (!a->Lp && !open_state(a)) {
        a->started = true;
        agent_exit(a, "oom", MS_E_NO_MEMORY, "cannot create a Lua state for the agent", NULL);
        return finish_poll(cx, a);
    }
    poll_ctx pc = {a, cx, STEP_FINISH};
    int rc;
    if (a->poll_fn_ready) {
        lua_pushvalue(a->Lp, 1);
        lua_pushlightuserdata(a->Lp, &pc);
        rc = lua_pcall(a->Lp, 1, 0, 0);
    } else {
        rc = lua_cpcall(a->Lp, first_protected_poll, &pc);
        if (rc == 0 && pc.step != STEP_FINISH) {
            /* Raw reads allocate nothing: safe outside the protection. */
            lua_settop(a->Lp, 0);
            lua_pushlightuserdata(a->Lp, (void *)&poll_fn_key);
            lua_rawget(a->Lp, LUA_REGISTRYINDEX);
            a->poll_fn_ready = true;
        }
    }
    if (rc != 0)
        pc.step = poll_raised(a, rc);
    /* What a raise left half-way into the state (hold.h). */
    hold_release_all();
    switch (pc.step) {
    case STEP_PENDING:
        return MS_POLL_PENDING;
    case STEP_YIELD:
        return ms_cx_yield(cx);
    case STEP_FINISH:
        break;
    }
    return finish_poll(cx, a);
}

/* The poll, timed: one read of the cheap clock at each end (cpuclock.h)
 * gives the agent's CPU figure and lets the task dump tell an agent busy
 * in one poll from an idle one. */
ms_poll agent_poll(ms_cx *cx, void *state) {
    agent *a = state;
    atomic_fetch_add_explicit(&a->polls, 1, memory_order_relaxed);
    uint64_t t0 = cpuclock_ticks() | 1; /* never 0: 0 means "between polls" */
    atomic_store_explicit(&a->poll_since, t0, memory_order_relaxed);
    ms_poll p = poll_agent(cx, a);
    uint64_t t1 = cpuclock_ticks();
    atomic_store_explicit(&a->poll_since, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&a->cpu_ticks, t1 > t0 ? t1 - t0 : 0, memory_order_relaxed);
    return p;
}

static void agent_task_drop(void *state) {
    agent *a = state;
    tasks_answer_exited(a);
    /* A cancelled agent (runtime shutdown) never ran its finish. */
    if (a->state != AG_EXITED && !atomic_load(&a->blocking_busy)) {
        agent_exit_ex(a, "killed", MS_E_TASK_CANCELLED, "the runtime shut down", NULL, true);
        agent_teardown(a);
    }
    agent_unref(a); /* the task's reference */
}

bool agent_start(agent *a, char *err, size_t errlen) {
    host *h = a->h;
    if (!registry_add(h, a, err, errlen))
        return false;
    pthread_mutex_lock(&h->lock);
    if (h->phase == HOST_STOPPING && !a->supervised)
        atomic_store(&a->shutdown_requested, true);
    pthread_mutex_unlock(&h->lock);
    agent_ref(a); /* the task's reference */
    ms_task *task = NULL;
    int rc = ms_spawn(h->rt, agent_poll, a, agent_task_drop, &task);
    if (rc != 0) {
        snprintf(err, errlen, "%s", ms_err_name(rc));
        agent_unref(a);
        registry_remove(h, a);
        return false;
    }
    /* Under the host lock: the health monitor's stall reports look for
     * the agent by its task (lifecycle_on_stall) while it is registered. */
    pthread_mutex_lock(&h->lock);
    a->task = task;
    pthread_mutex_unlock(&h->lock);
    return true;
}

/* ---- rows for a:info(), ms.agents() and the metrics ---- */

uint64_t agent_cpu_ns(agent *a) {
    uint64_t done = atomic_load_explicit(&a->cpu_ticks, memory_order_relaxed);
    uint64_t since = atomic_load_explicit(&a->poll_since, memory_order_relaxed);
    uint64_t now = since ? cpuclock_ticks() : 0;
    return cpuclock_ns(done + (since && now > since ? now - since : 0));
}

void agent_get_info(agent *a, agent_info *out) {
    pthread_mutex_lock(&a->mlock);
    out->id = a->id;
    memcpy(out->name, a->name, sizeof out->name);
    out->state = a->state;
    out->mailbox = mbox_len(&a->mbox);
    /* While it runs, the count of messages taken may include one a task
     * is about to get; at its exit, exactly those its code got, so that
     * accepted = received + unread. */
    out->received = a->state == AG_EXITED ? a->received_at_exit : mbox_popped(&a->mbox);
    out->memory = atomic_load_explicit(&a->mem_used, memory_order_relaxed);
    out->memory_limit = a->mem_limit;
    out->polls = atomic_load_explicit(&a->polls, memory_order_relaxed);
    out->cpu_ns = agent_cpu_ns(a);
    out->restarts = a->restarts;
    out->io_handles = atomic_load_explicit(&a->io_count, memory_order_relaxed);
    out->traps_exit = atomic_load_explicit(&a->traps_exit, memory_order_relaxed);
    memcpy(out->exit_reason, a->exit_reason, sizeof out->exit_reason);
    pthread_mutex_unlock(&a->mlock);
}

bool agent_list_info(host *h, agent_info **rows, size_t *n) {
    *rows = NULL;
    *n = 0;
    for (;;) {
        pthread_mutex_lock(&h->lock);
        size_t want = h->nagents;
        pthread_mutex_unlock(&h->lock);
        agent_info *r = malloc((want ? want : 1) * sizeof *r);
        if (!r)
            return false;
        pthread_mutex_lock(&h->lock);
        if (h->nagents > want) { /* more came meanwhile: size again */
            pthread_mutex_unlock(&h->lock);
            free(r);
            continue;
        }
        size_t i = 0;
        /* Lock order: the host lock, then an agent's mlock (as at exit,
         * which takes mlock and releases it before the host lock). */
        for (agent *a = h->agents; a; a = a->next_reg)
            agent_get_info(a, &r[i++]);
        pthread_mutex_unlock(&h->lock);
        *rows = r;
        *n = i;
        return true;
    }
}

/* ---- waiting for an agent from a plain thread ---- */

int agent_join(agent *a, ms_error *err) {
    int rc = ms_task_join(a->task, -1, NULL, err);
    /* The failure as the agent recorded it (a stop's reason, not the
     * executor's "cancelled"). */
    pthread_mutex_lock(&a->mlock);
    if (rc != 0 && a->exit_message)
        rc = ms_error_set(err, a->exit_code ? a->exit_code : rc, "%s", a->exit_message);
    pthread_mutex_unlock(&a->mlock);
    return rc;
}

/* ---- the main agent of ms.run ---- */

int agent_run_main(lua_State *L, int nargs, ms_error *err) {
    host *h = host_get();
    agent *a = agent_new(h);
    if (!a)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for the main agent");
    a->src = SRC_STATE;
    a->own_state = false;
    a->mem_limit = 0;
    snprintf(a->name, sizeof a->name, "main");
    /* The function and its arguments go to the agent's thread in a table
     * (start_in_state); the agent runs in a thread of L, on the workers,
     * while this thread waits. */
    lua_createtable(L, nargs + 1, 0);
    lua_insert(L, -(nargs + 2));
    for (int i = nargs + 1; i >= 1; i--)
        lua_rawseti(L, -(i + 1), i);
    a->main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    a->Lp = lua_newthread(L);
    a->Lp_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    a->L = a->Lp;
    lua_pushlightuserdata(L, a);
    lua_setfield(L, LUA_REGISTRYINDEX, "ms.current_agent");
    char why[256];
    int rc;
    if (!agent_start(a, why, sizeof why)) {
        rc = ms_error_set(err, MS_E_SHUTTING_DOWN, "cannot start the main agent: %s", why);
    } else {
        rc = agent_join(a, err);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, a->main_ref); /* if it never started */
    /* On failure the error value is kept for the caller. */
    if (a->exit_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, a->exit_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, a->exit_ref);
    } else {
        lua_pushnil(L);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, a->Lp_ref);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "ms.current_agent");
    agent_unref(a);
    return rc;
}
