/*
 * host.h - the process-wide host: the runtime the agents run on, their
 * registry, the defaults for new agents, and what the process resolved its
 * profile from.  One per process (host_get).
 *
 * Locks: `lock` guards the registry, the defaults and the shutdown phase;
 * `hist_lock` guards the metrics history and is never held while another
 * lock is taken.  Neither is ever held across a Lua API call.
 */
#ifndef MS_AGENTS_HOST_H
#define MS_AGENTS_HOST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>

#include "facts.h"
#include "fwd.h"
#include "ms.h"

typedef enum host_phase { HOST_RUNNING, HOST_STOPPING } host_phase;

struct host {
    ms_runtime *rt;
    bool own_rt;
    pthread_mutex_t lock;
    /* The registry (registry.c), under lock: every live agent on one
     * list, and by name in a table of chains. */
    agent *agents;
    uint64_t nagents;
    agent **name_buckets;       /* nbuckets chains (a power of two) */
    size_t nbuckets, nnamed;
    uint64_t next_agent_id;     /* under lock */
    /* Defaults for new agents: live-tunable (tune.c), under lock. */
    size_t default_mem_limit;
    size_t mailbox_limit;
    uint32_t jit_agent_limit;
    /* The agents' default runaway policy (agent.h): the profile's
     * runaway_stop_after, 0 (report) or a count.  Under lock. */
    int runaway;
    /* Open OS handles (iohandle.c): limits (0 = none; written by ms.tune
     * under lock, read relaxed by anyone), the open count, and the I/O
     * metrics indexed by io_metric (facts.h); relaxed counters. */
    _Atomic uint32_t agent_io_limit, host_io_limit;
    _Atomic uint64_t io_open;
    _Atomic uint64_t io[IM_COUNT];
    /* The HTTP client's figures (lms_http_client.c; facts.h): counters
     * indexed by http_client_metric (the connection gauges are libms's), and the
     * latency histogram's buckets (not cumulative) and sum; relaxed. */
    _Atomic uint64_t http_client[HCM_COUNT];
    _Atomic uint64_t http_client_latency[HTTP_CLIENT_LATENCY_BUCKETS];
    _Atomic uint64_t http_client_latency_sum_ns;
    _Atomic uint64_t tune_changes; /* settings changed by ms.tune or SIGHUP */
    /* Agents whose state has the JIT on (agent_jit.c): counted up when
     * one is given it, down when it falls back or closes; and agents
     * refused it by jit_agent_limit.  Any worker, atomic. */
    _Atomic uint32_t jit_agents;
    _Atomic uint64_t jit_limited;
    char *lua_path, *lua_cpath; /* package paths for new agent states */
    /* C modules new agents may require by name (package.preload), or
     * NULL: ms-host's ms.repl_term.  Immutable after start. */
    const luaL_Reg *preload;
    /* Intervals live in Lua userdata that may outlive the runtime (the
     * main state is collected last): the host frees what is left at
     * shutdown and clears the userdata's pointer.  Under lock: a doubly
     * linked list through the userdata (lint.tprev, tnext), so that
     * collecting one is O(1). */
    lint *intervals;
    /* Agents the runtime's shutdown stopped, and the messages they left
     * unread: reported once, by host_shutdown. */
    _Atomic uint64_t stopped_at_shutdown, unread_at_shutdown;
    /* Graceful shutdown (lifecycle.c); under lock. */
    host_phase phase;
    char shutdown_reason[32];
    double shutdown_timeout;
    uint64_t shutdown_started_ns;
    ms_waker lifecycle_waker;
    _Atomic bool shutdown_timed_out;
    /* What ms-host resolved its profile from, for SIGHUP (immutable after
     * start; NULL under ms.run). */
    char *profile_name;
    char **profile_sets;        /* "key=value", from --set and --workers */
    int nprofile_sets;
    ms_config profile_config;   /* the runtime's settings as resolved */
    /* The metrics collector's last two snapshots (NULL until taken) with
     * their wall-clock times, for ms.metrics_history.  Written by the
     * collector (ms-host/collector.c), read by agents; under hist_lock. */
    pthread_mutex_t hist_lock;
    ms_metrics *hist_latest, *hist_previous;
    double hist_latest_time, hist_previous_time;
    /* Set by ms-host when it runs a collector (under lock): called before
     * an immediate _exit so that the metrics file still ends with a final
     * line. */
    void (*metrics_final)(const char *why);
};

host *host_get(void);
/* Creates the process's host around rt (taking ownership if own). */
host *host_init(ms_runtime *rt, bool own);
/* The one bring-up of ms-host run and ms.run: a runtime from cfg (with
 * the host's stall reports), the host around it, and the package paths
 * new agents get.  NULL with err set on failure (nothing left running). */
host *host_open(ms_config *cfg, const char *lua_path, const char *lua_cpath, ms_error *err);
/* Shuts down and frees the runtime (if the host owns it) and the host.
 * Returns MS_E_SHUTDOWN_FAILED when threads were left running. */
int host_shutdown(void);
/* Collector thread: makes m (owned from now on) the latest snapshot; the
 * latest becomes the previous. */
void host_history_push(host *h, ms_metrics *m, double time);
/* Puts iv (its ms_interval made) on the host's list / takes it off. */
void host_track_interval(lint *iv);
void host_untrack_interval(lint *iv);

#endif
