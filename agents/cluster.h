/*
 * cluster.h - agents across hosts on a NATS broker (docs/cluster.md).
 *
 * A host joins with the profile field `cluster` (ms-host --cluster URL):
 * cluster_start connects with nats.c, whose own threads read the socket
 * and run our callbacks, so no worker ever waits on the network.  Without
 * it nothing here runs and every hook below is one untaken branch.
 *
 * An agent of another host is stood for by a *proxy*: an agent struct
 * that never runs (no state, no task) whose remote_host is that host and
 * whose id is the remote agent's.  Sends and calls to it (mail_deliver),
 * monitors on it (mail_add_monitor) and stops (agent_stop) are handed to
 * this layer; its exit (the remote agent's, or its host's loss) goes to
 * its local monitors through the ordinary agent_exit.  One proxy per
 * remote agent at a time (a table of weak entries, under the cluster's
 * lock), so a monitor and a later whereis meet on the same object.
 */
#ifndef MS_AGENTS_CLUSTER_H
#define MS_AGENTS_CLUSTER_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fwd.h"
#include "ms.h"

/* The settings of cluster_start (profile fields, facts.c). */
typedef struct cluster_config {
    const char *url;            /* nats://host:port */
    const char *name;           /* cluster_name: "" or NULL for none (copied) */
    double heartbeat;           /* seconds between heartbeats */
    double loss_after;          /* silence after which a host is lost (and fencing) */
    double broker_grace;        /* after our reconnect, nobody is declared lost */
} cluster_config;

/* Connects h to the cluster (once per process).  Returns 0, or an ms_err
 * code with err set (the broker cannot be reached, no memory). */
int cluster_start(host *h, const cluster_config *cfg, ms_error *err);
/* Tells the others this host is going (they see reason "shutdown" for
 * what they still watch), flushes and disconnects.  After every agent has
 * exited, before the runtime goes. */
void cluster_stop(void);
/* Frees the connection cluster_stop closed, and nats.c's threads, once
 * nothing can publish any more (after host_shutdown).  Does nothing
 * outside a cluster. */
void cluster_free(void);
/* True once cluster_start has succeeded (a relaxed load). */
bool cluster_on(void);
/* This host's id (0 when not in a cluster). */
uint64_t cluster_self(void);

/* ---- the hooks (agent.c, mail.c): called only for proxies ---- */

/* A message (a call when m->reply) for proxy p: takes m on success. */
int cluster_deliver(agent *p, msg *m, char *err, size_t errlen);
/* A local monitor was added on proxy p: ask p's host to tell us its exit. */
void cluster_watch(agent *p);
/* a:stop() on proxy p. */
void cluster_stop_remote(agent *p, const char *reason);
/* Proxy p's last reference is going: off the table. */
void cluster_proxy_free(agent *p);

/* ---- for the ms module (lms_cluster.c) ---- */

/* A cluster-wide whereis in flight: every known host is asked; it ends
 * when the owner answers, when all have answered, or after a second. */
typedef struct cluster_lookup cluster_lookup;
cluster_lookup *cluster_lookup_start(const char *name, char *err, size_t errlen);
/* Ready: *found is the agent (a reference, or NULL for none).  Pending:
 * w is woken when it is ready. */
ms_poll cluster_lookup_poll(cluster_lookup *lk, const ms_waker *w, agent **found, char *error,
                            size_t errlen);
/* A remote spawn: req (taken over) is the request lms_cluster.c built;
 * ended like a lookup, with the new agent or an error.  NULL with err
 * set when it cannot be sent (an unknown or lost host). */
cluster_lookup *cluster_spawn_start(uint64_t hid, xfer *req, char *err, size_t errlen);
/* This build's id (MS_BUILD_ID): fn = travels only between equal ones. */
const char *cluster_build_id(void);
void cluster_lookup_release(cluster_lookup *lk);

/* One row of ms.cluster.hosts(). */
typedef struct cluster_host_info {
    uint64_t id;
    bool lost, self;
    double silent;              /* seconds since last heard of */
    char build[48];
    char name[48];              /* its cluster_name, "" for none */
} cluster_host_info;
/* The known hosts (this one first) in a malloc'd array; false without
 * memory. */
bool cluster_hosts(cluster_host_info **rows, size_t *n);

/* The cluster's counters for ms.metrics() and /metrics. */
typedef struct cluster_stats {
    bool on;
    const char *state;          /* connected, reconnecting, closed, off */
    uint64_t sends, calls, replies, bytes_out, bytes_in, received, rejected;
    uint64_t reconnects, hosts_known, hosts_lost, calls_failed, fenced;
    bool names_cluster;         /* names unique cluster-wide (JetStream) */
    /* Remote call round trip: counts per bucket (upper bounds in µs,
     * CLUSTER_LAT_BOUNDS, the last one open). */
    uint64_t call_latency[12];
    uint64_t call_latency_sum_us;
} cluster_stats;
#define CLUSTER_LAT_BUCKETS 12
extern const double cluster_latency_bounds_us[CLUSTER_LAT_BUCKETS - 1];
void cluster_get_stats(cluster_stats *s);

/* What this host knows of host hid (cluster_names.c: is a name's holder
 * gone?). */
enum { CLUSTER_HOST_UNKNOWN, CLUSTER_HOST_LIVE, CLUSTER_HOST_LOST };
int cluster_host_state(uint64_t hid);

/* The host id as 16 hex digits (buf of at least 17). */
void cluster_id_hex(uint64_t id, char *buf);
/* Parses 16 hex digits; false if s is not one. */
bool cluster_id_parse(const char *s, uint64_t *id);

#endif
