/*
 * profiler.c - a sampling profile of one agent, with LuaJIT's profiler.
 *
 * LuaJIT's profiler (luaJIT_profile_start) samples one VM per process: a
 * timer signal (SIGPROF, process CPU time) marks the VM, and at its next
 * instruction, interpreted or JIT-compiled, the VM calls our callback on
 * the thread that runs it.  So a profile must be started and stopped in
 * the agent's own state, by its own thread, and only one can run at a
 * time (active below).  As for the task dump (tasks.c), the agent is
 * asked, not read:
 *
 *   1. profiler_run (the blocking pool) claims active (a CAS: a second
 *      profile is refused with a clear error), and wakes the agent;
 *   2. at its next poll boundary the agent starts the profiler in its
 *      state (profiler_poll);
 *   3. after the seconds asked for, profiler_run marks the request to stop
 *      and wakes the agent again; at its next poll boundary the agent
 *      stops the profiler, and the counts become folded stacks;
 *   4. a busy agent (one poll longer than the bound) stops at its next
 *      boundary whenever that comes: profiler_run gives up waiting and
 *      says so, and active stays claimed until then (a second profile is
 *      refused meanwhile, naming the agent).
 *
 * The callback takes the sampled coroutine's stack with
 * luaJIT_profile_dumpstack (no Lua allocation, no Lua code run) and counts
 * it in a small C table; past PROF_MAX_STACKS distinct stacks, samples
 * count as "(other stacks)".  An agent that ends while profiled stops the
 * profiler before its state closes (profiler_on_exit).
 *
 * What the samples mean: the signal comes with the process's CPU time, so
 * a sample marks the profiled agent whichever thread was busy; the agent
 * takes it at its next instruction.  Counts are relative: the heaviest
 * stacks are where the agent spends its time while it runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <lauxlib.h>
#include <luajit.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "host.h"
#include "preempt.h"
#include "profiler.h"
#include "registry.h"

#define PROF_MAX_STACKS 4096
/* LuaJIT's mode string: line mode, which agent states keep so that their
 * compiled code can be stopped (preempt.c), and samples every 1 ms. */
#define PROF_MODE "li1"
/* How long profiler_run waits for the agent to start, and to stop after
 * the profile's time (beyond that it is busy in one poll). */
#define PROF_START_WAIT_S 5.0
#define PROF_STOP_WAIT_S 5.0

typedef struct prof_count {
    char *stack;                /* NULL: an empty slot */
    uint64_t n;
} prof_count;

typedef struct prof_req {
    _Atomic int refs;           /* profiler_run's and the agent's */
    agent *a;                   /* a reference */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Under lock: */
    bool started, stop, done, abandoned;
    char *folded;               /* the result, once done */
    char err[200];
    /* The agent's thread only, while the profiler runs: */
    prof_count *counts;         /* open addressing, PROF_MAX_STACKS * 2 slots */
    size_t nstacks;
    uint64_t other, samples;
} prof_req;

/* The profile running, or NULL, with a reference of its own: claimed by
 * profiler_run, cleared by whoever ends the profile (the agent, or
 * profiler_run when the agent never started it).  Under prof_lock;
 * active_agent is its agent, for the agents' check at every poll (compared,
 * never dereferenced; relaxed: the wake that follows a claim orders it). */
static pthread_mutex_t prof_lock = PTHREAD_MUTEX_INITIALIZER;
static prof_req *active;
static _Atomic(agent *) active_agent;

/* The profile of a, with a reference, or NULL. */
static prof_req *profile_of(agent *a) {
    if (atomic_load_explicit(&active_agent, memory_order_relaxed) != a)
        return NULL;
    pthread_mutex_lock(&prof_lock);
    prof_req *r = active && active->a == a ? active : NULL;
    if (r)
        atomic_fetch_add(&r->refs, 1);
    pthread_mutex_unlock(&prof_lock);
    return r;
}

static void req_unref(prof_req *r);

/* Ends r's claim on the profiler, if it still holds it. */
static void clear_active(prof_req *r) {
    pthread_mutex_lock(&prof_lock);
    bool mine = active == r;
    if (mine) {
        active = NULL;
        atomic_store_explicit(&active_agent, NULL, memory_order_relaxed);
    }
    pthread_mutex_unlock(&prof_lock);
    if (mine)
        req_unref(r);
}

static void req_unref(prof_req *r) {
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (r->counts) {
        for (size_t i = 0; i < 2 * PROF_MAX_STACKS; i++)
            free(r->counts[i].stack);
        free(r->counts);
    }
    free(r->folded);
    agent_unref(r->a);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* ---- the agent's side ---- */

static uint64_t hash(const char *s, size_t len) {
    uint64_t x = 1469598103934665603u;
    for (size_t i = 0; i < len; i++)
        x = (x ^ (unsigned char)s[i]) * 1099511628211u;
    return x;
}

static void count_stack(prof_req *r, const char *s, size_t len, int samples) {
    size_t cap = 2 * PROF_MAX_STACKS;
    for (size_t i = hash(s, len) % cap, k = 0; k < cap; i = (i + 1) % cap, k++) {
        prof_count *c = &r->counts[i];
        if (!c->stack) {
            /* dumpstack's text is not NUL-terminated: copied by length. */
            if (r->nstacks >= PROF_MAX_STACKS || !(c->stack = malloc(len + 1)))
                break;
            memcpy(c->stack, s, len);
            c->stack[len] = '\0';
            r->nstacks++;
        } else if (strlen(c->stack) != len || memcmp(c->stack, s, len) != 0) {
            continue;
        }
        c->n += (uint64_t)samples;
        return;
    }
    r->other += (uint64_t)samples;
}

/* LuaJIT calls this in the profiled VM, on its thread, with L the
 * coroutine that was running. */
static void on_sample(void *data, lua_State *L, int samples, int vmstate) {
    (void)vmstate;
    prof_req *r = data;
    /* Another agent's state, left to the interpreter by a stop
     * (preempt.c), can call back too: not this profile's to count, and
     * dumpstack would write its text with that state's allocator into a
     * buffer of this one's. */
    void *ud = NULL;
    lua_getallocf(L, &ud);
    if (ud != r->a)
        return;
    size_t len = 0;
    /* Root first (negative depth), "file:function" frames joined by ";". */
    const char *s = luaJIT_profile_dumpstack(L, "pFZ;", -64, &len);
    r->samples += (uint64_t)samples;
    count_stack(r, s ? s : "", s ? len : 0, samples);
}

static int count_cmp(const void *x, const void *y) {
    const prof_count *a = x, *b = y;
    if (!a->stack || !b->stack)
        return !a->stack - !b->stack;
    return a->n < b->n ? 1 : a->n > b->n ? -1 : strcmp(a->stack, b->stack);
}

/* The counts as folded stacks, heaviest first. */
static char *fold(prof_req *r) {
    size_t cap = 2 * PROF_MAX_STACKS, size = 64;
    qsort(r->counts, cap, sizeof *r->counts, count_cmp);
    for (size_t i = 0; i < r->nstacks; i++)
        size += strlen(r->counts[i].stack) + 32;
    char *out = malloc(size);
    if (!out)
        return NULL;
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < r->nstacks; i++) {
        const prof_count *c = &r->counts[i];
        len += (size_t)snprintf(out + len, size - len, "%s %llu\n",
                                c->stack[0] ? c->stack : "(no Lua frame)",
                                (unsigned long long)c->n);
    }
    if (r->other)
        snprintf(out + len, size - len, "(other stacks) %llu\n", (unsigned long long)r->other);
    return out;
}

static void finish(prof_req *r, const char *err) {
    char *folded = err ? NULL : fold(r);
    pthread_mutex_lock(&r->lock);
    r->done = true;
    r->folded = folded;
    if (err)
        snprintf(r->err, sizeof r->err, "%s", err);
    else if (!folded)
        snprintf(r->err, sizeof r->err, "out of memory for the folded stacks");
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    clear_active(r);
}

void profiler_poll(agent *a) {
    prof_req *r = profile_of(a);
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    bool started = r->started, stop = r->stop, done = r->done, abandoned = r->abandoned;
    if (!started && !abandoned && !done) {
        r->started = true;
        /* profiler_run waits for this to time the profile from its start */
        pthread_cond_broadcast(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
    if (done || (!started && abandoned)) {
        /* nothing: ended, or profiler_run gave up before it started */
    } else if (!started) {
        /* The counts exist before the profiler can call back with them;
         * r stays alive while it runs (active's reference). */
        r->counts = calloc(2 * PROF_MAX_STACKS, sizeof *r->counts);
        if (r->counts)
            preempt_profile_start(a->L, PROF_MODE, on_sample, r);
        else
            finish(r, "out of memory for the profile");
    } else if (stop) {
        preempt_profile_stop(a->L);
        finish(r, NULL);
    }
    req_unref(r);
}

void profiler_on_exit(agent *a) {
    prof_req *r = profile_of(a);
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    bool running = r->started && !r->done;
    pthread_mutex_unlock(&r->lock);
    if (running) {
        preempt_profile_stop(a->L);
        finish(r, "the agent ended during the profile");
    }
    req_unref(r);
}

/* ---- the requester's side ---- */

static void wake(agent *a) {
    if (atomic_load(&a->waker_ready))
        ms_waker_wake_by_ref(&a->self_waker);
}

static void deadline_in(struct timespec *t, double seconds) {
    clock_gettime(CLOCK_REALTIME, t);
    uint64_t ns = (uint64_t)t->tv_nsec + (uint64_t)(seconds * 1e9);
    t->tv_sec += (time_t)(ns / 1000000000u);
    t->tv_nsec = (long)(ns % 1000000000u);
}

char *profiler_run(host *h, const char *name, double seconds, char *err, size_t errlen) {
    (void)h;
    agent *a = registry_whereis(name);
    if (!a) {
        snprintf(err, errlen, "no agent is named '%s'", name);
        return NULL;
    }
    /* Both fixed before the agent starts (own_state is its thread's). */
    if (a->sandbox || a->src == SRC_STATE) {
        snprintf(err, errlen, "agent '%s' cannot be profiled (%s)", name,
                 a->sandbox ? "it is sandboxed" : "it runs in the caller's Lua state");
        agent_unref(a);
        return NULL;
    }
    prof_req *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        agent_unref(a);
        return NULL;
    }
    atomic_init(&r->refs, 2); /* ours and active's */
    r->a = a;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    pthread_mutex_lock(&prof_lock);
    if (active) {
        snprintf(err, errlen, "a profile of agent '%s' is already running: LuaJIT's profiler "
                 "samples one VM at a time; try again when it ends", active->a->name);
        pthread_mutex_unlock(&prof_lock);
        atomic_store(&r->refs, 1);
        req_unref(r);
        return NULL;
    }
    active = r;
    atomic_store_explicit(&active_agent, a, memory_order_relaxed);
    pthread_mutex_unlock(&prof_lock);
    wake(a);
    struct timespec until;
    deadline_in(&until, PROF_START_WAIT_S);
    pthread_mutex_lock(&r->lock);
    while (!r->started && !r->done &&
           pthread_cond_timedwait(&r->cond, &r->lock, &until) != ETIMEDOUT) {
    }
    /* The agent is woken only by the wake above; started is set under the
     * lock at its poll, so a timed-out wait decides here, once. */
    if (!r->started) {
        r->abandoned = true;
        pthread_mutex_unlock(&r->lock);
        clear_active(r);
        snprintf(err, errlen, "agent '%s' did not reach a poll boundary within %g s to start "
                 "the profiler (busy in one poll, or ended)", name, PROF_START_WAIT_S);
        req_unref(r);
        return NULL;
    }
    /* The profile's time: wait, waking early only if the agent ended. */
    deadline_in(&until, seconds);
    while (!r->done && pthread_cond_timedwait(&r->cond, &r->lock, &until) != ETIMEDOUT) {
    }
    r->stop = true;
    pthread_mutex_unlock(&r->lock);
    wake(a);
    deadline_in(&until, PROF_STOP_WAIT_S);
    pthread_mutex_lock(&r->lock);
    while (!r->done && pthread_cond_timedwait(&r->cond, &r->lock, &until) != ETIMEDOUT) {
    }
    char *out = NULL;
    if (!r->done)
        snprintf(err, errlen, "agent '%s' is busy in one poll: its profile stops at its next "
                 "poll boundary (until then no other profile can start)", name);
    else if (!r->folded)
        snprintf(err, errlen, "%s", r->err);
    else {
        out = r->folded;
        r->folded = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    req_unref(r);
    return out;
}
