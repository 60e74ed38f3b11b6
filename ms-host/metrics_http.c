/*
 * metrics_http.c - ms-host's metrics endpoint: a small HTTP/1.1 server run
 * as libms tasks on the host's runtime.
 *
 *   GET /metrics        Prometheus text exposition format 0.0.4
 *   GET /metrics.json   ms_metrics_to_json plus an "agents" array
 *   GET /debug/tasks[.json][?agent=NAME&state=STATE]
 *                       the live task dump (agents/tasks.c) as text or JSON,
 *                       taken on the blocking pool while the connection
 *                       waits for it (PH_JOB)
 *   GET /debug/profile?agent=NAME&seconds=S
 *                       a sampling profile of one agent (agents/profiler.c)
 *                       as folded stacks, the same way
 *
 * One task accepts; each connection is a task of its own that reads one
 * request into a bounded buffer, answers it and closes (Connection: close).
 * HEAD is answered like GET without the body; other methods get 405, other
 * paths 404.  Requests are read by the one HTTP request parser
 * (web/http_request.h, on http-parser).  A request it refuses (malformed,
 * a request line and headers over MH_MAX_REQUEST bytes, a body over
 * MH_MAX_BODY, an HTTP version other than 1.x) gets 400 with its reason;
 * so does one that is not complete within
 * MH_REQUEST_TIMEOUT_MS of the accept, or during which no byte arrives for
 * MH_IDLE_TIMEOUT_MS, gets 400; a connection that has sent nothing by then
 * is closed.  A response that the client does not read within
 * MH_RESPONSE_TIMEOUT_MS is dropped.  At most MH_MAX_CONNS connections are
 * served at once; when all are taken, the next connection evicts the
 * oldest one still waiting for its request, once that one has had
 * MH_EVICT_GRACE_MS (until then the next connection waits, in the
 * kernel's backlog).  So slow or idle clients cannot keep a scraper out:
 * every connection gets its turn and at least MH_EVICT_GRACE_MS to send
 * its request, and a scraper sends it at once.  Nothing a client sends
 * reaches the agents.
 *
 * Lifetime: the tasks run until the runtime shuts down, which cancels
 * them; their drop functions close the listener, the streams and the
 * timers while the driver still runs.  The server object is refcounted by
 * the accept task and every connection task, since cancellation ends them
 * in no particular order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cluster.h"
#include "facts.h"
#include "host.h"
#include "hostlog.h"
#include "http_request.h"
#include "lms_http_client.h"
#include "lms_http_server.h"
#include "metrics_http.h"
#include "profiler.h"
#include "tasks.h"

#define MH_MAX_REQUEST 8192          /* request line + headers, bytes */
#define MH_MAX_BODY 8192             /* a request's body (read and ignored) */
#define MH_READ_CHUNK 4096           /* bytes read at a time */
#define MH_MAX_CONNS 64              /* connections served at once */
#define MH_REQUEST_TIMEOUT_MS 5000   /* from accept to the end of the headers */
#define MH_IDLE_TIMEOUT_MS 2000      /* between two bytes of the request */
#define MH_EVICT_GRACE_MS 100        /* a connection younger than this stays */
#define MH_RESPONSE_TIMEOUT_MS 10000 /* to write, flush and shut down */
#define MH_LINGER_MS 1000            /* draining the client's leftovers */
#define MH_LINGER_BYTES (64 * 1024)

/* ---- a growable output buffer ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;                   /* an allocation failed: the text is incomplete */
} sbuf;

static bool sb_reserve(sbuf *b, size_t more) {
    if (b->oom)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *grown = realloc(b->p, cap);
    if (!grown) {
        b->oom = true;
        return false;
    }
    b->p = grown;
    b->cap = cap;
    return true;
}

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) {
    sb_add(b, s, strlen(s));
}

static void sb_printf(sbuf *b, const char *fmt, ...) MS_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!sb_reserve(b, attempt == 0 ? 64 : 0))
            return;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->p[b->len] = '\0';
        if (!sb_reserve(b, (size_t)n))
            return;
    }
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len;
    uint32_t min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    uint32_t cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A Prometheus label value: backslash, double quote and newline escaped;
 * bytes that are not UTF-8 become U+FFFD. */
static void sb_label(sbuf *b, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(u + i, n - i);
        if (k == 0) {
            sb_str(b, "\xef\xbf\xbd");
            i++;
            continue;
        }
        if (u[i] == '\\')
            sb_str(b, "\\\\");
        else if (u[i] == '"')
            sb_str(b, "\\\"");
        else if (u[i] == '\n')
            sb_str(b, "\\n");
        else
            sb_add(b, s + i, k);
        i += k;
    }
}

/* A JSON string, quotes included; bytes that are not UTF-8 become
 * U+FFFD. */
static void sb_json_str(sbuf *b, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    sb_str(b, "\"");
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(u + i, n - i);
        if (k == 0) {
            sb_str(b, "\\ufffd");
            i++;
            continue;
        }
        if (u[i] == '\\' || u[i] == '"') {
            char esc[2] = {'\\', (char)u[i]};
            sb_add(b, esc, 2);
        } else if (u[i] < 0x20 || u[i] == 0x7f) {
            sb_printf(b, "\\u%04x", u[i]);
        } else {
            sb_add(b, s + i, k);
        }
        i += k;
    }
    sb_str(b, "\"");
}

/* ---- what the endpoint reports ----
 *
 * Every series comes from a descriptor table: libms's metrics
 * (ms_metric_descs) and the host's per-agent ones (agents/facts.c), so that the
 * names, types and help here are the ones ms.metrics(), the JSON and the
 * docs check use. */

static const char *prom_type(ms_metric_type t) {
    return t == MS_METRIC_COUNTER ? "counter" : t == MS_METRIC_HISTOGRAM ? "histogram" : "gauge";
}

/* Metric d of m (worker w, or MS_METRIC_TOTAL): times as exact decimal
 * seconds, flags as 0 or 1, the rest as whole numbers. */
static void sb_value(sbuf *b, const ms_metrics *m, const ms_metric_desc *d, uint32_t w) {
    unsigned long long v = ms_metric_get(m, d, w);
    switch (d->unit) {
    case MS_UNIT_NS:
        sb_printf(b, "%llu.%09llu", v / 1000000000u, v % 1000000000u);
        break;
    case MS_UNIT_US:
        sb_printf(b, "%llu.%06llu", v / 1000000u, v % 1000000u);
        break;
    case MS_UNIT_MS:
        sb_printf(b, "%llu.%03llu", v / 1000u, v % 1000u);
        break;
    default:
        sb_printf(b, "%llu", v);
        break;
    }
}

/* A host metric's value: a time (stored in ns) in exact decimal seconds. */
static void sb_host_value(sbuf *b, const host_metric_desc *f, uint64_t v) {
    if (f->unit == MS_UNIT_NS)
        sb_printf(b, "%llu.%09llu", (unsigned long long)(v / 1000000000u),
                  (unsigned long long)(v % 1000000000u));
    else
        sb_printf(b, "%llu", (unsigned long long)v);
}

static void sb_family(sbuf *b, const char *name, const char *type, const char *help) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One agent's figures, copied under the host's lock. */
typedef struct agent_row {
    uint64_t id;
    char name[64];
    const char *state;
    uint64_t v[AM_COUNT];       /* indexed by agent_metric */
} agent_row;

static int row_cmp(const void *x, const void *y) {
    const agent_row *a = x, *b = y;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* The registered agents (as ms.agents() lists them) by id, or NULL with
 * *n == 0 when there are none or no memory. */
static agent_row *agent_rows(host *h, size_t *n) {
    static const char *const states[] = {"starting", "running", "exited"};
    *n = 0;
    pthread_mutex_lock(&h->lock);
    size_t cap = (size_t)h->nagents;
    agent_row *rows = cap ? calloc(cap, sizeof *rows) : NULL;
    for (agent *a = h->agents; rows && a && *n < cap; a = a->next_reg) {
        agent_row *r = &rows[(*n)++];
        pthread_mutex_lock(&a->mlock);
        r->id = a->id;
        memcpy(r->name, a->name, sizeof r->name);
        r->name[sizeof r->name - 1] = '\0';
        r->state = a->state <= AG_EXITED ? states[a->state] : "?";
        r->v[AM_MAILBOX] = mbox_len(&a->mbox);
        r->v[AM_RECEIVED] = mbox_popped(&a->mbox);
        r->v[AM_MEMORY] = atomic_load_explicit(&a->mem_used, memory_order_relaxed);
        r->v[AM_MEMORY_LIMIT] = a->mem_limit;
        r->v[AM_POLLS] = atomic_load_explicit(&a->polls, memory_order_relaxed);
        r->v[AM_RESTARTS] = a->restarts;
        r->v[AM_CPU] = agent_cpu_ns(a);
        r->v[AM_IO_HANDLES] = atomic_load_explicit(&a->io_count, memory_order_relaxed);
        pthread_mutex_unlock(&a->mlock);
    }
    pthread_mutex_unlock(&h->lock);
    if (rows)
        qsort(rows, *n, sizeof *rows, row_cmp);
    return rows;
}

/* A bucket bound, 2^i microseconds, as exact decimal seconds without
 * trailing zeros ("0.000001", "0.5", "8.388608"). */
static void sb_bound(sbuf *b, uint64_t ns) {
    char frac[16];
    uint64_t us = ns / 1000u;
    snprintf(frac, sizeof frac, "%06llu", (unsigned long long)(us % 1000000u));
    size_t n = strlen(frac);
    while (n > 0 && frac[n - 1] == '0')
        frac[--n] = '\0';
    sb_printf(b, "%llu%s%s", (unsigned long long)(us / 1000000u), n ? "." : "", frac);
}

/* One Prometheus histogram family over the workers: cumulative _bucket
 * series ending in le="+Inf" (which equals _count), then _sum and
 * _count. */
static void render_histograms(sbuf *b, const ms_metrics *m, const ms_metric_desc *d) {
    sb_family(b, d->prom, prom_type(d->type), d->help);
    for (uint32_t w = 0; w < m->workers; w++) {
        const ms_histogram *hg = ms_metric_histogram(m, d, w);
        uint64_t cum = 0;
        for (uint32_t i = 0; i < MS_HIST_BUCKETS; i++) {
            cum += hg->buckets[i];
            sb_printf(b, "%s_bucket{worker=\"%u\",le=\"", d->prom, w);
            if (i + 1 < MS_HIST_BUCKETS)
                sb_bound(b, ms_histogram_bound_ns(i));
            else
                sb_str(b, "+Inf");
            sb_printf(b, "\"} %llu\n", (unsigned long long)cum);
        }
        sb_printf(b, "%s_sum{worker=\"%u\"} %llu.%09llu\n", d->prom, w,
                  (unsigned long long)(hg->sum_ns / 1000000000u),
                  (unsigned long long)(hg->sum_ns % 1000000000u));
        sb_printf(b, "%s_count{worker=\"%u\"} %llu\n", d->prom, w,
                  (unsigned long long)hg->count);
    }
}

/* The HTTP client's families (docs/http.md): counters and gauges, then,
 * with metrics_histograms on as for the other histograms, the latency
 * histogram (cumulative buckets, +Inf equal to _count). */
static void render_http_client_prometheus(sbuf *b, bool histograms) {
    uint64_t v[HCM_COUNT], hb[HTTP_CLIENT_LATENCY_BUCKETS], sum_ns;
    http_client_metric_values(v);
    http_client_latency_values(hb, &sum_ns);
    for (size_t i = 0; i < HCM_COUNT; i++) {
        const host_metric_desc *f = &http_client_metric_descs[i];
        sb_family(b, f->prom, prom_type(f->type), f->help);
        sb_printf(b, "%s %llu\n", f->prom, (unsigned long long)v[i]);
    }
    if (!histograms)
        return;
    const host_metric_desc *d = &http_client_latency_desc;
    sb_family(b, d->prom, prom_type(d->type), d->help);
    uint64_t cum = 0;
    for (int i = 0; i < HTTP_CLIENT_LATENCY_BUCKETS; i++) {
        cum += hb[i];
        if (i + 1 < HTTP_CLIENT_LATENCY_BUCKETS)
            sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", d->prom, http_client_latency_bounds[i],
                      (unsigned long long)cum);
        else
            sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", d->prom, (unsigned long long)cum);
    }
    sb_printf(b, "%s_sum %llu.%09llu\n", d->prom, (unsigned long long)(sum_ns / 1000000000u),
              (unsigned long long)(sum_ns % 1000000000u));
    sb_printf(b, "%s_count %llu\n", d->prom, (unsigned long long)cum);
}

/* The cluster's families (docs/cluster.md), only on a host that joined
 * one: a host alone serves what it always did. */
static void render_cluster_prometheus(sbuf *b) {
    cluster_stats s;
    cluster_get_stats(&s);
    if (!s.on)
        return;
    sb_family(b, "ms_cluster_connected", "gauge",
              "1 while this host is connected to the cluster's broker, 0 while it reconnects.");
    sb_printf(b, "ms_cluster_connected %d\n", !strcmp(s.state, "connected"));
    static const struct {
        const char *name, *help;
        size_t off;
        bool gauge;
    } fams[] = {
#define F(n, f, g, h) {"ms_cluster_" n, h, offsetof(cluster_stats, f), g}
        F("sends_total", sends, false, "Messages sent to agents of other hosts."),
        F("calls_total", calls, false, "Calls made to agents of other hosts."),
        F("replies_total", replies, false, "Answers sent back to callers on other hosts."),
        F("bytes_out_total", bytes_out, false, "Bytes this host published to the cluster."),
        F("bytes_in_total", bytes_in, false, "Bytes this host received from the cluster."),
        F("received_total", received, false, "Envelopes received from other hosts."),
        F("rejected_total", rejected, false,
          "Messages from the network refused (malformed, forged, from a lost host)."),
        F("reconnects_total", reconnects, false, "Reconnections to the broker."),
        F("hosts_known", hosts_known, true, "Other hosts heard of and not lost."),
        F("hosts_lost_total", hosts_lost, false, "Hosts declared lost (or gone on shutdown)."),
        F("calls_failed_total", calls_failed, false,
          "Remote calls failed without an answer (host lost, no responders, no reply)."),
        F("fenced_total", fenced, false,
          "Agents this host stopped because it was cut off from the cluster."),
#undef F
    };
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        sb_family(b, fams[i].name, fams[i].gauge ? "gauge" : "counter", fams[i].help);
        sb_printf(b, "%s %llu\n", fams[i].name,
                  (unsigned long long)*(const uint64_t *)((const char *)&s + fams[i].off));
    }
    sb_family(b, "ms_cluster_call_latency_seconds", "histogram",
              "Round trip of remote calls, from the publish to the answer.");
    uint64_t cum = 0;
    for (int i = 0; i < CLUSTER_LAT_BUCKETS; i++) {
        cum += s.call_latency[i];
        if (i < CLUSTER_LAT_BUCKETS - 1)
            sb_printf(b, "ms_cluster_call_latency_seconds_bucket{le=\"%g\"} %llu\n",
                      cluster_latency_bounds_us[i] / 1e6, (unsigned long long)cum);
        else
            sb_printf(b, "ms_cluster_call_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                      (unsigned long long)cum);
    }
    sb_printf(b, "ms_cluster_call_latency_seconds_sum %g\n", s.call_latency_sum_us / 1e6);
    sb_printf(b, "ms_cluster_call_latency_seconds_count %llu\n", (unsigned long long)cum);
}

/* ms.http.serve's families (facts.c's http_metric_descs), then its
 * latency histogram. */
static void render_http_prometheus(sbuf *b) {
    http_stats st;
    http_server_stats(&st);
    for (size_t i = 0; i < HTTP_M_COUNT; i++) {
        const host_metric_desc *f = &http_metric_descs[i];
        sb_family(b, f->prom, prom_type(f->type), f->help);
        sb_printf(b, "%s %llu\n", f->prom, (unsigned long long)st.v[i]);
    }
    const host_metric_desc *d = &http_latency_metric_desc;
    sb_family(b, d->prom, prom_type(d->type), d->help);
    uint64_t cum = 0;
    for (int i = 0; i < HTTP_LAT_BUCKETS; i++) {
        cum += st.latency[i];
        if (i < HTTP_LAT_BUCKETS - 1)
            sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", d->prom, http_latency_bounds_us[i] / 1e6,
                      (unsigned long long)cum);
        else
            sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", d->prom, (unsigned long long)cum);
    }
    sb_printf(b, "%s_sum %llu.%06llu\n", d->prom,
              (unsigned long long)(st.latency_sum_us / 1000000u),
              (unsigned long long)(st.latency_sum_us % 1000000u));
    sb_printf(b, "%s_count %llu\n", d->prom, (unsigned long long)cum);
}

static void render_prometheus(sbuf *b, const ms_metrics *m, const agent_row *rows, size_t nrows) {
    size_t n;
    const ms_metric_desc *d = ms_metric_descs(&n);
    for (size_t i = 0; i < n; i++) {
        if (d[i].type == MS_METRIC_HISTOGRAM) {
            if (m->histograms)
                render_histograms(b, m, &d[i]);
            continue;
        }
        sb_family(b, d[i].prom, prom_type(d[i].type), d[i].help);
        if (d[i].scope == MS_METRIC_RUNTIME) {
            sb_printf(b, "%s ", d[i].prom);
            sb_value(b, m, &d[i], MS_METRIC_TOTAL);
            sb_str(b, "\n");
            continue;
        }
        for (uint32_t w = 0; w < m->workers; w++) {
            sb_printf(b, "%s{worker=\"%u\"} ", d[i].prom, w);
            sb_value(b, m, &d[i], w);
            sb_str(b, "\n");
        }
    }
    const host_metric_desc *all = &agents_metric_desc;
    sb_family(b, all->prom, prom_type(all->type), all->help);
    sb_printf(b, "%s %zu\n", all->prom, nrows);
    host *h = host_get();
    for (size_t i = 0; h && i < IM_COUNT; i++) {
        const host_metric_desc *f = &io_metric_descs[i];
        sb_family(b, f->prom, prom_type(f->type), f->help);
        sb_printf(b, "%s %llu\n", f->prom,
                  (unsigned long long)atomic_load_explicit(&h->io[i], memory_order_relaxed));
    }
    for (size_t i = 0; i < AM_COUNT; i++) {
        const host_metric_desc *f = &agent_metric_descs[i];
        sb_family(b, f->prom, prom_type(f->type), f->help);
        for (size_t k = 0; k < nrows; k++) {
            sb_printf(b, "%s{agent=\"", f->prom);
            sb_label(b, rows[k].name);
            sb_printf(b, "\",id=\"%llu\"} ", (unsigned long long)rows[k].id);
            sb_host_value(b, f, rows[k].v[i]);
            sb_str(b, "\n");
        }
    }
    uint64_t files[FM_COUNT];
    file_metric_values(files);
    for (size_t i = 0; i < FM_COUNT; i++) {
        const host_metric_desc *f = &file_metric_descs[i];
        sb_family(b, f->prom, prom_type(f->type), f->help);
        sb_printf(b, "%s %llu\n", f->prom, (unsigned long long)files[i]);
    }
    uint64_t jit[JM_COUNT];
    jit_metric_values(h, jit);
    for (size_t i = 0; i < JM_COUNT; i++) {
        const host_metric_desc *f = &jit_metric_descs[i];
        sb_family(b, f->prom, prom_type(f->type), f->help);
        sb_printf(b, "%s ", f->prom);
        sb_host_value(b, f, jit[i]);
        sb_str(b, "\n");
    }
    render_http_prometheus(b);
    render_http_client_prometheus(b, m->histograms);
    render_cluster_prometheus(b);
}

static void render_json(sbuf *b, const ms_metrics *m, const agent_row *rows, size_t nrows) {
    char *core = ms_metrics_to_json(m, false);
    size_t len = core ? strlen(core) : 0;
    if (!core || len < 2 || core[len - 1] != '}') {
        ms_free(core);
        b->oom = true;
        return;
    }
    sb_add(b, core, len - 1);
    ms_free(core);
    host *h = host_get();
    sb_str(b, ",\"io\":{");
    for (size_t i = 0; i < IM_COUNT; i++)
        sb_printf(b, "%s\"%s\":%llu", i ? "," : "", io_metric_descs[i].key,
                  h ? (unsigned long long)atomic_load_explicit(&h->io[i], memory_order_relaxed)
                    : 0ULL);
    sb_str(b, "}");
    sb_str(b, ",\"agents\":[");
    for (size_t k = 0; k < nrows; k++) {
        const agent_row *r = &rows[k];
        sb_printf(b, "%s{\"id\":%llu,\"name\":", k ? "," : "", (unsigned long long)r->id);
        sb_json_str(b, r->name);
        sb_printf(b, ",\"state\":\"%s\"", r->state);
        for (size_t i = 0; i < AM_COUNT; i++) {
            sb_printf(b, ",\"%s\":", agent_metric_descs[i].key);
            sb_host_value(b, &agent_metric_descs[i], r->v[i]);
        }
        sb_str(b, "}");
    }
    uint64_t files[FM_COUNT];
    file_metric_values(files);
    sb_str(b, "],\"files\":{");
    for (size_t i = 0; i < FM_COUNT; i++)
        sb_printf(b, "%s\"%s\":%llu", i ? "," : "", file_metric_descs[i].key,
                  (unsigned long long)files[i]);
    uint64_t jit[JM_COUNT];
    jit_metric_values(h, jit);
    sb_str(b, "},\"jit\":{");
    for (size_t i = 0; i < JM_COUNT; i++) {
        sb_printf(b, "%s\"%s\":", i ? "," : "", jit_metric_descs[i].key);
        sb_host_value(b, &jit_metric_descs[i], jit[i]);
    }
    http_stats st;
    http_server_stats(&st);
    sb_str(b, "},\"http\":{");
    for (size_t i = 0; i < HTTP_M_COUNT; i++)
        sb_printf(b, "\"%s\":%llu,", http_metric_descs[i].key, (unsigned long long)st.v[i]);
    sb_printf(b, "\"%s\":{\"bounds_us\":[", http_latency_metric_desc.key);
    for (int i = 0; i < HTTP_LAT_BUCKETS - 1; i++)
        sb_printf(b, "%s%llu", i ? "," : "", (unsigned long long)http_latency_bounds_us[i]);
    sb_str(b, "],\"counts\":[");
    for (int i = 0; i < HTTP_LAT_BUCKETS; i++)
        sb_printf(b, "%s%llu", i ? "," : "", (unsigned long long)st.latency[i]);
    sb_printf(b, "],\"sum_us\":%llu}", (unsigned long long)st.latency_sum_us);
    uint64_t http[HCM_COUNT], hb[HTTP_CLIENT_LATENCY_BUCKETS], sum_ns;
    http_client_metric_values(http);
    http_client_latency_values(hb, &sum_ns);
    sb_str(b, "},\"http_client\":{");
    for (size_t i = 0; i < HCM_COUNT; i++)
        sb_printf(b, "\"%s\":%llu,", http_client_metric_descs[i].key, (unsigned long long)http[i]);
    sb_printf(b, "\"%s\":{\"buckets\":[", http_client_latency_desc.key);
    uint64_t cum = 0;
    for (int i = 0; i < HTTP_CLIENT_LATENCY_BUCKETS; i++) {
        cum += hb[i];
        if (i + 1 < HTTP_CLIENT_LATENCY_BUCKETS)
            sb_printf(b, "%s{\"le\":%g,\"count\":%llu}", i ? "," : "", http_client_latency_bounds[i],
                      (unsigned long long)cum);
        else
            sb_printf(b, ",{\"le\":\"+Inf\",\"count\":%llu}", (unsigned long long)cum);
    }
    sb_printf(b, "],\"count\":%llu,\"sum\":%llu.%09llu}", (unsigned long long)cum,
              (unsigned long long)(sum_ns / 1000000000u), (unsigned long long)(sum_ns % 1000000000u));
    sb_str(b, "}}\n");
}

char *metrics_json_line(host *h, const ms_metrics *m, const char *prefix) {
    sbuf b = {0};
    size_t nrows = 0;
    agent_row *rows = agent_rows(h, &nrows);
    render_json(&b, m, rows, nrows);
    free(rows);
    if (b.oom || b.len < 2 || b.p[0] != '{') {
        free(b.p);
        return NULL;
    }
    /* Splice the prefix's members in after the opening brace. */
    sbuf line = {0};
    sb_str(&line, "{");
    sb_str(&line, prefix);
    sb_str(&line, b.p + 1);
    free(b.p);
    if (line.oom) {
        free(line.p);
        return NULL;
    }
    return line.p;
}

/* ---- the server ---- */

typedef struct mh_conn mh_conn;

typedef struct mh_server {
    _Atomic uint32_t refs;      /* the accept task + one per connection task */
    _Atomic uint32_t conns;     /* connection tasks alive */
    host *h;
    ms_listener *l;
    ms_error err;               /* accept task only */
    /* The connections not evicted, oldest first (under lock). */
    pthread_mutex_t lock;
    mh_conn *first, *last;
    uint32_t listed;
    /* Accept task only: a connection accepted but not yet admitted (every
     * slot taken, none evictable yet), and the timer it waits on. */
    ms_stream *held;
    ms_timer *wait;
} mh_server;

static void server_unref(mh_server *srv) {
    if (atomic_fetch_sub_explicit(&srv->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&srv->lock);
        free(srv);
    }
}

typedef enum conn_phase { PH_READ, PH_JOB, PH_WRITE, PH_FLUSH, PH_SHUTDOWN, PH_LINGER } conn_phase;

/* A /debug/tasks request: the dump waits for the agents' answers, so it
 * is taken on the blocking pool while the connection's task waits for it
 * (PH_JOB).  Shared by the job and the connection: whoever lets go last
 * frees. */
typedef struct dump_job {
    _Atomic int refs;
    host *h;
    tasks_filter f;
    char agent[AGENT_NAME_MAX + 1];
    char state[16];
    bool json, head;
    bool profile;               /* /debug/profile: a profile of agent, not a dump */
    double seconds;
    char *text;                 /* the job's result; NULL: see err */
    char err[256];
} dump_job;

static void dump_job_unref(dump_job *j) {
    if (atomic_fetch_sub(&j->refs, 1) == 1) {
        free(j->text);
        free(j);
    }
}

static void *dump_job_run(void *arg) {
    dump_job *j = arg;
    if (j->profile) {
        j->text = profiler_run(j->h, j->agent, j->seconds, j->err, sizeof j->err);
        dump_job_unref(j);
        return NULL;
    }
    tasks_dump *d = tasks_collect(j->h, &j->f);
    j->text = d ? (j->json ? tasks_render_json(d) : tasks_render_text(d)) : NULL;
    tasks_free(d);
    dump_job_unref(j);
    return NULL;
}

struct mh_conn {
    mh_server *srv;
    /* Under srv->lock: */
    mh_conn *prev, *next;       /* on the server's list unless evicted */
    bool evicted;               /* the accept task wants it gone */
    bool reading;               /* still waiting for (the rest of) its request */
    ms_waker waker;             /* the task's, for an eviction */
    /* The task's own: */
    uint64_t accepted_ns;       /* for the request deadline */
    ms_stream *s;
    ms_timer *deadline;
    conn_phase phase;
    size_t rlen;                /* bytes of the request read so far */
    hreq parser;                /* the request (web/http_request.h) */
    char *out;                  /* the response, headers and body */
    size_t out_len, out_sent;
    bool out_static;            /* out is a string literal */
    dump_job *job;              /* PH_JOB: the dump being taken, a reference */
    ms_task *job_task;
    size_t lingered;
    ms_error err;
    char req[MH_READ_CHUNK];    /* the last bytes read */
};

/* Under srv->lock. */
static void unlist(mh_server *srv, mh_conn *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        srv->last = c->prev;
    c->prev = c->next = NULL;
    srv->listed--;
}

/* Makes room for a new connection: the oldest one still waiting for its
 * request (the slowest client), or when none is, the oldest of all, is
 * told to end -- once it has had MH_EVICT_GRACE_MS.  False when none can
 * go yet: *wait_until is when one can. */
static bool evict_one(mh_server *srv, uint64_t now, uint64_t *wait_until) {
    const uint64_t grace = (uint64_t)MH_EVICT_GRACE_MS * 1000000u;
    pthread_mutex_lock(&srv->lock);
    mh_conn *victim = NULL;
    for (mh_conn *c = srv->first; c && !victim; c = c->next)
        if (c->reading)
            victim = c;
    if (!victim)
        victim = srv->first;
    if (!victim || victim->accepted_ns + grace > now) {
        *wait_until = victim ? victim->accepted_ns + grace : now + grace;
        pthread_mutex_unlock(&srv->lock);
        return false;
    }
    unlist(srv, victim);
    victim->evicted = true;
    ms_waker w = ms_waker_clone(&victim->waker);
    pthread_mutex_unlock(&srv->lock);
    ms_waker_wake(&w);
    return true;
}

static const char response_oom[] = "HTTP/1.1 500 Internal Server Error\r\n"
                                   "Content-Type: text/plain; charset=utf-8\r\n"
                                   "Content-Length: 14\r\n"
                                   "Connection: close\r\n\r\n"
                                   "out of memory\n";

static const char *reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

/* Sets c's response: headers for body (taken over; may be NULL with
 * oom set), without the body for HEAD. */
static void respond(mh_conn *c, int status, const char *ctype, sbuf *body, bool head) {
    sbuf r = {0};
    if (!body->oom) {
        sb_printf(&r,
                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "Connection: close\r\nCache-Control: no-store\r\n%s\r\n",
                  status, reason_phrase(status), ctype, body->len,
                  status == 405 ? "Allow: GET, HEAD\r\n" : "");
        if (!head && body->len)
            sb_add(&r, body->p, body->len);
    }
    free(body->p);
    if (body->oom || r.oom) {
        free(r.p);
        c->out = (char *)response_oom;
        c->out_len = sizeof response_oom - 1;
        c->out_static = true;
    } else {
        c->out = r.p;
        c->out_len = r.len;
    }
    c->out_sent = 0;
}

static void respond_text(mh_conn *c, int status, const char *text) {
    sbuf body = {0};
    sb_str(&body, text);
    respond(c, status, "text/plain; charset=utf-8", &body, false);
}

/* Decodes %XX and + in a query value of len bytes into out (size cap);
 * false if it does not fit or is malformed. */
static bool query_value(const char *v, size_t len, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = v[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            unsigned x;
            char hex[3] = {0};
            if (i + 2 >= len)
                return false;
            hex[0] = v[i + 1];
            hex[1] = v[i + 2];
            if (sscanf(hex, "%2x", &x) != 1 || x == 0)
                return false;
            ch = (char)x;
            i += 2;
        }
        if (k + 1 >= cap)
            return false;
        out[k++] = ch;
    }
    out[k] = '\0';
    return true;
}

/* /debug/profile?agent=NAME&seconds=S: starts the profile's job. */
static void start_profile(mh_conn *c, bool head, const char *q, size_t qlen) {
    dump_job *j = calloc(1, sizeof *j);
    if (!j) {
        respond_text(c, 500, "out of memory\n");
        return;
    }
    atomic_init(&j->refs, 2);
    j->h = c->srv->h;
    j->head = head;
    j->profile = true;
    j->seconds = 5;
    const char *bad = NULL;
    while (q && qlen > 0 && !bad) {
        const char *amp = memchr(q, '&', qlen);
        size_t len = amp ? (size_t)(amp - q) : qlen;
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        const char *v = eq ? eq + 1 : q + len;
        size_t vlen = eq ? len - klen - 1 : 0;
        char num[32];
        char *end = NULL;
        if (klen == 5 && memcmp(q, "agent", 5) == 0) {
            if (!query_value(v, vlen, j->agent, sizeof j->agent) || !j->agent[0])
                bad = "agent must be a name of 1 to 63 bytes";
        } else if (klen == 7 && memcmp(q, "seconds", 7) == 0) {
            if (!query_value(v, vlen, num, sizeof num) ||
                !((j->seconds = strtod(num, &end)) > 0 && j->seconds <= PROFILER_MAX_SECONDS) ||
                *end)
                bad = "seconds must be a number in (0, 300]";
        } else if (klen > 0) {
            bad = "/debug/profile takes agent=NAME and seconds=S";
        }
        q += len + (amp ? 1 : 0);
        qlen -= len + (amp ? 1 : 0);
    }
    if (!bad && !j->agent[0])
        bad = "agent=NAME is required";
    if (bad) {
        free(j);
        char text[160];
        snprintf(text, sizeof text, "bad request: %s\n", bad);
        respond_text(c, 400, text);
        return;
    }
    if (ms_spawn_blocking(j->h->rt, dump_job_run, j, &c->job_task) != 0) {
        free(j);
        respond_text(c, 503, "the host is shutting down\n");
        return;
    }
    c->job = j;
}

/* /debug/tasks[.json]?agent=NAME&state=STATE: starts the dump's job. */
static void start_dump(mh_conn *c, bool json, bool head, const char *q, size_t qlen) {
    dump_job *j = calloc(1, sizeof *j);
    if (!j) {
        respond_text(c, 500, "out of memory\n");
        return;
    }
    atomic_init(&j->refs, 2);
    j->h = c->srv->h;
    j->json = json;
    j->head = head;
    while (q && qlen > 0) {
        const char *amp = memchr(q, '&', qlen);
        size_t len = amp ? (size_t)(amp - q) : qlen;
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        const char *v = eq ? eq + 1 : q + len;
        size_t vlen = eq ? len - klen - 1 : 0;
        bool ok = true;
        if (klen == 5 && memcmp(q, "agent", 5) == 0) {
            ok = query_value(v, vlen, j->agent, sizeof j->agent);
            j->f.agent = j->agent;
        } else if (klen == 5 && memcmp(q, "state", 5) == 0) {
            ok = query_value(v, vlen, j->state, sizeof j->state) &&
                 (!strcmp(j->state, "running") || !strcmp(j->state, "ready") ||
                  !strcmp(j->state, "waiting") || !strcmp(j->state, "idle") ||
                  !strcmp(j->state, "busy") || !strcmp(j->state, "blocking") ||
                  !strcmp(j->state, "exited"));
            j->f.state = j->state;
        } else if (klen > 0) {
            free(j);
            respond_text(c, 400, "bad request: /debug/tasks takes agent=NAME and state=STATE\n");
            return;
        }
        if (!ok) {
            free(j);
            respond_text(c, 400, "bad request: agent must be a name of at most 63 bytes, state "
                                 "one of running, ready, waiting, idle, busy, blocking, "
                                 "exited\n");
            return;
        }
        q += len + (amp ? 1 : 0);
        qlen -= len + (amp ? 1 : 0);
    }
    if (ms_spawn_blocking(j->h->rt, dump_job_run, j, &c->job_task) != 0) {
        free(j);
        respond_text(c, 503, "the host is shutting down\n");
        return;
    }
    c->job = j;
}

/* The dump's job has ended: its text is the response. */
static void finish_dump(mh_conn *c) {
    dump_job *j = c->job;
    sbuf body = {0};
    int status = 200;
    if (j->text) {
        sb_str(&body, j->text);
    } else if (j->profile) {
        /* No such agent: 404; the profiler busy or the agent busy: 409. */
        status = strstr(j->err, "no agent is named") ? 404 : 409;
        sb_printf(&body, "%s\n", j->err);
    } else {
        body.oom = true;
    }
    respond(c, status, j->json ? "application/json" : "text/plain; charset=utf-8", &body,
            j->head);
    ms_task_release(c->job_task);
    c->job_task = NULL;
    c->job = NULL;
    dump_job_unref(j);
}

/* Builds the answer to the complete request in c->parser. */
static void answer(mh_conn *c) {
    const char *method = hreq_method(&c->parser), *path, *query;
    size_t mlen = strlen(method), plen, qlen;
    hreq_path(&c->parser, &path, &plen, &query, &qlen);
    bool head = mlen == 4 && memcmp(method, "HEAD", 4) == 0;
    bool get = mlen == 3 && memcmp(method, "GET", 3) == 0;
    bool prom = plen == 8 && memcmp(path, "/metrics", 8) == 0;
    bool json = plen == 13 && memcmp(path, "/metrics.json", 13) == 0;
    if (!get && !head) {
        respond_text(c, 405, "method not allowed: use GET\n");
        return;
    }
    bool dump_text = plen == 12 && memcmp(path, "/debug/tasks", 12) == 0;
    bool dump_json = plen == 17 && memcmp(path, "/debug/tasks.json", 17) == 0;
    if (dump_text || dump_json) {
        start_dump(c, dump_json, head, query, qlen);
        return;
    }
    if (plen == 14 && memcmp(path, "/debug/profile", 14) == 0) {
        start_profile(c, head, query, qlen);
        return;
    }
    if (!prom && !json) {
        sbuf body = {0};
        sb_str(&body, "not found: the routes are /metrics, /metrics.json, /debug/tasks, "
                      "/debug/tasks.json and /debug/profile\n");
        respond(c, 404, "text/plain; charset=utf-8", &body, head);
        return;
    }
    sbuf body = {0};
    host *h = c->srv->h;
    ms_metrics *m = ms_metrics_snapshot(h->rt);
    size_t nrows = 0;
    agent_row *rows = m ? agent_rows(h, &nrows) : NULL;
    if (!m)
        body.oom = true;
    else if (prom)
        render_prometheus(&body, m, rows, nrows);
    else
        render_json(&body, m, rows, nrows);
    free(rows);
    ms_metrics_free(m);
    respond(c, 200, prom ? "text/plain; version=0.0.4; charset=utf-8" : "application/json", &body,
            head);
}

/* Feeds the n bytes just read to the parser: returns true once c has a
 * response (the answer, or 400 with the parser's reason), false while
 * more of the request is needed.  Bytes after a complete request are
 * ignored: the connection closes after its one answer. */
static bool examine(mh_conn *c, const char *data, size_t n) {
    size_t used;
    c->rlen += n;
    switch (hreq_feed(&c->parser, data, n, &used)) {
    case HREQ_MORE:
        return false;
    case HREQ_DONE:
        answer(c);
        return true;
    case HREQ_ERROR:
        break;
    }
    char text[200];
    snprintf(text, sizeof text, "bad request: %s\n", hreq_error(&c->parser));
    respond_text(c, 400, text);
    return true;
}

/* The connection's deadline has passed (polled after another operation
 * was pending, so the task's waker is registered with both). */
static bool expired(mh_conn *c, ms_cx *cx) {
    return ms_timer_poll(c->deadline, cx) == MS_POLL_READY;
}

static void start_writing(mh_conn *c) {
    c->phase = PH_WRITE;
    ms_timer_set_after(c->deadline, MH_RESPONSE_TIMEOUT_MS);
    pthread_mutex_lock(&c->srv->lock);
    c->reading = false;
    pthread_mutex_unlock(&c->srv->lock);
}

/* While reading the request: the earlier of the request's deadline and
 * the idle one (a byte must come every MH_IDLE_TIMEOUT_MS). */
static void set_read_deadline(mh_conn *c) {
    uint64_t whole = c->accepted_ns + (uint64_t)MH_REQUEST_TIMEOUT_MS * 1000000u;
    uint64_t idle = ms_now_ns() + (uint64_t)MH_IDLE_TIMEOUT_MS * 1000000u;
    ms_timer_set_deadline(c->deadline, idle < whole ? idle : whole);
}

static ms_poll conn_poll(ms_cx *cx, void *state) {
    mh_conn *c = state;
    mh_server *srv = c->srv;
    pthread_mutex_lock(&srv->lock);
    bool evicted = c->evicted;
    if (!evicted)
        ms_waker_store(&c->waker, ms_cx_waker(cx));
    pthread_mutex_unlock(&srv->lock);
    if (evicted)
        return MS_POLL_READY; /* its slot went to a newer connection */
    for (;;) {
        switch (c->phase) {
        case PH_READ: {
            ssize_t n;
            if (ms_stream_read(c->s, cx, c->req, sizeof c->req, &n, &c->err) ==
                MS_POLL_PENDING) {
                if (!expired(c, cx))
                    return MS_POLL_PENDING;
                if (c->rlen == 0)
                    return MS_POLL_READY; /* an idle connection: just close it */
                bool whole = ms_now_ns() >=
                             c->accepted_ns + (uint64_t)MH_REQUEST_TIMEOUT_MS * 1000000u;
                respond_text(c, 400, whole ? "bad request: the request did not complete "
                                             "within 5 s\n"
                                           : "bad request: no byte of the request for 2 s\n");
                start_writing(c);
                break;
            }
            if (n < 0)
                return MS_POLL_READY;
            if (n == 0) {
                if (c->rlen == 0)
                    return MS_POLL_READY;
                respond_text(c, 400, "bad request: the connection ended inside the request\n");
                start_writing(c);
                break;
            }
            if (examine(c, c->req, (size_t)n)) {
                if (c->job) {
                    c->phase = PH_JOB;
                    pthread_mutex_lock(&srv->lock);
                    c->reading = false;
                    pthread_mutex_unlock(&srv->lock);
                    /* A profile takes its seconds, then the usual bound. */
                    uint64_t ms = MH_RESPONSE_TIMEOUT_MS;
                    if (c->job->profile)
                        ms += (uint64_t)(c->job->seconds * 1000);
                    ms_timer_set_after(c->deadline, ms);
                } else {
                    start_writing(c);
                }
            } else {
                set_read_deadline(c);
            }
            break;
        }
        case PH_JOB: {
            int result;
            if (ms_task_poll_join(c->job_task, cx, NULL, &result, NULL) == MS_POLL_PENDING)
                return expired(c, cx) ? MS_POLL_READY : MS_POLL_PENDING;
            finish_dump(c);
            start_writing(c);
            break;
        }
        case PH_WRITE:
            while (c->out_sent < c->out_len) {
                ssize_t n;
                if (ms_stream_write(c->s, cx, c->out + c->out_sent, c->out_len - c->out_sent, &n,
                                    &c->err) == MS_POLL_PENDING)
                    return expired(c, cx) ? MS_POLL_READY : MS_POLL_PENDING;
                if (n < 0)
                    return MS_POLL_READY;
                c->out_sent += (size_t)n;
            }
            c->phase = PH_FLUSH;
            break;
        case PH_FLUSH:
        case PH_SHUTDOWN: {
            int rc;
            ms_poll p = c->phase == PH_FLUSH ? ms_stream_flush(c->s, cx, &rc, &c->err)
                                             : ms_stream_shutdown(c->s, cx, &rc, &c->err);
            if (p == MS_POLL_PENDING)
                return expired(c, cx) ? MS_POLL_READY : MS_POLL_PENDING;
            if (rc != 0)
                return MS_POLL_READY;
            if (c->phase == PH_FLUSH) {
                c->phase = PH_SHUTDOWN;
            } else {
                /* Read what the client still sends until it closes, so
                 * that closing with unread input does not reset the
                 * connection before the client has read the response. */
                c->phase = PH_LINGER;
                ms_timer_set_after(c->deadline, MH_LINGER_MS);
            }
            break;
        }
        case PH_LINGER:
            while (c->lingered < MH_LINGER_BYTES) {
                ssize_t n;
                if (ms_stream_read(c->s, cx, c->req, sizeof c->req, &n, &c->err) ==
                    MS_POLL_PENDING)
                    return expired(c, cx) ? MS_POLL_READY : MS_POLL_PENDING;
                if (n <= 0)
                    return MS_POLL_READY;
                c->lingered += (size_t)n;
            }
            return MS_POLL_READY;
        }
    }
}

static void conn_drop(void *state) {
    mh_conn *c = state;
    pthread_mutex_lock(&c->srv->lock);
    if (!c->evicted)
        unlist(c->srv, c);
    ms_waker_drop(&c->waker);
    pthread_mutex_unlock(&c->srv->lock);
    ms_timer_free(c->deadline);
    ms_stream_close(c->s);
    hreq_free(&c->parser);
    if (c->job) {
        ms_task_release(c->job_task);
        dump_job_unref(c->job);
    }
    if (!c->out_static)
        free(c->out);
    mh_server *srv = c->srv;
    free(c);
    atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
    server_unref(srv);
}

/* Connections taken per poll of the accept task: it then yields, so that
 * the new connections' tasks read their requests before newer ones
 * arrive. */
#define MH_ACCEPT_PER_POLL 8

/* Whether a new connection may be served now (evicting one if all slots
 * are taken); if not, *wait_until says when to ask again. */
static bool admit(mh_server *srv, uint64_t *wait_until) {
    uint64_t now = ms_now_ns();
    pthread_mutex_lock(&srv->lock);
    uint32_t listed = srv->listed;
    pthread_mutex_unlock(&srv->lock);
    /* Evicted tasks end at their next poll; should they lag behind, new
     * connections wait rather than pile up. */
    if (atomic_load_explicit(&srv->conns, memory_order_relaxed) >= 2 * MH_MAX_CONNS) {
        *wait_until = now + 10 * 1000000u;
        return false;
    }
    return listed < MH_MAX_CONNS || evict_one(srv, now, wait_until);
}

static void conn_open(mh_server *srv, ms_runtime *rt, ms_stream *s) {
    mh_conn *c = malloc(sizeof *c);
    if (!c) {
        ms_stream_close(s);
        return;
    }
    memset(c, 0, offsetof(mh_conn, req));
    hreq_init(&c->parser, &(hreq_limits){.header_bytes = MH_MAX_REQUEST, .body = MH_MAX_BODY});
    c->s = s;
    if (ms_timer_new(rt, &c->deadline, NULL) != 0) {
        ms_stream_close(s);
        free(c);
        return;
    }
    c->srv = srv;
    c->accepted_ns = ms_now_ns();
    set_read_deadline(c);
    c->reading = true;
    pthread_mutex_lock(&srv->lock);
    c->prev = srv->last;
    if (srv->last)
        srv->last->next = c;
    else
        srv->first = c;
    srv->last = c;
    srv->listed++;
    pthread_mutex_unlock(&srv->lock);
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->conns, 1, memory_order_relaxed);
    if (ms_spawn(rt, conn_poll, c, conn_drop, NULL) != 0)
        conn_drop(c);
}

static ms_poll accept_poll(ms_cx *cx, void *state) {
    mh_server *srv = state;
    for (int taken = 0;; taken++) {
        if (taken == MH_ACCEPT_PER_POLL)
            return ms_cx_yield(cx);
        ms_stream *s = srv->held;
        srv->held = NULL;
        if (!s) {
            int rc;
            if (ms_listener_accept(srv->l, cx, &s, &rc, &srv->err) == MS_POLL_PENDING)
                return MS_POLL_PENDING;
            if (rc == MS_E_CLOSED)
                return MS_POLL_READY;
            if (rc != 0)
                continue; /* a failed accept: listening goes on */
        }
        uint64_t wait_until;
        if (!admit(srv, &wait_until)) {
            /* It waits (and those behind it, in the kernel's backlog). */
            srv->held = s;
            ms_timer_set_deadline(srv->wait, wait_until);
            if (ms_timer_poll(srv->wait, cx) == MS_POLL_PENDING)
                return MS_POLL_PENDING;
            continue;
        }
        conn_open(srv, ms_cx_runtime(cx), s);
    }
}

static void accept_drop(void *state) {
    mh_server *srv = state;
    if (srv->held)
        ms_stream_close(srv->held);
    srv->held = NULL;
    ms_timer_free(srv->wait);
    srv->wait = NULL;
    ms_listener_close(srv->l);
    srv->l = NULL;
    server_unref(srv);
}

int metrics_http_start(host *h, const char *addr, ms_error *err) {
    char hostname[64];
    const char *colon;
    size_t hlen;
    bool v6 = addr[0] == '[';
    if (v6) {
        const char *close = strchr(addr, ']');
        colon = close && close[1] == ':' ? close + 1 : NULL;
        hlen = close ? (size_t)(close - addr - 1) : 0;
    } else {
        colon = strrchr(addr, ':');
        hlen = colon ? (size_t)(colon - addr) : 0;
    }
    char *end = NULL;
    unsigned long port = colon && colon[1] >= '0' && colon[1] <= '9' ? strtoul(colon + 1, &end, 10) : 0;
    if (!colon || hlen == 0 || hlen >= sizeof hostname || !end || *end || port > 65535)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "metrics_listen \"%s\" is not host:port (e.g. \"127.0.0.1:9100\", "
                            "\"[::1]:9100\")",
                            addr);
    memcpy(hostname, addr + (v6 ? 1 : 0), hlen);
    hostname[hlen] = '\0';
    const ms_config *cfg = ms_runtime_config(h->rt);
    if (!cfg->enable_time)
        return ms_error_set(err, MS_E_NOT_ENABLED,
                            "the metrics endpoint at %s needs enable_time (its request timeouts "
                            "are timers)",
                            addr);
    mh_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for the metrics endpoint");
    ms_error lerr;
    int rc = ms_tcp_listen(h->rt, hostname, (uint16_t)port, 64, &srv->l, &lerr);
    if (rc != 0) {
        free(srv);
        return ms_error_set(err, rc, "metrics endpoint %s: %s", addr, lerr.message);
    }
    srv->h = h;
    if (ms_timer_new(h->rt, &srv->wait, &lerr) != 0) {
        ms_listener_close(srv->l);
        free(srv);
        return ms_error_set(err, MS_E_NO_MEMORY, "metrics endpoint %s: %s", addr, lerr.message);
    }
    pthread_mutex_init(&srv->lock, NULL);
    atomic_init(&srv->refs, 1);
    atomic_init(&srv->conns, 0);
    uint16_t bound = ms_listener_port(srv->l);
    rc = ms_spawn(h->rt, accept_poll, srv, accept_drop, NULL);
    if (rc != 0) {
        accept_drop(srv);
        return ms_error_set(err, rc, "metrics endpoint %s: cannot start its task: %s", addr,
                            ms_err_name(rc));
    }
    hostlog(HOSTLOG_INFO, "metrics.listen", 0, NULL, "metrics on http://%s%s%s:%u/metrics",
            v6 ? "[" : "", hostname, v6 ? "]" : "", bound);
    return 0;
}
