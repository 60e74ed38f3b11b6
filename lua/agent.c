/*
 * agent.c - agents: isolated Lua states scheduled as ms tasks, and the
 * cooperative scheduler of their coroutine tasks.
 *
 * An agent's poll (agent_poll) runs on whichever worker the executor picks
 * (or on the main thread for ms.run): it takes the coroutines woken since
 * the last poll, re-polls their pending operations, and resumes the ready
 * ones in FIFO order until none is ready or the coop budget is spent.  A
 * coroutine that calls a blocking ms.* function yields all the way back
 * here with an operation (host.h, ops.c); it is resumed with the
 * operation's results.  A wake concerns one coroutine: its waker pushes it
 * on the agent's woken stack and wakes the agent's task.
 *
 * Costs: a wake is an exchange plus a CAS push plus the task wake; a
 * resume is lua_resume.  An idle agent holds its Lua state and nothing
 * runs for it.
 */
#define _GNU_SOURCE
#include <luajit.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "smalloc.h"

static host *g_host;

host *host_get(void) {
    return g_host;
}

host *host_init(ms_runtime *rt, bool own) {
    if (g_host)
        return g_host;
    host *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->rt = rt;
    h->own_rt = own;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->hist_lock, NULL);
    h->next_agent_id = 1;
    h->jit_agent_limit = 2000;
    atomic_init(&h->jit_agents, 0);
    g_host = h;
    return h;
}

void host_history_push(host *h, ms_metrics *m, double time) {
    pthread_mutex_lock(&h->hist_lock);
    ms_metrics *old = h->hist_previous;
    h->hist_previous = h->hist_latest;
    h->hist_previous_time = h->hist_latest_time;
    h->hist_latest = m;
    h->hist_latest_time = time;
    pthread_mutex_unlock(&h->hist_lock);
    ms_metrics_free(old);
}

void host_track_interval(ms_interval **slot) {
    host *h = g_host;
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    if (h->nintervals == h->icap) {
        uint32_t cap = h->icap ? h->icap * 2 : 16;
        ms_interval ***grown = realloc(h->intervals, cap * sizeof *grown);
        if (grown) {
            h->intervals = grown;
            h->icap = cap;
        }
    }
    if (h->nintervals < h->icap)
        h->intervals[h->nintervals++] = slot;
    pthread_mutex_unlock(&h->lock);
}

void host_untrack_interval(ms_interval **slot) {
    host *h = g_host;
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    for (uint32_t i = 0; i < h->nintervals; i++)
        if (h->intervals[i] == slot) {
            h->intervals[i] = h->intervals[--h->nintervals];
            break;
        }
    pthread_mutex_unlock(&h->lock);
}

int host_shutdown(void) {
    host *h = g_host;
    int rc = 0;
    if (!h)
        return 0;
    pthread_mutex_lock(&h->lock);
    for (uint32_t i = 0; i < h->nintervals; i++) {
        ms_interval_free(*h->intervals[i]);
        *h->intervals[i] = NULL;
    }
    h->nintervals = 0;
    free(h->intervals);
    h->intervals = NULL;
    pthread_mutex_unlock(&h->lock);
    if (h->own_rt) {
        ms_shutdown_report rep;
        rc = ms_runtime_shutdown(h->rt, MS_SHUTDOWN_CANCEL,
                                 ms_runtime_config(h->rt)->shutdown_timeout_ms, &rep);
        if (rep.abandoned_threads)
            fprintf(stderr,
                    "ms-host: %u thread%s still running after %llu ms (an agent stuck in a "
                    "loop?); exiting without waiting for them\n",
                    rep.abandoned_threads, rep.abandoned_threads == 1 ? " was" : "s were",
                    (unsigned long long)rep.elapsed_ms);
        ms_runtime_free(h->rt);
    }
    uint64_t stopped = atomic_load(&h->stopped_at_shutdown);
    uint64_t unread = atomic_load(&h->unread_at_shutdown);
    if (unread > 0)
        fprintf(stderr,
                "ms-host: shutdown stopped %llu agent%s, leaving %llu message%s unread\n",
                (unsigned long long)stopped, stopped == 1 ? "" : "s", (unsigned long long)unread,
                unread == 1 ? "" : "s");
    events_shutdown();
    free(h->profile_name);
    for (int i = 0; i < h->nprofile_sets; i++)
        free(h->profile_sets[i]);
    free(h->profile_sets);
    free(h->lua_path);
    free(h->lua_cpath);
    ms_waker_drop(&h->lifecycle_waker);
    ms_metrics_free(h->hist_latest);
    ms_metrics_free(h->hist_previous);
    pthread_mutex_destroy(&h->hist_lock);
    pthread_mutex_destroy(&h->lock);
    free(h);
    g_host = NULL;
    return rc;
}

/* ---- registry ---- */

static void registry_add(host *h, agent *a) {
    pthread_mutex_lock(&h->lock);
    a->id = h->next_agent_id++;
    if (!a->name[0]) /* named before anyone can read it through the registry */
        snprintf(a->name, sizeof a->name, "agent-%llu", (unsigned long long)a->id);
    a->next_reg = h->agents;
    if (h->agents)
        h->agents->prev_reg = a;
    h->agents = a;
    h->nagents++;
    agent_ref(a);
    pthread_mutex_unlock(&h->lock);
}

static void registry_remove(host *h, agent *a) {
    pthread_mutex_lock(&h->lock);
    if (a->prev_reg)
        a->prev_reg->next_reg = a->next_reg;
    else if (h->agents == a)
        h->agents = a->next_reg;
    else {
        pthread_mutex_unlock(&h->lock);
        return; /* not registered */
    }
    if (a->next_reg)
        a->next_reg->prev_reg = a->prev_reg;
    a->next_reg = a->prev_reg = NULL;
    h->nagents--;
    pthread_mutex_unlock(&h->lock);
    agent_unref(a);
}

agent *agent_whereis(const char *name) {
    host *h = g_host;
    if (!h || !name || !*name)
        return NULL;
    pthread_mutex_lock(&h->lock);
    agent *found = NULL;
    for (agent *a = h->agents; a; a = a->next_reg)
        if (strcmp(a->name, name) == 0) {
            found = a;
            agent_ref(a);
            break;
        }
    pthread_mutex_unlock(&h->lock);
    return found;
}

/* ---- references ---- */

void agent_ref(agent *a) {
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
}

msg *msg_new(void) {
    msg *m = malloc(sizeof *m);
    if (!m)
        return NULL;
    atomic_init(&m->link.next, NULL);
    m->sender = NULL;
    m->reply = NULL;
    xfer_init(&m->own_body);
    m->body = &m->own_body;
    return m;
}

void msg_free(msg *m) {
    if (m->body == &m->own_body)
        xfer_clear(m->body);
    else
        xfer_free(m->body);
    if (m->sender)
        agent_unref(m->sender);
    if (m->reply)
        reply_unref(m->reply);
    free(m);
}

static void agent_free(agent *a) {
    /* Nobody can push any more (pushers hold references), so this
     * drains every message, unread ones included. */
    for (mlink *l; (l = mbox_pop(&a->mbox));)
        msg_free((msg *)l);
    for (uint32_t i = 0; i < a->nmonitors; i++)
        agent_unref(a->monitors[i]);
    free(a->monitors);
    xfer_free(a->args);
    free(a->src_text);
    free(a->stop_reason);
    free(a->exit_message);
    free(a->exit_traceback);
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

static void *agent_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* The agent whose task this thread is running (resume), or NULL. */
static __thread agent *tl_running;

agent *agent_from_state(lua_State *L) {
    /* The running task's coroutine is by far the most common caller. */
    agent *r = tl_running;
    if (r && r->current && r->current->co == L)
        return r;
    /* An agent's own state carries the agent as its allocator's userdata:
     * no table lookup on every ms.* call.  The main agent (ms.run, ms-host)
     * uses its caller's state and is found through the registry. */
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

/* ---- coroutine tasks ---- */

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

void ltask_wake_by_ref(ltask *lt) {
    if (atomic_exchange_explicit(&lt->notified, 1, memory_order_acq_rel))
        return; /* already on the stack, not yet drained */
    agent *a = lt->a;
    ltask_ref(lt); /* the stack's reference */
    ltask *head = atomic_load_explicit(&a->woken, memory_order_relaxed);
    do {
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
    ltask *lt = calloc(1, sizeof *lt);
    if (!lt)
        return NULL;
    atomic_init(&lt->refs, 1); /* the scheduler's */
    atomic_init(&lt->notified, 0);
    agent_ref(a);
    lt->a = a;
    lt->id = ++a->next_ltask_id;
    lt->handle_ref = LUA_NOREF;
    lt->co = lua_newthread(L);
    lt->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
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

void ltask_abort(ltask *lt) {
    agent *a = lt->a;
    if (lt->status == LT_DONE || lt->status == LT_FAILED || lt->status == LT_ABORTED ||
        lt->status == LT_RUNNING)
        return;
    if (lt->status == LT_WAITING)
        op_cancel(lt);
    runq_remove(a, lt);
    ltask_finish(a, lt, LT_ABORTED);
    ltask_unref(lt); /* the scheduler's reference */
}

/* ---- error values ---- */

void lerr_push(lua_State *L, int code, const char *message, const char *traceback) {
    lua_createtable(L, 0, 7);
    lua_pushstring(L, ms_err_kind_name(ms_err_kind_of(code)));
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, ms_err_name(code));
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message ? message : ms_err_name(code));
    lua_setfield(L, -2, "message");
    if (traceback) {
        lua_pushstring(L, traceback);
        lua_setfield(L, -2, "traceback");
    }
    lua_pushstring(L, ms_severity_name(ms_err_severity(code)));
    lua_setfield(L, -2, "severity");
    ms_recovery r = ms_err_recovery(code);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, ms_recovery_name(r.kind));
    lua_setfield(L, -2, "strategy");
    if (r.kind == MS_RECOVER_RETRY) {
        lua_pushinteger(L, (lua_Integer)r.max_attempts);
        lua_setfield(L, -2, "max_attempts");
        lua_pushnumber(L, (double)r.delay_ms / 1000.0);
        lua_setfield(L, -2, "delay");
    } else if (r.kind == MS_RECOVER_CIRCUIT_BREAKER) {
        lua_pushinteger(L, (lua_Integer)r.failure_threshold);
        lua_setfield(L, -2, "failure_threshold");
        lua_pushnumber(L, (double)r.reset_timeout_ms / 1000.0);
        lua_setfield(L, -2, "reset_timeout");
    }
    lua_setfield(L, -2, "recovery");
    /* tostring(err) gives the message. */
    lms_push_mt(L, LMS_MT_ERROR);
    lua_setmetatable(L, -2);
}

/* ---- mailbox, monitors, exit ---- */

void agent_set_mailbox_limit(agent *a, size_t limit) {
    atomic_store_explicit(&a->mailbox_limit, limit, memory_order_relaxed);
}

int agent_deliver(agent *a, msg *m, char *err, size_t errlen) {
    size_t limit = atomic_load_explicit(&a->mailbox_limit, memory_order_relaxed);
    int r = mbox_push(&a->mbox, &m->link, limit);
    if (r == MBOX_CLOSED) {
        /* exit_reason was written before the mailbox closed (mlock). */
        pthread_mutex_lock(&a->mlock);
        snprintf(err, errlen, "agent %s (%llu) has exited (%s)", a->name,
                 (unsigned long long)a->id, a->exit_reason);
        pthread_mutex_unlock(&a->mlock);
        return MS_E_CLOSED;
    }
    if (r == MBOX_FULL) {
        snprintf(err, errlen, "mailbox of agent %s is full (%zu messages, mailbox_limit)",
                 a->name, limit);
        return MS_E_EXHAUSTED;
    }
    /* Dekker with agent_wait_message: our link is stored before we look
     * for a receiver, its registration before it looks at the mailbox, so
     * one of us sees the other.  Most pushes find nobody waiting (the
     * receiver is busy with earlier messages) and stop at the load. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&a->receiver, memory_order_relaxed)) {
        ltask *rcv = atomic_exchange_explicit(&a->receiver, NULL, memory_order_acq_rel);
        if (rcv) {
            ltask_wake_by_ref(rcv);
            ltask_unref(rcv);
        }
    }
    return 0;
}

msg *agent_take_message(agent *a) {
    return (msg *)mbox_pop(&a->mbox);
}

void agent_wait_message(agent *a, ltask *lt) {
    if (atomic_load_explicit(&a->receiver, memory_order_relaxed) != lt) {
        ltask_ref(lt);
        ltask *old = atomic_exchange_explicit(&a->receiver, lt, memory_order_seq_cst);
        if (old)
            ltask_unref(old);
    }
    /* Dekker with agent_deliver: the caller looks at the mailbox again
     * after this. */
    atomic_thread_fence(memory_order_seq_cst);
}

void agent_unwait_message(agent *a, ltask *lt) {
    ltask *expected = lt;
    if (atomic_compare_exchange_strong_explicit(&a->receiver, &expected, NULL,
                                                memory_order_acq_rel, memory_order_relaxed))
        ltask_unref(lt);
}

ltask *agent_receiver(agent *a) {
    return atomic_load_explicit(&a->receiver, memory_order_relaxed);
}

void agent_add_monitor(agent *target, agent *watcher) {
    pthread_mutex_lock(&target->mlock);
    bool exited = target->state == AG_EXITED;
    if (!exited && target->nmonitors == target->mcap) {
        uint32_t cap = target->mcap ? target->mcap * 2 : 4;
        agent **m = realloc(target->monitors, cap * sizeof *m);
        if (m) {
            target->monitors = m;
            target->mcap = cap;
        }
    }
    if (!exited && target->nmonitors < target->mcap) {
        agent_ref(watcher);
        target->monitors[target->nmonitors++] = watcher;
    }
    pthread_mutex_unlock(&target->mlock);
    if (exited) {
        /* Already gone: the watcher hears about it at once. */
        agent_send_exit_notice(target, watcher);
    }
}

/* Puts { event = "exit", agent = <target>, name, reason, message,
 * traceback, unread = n } in the watcher's mailbox.  Built without a Lua
 * state (lms_exit_notice), so it works whichever thread the exit is on. */
void agent_send_exit_notice(agent *target, agent *watcher) {
    xfer *x = lms_exit_notice(target);
    if (!x)
        return;
    msg *m = msg_new();
    if (!m) {
        xfer_free(x);
        return;
    }
    m->body = x;
    char err[128];
    if (agent_deliver(watcher, m, err, sizeof err) != 0)
        msg_free(m);
}

/* Installed by agent_stop on an interpreted (jit = false) agent: the next
 * thousand VM instructions of whatever it runs end in this error, so even
 * `while true do end` stops.  Compiled code does not call hooks, so an
 * agent with the JIT on stops only at its next poll. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "stopped by agent:stop()");
}

void agent_stop(agent *a, const char *reason) {
    pthread_mutex_lock(&a->mlock);
    if (a->state != AG_EXITED && !a->stop_reason)
        a->stop_reason = strdup(reason ? reason : "killed");
    /* lua_sethook may be called while the state runs (it is what Lua's own
     * interpreter does from its SIGINT handler); mlock keeps it away from
     * a state being closed. */
    if (a->jit_off && a->own_state && a->L && !a->state_closing && a->state == AG_RUNNING)
        lua_sethook(a->L, stop_hook, LUA_MASKCOUNT, 1000);
    pthread_mutex_unlock(&a->mlock);
    atomic_store_explicit(&a->stop_requested, true, memory_order_release);
    ms_waker_wake_by_ref(&a->self_waker);
}

/* ---- starting an agent ---- */

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

/* An agent starts with the base library only; everything else is opened
 * on first use (see lazy_global), which keeps a new agent cheap and an
 * idle one small: all of LuaJIT's libraries cost about 34 KB of heap and
 * most of a spawn's time, and many agents use only a few of them.
 *
 * jit is among the lazy ones: opening it is what switches LuaJIT's
 * compiler on (and costs a CPU detection, ~20 us here), so an agent starts
 * interpreted and gets the JIT once it proves long-lived
 * (agent_jit_decide). */
static const luaL_Reg lazy_libs[] = {
    {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
    {LUA_MATHLIBNAME, luaopen_math}, {LUA_IOLIBNAME, luaopen_io},
    {LUA_OSLIBNAME, luaopen_os},     {LUA_DBLIBNAME, luaopen_debug},
    {LUA_BITLIBNAME, luaopen_bit},   {LUA_JITLIBNAME, luaopen_jit}, {NULL, NULL}};

/* Polls after which an agent counts as long-lived and may JIT-compile. */
#define JIT_AFTER_POLLS 32

/* Switches the JIT on for a, within jit_agent_limit and unless it was
 * spawned with jit = false, or leaves it off.  Once per agent. */
static void agent_jit_decide(agent *a) {
    if (a->jit_decided || !a->own_state)
        return;
    a->jit_decided = true;
    lua_getglobal(a->L, "jit"); /* opens the library (lazy_global) */
    lua_pop(a->L, 1);
    host *h = a->h;
    pthread_mutex_lock(&h->lock); /* ms.tune may change the limit */
    uint32_t limit = h->jit_agent_limit;
    pthread_mutex_unlock(&h->lock);
    if (!a->jit_off && atomic_fetch_add(&h->jit_agents, 1) < limit) {
        a->jit_counted = true;
        return;
    }
    if (!a->jit_off)
        atomic_fetch_sub(&h->jit_agents, 1);
    luaJIT_setmode(a->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
}

/* Opens a standard library the way luaL_openlibs does (its name as the
 * argument: it sets the global and package.loaded), and pushes it. */
static void open_lazy_lib(lua_State *L, const luaL_Reg *lib) {
    lua_pushcfunction(L, lib->func);
    lua_pushstring(L, lib->name);
    lua_call(L, 1, 0);
    lua_getfield(L, LUA_GLOBALSINDEX, lib->name);
    /* Opening jit switched the compiler on: settle it for this agent now
     * (an agent that asks for jit early has the JIT early). */
    if (lib->func == luaopen_jit) {
        agent *a = agent_from_state(L);
        if (a)
            agent_jit_decide(a);
    }
}

/* Pushes the state's ms module, opening it on first use.  One table
 * whichever way it is reached first: the global ms, require "ms", or an
 * ms upvalue re-bound by load_main. */
static int open_ms(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_getfield(L, -1, "ms");
    /* Not a table: nil, or require's marker while it runs this loader. */
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_pushcfunction(L, luaopen_ms);
        lua_call(L, 0, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "ms");
    }
    lua_remove(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_GLOBALSINDEX, "ms");
    return 1;
}

/* package.preload entry for a lazy library (require "string" before the
 * global was read). */
static int lazy_loader(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    for (const luaL_Reg *lib = lazy_libs; lib->name; lib++) {
        if (strcmp(name, lib->name) == 0) {
            open_lazy_lib(L, lib);
            return 1;
        }
    }
    return luaL_error(L, "ms-host: no lazy library %s", name); /* a bug in ms-host */
}

/* Opens the package library (package, require, module) with the host's
 * search paths and the preload entries for the lazy libraries and ms. */
static void open_package(lua_State *L) {
    lua_pushcfunction(L, luaopen_package);
    lua_pushstring(L, LUA_LOADLIBNAME);
    lua_call(L, 1, 0);
    lua_getfield(L, LUA_GLOBALSINDEX, LUA_LOADLIBNAME);
    host *h = host_get();
    if (h && h->lua_path) {
        lua_pushstring(L, h->lua_path);
        lua_setfield(L, -2, "path");
    }
    if (h && h->lua_cpath) {
        lua_pushstring(L, h->lua_cpath);
        lua_setfield(L, -2, "cpath");
    }
    lua_getfield(L, -1, "preload");
    for (const luaL_Reg *lib = lazy_libs; lib->name; lib++) {
        lua_pushcfunction(L, lazy_loader);
        lua_setfield(L, -2, lib->name);
    }
    /* ffi is require-only (no global), as in plain LuaJIT. */
    lua_pushcfunction(L, luaopen_ffi);
    lua_setfield(L, -2, LUA_FFILIBNAME);
    lua_pushcfunction(L, open_ms);
    lua_setfield(L, -2, "ms");
    lua_pop(L, 2);
}

/* _G's __index: the first read of a lazy library's name, of package,
 * require or module, or of ms opens it (which also sets the global, so
 * this runs once per name). */
static int lazy_global(lua_State *L) {
    const char *k = lua_tostring(L, 2);
    if (!k || lua_type(L, 2) != LUA_TSTRING)
        return 0;
    for (const luaL_Reg *lib = lazy_libs; lib->name; lib++) {
        if (strcmp(k, lib->name) == 0) {
            open_lazy_lib(L, lib);
            return 1;
        }
    }
    if (strcmp(k, LUA_LOADLIBNAME) == 0 || strcmp(k, "require") == 0 ||
        strcmp(k, "module") == 0) {
        open_package(L);
        lua_rawget(L, 1);
        return 1;
    }
    if (strcmp(k, "ms") == 0)
        return open_ms(L);
    return 0;
}

static int lazy_string_index(lua_State *L) {
    lua_getglobal(L, LUA_STRLIBNAME); /* opens it: strings get its metatable */
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);
    return 1;
}

static void open_libs(lua_State *L) {
    lua_pushcfunction(L, luaopen_base);
    lua_pushstring(L, "");
    lua_call(L, 1, 0);
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lazy_global);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
    /* Strings' methods ("x"):rep(3) before anyone read the global string:
     * a stand-in metatable opens the library (which installs the real
     * one) on the first method looked up. */
    lua_pushliteral(L, "");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lazy_string_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}

/* lua_newstate installs no panic handler: without one, an error outside
 * any protected call ends the process without a word. */
static int agent_panic(lua_State *L) {
    agent *a = agent_from_state(L);
    fprintf(stderr, "ms-host: agent %s: unprotected Lua error, the process must stop: %s\n",
            a ? a->name : "?", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
    return 0; /* LuaJIT then exits */
}

static bool open_state(agent *a, char *err, size_t errlen) {
    lua_State *L = lua_newstate(agent_alloc, a);
    if (!L) {
        snprintf(err, errlen, "cannot create a Lua state for agent %s (memory_limit %zu bytes)",
                 a->name, a->mem_limit);
        return false;
    }
    a->L = L;
    a->own_state = true;
    lua_atpanic(L, agent_panic);
    open_libs(L);
    lua_pushlightuserdata(L, a);
    lua_setfield(L, LUA_REGISTRYINDEX, "ms.current_agent");
    /* The JIT is decided later (agent_jit_decide): past jit_agent_limit
     * agents with the JIT on, new ones interpret, because every state that
     * compiles takes room in LuaJIT's one machine-code window and a full
     * window makes every agent slow. */
    return true;
}

/* Records the agent's end and tells its monitors.  L is still open. */
static void agent_exit_ex(agent *a, const char *reason, int code, const char *message,
                          const char *traceback, bool at_shutdown) {
    pthread_mutex_lock(&a->mlock);
    a->state = AG_EXITED;
    snprintf(a->exit_reason, sizeof a->exit_reason, "%s", reason);
    a->exit_code = code;
    a->exit_message = message ? strdup(message) : NULL;
    a->exit_traceback = traceback ? strdup(traceback) : NULL;
    size_t unread = mbox_close(&a->mbox);
    a->unread_at_exit = unread;
    agent **mons = a->monitors;
    uint32_t nmons = a->nmonitors;
    a->monitors = NULL;
    a->nmonitors = a->mcap = 0;
    ltask *r = atomic_exchange_explicit(&a->receiver, NULL, memory_order_acq_rel);
    pthread_mutex_unlock(&a->mlock);
    if (r)
        ltask_unref(r);
    /* The name is free before anyone hears of the exit, so a supervisor
     * that restarts the agent on the notice can reuse it. */
    registry_remove(a->h, a);
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
        fprintf(stderr, "ms-host: agent %s (%llu) exited (%s) with %zu unread message%s\n",
                a->name, (unsigned long long)a->id, reason, unread, unread == 1 ? "" : "s");
    }
    for (uint32_t i = 0; i < nmons; i++) {
        agent_send_exit_notice(a, mons[i]);
        agent_unref(mons[i]);
    }
    free(mons);
}

static void agent_exit(agent *a, const char *reason, int code, const char *message,
                       const char *traceback) {
    agent_exit_ex(a, reason, code, message, traceback, false);
}

/* Ends every coroutine of a, waiting or ready, as aborted. */
static void abort_all_tasks(agent *a) {
    while (a->all) {
        ltask *lt = a->all;
        if (lt->status == LT_WAITING)
            op_cancel(lt);
        runq_remove(a, lt);
        ltask_finish(a, lt, LT_ABORTED);
        ltask_unref(lt);
    }
}

/* Cancels every coroutine and closes the state (if ours). */
static void agent_teardown(agent *a) {
    abort_all_tasks(a);
    /* Drain the woken stack: those references are ours to drop. */
    ltask *w = atomic_exchange(&a->woken, NULL);
    while (w) {
        ltask *next = w->next_woken;
        ltask_unref(w);
        w = next;
    }
    if (a->own_state && a->L) {
        pthread_mutex_lock(&a->mlock);
        a->state_closing = true;
        pthread_mutex_unlock(&a->mlock);
        lua_close(a->L);
        a->L = NULL;
    }
    if (a->jit_counted) {
        atomic_fetch_sub(&a->h->jit_agents, 1);
        a->jit_counted = false;
    }
    registry_remove(a->h, a);
}

/* The text of the error value at the top of co, with a traceback. */
static void describe_error(agent *a, lua_State *co, char **msgp, char **tb) {
    *msgp = NULL;
    if (lua_istable(co, -1)) {
        lua_getfield(co, -1, "message");
        if (lua_isstring(co, -1))
            *msgp = strdup(lua_tostring(co, -1));
        lua_pop(co, 1);
    }
    if (!*msgp && lua_isstring(co, -1))
        *msgp = strdup(lua_tostring(co, -1));
    if (!*msgp) {
        char buf[80];
        snprintf(buf, sizeof buf, "(a %s was raised as the error; see err.value)",
                 luaL_typename(co, -1));
        *msgp = strdup(buf);
    }
    luaL_traceback(a->L, co, NULL, 0);
    *tb = strdup(lua_tostring(a->L, -1) ? lua_tostring(a->L, -1) : "");
    lua_pop(a->L, 1);
}

/* Resumes lt once and handles the outcome.  Returns true if the agent's
 * main coroutine ended. */
static bool resume(agent *a, ltask *lt, ms_cx *cx) {
    a->current = lt;
    a->cx = cx;
    a->fast_streak = 0;
    lt->status = LT_RUNNING;
    int nargs = lt->nres;
    lt->nres = 0;
    a->enforce_limit = true;
    agent *outer = tl_running;
    tl_running = a;
    int rc = lua_resume(lt->co, nargs);
    tl_running = outer;
    a->enforce_limit = false;
    a->current = NULL;
    a->cx = NULL;
    if (rc == LUA_YIELD) {
        if (!lt->op.poll) {
            /* ms.yield, or a coroutine.yield at the top of a task: the
             * yielded values are dropped and the task goes to the back. */
            lua_settop(lt->co, 0);
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
    lua_State *L = a->L;
    if (rc == 0) {
        task_handle_set_results(L, lt, lt->co, lua_gettop(lt->co));
        bool main = lt->is_main;
        ltask_finish(a, lt, LT_DONE);
        ltask_unref(lt);
        return main;
    }
    /* Failed: build the error value (kept for joins and for the exit).
     * The limit is not enforced here, so this cannot fail half-way. */
    char *m = NULL, *tb = NULL;
    bool oom = rc == LUA_ERRMEM || atomic_exchange(&a->oom, false);
    describe_error(a, lt->co, &m, &tb);
    int code = oom ? MS_E_NO_MEMORY : MS_E_TASK_FAILED;
    if (oom)
        lua_gc(L, LUA_GCCOLLECT, 0);
    lerr_push(L, code, m, tb);
    /* A non-string error object stays reachable as err.value. */
    if (!oom && lua_gettop(lt->co) > 0 && !lua_isstring(lt->co, -1)) {
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
    free(m);
    free(tb);
    ltask_finish(a, lt, LT_FAILED);
    ltask_unref(lt);
    return main;
}

/* Graceful stop: every task is aborted and one new main task runs the
 * agent's ms.on_shutdown handlers; when it ends, the agent ends with
 * reason "shutdown".  Returns false when there are no handlers. */
static const char shutdown_runner[] =
    "local handlers, name = ...\n"
    "for i = 1, #handlers do\n"
    "  local ok, err = pcall(handlers[i])\n"
    "  if not ok then\n"
    "    io.stderr:write(('ms-host: agent %s: on_shutdown handler %d failed: %s\\n')"
    ":format(name, i, tostring(err)))\n"
    "  end\n"
    "end\n";

static bool begin_graceful_stop(agent *a) {
    abort_all_tasks(a);
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
    a->main = ltask_spawn(a, L, 2);
    if (!a->main)
        return false;
    a->main->is_main = true;
    return true;
}

static ms_poll finish_poll(ms_cx *cx, agent *a) {
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

/* Takes the coroutines woken since the last look and re-polls their
 * operations; the ready ones join the run queue.  The stack is LIFO: it is
 * reversed so that wakes are served in order. */
static void drain_woken(agent *a, ms_cx *cx) {
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
        if (lt->status == LT_WAITING && op_poll_now(lt, cx) == MS_POLL_READY) {
            lt->status = LT_READY;
            runq_push(a, lt);
        }
        ltask_unref(lt);
    }
}

ms_poll agent_poll(ms_cx *cx, void *state) {
    agent *a = state;
    atomic_fetch_add_explicit(&a->polls, 1, memory_order_relaxed);
    if (atomic_load_explicit(&a->blocking_busy, memory_order_acquire))
        return MS_POLL_PENDING; /* a blocking job owns the state */
    if (ms_waker_is_null(&a->self_waker))
        a->self_waker = ms_waker_clone(ms_cx_waker(cx));
    if (!a->started) {
        a->started = true;
        char err[512];
        if (a->src != SRC_STATE) {
            if (!open_state(a, err, sizeof err)) {
                bool oom = atomic_exchange(&a->oom, false) || !a->L;
                agent_exit(a, oom ? "oom" : "error", oom ? MS_E_NO_MEMORY : MS_E_STARTUP_FAILED,
                           err, NULL);
                return finish_poll(cx, a);
            }
            lua_State *L = a->L;
            lua_pushcfunction(L, load_main);
            lua_pushlightuserdata(L, a);
            a->enforce_limit = true;
            int lrc = lua_pcall(L, 1, 1, 0);
            a->enforce_limit = false;
            if (lrc != 0) {
                const char *m = lua_tostring(L, -1);
                bool oom = lrc == LUA_ERRMEM || atomic_exchange(&a->oom, false);
                snprintf(err, sizeof err, "cannot start agent %s: %s%s", a->name,
                         m ? m : "(error)", oom ? " (memory_limit too small to start)" : "");
                agent_exit(a, oom ? "oom" : "error", oom ? MS_E_NO_MEMORY : MS_E_STARTUP_FAILED,
                           err, NULL);
                return finish_poll(cx, a);
            }
            int nargs = 0;
            if (a->args) {
                xfer_decode(L, a->args);
                xfer_free(a->args);
                a->args = NULL;
                nargs = 1;
            }
            a->main = ltask_spawn(a, L, nargs);
            if (!a->main) {
                agent_exit(a, "error", MS_E_NO_MEMORY, "no memory for the main task", NULL);
                return finish_poll(cx, a);
            }
            a->main->is_main = true;
        }
        pthread_mutex_lock(&a->mlock);
        a->state = AG_RUNNING;
        pthread_mutex_unlock(&a->mlock);
        const char *keys[] = {"name", "id"};
        const char *strs[] = {a->name, NULL};
        double nums[] = {0, (double)a->id};
        events_publish_host("ms.agent.started", keys, strs, nums, 2);
    }
    if (atomic_load_explicit(&a->stop_requested, memory_order_acquire)) {
        pthread_mutex_lock(&a->mlock);
        char reason[64];
        snprintf(reason, sizeof reason, "%s", a->stop_reason ? a->stop_reason : "killed");
        pthread_mutex_unlock(&a->mlock);
        agent_exit(a, "killed", MS_E_TASK_CANCELLED, reason, NULL);
        return finish_poll(cx, a);
    }

    if (!a->shutdown_started &&
        atomic_load_explicit(&a->shutdown_requested, memory_order_acquire)) {
        a->shutdown_started = true;
        if (!begin_graceful_stop(a)) {
            agent_exit(a, "shutdown", 0, NULL, NULL);
            return finish_poll(cx, a);
        }
    }

    if (!a->jit_decided && a->own_state &&
        atomic_load_explicit(&a->polls, memory_order_relaxed) >= JIT_AFTER_POLLS)
        agent_jit_decide(a);

    /* Alternate between the coroutines woken (by this agent's own tasks or
     * from outside) and the ready ones until neither is left or the budget
     * is spent: a wake between two coroutines of this agent is served in
     * this poll, not after a trip through the executor. */
    uint32_t budget = ms_runtime_budget(a->h->rt);
    for (;;) {
        drain_woken(a, cx);
        if (!a->runq_head)
            return MS_POLL_PENDING;
        while (a->runq_head) {
            if (budget-- == 0)
                return ms_cx_yield(cx); /* let other agents run */
            ltask *lt = runq_pop(a);
            if (resume(a, lt, cx)) {
                if (a->state != AG_EXITED) {
                    pthread_mutex_lock(&a->mlock);
                    bool running = a->state != AG_EXITED;
                    pthread_mutex_unlock(&a->mlock);
                    if (running)
                        agent_exit(a, a->shutdown_started ? "shutdown" : "normal", 0, NULL,
                                   NULL);
                }
                return finish_poll(cx, a);
            }
            if (atomic_load_explicit(&a->blocking_busy, memory_order_acquire))
                return MS_POLL_PENDING;
            /* Coroutines woken meanwhile queue up now, behind the ready
             * ones: a coroutine that keeps yielding cannot hold them back
             * for a whole budget. */
            if (atomic_load_explicit(&a->woken, memory_order_relaxed))
                drain_woken(a, cx);
        }
    }
}

static void agent_task_drop(void *state) {
    agent *a = state;
    /* A cancelled agent (runtime shutdown) never ran its finish. */
    if (a->state != AG_EXITED && !atomic_load(&a->blocking_busy)) {
        agent_exit_ex(a, "killed", MS_E_TASK_CANCELLED, "the runtime shut down", NULL, true);
        agent_teardown(a);
    }
    agent_unref(a); /* the task's reference */
}

/* ---- spawning ---- */

static agent *agent_alloc_struct(host *h) {
    agent *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    atomic_init(&a->refs, 1);
    a->h = h;
    a->exit_ref = LUA_NOREF;
    pthread_mutex_init(&a->mlock, NULL);
    mbox_init(&a->mbox);
    pthread_mutex_lock(&h->lock); /* the defaults are live-tunable */
    a->mem_limit = h->default_mem_limit;
    atomic_init(&a->mailbox_limit, h->mailbox_limit);
    pthread_mutex_unlock(&h->lock);
    return a;
}

/* Reads spawn{...} at idx.  Returns NULL with err set on a bad spec. */
agent *agent_spawn(lua_State *L, int idx, char *err, size_t errlen) {
    host *h = host_get();
    if (!h) {
        snprintf(err, errlen, "no runtime: call ms.run first");
        return NULL;
    }
    if (!lua_istable(L, idx)) {
        snprintf(err, errlen, "ms.agent.spawn expects a table, got %s", luaL_typename(L, idx));
        return NULL;
    }
    agent *a = agent_alloc_struct(h);
    if (!a) {
        snprintf(err, errlen, "no memory for an agent");
        return NULL;
    }
    int nsrc = 0;
    lua_getfield(L, idx, "fn");
    if (!lua_isnil(L, -1)) {
        nsrc++;
        if (!lua_isfunction(L, -1) || lua_iscfunction(L, -1)) {
            snprintf(err, errlen, "fn must be a Lua function, got %s",
                     lua_iscfunction(L, -1) ? "a C function" : luaL_typename(L, -1));
            goto fail;
        }
        /* Upvalues cannot cross: name them.  The one exception is the ms
         * module itself (`local ms = require "ms"`), which the child gets
         * re-bound to its own ms module. */
        char names[200] = "";
        lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED"); /* package.loaded */
        if (lua_istable(L, -1))
            lua_getfield(L, -1, "ms");
        else
            lua_pushnil(L);
        lua_remove(L, -2); /* stack: fn, ms module or nil */
        for (int i = 1;; i++) {
            const char *up = lua_getupvalue(L, -2, i);
            if (!up)
                break;
            bool is_ms = lua_rawequal(L, -1, -2) && !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (is_ms && a->n_ms_upvals < 8) {
                a->ms_upvals[a->n_ms_upvals++] = (uint8_t)i;
                continue;
            }
            size_t used = strlen(names);
            snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "", *up ? up : "?");
        }
        lua_pop(L, 1);
        if (names[0]) {
            snprintf(err, errlen,
                     "fn captures upvalues (%s); an agent shares nothing, so pass data "
                     "through args instead",
                     names);
            goto fail;
        }
        lua_getglobal(L, "string");
        lua_getfield(L, -1, "dump");
        lua_pushvalue(L, -3);
        if (lua_pcall(L, 1, 1, 0) != 0) {
            snprintf(err, errlen, "cannot copy fn: %s", lua_tostring(L, -1));
            lua_pop(L, 2);
            goto fail;
        }
        size_t len;
        const char *code = lua_tolstring(L, -1, &len);
        a->src = SRC_FN;
        a->src_text = malloc(len);
        if (a->src_text)
            memcpy(a->src_text, code, len);
        a->src_len = len;
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "file");
    if (!lua_isnil(L, -1)) {
        nsrc++;
        if (!lua_isstring(L, -1)) {
            snprintf(err, errlen, "file must be a path string, got %s", luaL_typename(L, -1));
            goto fail;
        }
        a->src = SRC_FILE;
        a->src_text = strdup(lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "module");
    if (!lua_isnil(L, -1)) {
        nsrc++;
        if (!lua_isstring(L, -1)) {
            snprintf(err, errlen, "module must be a module name, got %s",
                     luaL_typename(L, -1));
            goto fail;
        }
        a->src = SRC_MODULE;
        a->src_text = strdup(lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    if (nsrc != 1) {
        snprintf(err, errlen, "give exactly one of fn, file or module (got %d)", nsrc);
        goto fail;
    }
    lua_getfield(L, idx, "name");
    if (!lua_isnil(L, -1)) {
        if (!lua_isstring(L, -1)) {
            snprintf(err, errlen, "name must be a string, got %s", luaL_typename(L, -1));
            goto fail;
        }
        const char *nm = lua_tostring(L, -1);
        agent *other = agent_whereis(nm);
        if (other) {
            agent_unref(other);
            snprintf(err, errlen, "the name '%s' is taken by agent %llu", nm,
                     (unsigned long long)other->id);
            goto fail;
        }
        snprintf(a->name, sizeof a->name, "%s", nm);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "memory_limit");
    if (!lua_isnil(L, -1)) {
        double lim = lua_tonumber(L, -1);
        if (!lua_isnumber(L, -1) || lim < 0 || (lim > 0 && lim < 16384)) {
            snprintf(err, errlen,
                     "memory_limit must be 0 (none) or at least 16384 bytes, got %s",
                     lua_tostring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
            goto fail;
        }
        a->mem_limit = (size_t)lim;
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "restarts");
    if (!lua_isnil(L, -1)) {
        double r = lua_tonumber(L, -1);
        if (!lua_isnumber(L, -1) || r < 0 || r != (double)(uint32_t)r) {
            snprintf(err, errlen, "restarts must be a whole number >= 0, got %s",
                     lua_tostring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
            goto fail;
        }
        a->restarts = (uint32_t)r;
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "jit");
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1))
        a->jit_off = true;
    lua_pop(L, 1);
    lua_getfield(L, idx, "supervised");
    a->supervised = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, idx, "args");
    if (!lua_isnil(L, -1)) {
        a->args = xfer_new();
        if (!a->args || !xfer_encode(L, -1, a->args, "args", err, errlen))
            goto fail;
    }
    lua_pop(L, 1);

    registry_add(h, a);
    pthread_mutex_lock(&h->lock);
    if (h->phase == HOST_STOPPING && !a->supervised)
        atomic_store(&a->shutdown_requested, true);
    pthread_mutex_unlock(&h->lock);
    agent_ref(a); /* the task's reference */
    int rc = ms_spawn(h->rt, agent_poll, a, agent_task_drop, &a->task);
    if (rc != 0) {
        snprintf(err, errlen, "%s", ms_err_name(rc));
        agent_unref(a);
        registry_remove(h, a);
        agent_unref(a);
        return NULL;
    }
    return a; /* the caller gets the creation reference */
fail:
    lua_pop(L, 1);
    agent_unref(a);
    return NULL;
}

/* ---- the main agent ---- */

int agent_run_main(lua_State *L, int nargs, ms_error *err) {
    host *h = host_get();
    agent *a = agent_alloc_struct(h);
    if (!a)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for the main agent");
    a->src = SRC_STATE;
    a->L = L;
    a->own_state = false;
    a->mem_limit = 0;
    snprintf(a->name, sizeof a->name, "main");
    registry_add(h, a);
    lua_pushlightuserdata(L, a);
    lua_setfield(L, LUA_REGISTRYINDEX, "ms.current_agent");
    a->main = ltask_spawn(a, L, nargs);
    if (!a->main) {
        registry_remove(h, a);
        agent_unref(a);
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for the main task");
    }
    a->main->is_main = true;
    a->started = true;
    pthread_mutex_lock(&a->mlock);
    a->state = AG_RUNNING;
    pthread_mutex_unlock(&a->mlock);
    int rc = ms_block_on(h->rt, agent_poll, a, NULL, err);
    /* On failure the error value is kept for the caller. */
    if (a->exit_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, a->exit_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, a->exit_ref);
    } else {
        lua_pushnil(L);
    }
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "ms.current_agent");
    agent_unref(a);
    return rc;
}
