/*
 * cluster_names.h - agent names unique across the cluster (docs/cluster.md,
 * "Names"): a JetStream key-value bucket, a key per name, created
 * atomically when an agent registers the name and deleted when it ends or
 * its host is lost.
 *
 * Every operation on the bucket runs on one thread of this file, the
 * registrar, which waits on the broker for them; an agent that registers
 * a name yields until the registrar answers (cluster_claim_poll), so no
 * worker waits on the network.  Without JetStream on the broker nothing
 * here is on: names are unique per host only, and the host says so at
 * start.
 */
#ifndef MS_AGENTS_CLUSTER_NAMES_H
#define MS_AGENTS_CLUSTER_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "fwd.h"
#include "ms.h"

/* A name being claimed or held.  Opaque. */
typedef struct name_claim name_claim;

/* Opens (or creates) the bucket on nc and starts the registrar; false
 * when the broker has no JetStream (why: the reason).  cluster_start. */
bool cluster_names_start(natsConnection *nc, uint64_t self, char *why, size_t whylen);
/* Lets the registrar finish what is queued (the releases of the agents
 * that have ended), for up to a second, and stops it.  cluster_stop,
 * before the connection closes. */
void cluster_names_stop(void);
/* True while the registrar runs (names are cluster-wide). */
bool cluster_names_on(void);

/* Starts claiming name for this host.  NULL without memory.  The claim
 * has two references: the caller's and the registrar's. */
name_claim *cluster_claim_start(const char *name);
/* Ready: true if the name is ours (then bind or release it), false with
 * err set (taken, with the holder's host; no answer).  Pending: w is
 * woken when it is ready. */
ms_poll cluster_claim_poll(name_claim *c, const ms_waker *w, bool *ok, char *err, size_t errlen);
/* The same, waiting on this thread (not a worker: nats.c's delivery
 * thread for a remote spawn); false with err set. */
bool cluster_claim_wait(name_claim *c, char *err, size_t errlen);
/* The claimed name is now agent a's (a->name_claim takes the caller's
 * reference); the key's value gets its id.  If a has ended meanwhile,
 * the name is released at once. */
void cluster_claim_bind(name_claim *c, agent *a);
/* Gives the caller's reference up; a claimed name that was never bound
 * is released. */
void cluster_claim_drop(name_claim *c);
/* Agent a has ended: its name (if claimed) is released.  agent.c. */
void cluster_names_agent_ended(agent *a);
/* Host hid is lost or left: its names are deleted.  cluster.c. */
void cluster_names_host_lost(uint64_t hid);

/* whereis: asks the bucket who holds name; the answer goes to
 * cluster_names_found(ref, host, agent id) in cluster.c (host 0: no such
 * key or no answer). */
void cluster_names_lookup(uint64_t ref, const char *name);
void cluster_names_found(uint64_t ref, const char *name, uint64_t holder, uint64_t id);

#endif
