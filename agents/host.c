/*
 * host.c - the process-wide host: creation around a runtime, the metrics
 * history, the intervals that outlive agents, and shutdown.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "events.h"
#include "facts.h"
#include "fsjob.h"
#include "host.h"
#include "hostlog.h"
#include "lifecycle.h"
#include "ops.h"
#include "preempt.h"
#include "tune.h"

/* The process's host.  Set by the thread that opens it, read by any
 * thread, the health monitor's included, which can report a stall before
 * host_init has returned (the runtime starts first): hence atomic. */
static _Atomic(host *) g_host;

host *host_get(void) {
    return atomic_load_explicit(&g_host, memory_order_acquire);
}

host *host_init(ms_runtime *rt, bool own) {
    host *existing = host_get();
    if (existing)
        return existing;
    host *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->rt = rt;
    h->own_rt = own;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->hist_lock, NULL);
    h->next_agent_id = 1;
    /* The host's live settings start at their profile fields' defaults. */
    profile_field f;
    for (size_t i = 0; profile_field_at(i, &f); i++)
        if (!f.runtime && f.live)
            host_setting_set(h, f.name, f.def);
    atomic_init(&h->jit_agents, 0);
    atomic_init(&h->jit_limited, 0);
    /* Before the first agent state: LuaJIT's profiler slot and the probe
     * that make compiled code stoppable (preempt.c). */
    preempt_init();
    atomic_store_explicit(&g_host, h, memory_order_release);
    return h;
}

host *host_open(ms_config *cfg, const char *lua_path, const char *lua_cpath, ms_error *err) {
    cfg->on_stall = lifecycle_on_stall;
    cfg->on_starved = lifecycle_on_starved;
    ms_runtime *rt;
    if (ms_runtime_new(cfg, &rt, err) != 0)
        return NULL;
    host *h = host_init(rt, true);
    if (!h) {
        ms_runtime_shutdown(rt, MS_SHUTDOWN_CANCEL, 0, NULL);
        ms_runtime_free(rt);
        ms_error_set(err, MS_E_NO_MEMORY, "no memory for the host");
        return NULL;
    }
    h->lua_path = strdup(lua_path ? lua_path : "");
    h->lua_cpath = strdup(lua_cpath ? lua_cpath : "");
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

void host_track_interval(lint *iv) {
    host *h = host_get();
    iv->tprev = iv->tnext = NULL;
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    iv->tnext = h->intervals;
    if (h->intervals)
        h->intervals->tprev = iv;
    h->intervals = iv;
    pthread_mutex_unlock(&h->lock);
}

void host_untrack_interval(lint *iv) {
    host *h = host_get();
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    if (iv->tprev)
        iv->tprev->tnext = iv->tnext;
    else if (h->intervals == iv)
        h->intervals = iv->tnext;
    if (iv->tnext)
        iv->tnext->tprev = iv->tprev;
    iv->tprev = iv->tnext = NULL;
    pthread_mutex_unlock(&h->lock);
}

int host_shutdown(void) {
    host *h = host_get();
    int rc = 0;
    if (!h)
        return 0;
    pthread_mutex_lock(&h->lock);
    for (lint *iv = h->intervals, *next; iv; iv = next) {
        next = iv->tnext;
        ms_interval_free(iv->iv);
        iv->iv = NULL;
        iv->tprev = iv->tnext = NULL;
    }
    h->intervals = NULL;
    /* The runtime cancels the agents' tasks, but cannot cancel a poll: an
     * agent still running code that never yields is stopped, as its
     * task's drop would have (a proxy's remote agent is not ours to stop). */
    for (agent *a = h->agents; a; a = a->next_reg)
        if (!a->remote_host)
            agent_stop_as(a, "killed", "the runtime shut down");
    pthread_mutex_unlock(&h->lock);
    if (h->own_rt) {
        ms_shutdown_report rep;
        rc = ms_runtime_shutdown(h->rt, MS_SHUTDOWN_CANCEL,
                                 ms_runtime_config(h->rt)->shutdown_timeout_ms, &rep);
        if (rep.abandoned_threads) {
            hostlog(HOSTLOG_WARNING, "shutdown.threads_abandoned", 0, NULL,
                    "%u thread%s still running after %llu ms (an agent stuck in a "
                    "loop?); exiting without waiting for them",
                    rep.abandoned_threads, rep.abandoned_threads == 1 ? " was" : "s were",
                    (unsigned long long)rep.elapsed_ms);
            /* A thread still runs an agent's poll, which reads the agent,
             * the host and the runtime: none of it is freed (the process
             * is about to exit; g_host keeps it reachable). */
            return rc;
        }
        ms_runtime_free(h->rt);
        /* No thread is left: file jobs the shutdown cancelled before they
         * ran never let go of their requests. */
        fsjob_reap_all();
    }
    uint64_t stopped = atomic_load(&h->stopped_at_shutdown);
    uint64_t unread = atomic_load(&h->unread_at_shutdown);
    if (unread > 0)
        hostlog(HOSTLOG_NOTICE, "shutdown.unread", 0, NULL,
                "shutdown stopped %llu agent%s, leaving %llu message%s unread",
                (unsigned long long)stopped, stopped == 1 ? "" : "s", (unsigned long long)unread,
                unread == 1 ? "" : "s");
    events_shutdown();
    free(h->profile_name);
    for (int i = 0; i < h->nprofile_sets; i++)
        free(h->profile_sets[i]);
    free(h->profile_sets);
    free(h->lua_path);
    free(h->lua_cpath);
    free(h->name_buckets);
    ms_waker_drop(&h->lifecycle_waker);
    ms_metrics_free(h->hist_latest);
    ms_metrics_free(h->hist_previous);
    pthread_mutex_destroy(&h->hist_lock);
    pthread_mutex_destroy(&h->lock);
    free(h);
    atomic_store_explicit(&g_host, NULL, memory_order_release);
    return rc;
}
