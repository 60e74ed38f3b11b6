/*
 * cluster_names.c - agent names unique across the cluster
 * (cluster_names.h, docs/cluster.md "Names").
 *
 * The bucket.  A JetStream key-value bucket "ms_names" (file storage, one
 * revision per key).  The key is the name, as it is when it is made of
 * letters, digits, '-', '_' and '=' ("n.NAME"), else hex ("h.HEX"); the
 * value is "HOST AGENT": the holder's host id in 16 hex digits and its
 * agent id there (0 between the claim and the bind).
 *
 * Claim: kvStore_Create, which succeeds only when the key is absent (or
 * deleted): two hosts claiming one name at once, one wins.  A claim that
 * finds the key taken looks at the holder: a host declared lost (its
 * sweep has not run yet), or one that is not subscribed (no responders:
 * it died before anybody knew it), holds a stale key, which is deleted
 * (on its revision, so a fresh holder's key is never touched) and the
 * create tried once more.  Release: a delete on the key's revision, for
 * the same reason: a name that was taken over after its host was lost is
 * not deleted by the old holder coming back.  Loss: every host that
 * declares a host lost deletes the keys whose value names it (each on its
 * revision: the hosts doing it at once do not collide).
 *
 * Threads.  One registrar thread runs every bucket operation, in the order
 * they were asked (a release queued before a claim of the same name is
 * done first).  Workers queue jobs and are woken by the claim's waker;
 * `lock` guards the queue and each claim's outcome.  The registrar never
 * holds `lock` while it waits on the broker.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "cluster.h"
#include "cluster_names.h"
#include "hostlog.h"
#include "registry.h"

#define BUCKET "ms_names"
#define WAIT_MS 2000            /* each bucket operation's bound */
#define KEY_MAX (2 + 2 * AGENT_NAME_MAX + 1)

struct name_claim {
    _Atomic uint32_t refs;
    char name[AGENT_NAME_MAX + 1];
    char key[KEY_MAX];
    /* The registrar's alone: */
    uint64_t rev;               /* the key's revision while we hold it, else 0 */
    uint64_t agent_id;          /* set before the bind job is queued */
    /* Under lock: */
    bool done, ok;
    char error[240];
    ms_waker waker;
    pthread_cond_t *waiter;     /* cluster_claim_wait's, or NULL */
};

typedef enum { JOB_CLAIM, JOB_BIND, JOB_RELEASE, JOB_SWEEP, JOB_LOOKUP, JOB_STOP } job_kind;

typedef struct job {
    job_kind kind;
    name_claim *claim;          /* CLAIM, BIND, RELEASE: a reference */
    uint64_t lost;              /* SWEEP: the lost host */
    uint64_t ref;               /* LOOKUP */
    char name[AGENT_NAME_MAX + 1];
    struct job *next;
} job;

static struct {
    _Atomic bool on;
    uint64_t self;
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* the registrar's: a job was queued */
    pthread_cond_t idle;        /* the queue became empty */
    job *head, *tail;           /* under lock */
    bool busy;                  /* under lock: the registrar runs a job */
} N = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .wake = PTHREAD_COND_INITIALIZER,
       .idle = PTHREAD_COND_INITIALIZER};

bool cluster_names_on(void) {
    return atomic_load_explicit(&N.on, memory_order_acquire);
}

/* ---- keys and values ---- */

static void key_of(const char *name, char *key) {
    bool plain = *name != '\0';
    for (const char *p = name; *p && plain; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                *p == '-' || *p == '_' || *p == '=';
    if (plain) {
        snprintf(key, KEY_MAX, "n.%s", name);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    key[n++] = 'h';
    key[n++] = '.';
    for (const unsigned char *p = (const unsigned char *)name; *p && n + 3 <= KEY_MAX; p++) {
        key[n++] = hex[*p >> 4];
        key[n++] = hex[*p & 15];
    }
    key[n] = '\0';
}

/* "HOST AGENT" -> host, agent; false if the value is not one. */
static bool value_parse(const char *v, int len, uint64_t *holder, uint64_t *id) {
    char buf[64];
    if (len < 16 || len >= (int)sizeof buf)
        return false;
    memcpy(buf, v, (size_t)len);
    buf[len] = '\0';
    char hex[17];
    memcpy(hex, buf, 16);
    hex[16] = '\0';
    if (!cluster_id_parse(hex, holder))
        return false;
    *id = len > 17 && buf[16] == ' ' ? strtoull(buf + 17, NULL, 10) : 0;
    return true;
}

/* ---- the queue ---- */

static void claim_unref(name_claim *c) {
    if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
        ms_waker_drop(&c->waker);
        free(c);
    }
}

/* Queues a job (taken over); false if the registrar is not running. */
static bool enqueue(job *j) {
    pthread_mutex_lock(&N.lock);
    if (!cluster_names_on() && j->kind != JOB_STOP) {
        pthread_mutex_unlock(&N.lock);
        return false;
    }
    j->next = NULL;
    if (N.tail)
        N.tail->next = j;
    else
        N.head = j;
    N.tail = j;
    pthread_cond_signal(&N.wake);
    pthread_mutex_unlock(&N.lock);
    return true;
}

static job *job_new(job_kind kind, name_claim *c) {
    job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->kind = kind;
    if (c) {
        atomic_fetch_add(&c->refs, 1);
        j->claim = c;
    }
    return j;
}

/* ---- the registrar's operations ---- */

/* A delete of key on its revision rev: nothing happens if the key has
 * changed since (another holder). */
static natsStatus delete_at(const char *key, uint64_t rev) {
    char subj[sizeof "$KV." BUCKET "." + KEY_MAX];
    snprintf(subj, sizeof subj, "$KV." BUCKET ".%s", key);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subj, NULL, NULL, 0);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "KV-Operation", "DEL");
    jsPubOptions o;
    jsPubOptions_Init(&o);
    o.ExpectLastSubjectSeq = rev;
    o.MaxWait = WAIT_MS;
    jsErrCode jerr = 0;
    if (s == NATS_OK)
        s = js_PublishMsg(NULL, N.js, m, &o, &jerr);
    natsMsg_Destroy(m);
    return s;
}

/* Is the holder of a key gone for good?  Lost here, or not subscribed
 * (the broker says no responders to a probe; a live host does not answer
 * probes, so that wait is the probe's bound). */
static bool holder_gone(uint64_t holder) {
    int st = cluster_host_state(holder);
    if (st == CLUSTER_HOST_LOST)
        return true;
    if (st == CLUSTER_HOST_LIVE || holder == N.self)
        return false;
    char subj[48], hex[17];
    cluster_id_hex(holder, hex);
    snprintf(subj, sizeof subj, "ms.h.%s.p", hex);
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_Request(&reply, N.nc, subj, "", 0, 500);
    natsMsg_Destroy(reply);
    return s == NATS_NO_RESPONDERS;
}

/* The bucket, made if it is not there; made by another host with other
 * settings, used as it is. */
static natsStatus open_bucket(kvStore **kv) {
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = BUCKET;
    kc.History = 1;
    natsStatus s = js_CreateKeyValue(kv, N.js, &kc);
    if (s != NATS_OK)
        s = js_KeyValue(kv, N.js, BUCKET);
    return s;
}

/* Makes the bucket again if it is gone (a broker restarted without its
 * JetStream store), keeping the old handle when that fails.  The
 * registrar's. */
static bool ensure_bucket(void) {
    kvStore *kv = NULL;
    if (open_bucket(&kv) != NATS_OK)
        return false;
    kvStore_Destroy(N.kv);
    N.kv = kv;
    return true;
}

/* Does our agent id hold name here?  An entry of ours that no agent of
 * ours matches is a release the broker never got. */
static bool held_here(const char *name, uint64_t id) {
    agent *a = registry_whereis(name);
    bool held = a && a->id == id;
    if (a)
        agent_unref(a);
    return held;
}

static void claim_finish(name_claim *c, bool ok, const char *error) {
    pthread_mutex_lock(&N.lock);
    c->done = true;
    c->ok = ok;
    snprintf(c->error, sizeof c->error, "%s", error ? error : "");
    ms_waker w = c->waker;
    c->waker = (ms_waker){0};
    if (c->waiter)
        pthread_cond_broadcast(c->waiter);
    pthread_mutex_unlock(&N.lock);
    ms_waker_wake(&w);
}

static void do_claim(name_claim *c) {
    char value[40];
    snprintf(value, sizeof value, "%016" PRIx64 " 0", N.self);
    char error[240];
    for (int attempt = 0; attempt < 2; attempt++) {
        uint64_t rev = 0;
        natsStatus s = kvStore_Create(&rev, N.kv, c->key, value, (int)strlen(value));
        if (s == NATS_OK) {
            c->rev = rev;
            claim_finish(c, true, NULL);
            return;
        }
        kvEntry *e = NULL;
        natsStatus g = kvStore_Get(&e, N.kv, c->key);
        if (g != NATS_OK) {
            /* Not there (deleted since) or no answer: a second try, or the
             * create's own failure. */
            if (attempt == 0 && (g == NATS_NOT_FOUND || ensure_bucket()))
                continue;
            snprintf(error, sizeof error,
                     "the name '%s' could not be registered in the cluster: %s", c->name,
                     natsStatus_GetText(s));
            claim_finish(c, false, error);
            return;
        }
        uint64_t holder = 0, id = 0;
        bool parsed = value_parse(kvEntry_Value(e), kvEntry_ValueLen(e), &holder, &id);
        uint64_t held_rev = kvEntry_Revision(e);
        kvEntry_Destroy(e);
        bool stale = holder == N.self ? id && !held_here(c->name, id) : holder_gone(holder);
        if (parsed && attempt == 0 && stale) {
            delete_at(c->key, held_rev); /* its host is gone, or its agent */
            continue;
        }
        if (parsed && holder == N.self)
            snprintf(error, sizeof error,
                     "the name '%s' is taken by agent %" PRIu64 " of this host", c->name, id);
        else if (parsed)
            snprintf(error, sizeof error,
                     "the name '%s' is taken in the cluster by agent %" PRIu64 " of host %016" PRIx64,
                     c->name, id, holder);
        else
            snprintf(error, sizeof error,
                     "the name '%s' is taken in the cluster (its entry is not ours to read)",
                     c->name);
        claim_finish(c, false, error);
        return;
    }
    snprintf(error, sizeof error, "the name '%s' could not be registered in the cluster", c->name);
    claim_finish(c, false, error);
}

static void do_bind(name_claim *c) {
    if (!c->rev)
        return;
    char value[48];
    snprintf(value, sizeof value, "%016" PRIx64 " %" PRIu64, N.self, c->agent_id);
    uint64_t rev = 0;
    if (kvStore_Update(&rev, N.kv, c->key, value, (int)strlen(value), c->rev) == NATS_OK)
        c->rev = rev;
}

static void do_release(name_claim *c) {
    if (!c->rev)
        return;
    /* A broker outage may eat a delete: tried once more, not for long
     * (the claims queued behind it wait). */
    for (int i = 0; i < 2 && cluster_names_on(); i++) {
        natsStatus s = delete_at(c->key, c->rev);
        if (s == NATS_OK || s == NATS_ERR)
            break; /* done, or the key is not ours any more */
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    c->rev = 0;
}

static void do_sweep(uint64_t lost) {
    kvKeysList keys = {0};
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    o.Timeout = WAIT_MS;
    if (kvStore_Keys(&keys, N.kv, &o) != NATS_OK)
        return;
    size_t n = 0;
    for (int i = 0; i < keys.Count && cluster_names_on(); i++) {
        kvEntry *e = NULL;
        if (kvStore_Get(&e, N.kv, keys.Keys[i]) != NATS_OK)
            continue;
        uint64_t holder, id;
        if (value_parse(kvEntry_Value(e), kvEntry_ValueLen(e), &holder, &id) && holder == lost &&
            delete_at(keys.Keys[i], kvEntry_Revision(e)) == NATS_OK)
            n++;
        kvEntry_Destroy(e);
    }
    kvKeysList_Destroy(&keys);
    if (n)
        hostlog(HOSTLOG_INFO, "cluster.names_freed", 0, NULL,
                "cluster: freed %zu name%s of host %016" PRIx64, n, n == 1 ? "" : "s", lost);
}

static void do_lookup(uint64_t ref, const char *name) {
    char key[KEY_MAX];
    key_of(name, key);
    kvEntry *e = NULL;
    uint64_t holder = 0, id = 0;
    if (kvStore_Get(&e, N.kv, key) == NATS_OK) {
        if (!value_parse(kvEntry_Value(e), kvEntry_ValueLen(e), &holder, &id))
            holder = id = 0;
        kvEntry_Destroy(e);
    }
    cluster_names_found(ref, name, holder, id);
}

static void *registrar_main(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&N.lock);
        while (!N.head) {
            N.busy = false;
            pthread_cond_broadcast(&N.idle);
            pthread_cond_wait(&N.wake, &N.lock);
        }
        job *j = N.head;
        N.head = j->next;
        if (!N.head)
            N.tail = NULL;
        N.busy = true;
        pthread_mutex_unlock(&N.lock);
        job_kind kind = j->kind;
        if (!cluster_names_on() && kind != JOB_STOP) {
            /* Leaving, past cluster_names_stop's second: what is left is
             * not done (a claim is told so). */
            if (kind == JOB_CLAIM)
                claim_finish(j->claim, false, "the host is leaving the cluster");
            if (kind == JOB_LOOKUP)
                cluster_names_found(j->ref, j->name, 0, 0);
            kind = JOB_STOP + 1; /* nothing below */
        }
        switch (kind) {
        case JOB_CLAIM: do_claim(j->claim); break;
        case JOB_BIND: do_bind(j->claim); break;
        case JOB_RELEASE: do_release(j->claim); break;
        case JOB_SWEEP: do_sweep(j->lost); break;
        case JOB_LOOKUP: do_lookup(j->ref, j->name); break;
        default: break;
        }
        bool last = j->kind == JOB_STOP;
        claim_unref(j->claim);
        free(j);
        if (last)
            break;
    }
    pthread_mutex_lock(&N.lock);
    N.busy = false;
    pthread_cond_broadcast(&N.idle);
    pthread_mutex_unlock(&N.lock);
    return NULL;
}

/* ---- start and stop ---- */

static void close_bucket(void) {
    kvStore_Destroy(N.kv);
    jsCtx_Destroy(N.js);
    N.kv = NULL;
    N.js = NULL;
}

bool cluster_names_start(natsConnection *nc, uint64_t self, char *why, size_t whylen) {
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = WAIT_MS;
    natsStatus s = natsConnection_JetStream(&N.js, nc, &jo);
    if (s == NATS_OK)
        s = open_bucket(&N.kv);
    if (s != NATS_OK) {
        snprintf(why, whylen, "%s", natsStatus_GetText(s));
        close_bucket();
        return false;
    }
    N.nc = nc;
    N.self = self;
    atomic_store_explicit(&N.on, true, memory_order_release);
    if (pthread_create(&N.thread, NULL, registrar_main, NULL) != 0) {
        atomic_store(&N.on, false);
        snprintf(why, whylen, "no thread for the registrar");
        close_bucket();
        return false;
    }
    return true;
}

void cluster_names_stop(void) {
    if (!cluster_names_on())
        return;
    /* What is queued (the releases of the agents that ended) goes out
     * first, for up to a second. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    pthread_mutex_lock(&N.lock);
    while ((N.head || N.busy) &&
           pthread_cond_timedwait(&N.idle, &N.lock, &until) == 0)
        ;
    atomic_store_explicit(&N.on, false, memory_order_release);
    pthread_mutex_unlock(&N.lock);
    job *stop = job_new(JOB_STOP, NULL);
    if (stop) {
        enqueue(stop);
        pthread_join(N.thread, NULL);
    } else {
        pthread_detach(N.thread); /* it waits for ever; the process ends */
    }
    /* Left over (a stop without memory, or past the second): their
     * claims end unanswered. */
    pthread_mutex_lock(&N.lock);
    job *left = N.head;
    N.head = N.tail = NULL;
    pthread_mutex_unlock(&N.lock);
    while (left) {
        job *j = left;
        left = j->next;
        if (j->kind == JOB_CLAIM)
            claim_finish(j->claim, false, "the host is leaving the cluster");
        claim_unref(j->claim);
        free(j);
    }
    close_bucket();
}

/* ---- claims ---- */

name_claim *cluster_claim_start(const char *name) {
    name_claim *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    snprintf(c->name, sizeof c->name, "%s", name);
    key_of(c->name, c->key);
    job *j = job_new(JOB_CLAIM, c);
    if (!j || !enqueue(j)) {
        if (j)
            claim_unref(j->claim);
        free(j);
        c->done = true;
        snprintf(c->error, sizeof c->error,
                 j ? "the name '%s' cannot be registered: this host is leaving the cluster"
                   : "the name '%s' cannot be registered: out of memory",
                 c->name);
    }
    return c;
}

ms_poll cluster_claim_poll(name_claim *c, const ms_waker *w, bool *ok, char *err, size_t errlen) {
    pthread_mutex_lock(&N.lock);
    if (c->done) {
        *ok = c->ok;
        snprintf(err, errlen, "%s", c->error);
        pthread_mutex_unlock(&N.lock);
        return MS_POLL_READY;
    }
    ms_waker_store(&c->waker, w);
    pthread_mutex_unlock(&N.lock);
    return MS_POLL_PENDING;
}

bool cluster_claim_wait(name_claim *c, char *err, size_t errlen) {
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&N.lock);
    c->waiter = &cond;
    while (!c->done)
        pthread_cond_wait(&cond, &N.lock);
    c->waiter = NULL;
    bool ok = c->ok;
    snprintf(err, errlen, "%s", c->error);
    pthread_mutex_unlock(&N.lock);
    pthread_cond_destroy(&cond);
    return ok;
}

static void release(name_claim *c) {
    job *j = job_new(JOB_RELEASE, c);
    if (j && !enqueue(j)) {
        claim_unref(j->claim);
        free(j);
    }
}

void cluster_claim_bind(name_claim *c, agent *a) {
    c->agent_id = a->id;
    job *j = job_new(JOB_BIND, c);
    if (j && !enqueue(j)) {
        claim_unref(j->claim);
        free(j);
    }
    atomic_store(&a->name_claim, c); /* the caller's reference moves */
    /* Ended already?  Then its exit found no claim to release. */
    pthread_mutex_lock(&a->mlock);
    bool ended = a->state == AG_EXITED;
    pthread_mutex_unlock(&a->mlock);
    if (ended)
        cluster_names_agent_ended(a);
}

void cluster_claim_drop(name_claim *c) {
    if (!c)
        return;
    pthread_mutex_lock(&N.lock);
    bool won = c->done && c->ok;
    bool pending = !c->done;
    pthread_mutex_unlock(&N.lock);
    /* Claimed and never bound (the spawn failed), or still in the queue
     * (its task was cancelled: the release queued behind it undoes it). */
    if (won || pending)
        release(c);
    claim_unref(c);
}

void cluster_names_agent_ended(agent *a) {
    name_claim *c = atomic_exchange(&a->name_claim, NULL);
    if (!c)
        return;
    release(c);
    claim_unref(c);
}

void cluster_names_host_lost(uint64_t hid) {
    job *j = job_new(JOB_SWEEP, NULL);
    if (!j)
        return;
    j->lost = hid;
    if (!enqueue(j))
        free(j);
}

void cluster_names_lookup(uint64_t ref, const char *name) {
    job *j = job_new(JOB_LOOKUP, NULL);
    if (j) {
        j->ref = ref;
        snprintf(j->name, sizeof j->name, "%s", name);
    }
    if (!j || !enqueue(j)) {
        free(j);
        cluster_names_found(ref, name, 0, 0);
    }
}
