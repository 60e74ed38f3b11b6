/*
 * lifecycle.c - graceful shutdown for ms-host.
 *
 * A shutdown starts with SIGINT, SIGTERM or ms.shutdown([timeout]).  Every
 * agent that no supervisor owns is asked to stop: at its next poll it
 * aborts its tasks, runs its ms.on_shutdown handlers (in the order they
 * were registered, each in a protected call) and ends with reason
 * "shutdown".  Supervisors stop their children (spawned with supervised =
 * true) in reverse start order from their handlers.  When the main agent
 * has ended that way, ms-host shuts the runtime down (draining what is
 * left) and exits 0.  If the deadline (shutdown_timeout, or the timeout
 * given to ms.shutdown) passes first, every agent is killed and ms-host
 * exits 3; if even that does not end the main agent within a second (an
 * agent stuck in a loop cannot be interrupted), the process exits at once
 * with 3.  A second SIGINT exits at once with 130.
 *
 * SIGUSR1 writes the live task dump (tasks.c) to stderr.
 *
 * The watcher is one C task polling the signal watchers and the deadline
 * timer; everything it does to agents goes through flags and wakes.
 */
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "events.h"
#include "host.h"
#include "hostlog.h"
#include "lifecycle.h"
#include "lms.h"
#include "tasks.h"
#include "paths.h"
#include "sdnotify.h"
#include "tune.h"

typedef struct lifecycle {
    ms_signal *sigint, *sigterm, *sighup, *sigusr1;
    ms_timer *deadline;
    ms_timer *watchdog;         /* WATCHDOG=1 pings (sdnotify.h), or NULL */
    bool deadline_armed;
    bool killed;                /* the deadline passed: agents were killed */
    uint64_t started_ns;
} lifecycle;

static lifecycle g_life;

void lifecycle_begin_shutdown(const char *reason, double timeout) {
    host *h = host_get();
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    if (h->phase != HOST_RUNNING) {
        pthread_mutex_unlock(&h->lock);
        return;
    }
    h->phase = HOST_STOPPING;
    h->shutdown_timeout = timeout >= 0 ? timeout
                                       : ms_runtime_config(h->rt)->shutdown_timeout_ms / 1000.0;
    snprintf(h->shutdown_reason, sizeof h->shutdown_reason, "%s", reason);
    h->shutdown_started_ns = ms_now_ns();
    sdnotify_stopping();
    /* Supervised agents are left to their supervisors, which stop them in
     * reverse start order from their own on_shutdown handlers; everyone
     * else is asked directly.  The deadline still covers them all. */
    for (agent *a = h->agents; a; a = a->next_reg) {
        if (a->supervised)
            continue;
        atomic_store_explicit(&a->shutdown_requested, true, memory_order_release);
        /* One that does not trap exits ends at its next poll: if it is in
         * one that never yields, that poll ends now. */
        if (!atomic_load_explicit(&a->traps_exit, memory_order_relaxed))
            agent_interrupt(a);
        ms_waker_wake_by_ref(&a->self_waker);
    }
    ms_waker w = ms_waker_clone(&h->lifecycle_waker);
    pthread_mutex_unlock(&h->lock);
    hostlog(HOSTLOG_NOTICE, "shutdown.start", 0, NULL, "%s: shutting down (timeout %.3g s)", reason,
            h->shutdown_timeout);
    const char *keys[] = {"phase", "reason", "timeout"};
    const char *strs[] = {"begin", reason, NULL};
    double nums[] = {0, 0, h->shutdown_timeout};
    events_publish_host("ms.shutdown", keys, strs, nums, 3);
    ms_waker_wake(&w);
}

/* Before an immediate exit: the metrics file's final line, if ms-host
 * writes one. */
static void flush_metrics(host *h, const char *why) {
    pthread_mutex_lock(&h->lock);
    void (*final)(const char *) = h->metrics_final;
    pthread_mutex_unlock(&h->lock);
    if (final)
        final(why);
}

static void kill_all(host *h) {
    pthread_mutex_lock(&h->lock);
    for (agent *a = h->agents; a; a = a->next_reg)
        agent_stop(a, "shutdown timed out");
    pthread_mutex_unlock(&h->lock);
}

static void *reload_job(void *arg) {
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char state[80];
    snprintf(state, sizeof state, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    sdnotify_send(state);
    lifecycle_reload_profile();
    sdnotify_send("READY=1");
    return NULL;
}

/* Where SIGUSR1's dump goes: a file (appended to) or NULL for stderr.
 * Set once by ms-host before it runs the script; read by the dump's jobs. */
static _Atomic(char *) dump_file;

void lifecycle_set_dump_file(const char *path) {
    char *copy = path ? strdup(path) : NULL;
    free(atomic_exchange(&dump_file, copy));
}

/* SIGUSR1: the task dump, to stderr or the profile's tasks_dump_file.  The
 * dump waits for the agents' answers: the blocking pool's work. */
static void *dump_job(void *arg) {
    (void)arg;
    tasks_dump *d = tasks_collect(host_get(), NULL);
    char *text = d ? tasks_render_text(d) : NULL;
    tasks_free(d);
    if (!text) {
        hostlog(HOSTLOG_ERROR, "tasks.dump_failed", 0, NULL,
                "SIGUSR1: out of memory for the task dump");
        return NULL;
    }
    const char *path = atomic_load(&dump_file);
    FILE *f = path ? fopen(path, "a") : NULL;
    if (path && !f)
        hostlog(HOSTLOG_WARNING, "tasks.dump_file_failed", 0, NULL,
                "SIGUSR1: cannot open tasks_dump_file %s (%s): the dump goes to stderr", path,
                strerror(errno));
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32] = "";
    if (gmtime_r(&now, &tm))
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (f)
        fprintf(f, "ms-host: SIGUSR1: task dump at %s\n%s", stamp, text);
    else
        hostlog(HOSTLOG_INFO, "tasks.dump", 0, NULL, "SIGUSR1: task dump at %s\n%s", stamp, text);
    if (f) {
        if (fclose(f) != 0)
            hostlog(HOSTLOG_WARNING, "tasks.dump_file_failed", 0, NULL,
                    "SIGUSR1: writing tasks_dump_file %s failed (%s)", path, strerror(errno));
        else
            hostlog(HOSTLOG_INFO, "tasks.dump", 0, NULL, "SIGUSR1: task dump appended to %s", path);
    }
    free(text);
    return NULL;
}

static ms_poll lifecycle_poll(ms_cx *cx, void *state) {
    lifecycle *l = state;
    host *h = host_get();
    pthread_mutex_lock(&h->lock);
    ms_waker_store(&h->lifecycle_waker, ms_cx_waker(cx));
    pthread_mutex_unlock(&h->lock);
    uint64_t n = 0;
    if (ms_signal_poll(l->sigint, cx, &n) == MS_POLL_READY) {
        pthread_mutex_lock(&h->lock);
        bool stopping = h->phase != HOST_RUNNING;
        pthread_mutex_unlock(&h->lock);
        if (stopping || n > 1) {
            hostlog(HOSTLOG_WARNING, "shutdown.forced", 0, NULL, "second SIGINT: exiting now");
            flush_metrics(h, "second SIGINT");
            _exit(130);
        }
        lifecycle_begin_shutdown("SIGINT", -1);
    }
    if (ms_signal_poll(l->sigterm, cx, &n) == MS_POLL_READY)
        lifecycle_begin_shutdown("SIGTERM", -1);
    if (l->sighup && ms_signal_poll(l->sighup, cx, &n) == MS_POLL_READY) {
        /* Reading the profile means file I/O and running Lua: the blocking
         * pool's work, not a worker's. */
        if (ms_spawn_blocking(h->rt, reload_job, NULL, NULL) != 0)
            hostlog(HOSTLOG_WARNING, "reload.refused", 0, NULL,
                    "SIGHUP: cannot reload now (shutting down)");
    }
    if (l->sigusr1 && ms_signal_poll(l->sigusr1, cx, &n) == MS_POLL_READY) {
        if (ms_spawn_blocking(h->rt, dump_job, NULL, NULL) != 0)
            hostlog(HOSTLOG_WARNING, "tasks.dump_failed", 0, NULL,
                    "SIGUSR1: cannot dump the tasks now (shutting down)");
    }
    /* The service manager's watchdog is fed by this task, so only while
     * workers run tasks, and only while no worker is reported stuck. */
    while (l->watchdog && ms_timer_poll(l->watchdog, cx) == MS_POLL_READY) {
        if (sdnotify_workers_progress())
            sdnotify_send("WATCHDOG=1");
        ms_timer_set_after(l->watchdog, sdnotify_watchdog_ms());
    }
    pthread_mutex_lock(&h->lock);
    bool stopping = h->phase == HOST_STOPPING;
    double timeout = h->shutdown_timeout;
    uint64_t started = h->shutdown_started_ns;
    pthread_mutex_unlock(&h->lock);
    if (stopping) {
        if (!l->deadline_armed) {
            ms_timer_set_deadline(l->deadline, started + (uint64_t)(timeout * 1e9));
            l->deadline_armed = true;
        }
        if (ms_timer_poll(l->deadline, cx) == MS_POLL_READY) {
            if (!l->killed) {
                l->killed = true;
                atomic_store(&h->shutdown_timed_out, true);
                hostlog(HOSTLOG_WARNING, "shutdown.timeout", 0, NULL,
                        "shutdown timed out after %.3g s: killing every agent", timeout);
                kill_all(h);
                ms_timer_set_after(l->deadline, 1000);
                return lifecycle_poll(cx, state);
            }
            hostlog(HOSTLOG_ERROR, "shutdown.forced", 0, NULL,
                    "agents did not stop within 1 s of being killed (one may be "
                    "stuck in a loop): exiting now");
            flush_metrics(h, "shutdown timed out");
            _exit(3);
        }
    }
    return MS_POLL_PENDING;
}

static void lifecycle_drop(void *state) {
    lifecycle *l = state;
    ms_signal_free(l->sigint);
    ms_signal_free(l->sigterm);
    ms_signal_free(l->sighup);
    ms_signal_free(l->sigusr1);
    ms_timer_free(l->deadline);
    if (l->watchdog)
        ms_timer_free(l->watchdog);
    l->sigint = l->sigterm = l->sighup = l->sigusr1 = NULL;
    l->deadline = l->watchdog = NULL;
}

int lifecycle_start(ms_error *err) {
    host *h = host_get();
    lifecycle *l = &g_life;
    memset(l, 0, sizeof *l);
    int rc = ms_signal_new(h->rt, SIGINT, &l->sigint, err);
    if (rc == 0)
        rc = ms_signal_new(h->rt, SIGTERM, &l->sigterm, err);
    if (rc == 0 && h->profile_name)
        rc = ms_signal_new(h->rt, SIGHUP, &l->sighup, err);
    if (rc == 0)
        rc = ms_signal_new(h->rt, SIGUSR1, &l->sigusr1, err);
    if (rc == 0)
        rc = ms_timer_new(h->rt, &l->deadline, err);
    if (rc == 0 && sdnotify_watchdog_ms() > 0) {
        rc = ms_timer_new(h->rt, &l->watchdog, err);
        if (rc == 0)
            ms_timer_set_after(l->watchdog, sdnotify_watchdog_ms());
    }
    if (rc == 0)
        rc = ms_spawn(h->rt, lifecycle_poll, l, lifecycle_drop, NULL);
    if (rc != 0) {
        lifecycle_drop(l);
        return rc;
    }
    /* The calling thread (ms-host's main thread, which then waits for the
     * main agent) leaves these signals to the driver thread, which handles
     * them through libuv; the runtime's other threads block them already
     * (core/src/thread.c).  Waiting in a futex, it would otherwise be the
     * one the kernel picks, and ThreadSanitizer holds a signal until its
     * thread makes an intercepted call. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return 0;
}

/* ---- stalls (the core's health monitor) ---- */

/* The agent named at a worker's stall report, for its recovery report
 * (the agent may be gone by then).  Health monitor thread only. */
static char stall_names[MS_MAX_WORKERS][64];

/* The runaway policy for a (under no lock): whether this stall, its
 * stalls-th, ends it. */
static bool runaway_ends(agent *a, uint32_t stalls) {
    int policy = a->runaway;
    return policy == RUNAWAY_STOP || (policy > 0 && stalls >= (uint32_t)policy);
}

/* The agent whose task has this id, with a reference, or NULL.  A walk
 * of the agent list under the host lock: for stalls only, never per poll. */
static agent *agent_of_task(host *h, uint64_t task_id) {
    agent *found = NULL;
    pthread_mutex_lock(&h->lock);
    for (agent *a = h->agents; a; a = a->next_reg)
        if (a->task && ms_task_id(a->task) == task_id) {
            found = a;
            agent_ref(found);
            break;
        }
    pthread_mutex_unlock(&h->lock);
    return found;
}

/* Called on the health monitor's thread at every look while every worker
 * is stalled and tasks wait (ms_config.on_starved): the agent whose poll
 * holds the worker yields (agent_interrupt), goes to the back of the
 * worker's queue, and carries on at its next poll; what waited runs
 * meanwhile (a signal's handling, the console, other agents). */
void lifecycle_on_starved(void *ud, const ms_stall *st) {
    (void)ud;
    host *h = host_get();
    if (!h)
        return;
    agent *found = agent_of_task(h, st->task_id);
    if (!found)
        return;
    agent_interrupt(found);
    /* Said once per 10 s at most: the monitor asks at every look. */
    static _Atomic uint64_t last_said_ms;
    uint64_t now = ms_now_ns() / 1000000u, last = atomic_load(&last_said_ms);
    if ((last == 0 || now - last >= 10000) && atomic_compare_exchange_strong(&last_said_ms, &last, now))
        hostlog(HOSTLOG_WARNING, "worker.starved", found->id, found->name,
                "every worker is stalled and tasks wait: agent %s (and any other agent "
                "stalled with it) yields its worker for a turn; it carries on afterwards",
                found->name);
    agent_unref(found);
}

/* Called on the health monitor's thread: names the agent whose poll holds
 * the worker, applies its runaway policy, says so on stderr and publishes
 * ms.worker.stalled. */
void lifecycle_on_stall(void *ud, const ms_stall *st) {
    sdnotify_worker_stalled(!st->recovered);
    host *h = host_get();
    char name[64] = "(not an agent)";
    agent *found = NULL;
    if (st->recovered && st->worker < MS_MAX_WORKERS && stall_names[st->worker][0]) {
        snprintf(name, sizeof name, "%s", stall_names[st->worker]);
    } else if (h && (found = agent_of_task(h, st->task_id))) {
        snprintf(name, sizeof name, "%s", found->name);
    }
    if (st->worker < MS_MAX_WORKERS)
        snprintf(stall_names[st->worker], sizeof stall_names[0], "%s", st->recovered ? "" : name);
    /* The runaway policy: report only, or stop the agent (at once, or at
     * its Nth stall); it then exits with reason "runaway", which
     * supervisors restart as any abnormal exit. */
    const char *action = "";
    if (found && !st->recovered) {
        uint32_t stalls = atomic_fetch_add(&found->stalls, 1) + 1;
        if (runaway_ends(found, stalls)) {
            char why[96];
            snprintf(why, sizeof why, "runaway: in one poll for %.1f s (stall %u)",
                     st->stalled_ms / 1000.0, stalls);
            agent_stop_as(found, "runaway", why);
            action = "; stopping it (runaway policy)";
        } else if (atomic_load_explicit(&found->stop_requested, memory_order_acquire) ||
                   (atomic_load_explicit(&found->shutdown_requested, memory_order_acquire) &&
                    !atomic_load_explicit(&found->traps_exit, memory_order_relaxed))) {
            /* Stopped already and still in its poll: its request to leave
             * compiled code may have been lost to a write of LuaJIT's own
             * (preempt.c), or it is in a C function; ask again. */
            agent_interrupt(found);
            action = "; it was stopped and has not ended yet";
        }
    }
    if (found)
        agent_unref(found);
    if (st->recovered)
        hostlog(HOSTLOG_NOTICE, "worker.recovered", 0, NULL,
                "worker %u is free again after %.1f s in agent %s", st->worker,
                st->stalled_ms / 1000.0, name);
    else
        hostlog(HOSTLOG_WARNING, "worker.stalled", 0, NULL,
                "worker %u has been in one poll of agent %s for %.1f s (an endless loop "
                "or a blocking call?); %s%s",
                st->worker, name, st->stalled_ms / 1000.0,
                st->replaced ? "a stand-in worker carries its load until it is free"
                             : "the other workers carry on",
                action);
    const char *keys[] = {"worker", "agent", "stalled", "recovered", "replaced", "stopped"};
    const char *strs[] = {NULL, name, NULL, st->recovered ? "true" : "false",
                          st->replaced ? "true" : "false", action[0] ? "true" : "false"};
    double nums[] = {st->worker, 0, st->stalled_ms / 1000.0, 0, 0, 0};
    events_publish_host("ms.worker.stalled", keys, strs, nums, 6);
}

/* ---- SIGHUP: reload ---- */

/* The host's own fields that only take effect at start: neither libms's
 * (ms_config, compared field by field below) nor live.  As "name=value",
 * from the profile the host started with; written once before the signal
 * watcher starts, read by reloads. */
#define FIXED_MAX 32
static char *fixed_at_start[FIXED_MAX];
static int nfixed_at_start;

/* Fills out with the start-time host fields of the resolved profile at
 * prof, "name=value" (malloc'd), and returns how many.  The ms.profile
 * module is at mod. */
static int fixed_fields(lua_State *L, int mod, int prof, char **out, int max) {
    int n = 0, top = lua_gettop(L);
    lua_getfield(L, mod, "fields");
    int fields = lua_gettop(L);
    lua_getfield(L, mod, "field_order");
    int order = lua_gettop(L);
    lua_getfield(L, prof, "values");
    int vals = lua_gettop(L);
    if (!lua_istable(L, fields) || !lua_istable(L, order) || !lua_istable(L, vals)) {
        lua_settop(L, top);
        return 0;
    }
    for (int i = 1; i <= (int)lua_objlen(L, order) && n < max; i++) {
        lua_settop(L, vals);
        lua_rawgeti(L, order, i);
        const char *name = lua_tostring(L, -1);
        if (!name || strcmp(name, "description") == 0)
            continue;
        lua_getfield(L, fields, name);
        lua_getfield(L, -1, "config");
        lua_getfield(L, -2, "live");
        bool skip = lua_toboolean(L, -1) || lua_toboolean(L, -2);
        if (skip)
            continue;
        lua_getfield(L, vals, name);
        const char *v = lua_type(L, -1) == LUA_TBOOLEAN ? (lua_toboolean(L, -1) ? "true" : "false")
                        : lua_isstring(L, -1)           ? lua_tostring(L, -1)
                                                        : "nil";
        size_t len = strlen(name) + strlen(v) + 2;
        char *text = malloc(len);
        if (!text)
            continue;
        snprintf(text, len, "%s=%s", name, v);
        out[n++] = text;
    }
    lua_settop(L, top);
    return n;
}

void lifecycle_note_profile(lua_State *L, int prof) {
    prof = prof < 0 ? lua_gettop(L) + prof + 1 : prof;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ms.profile");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        lua_pop(L, 1);
        return;
    }
    for (int i = 0; i < nfixed_at_start; i++)
        free(fixed_at_start[i]);
    nfixed_at_start = fixed_fields(L, lua_gettop(L), prof, fixed_at_start, FIXED_MAX);
    lua_pop(L, 1);
}

/* The live settings (the host's and the runtime's, see tune.c) change as
 * ms.tune would change them; the others are named, so the operator knows a
 * restart is needed. */
void lifecycle_reload_profile(void) {
    host *h = host_get();
    if (!h || !h->profile_name)
        return;
    lua_State *L = luaL_newstate();
    if (!L) {
        hostlog(HOSTLOG_ERROR, "reload.failed", 0, NULL, "SIGHUP: out of memory");
        return;
    }
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", paths_lua_dir(), paths_lua_dir());
    lua_setfield(L, -2, "path");
    /* ms.profile takes its fields from the ms module (ms._profile_fields). */
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_ms);
    lua_setfield(L, -2, "ms");
    lua_pop(L, 2);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ms.profile");
    int ok = lua_pcall(L, 1, 1, 0) == 0;
    if (ok) {
        lua_getfield(L, -1, "load");
        lua_pushstring(L, h->profile_name);
        lua_createtable(L, 0, 2);
        lua_createtable(L, 0, h->nprofile_sets);
        for (int i = 0; i < h->nprofile_sets; i++) {
            const char *eq = strchr(h->profile_sets[i], '=');
            lua_pushlstring(L, h->profile_sets[i], (size_t)(eq - h->profile_sets[i]));
            lua_pushstring(L, eq + 1);
            lua_settable(L, -3);
        }
        lua_setfield(L, -2, "overrides");
        ok = lua_pcall(L, 2, 1, 0) == 0;
    }
    if (!ok) {
        hostlog(HOSTLOG_ERROR, "reload.failed", 0, NULL,
                "SIGHUP: profile not reloaded, the running settings stay: %s", lua_tostring(L, -1));
        lua_close(L);
        return;
    }
    int prof = lua_gettop(L);
    lua_getfield(L, prof, "values");
    int vals = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ms.profile");
    lua_call(L, 1, 1);
    int mod = lua_gettop(L);
    int changed = 0;

    /* The live fields, as one ms.tune-style request. */
    tune_req req[16];
    int n = 0;
    lua_getfield(L, mod, "live_fields");
    for (int i = 1; i <= (int)lua_objlen(L, -1) && n < 16; i++) {
        lua_rawgeti(L, -1, i);
        const char *name = lua_tostring(L, -1);
        lua_getfield(L, vals, name);
        if (name && host_is_live_field(name) && lua_isnumber(L, -1)) {
            req[n].name = name; /* kept alive by live_fields until lua_close */
            req[n].value = lua_tonumber(L, -1);
            n++;
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    tune_change out[16];
    char why[MS_ERROR_MESSAGE_MAX + 64];
    int applied = host_tune(h, req, n, "SIGHUP", out, why, sizeof why);
    if (applied < 0) {
        hostlog(HOSTLOG_ERROR, "reload.failed", 0, NULL, "SIGHUP: live settings not changed: %s",
                why);
    } else {
        for (int i = 0; i < applied; i++)
            hostlog(HOSTLOG_NOTICE, "reload.changed", 0, NULL, "SIGHUP: %s %g -> %g", out[i].name,
                    out[i].old_value, out[i].new_value);
        changed += applied;
    }

    /* The rest of the runtime's fields take a restart: name the ones the
     * new profile changes. */
    lua_getfield(L, mod, "to_config_pairs");
    lua_pushvalue(L, prof);
    if (lua_pcall(L, 1, 1, 0) == 0) {
        ms_config now = h->profile_config;
        int np = (int)lua_objlen(L, -1);
        for (int i = 1; i <= np; i++) {
            lua_rawgeti(L, -1, i);
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            ms_config probe = now;
            ms_error err;
            const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
            if (k && v && !ms_config_is_live(k) && ms_config_set(&probe, k, v, &err) == 0 &&
                memcmp(&probe, &now, sizeof probe) != 0) {
                hostlog(HOSTLOG_WARNING, "reload.needs_restart", 0, NULL,
                        "SIGHUP: %s = %s needs a restart (not live-tunable)", k, v);
                changed++;
            }
            lua_pop(L, 3);
        }
    }
    /* And the host's own start-time fields (the metrics endpoint and
     * file, the console, the tuner). */
    char *fixed[FIXED_MAX];
    int nf = fixed_fields(L, mod, prof, fixed, FIXED_MAX);
    for (int i = 0; i < nf; i++) {
        bool same = false;
        for (int k = 0; k < nfixed_at_start && !same; k++)
            same = strcmp(fixed[i], fixed_at_start[k]) == 0;
        if (!same && nfixed_at_start > 0) {
            char *eq = strchr(fixed[i], '=');
            hostlog(HOSTLOG_WARNING, "reload.needs_restart", 0, NULL,
                    "SIGHUP: %.*s = %s needs a restart (not live-tunable)", (int)(eq - fixed[i]),
                    fixed[i], eq + 1);
            changed++;
        }
        free(fixed[i]);
    }
    if (changed == 0)
        hostlog(HOSTLOG_NOTICE, "reload.unchanged", 0, NULL,
                "SIGHUP: profile %s reloaded, nothing changed", h->profile_name);
    const char *keys[] = {"phase", "profile", "changes"};
    const char *strs[] = {"reload", h->profile_name, NULL};
    double nums[] = {0, 0, changed};
    events_publish_host("ms.reload", keys, strs, nums, 3);
    lua_close(L);
}
