/*
 * cluster.c - agents across hosts on a NATS broker (cluster.h,
 * docs/cluster.md).
 *
 * Subjects.  Host X (its id in 16 hex digits) listens on `ms.h.X` for the
 * envelopes of cluster_wire.h and on `ms.h.X.>` for the broker's
 * no-responders answers to its own requests and for probes; every host
 * listens on `ms.hb` for heartbeats (a HELLO envelope every heartbeat
 * interval, BYE when a host leaves cleanly).
 *
 * Threads.  nats.c runs our callbacks on its own delivery threads (one per
 * subscription) and its reconnection on its own; the ticker (a thread of
 * ours) sends heartbeats, probes silent hosts and declares lost the ones
 * that stay silent.  Workers only publish (nats.c buffers and a flusher
 * thread writes), so no agent waits on the network.
 *
 * Locks.  `lock` guards the peers, the proxy table, the pending calls and
 * the lookups.  It is a leaf for everything but the host lock (taken
 * inside it only by local_agent's registry walk, never the other way) and
 * never held across a publish, a mail_deliver, an agent_exit or a
 * reply_fill: those take agent and reply locks and may call back into
 * this file (an exit notice for a watching host comes to cluster_deliver).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "agent.h"
#include "cluster.h"
#include "cluster_names.h"
#include "cluster_wire.h"
#include "hostlog.h"
#include "host.h"
#include "lhandle.h"
#include "mail.h"
#include "ops.h"
#include "registry.h"
#include "spawn.h"
#include "xfer.h"

#ifndef MS_BUILD_ID
#define MS_BUILD_ID "dev"
#endif

const double cluster_latency_bounds_us[CLUSTER_LAT_BUCKETS - 1] = {
    50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 102400};

/* A host we have heard of.  Under lock. */
typedef struct peer {
    uint64_t id;
    uint64_t last_seen_ns;
    uint64_t probed_ns;         /* last probe sent (0: none since last heard) */
    bool lost;
    char build[48];
    char name[48];              /* its cluster_name, "" for none */
    struct peer *next;
} peer;

/* A call of ours waiting for another host's answer.  Under lock. */
typedef struct pending_call {
    uint64_t ref, hid;
    reply_slot *r;              /* the message's reference, moved here */
    uint64_t sent_ns;
    struct pending_call *next;
} pending_call;

struct cluster_lookup {
    _Atomic uint32_t refs;      /* the asking task's and the table's */
    uint64_t ref;
    uint64_t started_ns;
    /* Under the cluster lock: */
    bool done;
    agent *found;               /* a reference until taken */
    char error[240];            /* a spawn's refusal, or "" */
    uint64_t timeout_ns;        /* immutable */
    uint32_t answers, expected;
    ms_waker waker;
    cluster_lookup *next;
};

#define PROXY_BUCKETS 1024

static struct {
    _Atomic bool on;
    host *h;
    cluster_config cfg;
    uint64_t self;              /* immutable once on */
    char self_hex[17];
    char name[48];              /* cluster_name, immutable once on */
    char subj_self[40];         /* ms.h.X */
    natsConnection *nc;         /* immutable once on, until cluster_stop */
    natsSubscription *sub_self, *sub_status, *sub_hb;
    pthread_t ticker;
    bool ticker_started;
    _Atomic bool stopping;

    pthread_mutex_t lock;
    peer *peers;
    agent *proxies[PROXY_BUCKETS]; /* weak: see proxy_get */
    pending_call *pending;
    cluster_lookup *lookups;
    uint64_t next_ref;

    /* Connection state, written by nats.c's callbacks (relaxed). */
    _Atomic int conn;           /* 0 off, 1 connected, 2 reconnecting, 3 closed */
    _Atomic uint64_t disconnected_ns, reconnected_ns;

    /* Counters (relaxed). */
    _Atomic uint64_t sends, calls, replies, bytes_out, bytes_in, received, rejected;
    _Atomic uint64_t reconnects, hosts_lost, calls_failed, fenced;
    _Atomic uint64_t lat[CLUSTER_LAT_BUCKETS], lat_sum_us;
} C = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void cluster_id_hex(uint64_t id, char *buf) {
    snprintf(buf, 17, "%016" PRIx64, id);
}

bool cluster_id_parse(const char *s, uint64_t *id) {
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    if (s[16] != '\0')
        return false;
    *id = v;
    return true;
}

const char *cluster_build_id(void) {
    /* MS_CLUSTER_BUILD_ID stands for another build in the cluster spec
     * (the refusal of fn = between builds); read once, before any agent. */
    static const char *id;
    if (!id) {
        const char *e = getenv("MS_CLUSTER_BUILD_ID");
        id = e && *e ? e : MS_BUILD_ID;
    }
    return id;
}

bool cluster_on(void) {
    return atomic_load_explicit(&C.on, memory_order_acquire);
}

uint64_t cluster_self(void) {
    return cluster_on() ? C.self : 0;
}

/* Time from then to t, 0 if then is later: then may be written by another
 * thread after t was read, and an unsigned difference would wrap. */
static uint64_t elapsed(uint64_t t, uint64_t then) {
    return then >= t ? 0 : t - then;
}

static void count(_Atomic uint64_t *c, uint64_t n) {
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- proxies ---- */

static size_t proxy_bucket(uint64_t hid, uint64_t id) {
    uint64_t k = hid * 0x9E3779B97F4A7C15ull ^ id * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(k >> 32) & (PROXY_BUCKETS - 1);
}

/* A reference to a table entry whose count may already be 0 (its last
 * unref is on its way to cluster_proxy_free, waiting for our lock): such
 * an entry is as good as gone. */
static bool try_ref(agent *a) {
    uint32_t n = atomic_load_explicit(&a->refs, memory_order_relaxed);
    while (n > 0)
        if (atomic_compare_exchange_weak_explicit(&a->refs, &n, n + 1, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return true;
    return false;
}

/* Under lock: the live proxy for (host, id), referenced, or NULL. */
static agent *proxy_find_locked(uint64_t hid, uint64_t id) {
    for (agent *p = C.proxies[proxy_bucket(hid, id)]; p; p = p->next_proxy)
        if (p->remote_host == hid && p->id == id && try_ref(p))
            return p;
    return NULL;
}

/* The proxy for agent id of host (id 0: the host itself, the watcher
 * that carries exit notices there), made if need be; a reference, or
 * NULL without memory.  A proxy of a lost host is born exited. */
static agent *proxy_get(uint64_t hid, uint64_t id) {
    pthread_mutex_lock(&C.lock);
    agent *p = proxy_find_locked(hid, id);
    pthread_mutex_unlock(&C.lock);
    if (p)
        return p;
    agent *fresh = agent_new(C.h);
    if (!fresh)
        return NULL;
    fresh->remote_host = hid;
    fresh->id = id;
    snprintf(fresh->name, sizeof fresh->name, "%s", id ? "remote" : "host");
    fresh->state = AG_RUNNING;
    bool lost = false;
    pthread_mutex_lock(&C.lock);
    p = proxy_find_locked(hid, id); /* another thread may have made it */
    if (!p) {
        size_t b = proxy_bucket(hid, id);
        fresh->next_proxy = C.proxies[b];
        C.proxies[b] = fresh;
        fresh->in_proxy_table = true;
        for (peer *q = C.peers; q; q = q->next)
            if (q->id == hid)
                lost = q->lost;
        p = fresh;
        fresh = NULL;
    }
    pthread_mutex_unlock(&C.lock);
    if (fresh)
        agent_unref(fresh);
    else if (lost && !atomic_exchange(&p->remote_exited, true))
        agent_exit(p, "noconnection", MS_E_CLOSED, "its host was lost", NULL);
    return p;
}

void cluster_proxy_free(agent *p) {
    pthread_mutex_lock(&C.lock);
    if (p->in_proxy_table) {
        agent **pp = &C.proxies[proxy_bucket(p->remote_host, p->id)];
        while (*pp && *pp != p)
            pp = &(*pp)->next_proxy;
        if (*pp)
            *pp = p->next_proxy;
        p->in_proxy_table = false;
    }
    pthread_mutex_unlock(&C.lock);
}

/* The proxy's remote agent ended (or its host did): its monitors hear
 * of it, once. */
static void proxy_exit(agent *p, const char *reason, const char *message) {
    if (atomic_exchange(&p->remote_exited, true))
        return;
    agent_exit(p, reason, MS_E_CLOSED, message, NULL);
}

/* A local agent by id, referenced.  A walk of the registry (host lock):
 * see docs/cluster.md for what it costs and the table it should become. */
static agent *local_agent(uint64_t id) {
    host *h = C.h;
    agent *found = NULL;
    pthread_mutex_lock(&h->lock);
    for (agent *a = h->agents; a; a = a->next_reg)
        if (a->id == id) {
            agent_ref(a);
            found = a;
            break;
        }
    pthread_mutex_unlock(&h->lock);
    return found;
}

/* ---- the wire's view of agents ---- */

static void addr_of(void *ctx, agent *a, uint64_t *hid, uint64_t *id) {
    (void)ctx;
    *hid = a->remote_host ? a->remote_host : C.self;
    *id = a->id;
}

static agent *resolve(void *ctx, uint64_t hid, uint64_t id) {
    (void)ctx;
    if (hid == C.self) {
        agent *a = local_agent(id);
        if (a)
            return a;
        /* Ours, but gone: a proxy of ourselves would loop; an exited
         * stand-in tells the receiver what happened. */
        return NULL;
    }
    if (hid == 0 || id == 0)
        return NULL; /* a forged address: no host 0, agent 0 is a host's watcher */
    return proxy_get(hid, id);
}

static const wire_peer PEER = {addr_of, resolve, NULL};

/* ---- publishing ---- */

static void subject_of(uint64_t hid, char *buf, size_t size) {
    char hex[17];
    cluster_id_hex(hid, hex);
    snprintf(buf, size, "ms.h.%s", hex);
}

/* Encodes and publishes one envelope to host (reply: a reply subject, or
 * NULL).  false with err set. */
static bool publish(uint64_t to_host, const wire_header *h, const xfer *x, const char *reply,
                    char *err, size_t errlen) {
    if (!cluster_on()) {
        snprintf(err, errlen, "cluster: this host has left the cluster");
        return false;
    }
    wbuf b = {0};
    if (!wire_encode(&b, h, x, &PEER, err, errlen)) {
        wbuf_free(&b);
        return false;
    }
    char subj[40];
    subject_of(to_host, subj, sizeof subj);
    natsStatus s = reply ? natsConnection_PublishRequest(C.nc, subj, reply, b.p, (int)b.len)
                         : natsConnection_Publish(C.nc, subj, b.p, (int)b.len);
    count(&C.bytes_out, b.len);
    wbuf_free(&b);
    if (s != NATS_OK) {
        snprintf(err, errlen, "cluster: publish failed: %s", natsStatus_GetText(s));
        return false;
    }
    return true;
}

/* A control envelope with a string value (EXIT's reason, STOP's). */
static void publish_simple(uint64_t to_host, wire_kind kind, uint64_t to_agent,
                           uint64_t from_agent, uint64_t ref, const char *text) {
    xfer x;
    xfer_init(&x);
    if (text)
        xfer_put_str(&x, text);
    wire_header h = {WIRE_VERSION, kind, C.self, to_agent, from_agent, ref};
    char err[200];
    if (!x.failed)
        publish(to_host, &h, &x, NULL, err, sizeof err);
    xfer_clear(&x);
}

/* ---- calls ---- */

static void record_latency(uint64_t ns) {
    uint64_t us = ns / 1000;
    int i = 0;
    while (i < CLUSTER_LAT_BUCKETS - 1 && (double)us > cluster_latency_bounds_us[i])
        i++;
    count(&C.lat[i], 1);
    count(&C.lat_sum_us, us);
}

/* Takes the pending call ref off the table; NULL if it is not there. */
static pending_call *take_call(uint64_t ref) {
    pthread_mutex_lock(&C.lock);
    pending_call **pp = &C.pending;
    while (*pp && (*pp)->ref != ref)
        pp = &(*pp)->next;
    pending_call *c = *pp;
    if (c)
        *pp = c->next;
    pthread_mutex_unlock(&C.lock);
    return c;
}

/* A call that will get no answer: its caller wakes at once with "no
 * reply" (the slot's last other reference goes). */
static void fail_call(pending_call *c) {
    count(&C.calls_failed, 1);
    reply_unref(c->r);
    free(c);
}

/* The callee's side of a remote call: the slot's answer (or its loss)
 * goes back to the calling host (ops.c's forward hook). */
typedef struct call_back {
    uint64_t hid, ref;
} call_back;

static void forward_reply(void *ctx, xfer *body) {
    call_back *cb = ctx;
    char err[300];
    wire_header h = {WIRE_VERSION, body ? WK_REPLY : WK_EXIT, C.self, 0, 0, cb->ref};
    if (body) {
        if (!publish(cb->hid, &h, body, NULL, err, sizeof err)) {
            /* The answer cannot travel (a channel in it): the caller is
             * told so rather than left to its timeout. */
            publish_simple(cb->hid, WK_EXIT, 0, 0, cb->ref, err);
        } else {
            count(&C.replies, 1);
        }
        xfer_free(body);
    } else {
        publish_simple(cb->hid, WK_EXIT, 0, 0, cb->ref, "no reply");
    }
    free(cb);
}

/* ---- the hooks ---- */

int cluster_deliver(agent *p, msg *m, char *err, size_t errlen) {
    pthread_mutex_lock(&p->mlock);
    bool exited = p->state == AG_EXITED;
    char reason[16];
    snprintf(reason, sizeof reason, "%s", p->exit_reason);
    pthread_mutex_unlock(&p->mlock);
    if (exited) {
        snprintf(err, errlen, "agent %llu of host %016" PRIx64 " has exited (%s)",
                 (unsigned long long)p->id, p->remote_host, reason);
        return MS_E_CLOSED;
    }
    if (p->id == 0) {
        /* A host's watcher: m is an exit notice of one of our agents
         * (mail_send_exit_notice), whose handle is the notice's one. */
        for (uint32_t i = 0; i < m->body->nhandles; i++) {
            agent *t = m->body->handles[i].type == XH_AGENT ? m->body->handles[i].ptr : NULL;
            if (!t || t->remote_host)
                continue;
            pthread_mutex_lock(&t->mlock);
            char r[16];
            snprintf(r, sizeof r, "%s", t->exit_reason);
            pthread_mutex_unlock(&t->mlock);
            publish_simple(p->remote_host, WK_EXIT, 0, t->id, 0, r);
            break;
        }
        msg_free(m);
        return 0;
    }
    wire_header h = {WIRE_VERSION, m->reply ? WK_CALL : WK_SEND, C.self, p->id,
                     m->sender ? m->sender->id : 0, 0};
    if (m->sender && m->sender->remote_host)
        h.from_agent = 0; /* a proxy never sends */
    pending_call *c = NULL;
    char reply_subj[64] = "";
    if (m->reply) {
        c = malloc(sizeof *c);
        if (!c) {
            snprintf(err, errlen, "call: out of memory");
            return MS_E_NO_MEMORY;
        }
        pthread_mutex_lock(&C.lock);
        c->ref = ++C.next_ref;
        pthread_mutex_unlock(&C.lock);
        c->hid = p->remote_host;
        c->r = NULL;
        h.ref = c->ref;
        snprintf(reply_subj, sizeof reply_subj, "%s.nr.%" PRIu64, C.subj_self, c->ref);
        c->sent_ns = now_ns();
        /* On the table before the publish: the answer may come first. */
        c->r = m->reply;
        m->reply = NULL;
        pthread_mutex_lock(&C.lock);
        c->next = C.pending;
        C.pending = c;
        pthread_mutex_unlock(&C.lock);
    }
    if (!publish(p->remote_host, &h, m->body, c ? reply_subj : NULL, err, errlen)) {
        if (c && (c = take_call(h.ref))) {
            m->reply = c->r; /* back to the message: the caller frees it */
            free(c);
        }
        return MS_E_INVALID_ARGUMENT;
    }
    count(h.kind == WK_CALL ? &C.calls : &C.sends, 1);
    msg_free(m);
    return 0;
}

void cluster_watch(agent *p) {
    if (!cluster_on() || p->id == 0)
        return;
    publish_simple(p->remote_host, WK_MONITOR, p->id, 0, 0, NULL);
}

void cluster_stop_remote(agent *p, const char *reason) {
    if (!cluster_on() || p->id == 0)
        return;
    publish_simple(p->remote_host, WK_STOP, p->id, 0, 0, reason ? reason : "killed");
}

/* ---- hosts ---- */

/* Under lock: the peer id, made if new (NULL without memory). */
static peer *peer_get_locked(uint64_t id) {
    for (peer *q = C.peers; q; q = q->next)
        if (q->id == id)
            return q;
    peer *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->id = id;
    q->next = C.peers;
    C.peers = q;
    return q;
}

static size_t stop_remote_spawned(uint64_t by, const char *reason, const char *message);

/* Host id is gone (reason "noconnection", or "shutdown" when it said
 * so): every proxy of it exits, every call to it fails.  Once. */
static void declare_lost(uint64_t id, const char *reason, const char *why) {
    pthread_mutex_lock(&C.lock);
    peer *q = peer_get_locked(id);
    if (!q || q->lost) {
        pthread_mutex_unlock(&C.lock);
        return;
    }
    q->lost = true;
    /* The proxies, referenced, and the calls, taken, under the lock;
     * their ends after it. */
    size_t n = 0, cap = 16;
    agent **ps = malloc(cap * sizeof *ps);
    for (size_t b = 0; b < PROXY_BUCKETS; b++)
        for (agent *p = C.proxies[b]; p; p = p->next_proxy) {
            if (p->remote_host != id || !ps)
                continue;
            if (n == cap) {
                agent **g = realloc(ps, cap * 2 * sizeof *ps);
                if (!g)
                    continue; /* without memory some are left: see below */
                ps = g;
                cap *= 2;
            }
            if (try_ref(p))
                ps[n++] = p;
        }
    pending_call *failed = NULL;
    for (pending_call **pp = &C.pending; *pp;) {
        pending_call *c = *pp;
        if (c->hid == id) {
            *pp = c->next;
            c->next = failed;
            failed = c;
        } else {
            pp = &c->next;
        }
    }
    pthread_mutex_unlock(&C.lock);
    count(&C.hosts_lost, 1);
    cluster_names_host_lost(id); /* its names are free (cluster_names.h) */
    hostlog(strcmp(reason, "shutdown") ? HOSTLOG_WARNING : HOSTLOG_NOTICE,
            strcmp(reason, "shutdown") ? "cluster.host_lost" : "cluster.host_left", 0, NULL,
            "cluster: host %016" PRIx64 " %s (%s)", id,
            strcmp(reason, "shutdown") ? "lost" : "left", why);
    while (failed) {
        pending_call *c = failed;
        failed = c->next;
        fail_call(c);
    }
    char message[80];
    snprintf(message, sizeof message, "host %016" PRIx64 " %s", id,
             strcmp(reason, "shutdown") ? "was lost" : "shut down");
    for (size_t i = 0; i < n; i++) {
        proxy_exit(ps[i], reason, message);
        agent_unref(ps[i]);
    }
    free(ps);
    /* What it started here has lost its supervisor: children do not
     * outlive theirs (docs/supervision.md), and a supervisor started
     * again elsewhere must not meet them. */
    char spawner[96];
    snprintf(spawner, sizeof spawner, "the host that spawned it, %016" PRIx64 ", %s", id,
             strcmp(reason, "shutdown") ? "was lost" : "shut down");
    size_t orphans = stop_remote_spawned(id, reason, spawner);
    if (orphans)
        hostlog(HOSTLOG_NOTICE, "cluster.orphans_stopped", 0, NULL,
                "cluster: stopped %zu agent%s spawned by host %016" PRIx64, orphans,
                orphans == 1 ? "" : "s", id);
}

/* ---- receiving ---- */

static void reject(const char *subject, const char *why) {
    uint64_t n = atomic_fetch_add_explicit(&C.rejected, 1, memory_order_relaxed);
    if (n < 10 || n % 1000 == 0)
        hostlog(HOSTLOG_WARNING, "cluster.message_refused", 0, NULL,
                "cluster: refused a message on %s (%" PRIu64 " so far): %s", subject, n + 1, why);
}

static void lookup_answer(uint64_t ref, agent *found, const char *error);
static void spawn_here(const wire_header *h, xfer *req);
static bool blob_skip(const xfer *x, size_t *pos, int depth);
static const char *blob_str(const xfer *x, size_t *pos, uint32_t *len);

int cluster_host_state(uint64_t hid) {
    int st = CLUSTER_HOST_UNKNOWN;
    pthread_mutex_lock(&C.lock);
    for (peer *q = C.peers; q; q = q->next)
        if (q->id == hid)
            st = q->lost ? CLUSTER_HOST_LOST : CLUSTER_HOST_LIVE;
    pthread_mutex_unlock(&C.lock);
    return st;
}

static bool peer_is_lost(uint64_t id) {
    pthread_mutex_lock(&C.lock);
    bool lost = false;
    for (peer *q = C.peers; q; q = q->next)
        if (q->id == id)
            lost = q->lost;
    pthread_mutex_unlock(&C.lock);
    return lost;
}

static void on_envelope(const char *subject, const char *data, int len) {
    count(&C.bytes_in, (uint64_t)len);
    count(&C.received, 1);
    /* Decoded into a blob of its own: a message's body or a reply's. */
    xfer *body = xfer_new();
    msg *m = msg_new();
    if (!m || !body) {
        if (m)
            msg_free(m);
        xfer_free(body);
        reject(subject, "out of memory");
        return;
    }
    m->body = body; /* msg_free frees it while the message has it */
    wire_header h;
    char err[300];
    if (!wire_decode(data, (size_t)len, &h, m->body, &PEER, err, sizeof err)) {
        msg_free(m);
        reject(subject, err);
        return;
    }
    if (h.from_host == 0 || h.from_host == C.self) {
        msg_free(m);
        reject(subject, "a forged sender (host 0 or this host)");
        return;
    }
    if (h.kind == WK_HELLO || h.kind == WK_BYE) {
        msg_free(m);
        reject(subject, "a heartbeat on a host's subject");
        return;
    }
    if (peer_is_lost(h.from_host)) {
        /* Declared lost: its agents have exited here, so what it still
         * says is too late (docs/cluster.md). */
        msg_free(m);
        reject(subject, "from a host declared lost");
        return;
    }
    switch ((wire_kind)h.kind) {
    case WK_SEND:
    case WK_CALL: {
        agent *a = local_agent(h.to_agent);
        if (!a) {
            if (h.kind == WK_CALL)
                publish_simple(h.from_host, WK_EXIT, 0, 0, h.ref, "noproc");
            msg_free(m);
            return;
        }
        if (h.from_agent)
            m->sender = proxy_get(h.from_host, h.from_agent);
        if (h.kind == WK_CALL) {
            reply_slot *r = reply_new();
            call_back *cb = malloc(sizeof *cb);
            if (!r || !cb) {
                if (r)
                    reply_unref(r);
                free(cb);
                agent_unref(a);
                msg_free(m);
                publish_simple(h.from_host, WK_EXIT, 0, 0, h.ref, "out of memory");
                return;
            }
            cb->hid = h.from_host;
            cb->ref = h.ref;
            reply_set_forward(r, forward_reply, cb);
            m->reply = r; /* the one reference: the slot's end is the reply's */
        }
        if (mail_deliver(a, m, err, sizeof err) != 0)
            msg_free(m); /* a call's slot goes: forward_reply says "no reply" */
        agent_unref(a);
        return;
    }
    case WK_REPLY: {
        pending_call *c = take_call(h.ref);
        if (!c) {
            msg_free(m); /* late: the caller timed out or its host gave up */
            return;
        }
        if (c->hid != h.from_host) {
            /* Not the host we called: put it back, refuse the forgery. */
            pthread_mutex_lock(&C.lock);
            c->next = C.pending;
            C.pending = c;
            pthread_mutex_unlock(&C.lock);
            msg_free(m);
            reject(subject, "a reply from a host that was not called");
            return;
        }
        record_latency(now_ns() - c->sent_ns);
        m->body = &m->own_body; /* the blob moves to the reply slot */
        if (!reply_fill(c->r, body))
            xfer_free(body);
        reply_unref(c->r);
        free(c);
        msg_free(m);
        return;
    }
    case WK_EXIT: {
        size_t n = 0;
        const char *text = xfer_get_lstr(m->body, &n);
        char reason[64];
        snprintf(reason, sizeof reason, "%.*s", text ? (int)(n < 63 ? n : 63) : 0,
                 text ? text : "");
        if (h.ref) {
            /* A call of ours that will get no answer. */
            pending_call *c = take_call(h.ref);
            if (c && c->hid == h.from_host) {
                fail_call(c);
            } else if (c) {
                /* Not the host we called: back on the table. */
                pthread_mutex_lock(&C.lock);
                c->next = C.pending;
                C.pending = c;
                pthread_mutex_unlock(&C.lock);
                reject(subject, "a call's end from a host that was not called");
            }
        } else if (h.from_agent) {
            pthread_mutex_lock(&C.lock);
            agent *p = proxy_find_locked(h.from_host, h.from_agent);
            pthread_mutex_unlock(&C.lock);
            if (p) {
                char r15[16];
                snprintf(r15, sizeof r15, "%.15s", reason[0] ? reason : "normal");
                proxy_exit(p, r15, NULL);
                agent_unref(p);
            }
        }
        msg_free(m);
        return;
    }
    case WK_MONITOR: {
        agent *a = local_agent(h.to_agent);
        if (!a) {
            publish_simple(h.from_host, WK_EXIT, 0, h.to_agent, 0, "noproc");
        } else {
            agent *w = proxy_get(h.from_host, 0);
            if (w) {
                mail_add_monitor(a, w);
                agent_unref(w);
            }
            agent_unref(a);
        }
        msg_free(m);
        return;
    }
    case WK_STOP: {
        agent *a = local_agent(h.to_agent);
        size_t n = 0;
        const char *text = xfer_get_lstr(m->body, &n);
        if (a) {
            char reason[128];
            snprintf(reason, sizeof reason, "%.*s", text ? (int)(n < 127 ? n : 127) : 6,
                     text ? text : "killed");
            agent_stop(a, reason);
            agent_unref(a);
        }
        msg_free(m);
        return;
    }
    case WK_WHEREIS: {
        size_t n = 0;
        const char *text = xfer_get_lstr(m->body, &n);
        char name[AGENT_NAME_MAX + 1];
        agent *a = NULL;
        if (text && n <= AGENT_NAME_MAX) {
            memcpy(name, text, n);
            name[n] = '\0';
            if (strlen(name) == n)
                a = registry_whereis(name);
        }
        xfer x;
        xfer_init(&x);
        if (a) {
            xfer_put_handle(&x, XH_AGENT, a);
            agent_unref(a);
        } else {
            xfer_put_nil(&x);
        }
        wire_header r = {WIRE_VERSION, WK_FOUND, C.self, 0, 0, h.ref};
        if (!x.failed)
            publish(h.from_host, &r, &x, NULL, err, sizeof err);
        xfer_clear(&x);
        msg_free(m);
        return;
    }
    case WK_FOUND: {
        agent *found = NULL;
        if (m->body->nhandles == 1 && m->body->handles[0].type == XH_AGENT) {
            found = m->body->handles[0].ptr;
            m->body->handles[0].ptr = NULL; /* the reference moves */
        }
        size_t n = 0;
        const char *text = xfer_get_lstr(m->body, &n);
        char error[240] = "";
        if (text)
            snprintf(error, sizeof error, "%.*s", (int)(n < 239 ? n : 239), text);
        lookup_answer(h.ref, found, text ? error : NULL);
        msg_free(m);
        return;
    }
    case WK_SPAWN:
        spawn_here(&h, m->body);
        msg_free(m);
        return;
    default:
        msg_free(m);
        reject(subject, "a kind this host does not take here");
        return;
    }
}

static void on_self(natsConnection *nc, natsSubscription *sub, natsMsg *nm, void *closure) {
    (void)nc, (void)sub, (void)closure;
    on_envelope(natsMsg_GetSubject(nm), natsMsg_GetData(nm), natsMsg_GetDataLength(nm));
    natsMsg_Destroy(nm);
}

/* ms.h.SELF.>: the broker's no-responders answers to our calls
 * (…nr.REF) and probes (…np.HOST); probes of us (…p) need no answer. */
static void on_status(natsConnection *nc, natsSubscription *sub, natsMsg *nm, void *closure) {
    (void)nc, (void)sub, (void)closure;
    const char *subj = natsMsg_GetSubject(nm);
    size_t base = strlen(C.subj_self);
    bool nr = natsMsg_IsNoResponders(nm);
    if (nr && !strncmp(subj + base, ".nr.", 4)) {
        uint64_t ref = strtoull(subj + base + 4, NULL, 10);
        pending_call *c = take_call(ref);
        if (!c)
            lookup_answer(ref, NULL, "its host has no responders (gone)");
        if (c) {
            uint64_t hid = c->hid;
            fail_call(c);
            /* Nobody listens on its subject: gone, unless we are the
             * ones just back from a broker outage. */
            uint64_t since = atomic_load(&C.reconnected_ns);
            if (atomic_load(&C.conn) == 1 &&
                now_ns() - since > (uint64_t)(C.cfg.broker_grace * 1e9))
                declare_lost(hid, "noconnection", "a call found no responders");
        }
    } else if (nr && !strncmp(subj + base, ".np.", 4)) {
        uint64_t hid;
        uint64_t since = atomic_load(&C.reconnected_ns);
        if (cluster_id_parse(subj + base + 4, &hid) && atomic_load(&C.conn) == 1 &&
            now_ns() - since > (uint64_t)(C.cfg.broker_grace * 1e9))
            declare_lost(hid, "noconnection", "a probe found no responders");
    }
    natsMsg_Destroy(nm);
}

/* A heartbeat's value: { build = ..., name = ... } (a host without a
 * cluster_name sends no name).  What is not a string there is ignored. */
static void heartbeat_fields(const xfer *x, const char **build, uint32_t *build_n,
                             const char **name, uint32_t *name_n) {
    size_t pos = 5;
    uint32_t pairs = 0;
    if (x->len < 5 || (uint8_t)x->buf[0] != XT_TABLE)
        return;
    memcpy(&pairs, x->buf + 1, 4);
    for (uint32_t i = 0; i < pairs && pos < x->len; i++) {
        uint32_t kn, vn;
        const char *k = blob_str(x, &pos, &kn);
        if (!k)
            return;
        size_t at = pos;
        const char *v = blob_str(x, &at, &vn);
        if (v && kn == 5 && !memcmp(k, "build", 5))
            *build = v, *build_n = vn;
        else if (v && kn == 4 && !memcmp(k, "name", 4))
            *name = v, *name_n = vn;
        if (!blob_skip(x, &pos, 1))
            return;
    }
}

static void on_heartbeat(natsConnection *nc, natsSubscription *sub, natsMsg *nm, void *closure) {
    (void)nc, (void)sub, (void)closure;
    wire_header h;
    xfer x;
    xfer_init(&x);
    char err[300];
    const char *data = natsMsg_GetData(nm);
    int len = natsMsg_GetDataLength(nm);
    count(&C.bytes_in, (uint64_t)len);
    if (!wire_decode(data, (size_t)len, &h, &x, NULL, err, sizeof err) ||
        (h.kind != WK_HELLO && h.kind != WK_BYE) || h.from_host == 0) {
        xfer_clear(&x);
        reject("ms.hb", x.len ? "not a heartbeat" : err);
        natsMsg_Destroy(nm);
        return;
    }
    if (h.from_host != C.self) {
        uint32_t build_n = 0, name_n = 0;
        const char *build = NULL, *name = NULL;
        heartbeat_fields(&x, &build, &build_n, &name, &name_n);
        pthread_mutex_lock(&C.lock);
        peer *q = peer_get_locked(h.from_host);
        if (q) {
            q->last_seen_ns = now_ns();
            q->probed_ns = 0;
            if (build)
                snprintf(q->build, sizeof q->build, "%.*s", (int)(build_n < 47 ? build_n : 47),
                         build);
            if (name)
                snprintf(q->name, sizeof q->name, "%.*s", (int)(name_n < 47 ? name_n : 47),
                         name);
        }
        pthread_mutex_unlock(&C.lock);
        if (h.kind == WK_BYE)
            declare_lost(h.from_host, "shutdown", "it said goodbye");
    }
    xfer_clear(&x);
    natsMsg_Destroy(nm);
}

/* ---- the ticker: heartbeats, probes, loss ---- */

static void send_heartbeat(wire_kind kind) {
    xfer x;
    xfer_init(&x);
    xfer_put_table(&x, C.name[0] ? 2 : 1);
    xfer_put_str(&x, "build");
    xfer_put_str(&x, cluster_build_id());
    if (C.name[0]) {
        xfer_put_str(&x, "name");
        xfer_put_str(&x, C.name);
    }
    wire_header h = {WIRE_VERSION, kind, C.self, 0, 0, 0};
    wbuf b = {0};
    char err[200];
    if (!x.failed && wire_encode(&b, &h, &x, &PEER, err, sizeof err)) {
        natsConnection_Publish(C.nc, "ms.hb", b.p, (int)b.len);
        count(&C.bytes_out, b.len);
    }
    wbuf_free(&b);
    xfer_clear(&x);
}

static void fence(void);

static void *ticker_main(void *arg) {
    (void)arg;
    uint64_t hb_ns = (uint64_t)(C.cfg.heartbeat * 1e9);
    uint64_t loss_ns = (uint64_t)(C.cfg.loss_after * 1e9);
    uint64_t grace_ns = (uint64_t)(C.cfg.broker_grace * 1e9);
    uint64_t fence_ns = loss_ns > 3 * hb_ns ? loss_ns - 2 * hb_ns : loss_ns / 2;
    uint64_t last_hb = 0, last_tick = now_ns();
    bool fenced = false;
    while (!atomic_load(&C.stopping)) {
        uint64_t t = now_ns();
        int conn = atomic_load(&C.conn);
        bool self_silent = t - last_tick > fence_ns;
        if (self_silent) {
            /* We ourselves were silent about as long as the threshold
             * (stopped, starved): our last heartbeat went out up to a
             * beat before, so the others may have declared us lost. */
            hostlog(HOSTLOG_WARNING, "cluster.silent", 0, NULL,
                    "cluster: this host was silent for %.1f s", (double)(t - last_tick) / 1e9);
            fence();
        }
        last_tick = t;
        if (conn == 1 && t - last_hb >= hb_ns) {
            send_heartbeat(WK_HELLO);
            last_hb = t;
        }
        if (conn == 1) {
            fenced = false;
        } else if (!fenced && elapsed(t, atomic_load(&C.disconnected_ns)) > loss_ns) {
            /* Cut off past the threshold: the others are declaring us
             * lost and may restart our supervised children elsewhere. */
            fence();
            fenced = true;
        }
        /* Our own silence (just back from a SIGSTOP) is no one else's:
         * declaring the others lost now would also free their names. */
        bool quiet = conn != 1 || self_silent ||
                     elapsed(t, atomic_load(&C.reconnected_ns)) < grace_ns;
        uint64_t probe[16], lose[16];
        int np = 0, nl = 0;
        pthread_mutex_lock(&C.lock);
        for (peer *q = C.peers; q; q = q->next) {
            if (q->lost)
                continue;
            if (quiet) {
                q->last_seen_ns = t; /* the outage is ours: nobody's silence counts */
                q->probed_ns = 0;
                continue;
            }
            /* t was read before the lock: a heartbeat may have landed
             * since. */
            uint64_t silent = elapsed(t, q->last_seen_ns);
            if (silent > loss_ns && nl < 16)
                lose[nl++] = q->id;
            else if (silent > 2 * hb_ns + hb_ns / 2 && !q->probed_ns && np < 16) {
                q->probed_ns = t;
                probe[np++] = q->id;
            }
        }
        pthread_mutex_unlock(&C.lock);
        for (int i = 0; i < np; i++) {
            char subj[48], reply[64], hex[17];
            subject_of(probe[i], subj, sizeof subj);
            strcat(subj, ".p");
            cluster_id_hex(probe[i], hex);
            snprintf(reply, sizeof reply, "%s.np.%s", C.subj_self, hex);
            natsConnection_PublishRequest(C.nc, subj, reply, "", 0);
        }
        for (int i = 0; i < nl; i++)
            declare_lost(lose[i], "noconnection", "silent past cluster_loss_after");
        /* Lookups that waited too long end with what they have. */
        lookup_answer(0, NULL, NULL);
        usleep(20000);
    }
    return NULL;
}

/* Stops our agents started by a remote spawn of host `by` (0: of any
 * host) with this exit reason; returns how many. */
static size_t stop_remote_spawned(uint64_t by, const char *reason, const char *message) {
    host *h = C.h;
    size_t n = 0, cap = 0;
    agent **list = NULL;
    pthread_mutex_lock(&h->lock);
    for (agent *a = h->agents; a; a = a->next_reg) {
        if (!a->spawned_remotely || (by && a->spawned_by != by))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            agent **g = realloc(list, nc * sizeof *g);
            if (!g)
                break;
            list = g;
            cap = nc;
        }
        agent_ref(a);
        list[n++] = a;
    }
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; i < n; i++) {
        agent_stop_as(list[i], reason, message);
        agent_unref(list[i]);
    }
    free(list);
    return n;
}

/* Fencing: our agents whose supervisor is on another host are stopped,
 * so that a restart elsewhere never runs the same child twice.  A child
 * started by a remote spawn is one (spawned_remotely). */
static void fence(void) {
    size_t n = stop_remote_spawned(0, "noconnection", "fenced: cut off from the cluster");
    count(&C.fenced, n);
    if (n)
        hostlog(HOSTLOG_WARNING, "cluster.fenced", 0, NULL,
                "cluster: cut off from the broker; fenced %zu agent%s", n, n == 1 ? "" : "s");
}

/* ---- lookups (whereis) ---- */

static void lookup_unref(cluster_lookup *lk) {
    if (atomic_fetch_sub(&lk->refs, 1) == 1) {
        if (lk->found)
            agent_unref(lk->found);
        ms_waker_drop(&lk->waker);
        free(lk);
    }
}

/* ref's answer (found: a reference, taken; error: a spawn's refusal);
 * ref 0: the ticker's sweep of lookups past their time. */
static void lookup_answer(uint64_t ref, agent *found, const char *error) {
    uint64_t t = now_ns();
    cluster_lookup *done = NULL;
    pthread_mutex_lock(&C.lock);
    for (cluster_lookup **pp = &C.lookups; *pp;) {
        cluster_lookup *lk = *pp;
        bool finish = false;
        if (ref && lk->ref == ref) {
            lk->answers++;
            if (found && !lk->found) {
                lk->found = found;
                found = NULL;
            }
            if (error && !lk->error[0])
                snprintf(lk->error, sizeof lk->error, "%s", error);
            finish = lk->found || lk->answers >= lk->expected;
        } else if (!ref && elapsed(t, lk->started_ns) > lk->timeout_ns) {
            if (lk->timeout_ns > 1000000000u)
                snprintf(lk->error, sizeof lk->error, "no answer in %.0f s",
                         lk->timeout_ns / 1e9);
            finish = true;
        }
        if (finish) {
            lk->done = true;
            *pp = lk->next;
            lk->next = done;
            done = lk;
        } else {
            pp = &lk->next;
        }
    }
    pthread_mutex_unlock(&C.lock);
    if (found)
        agent_unref(found); /* a second owner (a race of names): the first wins */
    while (done) {
        cluster_lookup *lk = done;
        done = lk->next;
        pthread_mutex_lock(&C.lock);
        ms_waker w = lk->waker;
        lk->waker = (ms_waker){0};
        pthread_mutex_unlock(&C.lock);
        ms_waker_wake(&w);
        lookup_unref(lk); /* the table's */
    }
}

/* Asks every live host for name, for lookup ref (if it still waits):
 * the lookup ends when the owner answers, all have said no, or after a
 * second. */
static void lookup_fan_out(uint64_t ref, const char *name) {
    xfer x;
    xfer_init(&x);
    xfer_put_str(&x, name);
    uint64_t *to = NULL;
    size_t nto = 0;
    bool waiting = false;
    pthread_mutex_lock(&C.lock);
    for (cluster_lookup *lk = C.lookups; lk; lk = lk->next) {
        if (lk->ref != ref)
            continue;
        waiting = true;
        lk->started_ns = now_ns();
        lk->timeout_ns = 1000000000u;
        lk->answers = lk->expected = 0;
        for (peer *q = C.peers; q; q = q->next)
            lk->expected += !q->lost;
        if (lk->expected && (to = malloc(lk->expected * sizeof *to)))
            for (peer *q = C.peers; q; q = q->next)
                if (!q->lost)
                    to[nto++] = q->id;
        if (lk->expected && !to)
            lk->expected = 0; /* no memory to ask: nobody */
    }
    pthread_mutex_unlock(&C.lock);
    if (waiting && nto == 0)
        lookup_answer(ref, NULL, NULL); /* nobody to ask: not found */
    wire_header h = {WIRE_VERSION, WK_WHEREIS, C.self, 0, 0, ref};
    char err[200];
    for (size_t i = 0; i < nto && !x.failed; i++)
        publish(to[i], &h, &x, NULL, err, sizeof err);
    free(to);
    xfer_clear(&x);
}

/* The bucket's answer to a whereis (cluster_names_lookup): a live
 * holder elsewhere is the answer; this host (its agent has just ended),
 * or a lost one, hold nothing; no key (a name registered per host only,
 * a service's), or no answer, asks every host. */
void cluster_names_found(uint64_t ref, const char *name, uint64_t holder, uint64_t id) {
    if (holder && id && holder != C.self && cluster_host_state(holder) == CLUSTER_HOST_UNKNOWN) {
        /* A host whose heartbeat has not reached us yet: known from now
         * (if it is gone, its silence will tell). */
        pthread_mutex_lock(&C.lock);
        peer *q = peer_get_locked(holder);
        if (q && !q->last_seen_ns)
            q->last_seen_ns = now_ns();
        pthread_mutex_unlock(&C.lock);
    }
    if (holder && id && holder != C.self && cluster_host_state(holder) != CLUSTER_HOST_LOST) {
        agent *p = proxy_get(holder, id);
        if (p) {
            lookup_answer(ref, p, NULL);
            return;
        }
    }
    if (holder && (holder == C.self || cluster_host_state(holder) == CLUSTER_HOST_LOST)) {
        lookup_answer(ref, NULL, NULL);
        return;
    }
    lookup_fan_out(ref, name);
}

cluster_lookup *cluster_lookup_start(const char *name, char *err, size_t errlen) {
    cluster_lookup *lk = calloc(1, sizeof *lk);
    if (!lk) {
        snprintf(err, errlen, "whereis: out of memory");
        return NULL;
    }
    atomic_init(&lk->refs, 2);
    lk->started_ns = now_ns();
    /* The bucket first (its own bound is 2 s), then the fan-out. */
    lk->timeout_ns = 3000000000u;
    lk->expected = 1;
    pthread_mutex_lock(&C.lock);
    lk->ref = ++C.next_ref;
    lk->next = C.lookups;
    C.lookups = lk;
    pthread_mutex_unlock(&C.lock);
    if (cluster_names_on())
        cluster_names_lookup(lk->ref, name);
    else
        lookup_fan_out(lk->ref, name);
    return lk;
}

ms_poll cluster_lookup_poll(cluster_lookup *lk, const ms_waker *w, agent **found, char *error,
                            size_t errlen) {
    pthread_mutex_lock(&C.lock);
    if (lk->done) {
        *found = lk->found;
        lk->found = NULL;
        snprintf(error, errlen, "%s", lk->error);
        pthread_mutex_unlock(&C.lock);
        return MS_POLL_READY;
    }
    ms_waker_store(&lk->waker, w);
    pthread_mutex_unlock(&C.lock);
    return MS_POLL_PENDING;
}

void cluster_lookup_release(cluster_lookup *lk) {
    if (lk)
        lookup_unref(lk);
}

/* ---- remote spawn ---- */

cluster_lookup *cluster_spawn_start(uint64_t hid, xfer *req, char *err, size_t errlen) {
    pthread_mutex_lock(&C.lock);
    bool known = false;
    for (peer *q = C.peers; q; q = q->next)
        if (q->id == hid)
            known = !q->lost;
    pthread_mutex_unlock(&C.lock);
    if (!known) {
        snprintf(err, errlen, "host %016" PRIx64 " is not a live host of the cluster", hid);
        xfer_free(req);
        return NULL;
    }
    cluster_lookup *lk = calloc(1, sizeof *lk);
    if (!lk) {
        snprintf(err, errlen, "out of memory");
        xfer_free(req);
        return NULL;
    }
    atomic_init(&lk->refs, 2);
    lk->started_ns = now_ns();
    lk->timeout_ns = 10000000000u;
    lk->expected = 1;
    pthread_mutex_lock(&C.lock);
    lk->ref = ++C.next_ref;
    lk->next = C.lookups;
    C.lookups = lk;
    pthread_mutex_unlock(&C.lock);
    wire_header h = {WIRE_VERSION, WK_SPAWN, C.self, 0, 0, lk->ref};
    char reply[64];
    snprintf(reply, sizeof reply, "%s.nr.%" PRIu64, C.subj_self, lk->ref);
    if (!publish(hid, &h, req, reply, err, errlen)) {
        lookup_answer(lk->ref, NULL, err); /* ends it: the caller reads err */
        cluster_lookup_release(lk);
        xfer_free(req);
        return NULL;
    }
    xfer_free(req);
    return lk;
}

/* The end of the value at *pos of a blob this host decoded (so valid):
 * false if it is not (then nothing is trusted). */
static bool blob_skip(const xfer *x, size_t *pos, int depth) {
    if (*pos >= x->len || depth > XFER_MAX_DEPTH)
        return false;
    uint8_t tag = (uint8_t)x->buf[(*pos)++];
    uint32_t n;
    switch (tag) {
    case XT_NIL: case XT_FALSE: case XT_TRUE:
        return true;
    case XT_NUM:
        *pos += 8;
        return *pos <= x->len;
    case XT_HANDLE:
        *pos += 4;
        return *pos <= x->len;
    case XT_STR:
        if (x->len - *pos < 4)
            return false;
        memcpy(&n, x->buf + *pos, 4);
        *pos += 4;
        if (x->len - *pos < n)
            return false;
        *pos += n;
        return true;
    case XT_TABLE:
        if (x->len - *pos < 4)
            return false;
        memcpy(&n, x->buf + *pos, 4);
        *pos += 4;
        for (uint32_t i = 0; i < 2 * n; i++)
            if (!blob_skip(x, pos, depth + 1))
                return false;
        return true;
    }
    return false;
}

/* A string value at *pos (advanced past it), or NULL. */
static const char *blob_str(const xfer *x, size_t *pos, uint32_t *len) {
    if (*pos >= x->len || (uint8_t)x->buf[*pos] != XT_STR || x->len - *pos < 5)
        return NULL;
    memcpy(len, x->buf + *pos + 1, 4);
    if (x->len - *pos - 5 < *len)
        return NULL;
    const char *s = x->buf + *pos + 5;
    *pos += 5 + *len;
    return s;
}

static void spawn_reply(const wire_header *h, agent *a, const char *error) {
    xfer x;
    xfer_init(&x);
    if (a)
        xfer_put_handle(&x, XH_AGENT, a);
    else
        xfer_put_str(&x, error);
    wire_header r = {WIRE_VERSION, WK_FOUND, C.self, 0, 0, h->ref};
    char err[300];
    if (!x.failed)
        publish(h->from_host, &r, &x, NULL, err, sizeof err);
    xfer_clear(&x);
}

/* Another host asks us to start an agent: req is the table lms_cluster.c
 * built ({ src, text, name?, build, args? }, strings but args).  Its
 * args go to the new agent as they are (their handles with them). */
static void spawn_here(const wire_header *h, xfer *req) {
    char error[240] = "";
    const char *src = NULL, *text = NULL, *name = NULL, *build = NULL;
    uint32_t src_n = 0, text_n = 0, name_n = 0, build_n = 0;
    size_t args_at = 0, args_end = 0;
    bool trap_exit = false;
    size_t pos = 0;
    uint32_t pairs = 0;
    bool ok = req->len >= 5 && (uint8_t)req->buf[0] == XT_TABLE;
    if (ok) {
        memcpy(&pairs, req->buf + 1, 4);
        pos = 5;
    }
    for (uint32_t i = 0; ok && i < pairs; i++) {
        uint32_t kn;
        const char *k = blob_str(req, &pos, &kn);
        if (!k) {
            ok = false;
            break;
        }
#define KEY(s) (kn == sizeof(s) - 1 && !memcmp(k, s, kn))
        if (KEY("args")) {
            args_at = pos;
            ok = blob_skip(req, &pos, 1);
            args_end = pos;
        } else if (KEY("src")) {
            ok = (src = blob_str(req, &pos, &src_n)) != NULL;
        } else if (KEY("text")) {
            ok = (text = blob_str(req, &pos, &text_n)) != NULL;
        } else if (KEY("name")) {
            ok = (name = blob_str(req, &pos, &name_n)) != NULL;
        } else if (KEY("build")) {
            ok = (build = blob_str(req, &pos, &build_n)) != NULL;
        } else if (KEY("trap_exit")) {
            trap_exit = pos < req->len && (uint8_t)req->buf[pos] == XT_TRUE;
            ok = blob_skip(req, &pos, 1);
        } else {
            ok = blob_skip(req, &pos, 1);
        }
#undef KEY
    }
    if (!ok || !src || !text || !build) {
        count(&C.rejected, 1);
        spawn_reply(h, NULL, "a malformed spawn request");
        return;
    }
    spawn_spec s = {0};
    if (src_n == 2 && !memcmp(src, "fn", 2)) {
        /* Bytecode runs only on the build that wrote it. */
        if (build_n != strlen(cluster_build_id()) ||
            memcmp(build, cluster_build_id(), build_n) != 0) {
            snprintf(error, sizeof error,
                     "fn travels only between identical builds: the spawner's build is %.*s, "
                     "host %016" PRIx64 "'s is %s (use module = or file =)",
                     (int)(build_n < 64 ? build_n : 64), build, C.self, cluster_build_id());
            spawn_reply(h, NULL, error);
            return;
        }
        s.src = SRC_FN;
    } else if (src_n == 4 && !memcmp(src, "file", 4)) {
        s.src = SRC_FILE;
    } else if (src_n == 6 && !memcmp(src, "module", 6)) {
        s.src = SRC_MODULE;
    } else {
        spawn_reply(h, NULL, "a spawn request of an unknown kind");
        return;
    }
    char *text_z = malloc(text_n + 1);
    char name_z[AGENT_NAME_MAX + 1] = "";
    if (name && name_n > AGENT_NAME_MAX) {
        free(text_z);
        spawn_reply(h, NULL, "name is longer than an agent name may be");
        return;
    }
    if (name) {
        memcpy(name_z, name, name_n);
        name_z[name_n] = '\0';
    }
    xfer *args = NULL;
    if (args_at) {
        args = xfer_new();
        if (args && xfer_reserve(args, args_end - args_at, req->nhandles)) {
            memcpy(args->buf, req->buf + args_at, args_end - args_at);
            args->len = args_end - args_at;
            /* Only args holds handles (the rest are strings), at the same
             * indices: the references move. */
            for (uint32_t i = 0; i < req->nhandles; i++) {
                args->handles[i] = req->handles[i];
                req->handles[i].ptr = NULL;
            }
            args->nhandles = req->nhandles;
        } else {
            xfer_free(args);
            args = NULL;
        }
    }
    if (!text_z || (args_at && !args)) {
        free(text_z);
        xfer_free(args);
        spawn_reply(h, NULL, "out of memory");
        return;
    }
    memcpy(text_z, text, text_n);
    text_z[text_n] = '\0';
    s.text = text_z;
    s.len = text_n;
    s.name = name ? name_z : NULL;
    s.args = args;
    s.spawned_remotely = true;
    s.spawner_host = h->from_host;
    s.trap_exit = trap_exit;
    /* A name is claimed in the cluster first (cluster_names.h): this
     * thread (nats.c's delivery of our subject) waits for the registrar. */
    name_claim *claim = NULL;
    if (s.name && *s.name && cluster_names_on()) {
        claim = cluster_claim_start(s.name);
        if (!claim || !cluster_claim_wait(claim, error, sizeof error)) {
            if (!claim)
                snprintf(error, sizeof error, "out of memory");
            cluster_claim_drop(claim);
            free(text_z);
            xfer_free(args);
            spawn_reply(h, NULL, error);
            return;
        }
    }
    agent *a = spawn_agent_spec(C.h, &s, error, sizeof error);
    free(text_z);
    if (a && claim)
        cluster_claim_bind(claim, a);
    else
        cluster_claim_drop(claim);
    spawn_reply(h, a, error);
    if (a)
        agent_unref(a);
}

/* ---- connection ---- */

static void on_disconnected(natsConnection *nc, void *closure) {
    (void)nc, (void)closure;
    atomic_store(&C.disconnected_ns, now_ns());
    atomic_store(&C.conn, 2);
}

static void on_reconnected(natsConnection *nc, void *closure) {
    (void)nc, (void)closure;
    atomic_store(&C.reconnected_ns, now_ns());
    atomic_store(&C.conn, 1);
    count(&C.reconnects, 1);
}

static void on_closed(natsConnection *nc, void *closure) {
    (void)nc, (void)closure;
    atomic_store(&C.conn, 3);
}

int cluster_start(host *h, const cluster_config *cfg, ms_error *err) {
    if (cluster_on()) {
        ms_error_set(err, MS_E_INVALID_ARGUMENT, "cluster: already joined");
        return MS_E_INVALID_ARGUMENT;
    }
    const char *name = cfg->name ? cfg->name : "";
    size_t name_n = strlen(name);
    bool name_ok = name_n < sizeof C.name;
    for (size_t i = 0; name_ok && i < name_n; i++) {
        char c = name[i];
        name_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
    }
    /* "any" and "local" are words of a child spec's host (supervision). */
    if (!name_ok || !strcmp(name, "any") || !strcmp(name, "local")) {
        ms_error_set(err, MS_E_INVALID_ARGUMENT,
                     "cluster_name: '%s' is not a host name (letters, digits, '.', '_' and '-', "
                     "at most %zu bytes, not \"any\" or \"local\")",
                     name, sizeof C.name - 1);
        return MS_E_INVALID_ARGUMENT;
    }
    snprintf(C.name, sizeof C.name, "%s", name);
    C.h = h;
    C.cfg = *cfg;
    C.cfg.name = C.name;
    cluster_build_id(); /* read before any other thread asks */
    /* An id per incarnation: a restarted host is a new host. */
    do {
        if (getrandom(&C.self, sizeof C.self, 0) != sizeof C.self)
            C.self = now_ns() ^ ((uint64_t)getpid() << 32);
    } while (C.self == 0);
    cluster_id_hex(C.self, C.self_hex);
    snprintf(C.subj_self, sizeof C.subj_self, "ms.h.%s", C.self_hex);

    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, cfg->url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, C.self_hex);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1); /* forever: the grace decides */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 100);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(o, 1000);
    if (s == NATS_OK)
        s = natsOptions_SetNoEcho(o, true);
    /* Each publish goes out at once: nats.c's flusher otherwise waits a
     * millisecond to batch, a millisecond on every hop of a call. */
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, on_disconnected, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, on_reconnected, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(o, on_closed, NULL);
    if (s == NATS_OK)
        s = natsConnection_Connect(&C.nc, o);
    natsOptions_Destroy(o);
    char sub[64];
    snprintf(sub, sizeof sub, "%s.>", C.subj_self);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&C.sub_self, C.nc, C.subj_self, on_self, NULL);
    /* No pending limit on the host's subject: nats.c would drop what
     * exceeds it (65,536 messages by default), silently for the sender.
     * The mailboxes behind it are unbounded too (mailbox_limit bounds
     * them); memory is the limit, as for local senders. */
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(C.sub_self, -1, -1);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&C.sub_status, C.nc, sub, on_status, NULL);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&C.sub_hb, C.nc, "ms.hb", on_heartbeat, NULL);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(C.nc, 2000);
    if (s != NATS_OK) {
        ms_error_set(err, MS_E_IO, "cluster %s: cannot join: %s", cfg->url,
                     natsStatus_GetText(s));
        natsSubscription_Destroy(C.sub_self);
        natsSubscription_Destroy(C.sub_status);
        natsSubscription_Destroy(C.sub_hb);
        C.sub_self = C.sub_status = C.sub_hb = NULL;
        natsConnection_Destroy(C.nc);
        C.nc = NULL;
        nats_Close(); /* its threads: nothing of nats.c stays behind */
        return MS_E_IO;
    }
    atomic_store(&C.conn, 1);
    atomic_store(&C.reconnected_ns, 0);
    char why[200];
    if (!cluster_names_start(C.nc, C.self, why, sizeof why))
        hostlog(HOSTLOG_WARNING, "cluster.names_per_host", 0, NULL,
                "cluster %s: the broker has no JetStream key-value store (%s): agent names are "
                "unique on each host only, not across the cluster (run nats-server with -js)",
                cfg->url, why);
    atomic_store_explicit(&C.on, true, memory_order_release);
    if (pthread_create(&C.ticker, NULL, ticker_main, NULL) == 0)
        C.ticker_started = true;
    send_heartbeat(WK_HELLO);
    return 0;
}

void cluster_stop(void) {
    if (!cluster_on())
        return;
    atomic_store(&C.stopping, true);
    if (C.ticker_started)
        pthread_join(C.ticker, NULL);
    C.ticker_started = false;
    cluster_names_stop(); /* the names of our ended agents go first */
    send_heartbeat(WK_BYE);
    natsConnection_FlushTimeout(C.nc, 1000);
    atomic_store_explicit(&C.on, false, memory_order_release);
    /* The callbacks use the host and the agents: a drain waits until the
     * last one has returned. */
    natsSubscription *subs[] = {C.sub_self, C.sub_status, C.sub_hb};
    for (int i = 0; i < 3; i++)
        natsSubscription_DrainTimeout(subs[i], 1000);
    for (int i = 0; i < 3; i++)
        natsSubscription_WaitForDrainCompletion(subs[i], 2000);
    /* Closed, not destroyed: an agent still running may be publishing
     * right now (a publish on a closed connection fails cleanly);
     * cluster_free destroys them once no agent is left. */
    natsConnection_Close(C.nc);
    /* What is left: calls fail, lookups end, peers go. */
    pthread_mutex_lock(&C.lock);
    pending_call *calls = C.pending;
    C.pending = NULL;
    peer *peers = C.peers;
    C.peers = NULL;
    for (cluster_lookup *lk = C.lookups; lk; lk = lk->next)
        lk->timeout_ns = 0; /* the sweep below ends them */
    pthread_mutex_unlock(&C.lock);
    lookup_answer(0, NULL, NULL);
    while (calls) {
        pending_call *c = calls;
        calls = c->next;
        fail_call(c);
    }
    while (peers) {
        peer *q = peers;
        peers = q->next;
        free(q);
    }
}

void cluster_free(void) {
    if (!C.nc || cluster_on())
        return;
    natsSubscription_Destroy(C.sub_self);
    natsSubscription_Destroy(C.sub_status);
    natsSubscription_Destroy(C.sub_hb);
    C.sub_self = C.sub_status = C.sub_hb = NULL;
    natsConnection_Destroy(C.nc);
    C.nc = NULL;
    nats_Close();
}

/* ---- what ms.metrics and ms.cluster.hosts show ---- */

bool cluster_hosts(cluster_host_info **rows, size_t *n) {
    *rows = NULL;
    *n = 0;
    if (!cluster_on())
        return true;
    uint64_t t = now_ns();
    pthread_mutex_lock(&C.lock);
    size_t count_ = 1;
    for (peer *q = C.peers; q; q = q->next)
        count_++;
    cluster_host_info *r = calloc(count_, sizeof *r);
    if (!r) {
        pthread_mutex_unlock(&C.lock);
        return false;
    }
    r[0] = (cluster_host_info){.id = C.self, .self = true};
    snprintf(r[0].build, sizeof r[0].build, "%s", cluster_build_id());
    memcpy(r[0].name, C.name, sizeof r[0].name);
    size_t i = 1;
    for (peer *q = C.peers; q; q = q->next, i++) {
        r[i].id = q->id;
        r[i].lost = q->lost;
        r[i].silent = (double)elapsed(t, q->last_seen_ns) / 1e9;
        memcpy(r[i].build, q->build, sizeof r[i].build);
        memcpy(r[i].name, q->name, sizeof r[i].name);
    }
    pthread_mutex_unlock(&C.lock);
    *rows = r;
    *n = count_;
    return true;
}

void cluster_get_stats(cluster_stats *s) {
    memset(s, 0, sizeof *s);
    s->on = cluster_on();
    static const char *states[] = {"off", "connected", "reconnecting", "closed"};
    int c = atomic_load(&C.conn);
    s->state = states[c >= 0 && c <= 3 ? c : 0];
    if (!s->on)
        s->state = "off";
#define LOAD(f) s->f = atomic_load_explicit(&C.f, memory_order_relaxed)
    LOAD(sends);
    LOAD(calls);
    LOAD(replies);
    LOAD(bytes_out);
    LOAD(bytes_in);
    LOAD(received);
    LOAD(rejected);
    LOAD(reconnects);
    LOAD(hosts_lost);
    LOAD(calls_failed);
    LOAD(fenced);
#undef LOAD
    s->names_cluster = cluster_names_on();
    for (int i = 0; i < CLUSTER_LAT_BUCKETS; i++)
        s->call_latency[i] = atomic_load_explicit(&C.lat[i], memory_order_relaxed);
    s->call_latency_sum_us = atomic_load_explicit(&C.lat_sum_us, memory_order_relaxed);
    if (s->on) {
        pthread_mutex_lock(&C.lock);
        for (peer *q = C.peers; q; q = q->next)
            s->hosts_known += !q->lost;
        pthread_mutex_unlock(&C.lock);
    }
}
