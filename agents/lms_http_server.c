/*
 * lms_http_server.c - ms.http.serve's connections and request queue.
 *
 * Who does what:
 *   - the accept task (a libms task) takes connections while fewer than
 *     max_connections are open (the rest wait in the kernel's backlog);
 *   - each connection is a libms task in C: it reads, feeds the request
 *     parser (web/http_request.h), refuses what breaks a limit or a
 *     timeout itself (400, 408, 413, 431; 503 when the queue is full),
 *     queues a complete request and waits for its answer, writes it, and
 *     with keep-alive goes on with the next request (pipelined bytes
 *     already read are kept);
 *   - the pool's agents (lua/ms/http_server.lua) take requests from the
 *     queue (srv:take(), an operation of the calling task), run the
 *     handler, and hand the answer back (srv:respond / srv:fail), which
 *     builds the response bytes on the agent's thread and wakes the
 *     connection.
 * No Lua runs on a connection's task, and no byte of a socket is read on
 * an agent's thread: a slow client costs a task and a buffer, never an
 * agent.
 *
 * A connection carries at most one request at a time (pipelined ones are
 * answered in order, one after the other), so the queue links the
 * connections themselves.  A connection is refcounted: its task, and the
 * queue or the agent that took its request.  The request stays in the
 * connection's parser, untouched by the task until the answer comes; the
 * answer is written by the agent into the connection's out fields and
 * published under the server's lock.  If the task ends first (the client
 * left, a forced close), the answer is dropped.  If the agent ends
 * without answering (it crashed, was stopped, ran out of memory), the
 * request's userdata is collected with its state and answers 500.
 *
 * Draining (srv:drain(), at close and at shutdown): the accept task stops
 * and closes the listener; idle connections close; requests already
 * begun are read, answered with "Connection: close", and their
 * connections closed.  srv:force() ends every connection at once.  After
 * srv:close(), takers get nil: the pool's agents end.
 *
 * Locking: srv->lock guards the queue, the takers, the list of
 * connections and each connection's fields marked so; it is never held
 * while Lua runs or allocates.  Counters are relaxed atomics.
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "agent.h"
#include "hold.h"
#include "host.h"
#include "hostlog.h"
#include "http_request.h"
#include "http_tls.h"
#include "http_ws.h"
#include "lerr.h"
#include "lms.h"
#include "lms_http_server.h"
#include "ltask.h"
#include "ops.h"
#include "ws_frames.h"

#define HS_READ_BUFFER (16 * 1024)
#define HS_LINGER_MS 1000
#define HS_LINGER_BYTES (64 * 1024)
#define HS_ACCEPT_PER_POLL 16
/* After a WebSocket close frame is sent, how long the peer has to answer. */
#define HS_WS_CLOSE_MS 5000
#define HS_WS_MAX_PATHS 64
#define SERVER_MT "ms.http.server"
#define REQUEST_MT "ms.http.request"

/* ---- metrics ---- */

const uint64_t http_latency_bounds_us[HTTP_LAT_BUCKETS - 1] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 1000000};

static _Atomic uint64_t g_stats[HTTP_M_COUNT];
static _Atomic uint64_t g_latency[HTTP_LAT_BUCKETS];
static _Atomic uint64_t g_latency_sum_us;

static void stat_add(http_metric m, int64_t n) {
    atomic_fetch_add_explicit(&g_stats[m], (uint64_t)n, memory_order_relaxed);
}

void http_server_stat_add(http_metric m, int64_t n) {
    stat_add(m, n);
}

void http_server_stats(http_stats *out) {
    for (int i = 0; i < HTTP_M_COUNT; i++)
        out->v[i] = atomic_load_explicit(&g_stats[i], memory_order_relaxed);
    for (int i = 0; i < HTTP_LAT_BUCKETS; i++)
        out->latency[i] = atomic_load_explicit(&g_latency[i], memory_order_relaxed);
    out->latency_sum_us = atomic_load_explicit(&g_latency_sum_us, memory_order_relaxed);
}

void http_server_push_metrics(lua_State *L) {
    http_stats st;
    http_server_stats(&st);
    lua_createtable(L, 0, HTTP_M_COUNT + 1);
    for (int i = 0; i < HTTP_M_COUNT; i++) {
        lua_pushnumber(L, (lua_Number)st.v[i]);
        lua_setfield(L, -2, http_metric_descs[i].key);
    }
    lua_createtable(L, 0, 3);
    lua_createtable(L, HTTP_LAT_BUCKETS, 0);
    lua_createtable(L, HTTP_LAT_BUCKETS, 0);
    for (int i = 0; i < HTTP_LAT_BUCKETS; i++) {
        lua_pushnumber(L, i < HTTP_LAT_BUCKETS - 1 ? http_latency_bounds_us[i] / 1e6 : HUGE_VAL);
        lua_rawseti(L, -3, i + 1);
        lua_pushnumber(L, (lua_Number)st.latency[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -3, "counts");
    lua_setfield(L, -2, "bounds");
    lua_pushnumber(L, st.latency_sum_us / 1e6);
    lua_setfield(L, -2, "sum");
    lua_setfield(L, -2, http_latency_metric_desc.key);
}

/* An answered request: its status class and its time from the first
 * byte to the answer queued for writing. */
static void record(int status, uint64_t start_ns) {
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        stat_add(HTTP_M_REQUESTS_1XX + (cls - 1), 1);
    uint64_t us = (ms_now_ns() - start_ns) / 1000u;
    int b = 0;
    while (b < HTTP_LAT_BUCKETS - 1 && us > http_latency_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&g_latency[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_latency_sum_us, us, memory_order_relaxed);
}

/* ---- the server ---- */

typedef struct hs_opts {
    hreq_limits limits;
    uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms, write_timeout_ms;
    uint64_t handler_timeout_ms; /* queued to answered; 0: none */
    uint32_t queue, max_connections;
    int backlog;
    /* WebSocket (docs/http.md): off unless serve{} has websocket; no
     * paths: every path whose request asks for the upgrade. */
    bool ws_on;
    uint32_t ws_npaths;
    char *ws_paths[HS_WS_MAX_PATHS];
    uint64_t ws_max_message;
    size_t ws_max_buffer;
    /* The keepalive: after ping_interval of silence from the peer a ping;
     * no byte from it within ping_timeout then ends the connection.
     * ws_ping_interval_ms 0: none. */
    uint64_t ws_ping_interval_ms, ws_ping_timeout_ms;
} hs_opts;

typedef struct hs_conn hs_conn;
typedef struct hs_taker hs_taker;

/* A task waiting in srv:take() (in its operation's store). */
struct hs_taker {
    ms_waker waker;
    hs_taker *prev, *next;
    bool linked;
};

typedef struct hs_server {
    _Atomic uint32_t refs;      /* owner handle, worker handles, accept task, connections */
    uint64_t id;                /* immutable */
    hs_opts o;                  /* immutable */
    char host[64];              /* immutable */
    uint16_t port;              /* immutable: the bound port */
    pthread_mutex_t lock;
    /* Under lock: */
    hs_conn *qfirst, *qlast;    /* requests waiting for an agent */
    uint32_t queued;
    hs_taker *takers;
    hs_conn *conns;             /* every open connection */
    uint32_t nconns;
    uint32_t busy;              /* connections inside a request */
    bool draining, closed;
    ms_waker accept_waker;
    htls_ctx *tls;              /* immutable: NULL for plain HTTP */
    /* The accept task's own: */
    ms_listener *l;
    ms_stream *held;            /* accepted, waiting for room */
    ms_error err;
    struct hs_server *reg_next; /* under reg_lock */
} hs_server;

typedef enum conn_phase {
    CP_READ, CP_WAIT, CP_WRITE, CP_FLUSH, CP_SHUTDOWN, CP_LINGER,
    CP_CONTINUE, /* "100 Continue" going out, then back to CP_READ for the body */
    CP_WS /* upgraded: WebSocket frames both ways (http_ws.h) */
} conn_phase;

struct hs_conn {
    _Atomic uint32_t refs;      /* the task; the queue or the agent holding its request */
    hs_server *srv;
    /* Under srv->lock: */
    hs_conn *prev, *next;       /* srv->conns */
    hs_conn *qnext;
    bool queued;                /* in the queue */
    bool answered;              /* out is set by the agent (or the 504 by the task) */
    bool timed_out;             /* handler_timeout passed: the task answered 504, and
                                 * the agent's answer, if it comes, is dropped */
    bool gone;                  /* the task ended */
    bool forced;                /* srv:force(): end now */
    bool busy;                  /* counted in srv->busy */
    hws *ws;                    /* upgraded: set before queueing, cleared when the task ends */
    ms_waker waker;
    /* From take to answer the agent's, else the task's: */
    char *out;
    size_t out_len;
    int status;
    bool close_after;
    /* The task's own (the parser is read by the agent between take and
     * answer, while the task waits): */
    ms_stream *s;
    ms_timer *deadline;
    conn_phase phase;
    hreq req;
    bool in_body;               /* the body's timeout is armed */
    uint64_t start_ns;          /* the request's first byte */
    size_t out_sent, lingered;
    size_t rpos, rlen;
    ms_error err;
    /* TLS (NULL for plain HTTP): the engine, its output being sent, and
     * the raw bytes read for it (rbuf then holds decrypted ones). */
    htls *tls;
    char *tout, *traw;
    size_t tout_len, tout_sent;
    bool encrypted, notified;
    bool ws_close_armed;        /* the close handshake's timer runs */
    /* The keepalive (ws_keepalive), ms_now_ns times: the peer's last
     * bytes in or our last bytes out, the ping sent since (0: none; only
     * bytes from the peer clear it), the deadline armed (0: none). */
    uint64_t ws_rx_ns, ws_ping_ns, ws_timer_ns;
    char rbuf[HS_READ_BUFFER];
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static hs_server *reg_first;
static uint64_t reg_next_id = 1;

static void server_unref(hs_server *srv) {
    if (atomic_fetch_sub_explicit(&srv->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_lock(&reg_lock);
    for (hs_server **p = &reg_first; *p; p = &(*p)->reg_next)
        if (*p == srv) {
            *p = srv->reg_next;
            break;
        }
    pthread_mutex_unlock(&reg_lock);
    ms_waker_drop(&srv->accept_waker);
    htls_ctx_free(srv->tls);
    for (uint32_t i = 0; i < srv->o.ws_npaths; i++)
        free(srv->o.ws_paths[i]);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

static void conn_unref(hs_conn *c) {
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    hreq_free(&c->req);
    free(c->out);
    hs_server *srv = c->srv;
    free(c);
    server_unref(srv);
}

/* ---- responses ---- */

static const char *reason(int status) {
    const char *r = http_status_str((enum http_status)status);
    return r && strcmp(r, "<unknown>") != 0 ? r : "Unknown";
}

/* A refusal of the task's own: a short text body, then close; extra:
 * header lines (each ending in CRLF) or "". */
static void refuse_with(hs_conn *c, int status, const char *extra, const char *text) {
    static const char oom[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                              "Connection: close\r\n\r\n";
    free(c->out);
    c->out = NULL;
    int n = asprintf(&c->out,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                     status, reason(status), extra, strlen(text) + 1, text);
    if (n < 0) {
        c->out = strdup(oom);
        n = c->out ? (int)strlen(oom) : 0;
    }
    c->out_len = (size_t)n;
    c->out_sent = 0;
    c->status = status;
    c->close_after = true;
    c->phase = CP_WRITE;
    ms_timer_set_after(c->deadline, c->srv->o.write_timeout_ms);
    switch (status) {
    case 400: stat_add(HTTP_M_REJECTED_400, 1); break;
    case 408: stat_add(HTTP_M_REJECTED_408, 1); break;
    case 413: stat_add(HTTP_M_REJECTED_413, 1); break;
    case 431: stat_add(HTTP_M_REJECTED_431, 1); break;
    case 503: stat_add(HTTP_M_REJECTED_503, 1); break;
    default: break;
    }
}

static void refuse(hs_conn *c, int status, const char *text) {
    refuse_with(c, status, "", text);
}

/* ---- the connection task ---- */

static void set_busy(hs_conn *c, bool busy) {
    pthread_mutex_lock(&c->srv->lock);
    if (c->busy != busy) {
        c->busy = busy;
        if (busy)
            c->srv->busy++;
        else
            c->srv->busy--;
    }
    pthread_mutex_unlock(&c->srv->lock);
}

/* Takes the first waiting taker off the list, its waker into *w (woken
 * by the caller once the lock is released); false when none waits.
 * Under srv->lock. */
static bool pop_taker(hs_server *srv, ms_waker *w) {
    hs_taker *t = srv->takers;
    if (!t)
        return false;
    srv->takers = t->next;
    if (t->next)
        t->next->prev = NULL;
    t->linked = false;
    *w = t->waker;
    t->waker = (ms_waker){0};
    return true;
}

/* Queues the complete request (or upgraded connection, ws) for an
 * agent; false when the queue is full (answered 503). */
static bool dispatch_as(hs_conn *c, hws *ws) {
    hs_server *srv = c->srv;
    pthread_mutex_lock(&srv->lock);
    if (srv->queued >= srv->o.queue) {
        uint32_t q = srv->o.queue;
        pthread_mutex_unlock(&srv->lock);
        char text[96];
        snprintf(text, sizeof text, "service unavailable: the queue of %u requests is full", q);
        refuse(c, 503, text);
        return false;
    }
    c->ws = ws;
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    c->answered = false;
    c->queued = true;
    c->qnext = NULL;
    if (srv->qlast)
        srv->qlast->qnext = c;
    else
        srv->qfirst = c;
    srv->qlast = c;
    srv->queued++;
    ms_waker w = {0};
    pop_taker(srv, &w);
    pthread_mutex_unlock(&srv->lock);
    if (!ms_waker_is_null(&w))
        ms_waker_wake(&w);
    c->phase = CP_WAIT;
    if (srv->o.handler_timeout_ms)
        ms_timer_set_after(c->deadline, srv->o.handler_timeout_ms);
    else
        ms_timer_cancel(c->deadline);
    return true;
}

/* Takes c out of the queue.  Under srv->lock. */
static void unqueue(hs_server *srv, hs_conn *c) {
    hs_conn **p = &srv->qfirst, *prev = NULL;
    while (*p && *p != c) {
        prev = *p;
        p = &(*p)->qnext;
    }
    if (*p)
        *p = c->qnext;
    if (srv->qlast == c)
        srv->qlast = prev;
    srv->queued--;
    c->queued = false;
}

/* handler_timeout passed with the request unanswered (waiting in the
 * queue, or held by an agent): 504, and the connection closes after it,
 * since an agent may still be reading the request's parser.  false when
 * the answer came in the meantime (then it is written as usual). */
static bool handler_timed_out(hs_conn *c) {
    hs_server *srv = c->srv;
    pthread_mutex_lock(&srv->lock);
    if (c->answered) {
        pthread_mutex_unlock(&srv->lock);
        return false;
    }
    bool was_queued = c->queued;
    if (was_queued)
        unqueue(srv, c);
    /* From here c->out is the task's: answer() drops the agent's. */
    c->timed_out = true;
    c->answered = true;
    pthread_mutex_unlock(&srv->lock);
    if (was_queued)
        conn_unref(c); /* the queue's reference (the task holds another) */
    stat_add(HTTP_M_HANDLER_TIMEOUTS, 1);
    size_t tlen;
    const char *t = hreq_target(&c->req, &tlen);
    hostlog(HOSTLOG_ERROR, "http.handler_timeout", 0, NULL,
            "ms.http: %s %.*s: no answer within handler_timeout (%.3g s): 504", hreq_method(&c->req),
            (int)(tlen > 200 ? 200 : tlen), t, (double)srv->o.handler_timeout_ms / 1000.0);
    refuse(c, 504, was_queued ? "gateway timeout: no agent took the request within handler_timeout"
                              : "gateway timeout: the handler did not answer within handler_timeout");
    return true;
}

static void dispatch(hs_conn *c) {
    dispatch_as(c, NULL);
}

/* Whether the comma-separated list v has the token tok (any case). */
static bool has_token(const char *v, size_t vl, const char *tok) {
    size_t tl = strlen(tok), i = 0;
    while (i < vl) {
        while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t j = i;
        while (j < vl && v[j] != ',')
            j++;
        size_t e = j;
        while (e > i && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - i == tl && strncasecmp(v + i, tok, tl) == 0)
            return true;
        i = j;
    }
    return false;
}

/* A Sec-WebSocket-Key: base64 of 16 bytes (24 characters, "==" last). */
static bool ws_key_ok(const char *k, size_t n) {
    if (n != 24 || k[22] != '=' || k[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!((k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= 'a' && k[i] <= 'z') ||
              (k[i] >= '0' && k[i] <= '9') || k[i] == '+' || k[i] == '/'))
            return false;
    return true;
}

static void ws_refuse(hs_conn *c, int status, const char *extra, const char *text) {
    stat_add(HTTP_M_WS_REJECTED, 1);
    refuse_with(c, status, extra, text);
}

/* A complete request on a WebSocket path: the upgrade (queued for an
 * agent, the 101 first in the engine's output), or its refusal.  false:
 * not a WebSocket request, the handler answers it. */
static bool ws_upgrade(hs_conn *c) {
    hs_server *srv = c->srv;
    if (!srv->o.ws_on)
        return false;
    const char *path, *query;
    size_t plen, qlen;
    hreq_path(&c->req, &path, &plen, &query, &qlen);
    bool on_path = srv->o.ws_npaths == 0;
    for (uint32_t i = 0; i < srv->o.ws_npaths && !on_path; i++)
        on_path = strlen(srv->o.ws_paths[i]) == plen && memcmp(srv->o.ws_paths[i], path, plen) == 0;
    if (!on_path)
        return false;
    size_t ul, cl, vl, kl;
    const char *up = hreq_header(&c->req, "upgrade", &ul);
    if (!up || !has_token(up, ul, "websocket")) {
        if (srv->o.ws_npaths == 0)
            return false; /* every path: plain HTTP goes to the handler */
        ws_refuse(c, 426, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
                  "upgrade required: this path speaks WebSocket");
        return true;
    }
    const char *conn = hreq_header(&c->req, "connection", &cl);
    const char *ver = hreq_header(&c->req, "sec-websocket-version", &vl);
    const char *key = hreq_header(&c->req, "sec-websocket-key", &kl);
    if (strcmp(hreq_method(&c->req), "GET") != 0 || hreq_version_minor(&c->req) != 1) {
        ws_refuse(c, 400, "", "bad request: a WebSocket upgrade is a GET over HTTP/1.1");
        return true;
    }
    if (!conn || !has_token(conn, cl, "upgrade")) {
        ws_refuse(c, 400, "", "bad request: a WebSocket upgrade needs \"Connection: Upgrade\"");
        return true;
    }
    if (!ver || vl != 2 || memcmp(ver, "13", 2) != 0) {
        ws_refuse(c, 426, "Sec-WebSocket-Version: 13\r\n",
                  "upgrade required: this server speaks WebSocket version 13");
        return true;
    }
    char accept[32];
    if (!key || !ws_key_ok(key, kl) || !wsf_accept_of(key, kl, accept)) {
        ws_refuse(c, 400, "", "bad request: Sec-WebSocket-Key must be 16 bytes in base64");
        return true;
    }
    hws *h = hws_new(srv->o.ws_max_message, srv->o.ws_max_buffer, accept);
    if (!h) {
        refuse(c, 503, "service unavailable: no memory for the WebSocket connection");
        return true;
    }
    if (!dispatch_as(c, h)) {
        hws_unref(h);
        return true;
    }
    stat_add(HTTP_M_WS_OPEN, 1);
    stat_add(HTTP_M_WS_ACCEPTED, 1);
    record(101, c->start_ns);
    c->phase = CP_WS;
    c->ws_rx_ns = ms_now_ns();
    c->ws_ping_ns = c->ws_timer_ns = 0;
    ms_timer_cancel(c->deadline); /* the request's; ws_keepalive arms its own */
    return true;
}

/* The request's Expect field, once its headers are read: "100-continue"
 * from an HTTP/1.1 client with a body still to come gets the interim
 * 100 (CP_CONTINUE) so that it sends the body; any other expectation is
 * refused with 417 (false).  A body that would be too large was refused
 * with 413 by the parser already, before any 100. */
static bool expectation(hs_conn *c, bool body_to_come) {
    size_t el;
    const char *ex = hreq_header(&c->req, "expect", &el);
    if (!ex)
        return true;
    if (el != 12 || strncasecmp(ex, "100-continue", 12) != 0) {
        refuse(c, 417, "expectation failed: only \"Expect: 100-continue\" is understood");
        return false;
    }
    if (body_to_come && hreq_version_minor(&c->req) == 1) {
        c->phase = CP_CONTINUE;
        c->out_sent = 0;
        stat_add(HTTP_M_CONTINUES, 1);
    }
    return true;
}

/* Feeds what is buffered: on to the queue, or a refusal, once the
 * request is complete or refused. */
static void feed(hs_conn *c) {
    bool started = hreq_started(&c->req);
    size_t used;
    hreq_state st = hreq_feed(&c->req, c->rbuf + c->rpos, c->rlen - c->rpos, &used);
    c->rpos += used;
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
    if (!started && (hreq_started(&c->req) || st != HREQ_MORE)) {
        c->start_ns = ms_now_ns();
        set_busy(c, true);
        ms_timer_set_after(c->deadline, c->srv->o.header_timeout_ms);
    }
    if (st == HREQ_MORE && c->req.headers_done && !c->in_body) {
        c->in_body = true;
        ms_timer_set_after(c->deadline, c->srv->o.body_timeout_ms);
        if (!expectation(c, true))
            return;
    }
    if (st == HREQ_DONE && !c->in_body && !expectation(c, false))
        return;
    if (st == HREQ_DONE && !ws_upgrade(c))
        dispatch(c);
    else if (st == HREQ_ERROR)
        refuse(c, hreq_error_status(&c->req), hreq_error(&c->req));
}

/* The answer is written: on with the next request, or close. */
static void written(hs_conn *c) {
    record(c->status, c->start_ns);
    free(c->out);
    c->out = NULL;
    pthread_mutex_lock(&c->srv->lock);
    bool close = c->close_after || c->srv->draining;
    pthread_mutex_unlock(&c->srv->lock);
    set_busy(c, false);
    if (close) {
        c->phase = CP_FLUSH;
        return;
    }
    hreq_next(&c->req);
    c->in_body = false;
    c->phase = CP_READ;
    ms_timer_set_after(c->deadline, c->srv->o.idle_timeout_ms);
}

static bool expired(hs_conn *c, ms_cx *cx) {
    return ms_timer_poll(c->deadline, cx) == MS_POLL_READY;
}

typedef enum read_step { RS_CLOSE, RS_PENDING, RS_AGAIN } read_step;

/* Sends what the TLS engine has for the peer: RS_AGAIN once all is sent. */
static read_step tls_send(hs_conn *c, ms_cx *cx) {
    for (;;) {
        if (c->tout_sent == c->tout_len) {
            c->tout_len = c->tout_sent = 0;
            if (!htls_has_output(c->tls))
                return RS_AGAIN;
            c->tout_len = htls_take_output(c->tls, c->tout, HS_READ_BUFFER);
        }
        ssize_t n;
        if (ms_stream_write(c->s, cx, c->tout + c->tout_sent, c->tout_len - c->tout_sent, &n,
                            &c->err) == MS_POLL_PENDING)
            return expired(c, cx) ? RS_CLOSE : RS_PENDING;
        if (n < 0)
            return RS_CLOSE;
        c->tout_sent += (size_t)n;
    }
}

typedef enum send_step { SS_DONE, SS_PENDING, SS_CLOSE } send_step;

/* Writes n bytes at p to the client (an answer, the interim 100),
 * through TLS when there is one; c->out_sent and c->encrypted keep the
 * place between polls.  SS_CLOSE: the client is gone or the deadline
 * passed. */
static send_step send_all(hs_conn *c, ms_cx *cx, const char *p, size_t n) {
    if (c->tls) {
        if (!c->encrypted && !htls_write(c->tls, p, n))
            return SS_CLOSE;
        c->encrypted = true;
        read_step st = tls_send(c, cx);
        if (st != RS_AGAIN)
            return st == RS_PENDING ? SS_PENDING : SS_CLOSE;
        c->encrypted = false;
        return SS_DONE;
    }
    while (c->out_sent < n) {
        ssize_t k;
        if (ms_stream_write(c->s, cx, p + c->out_sent, n - c->out_sent, &k, &c->err) ==
            MS_POLL_PENDING)
            return expired(c, cx) ? SS_CLOSE : SS_PENDING;
        if (k < 0)
            return SS_CLOSE;
        c->out_sent += (size_t)k;
    }
    return SS_DONE;
}

/* Decrypts what the engine can; RS_PENDING when it needs raw input. */
static read_step tls_step(hs_conn *c, ms_cx *cx) {
    read_step st = tls_send(c, cx);
    if (st != RS_AGAIN)
        return st;
    const char *what = NULL;
    int n = htls_read(c->tls, c->rbuf, sizeof c->rbuf, &what);
    if (n > 0) {
        c->rpos = 0;
        c->rlen = (size_t)n;
        return RS_AGAIN;
    }
    if (n == -1)
        return RS_CLOSE; /* close_notify */
    if (n == -2) {
        if (!htls_established(c->tls))
            stat_add(HTTP_M_TLS_HANDSHAKE_FAILURES, 1);
        return RS_CLOSE;
    }
    return htls_has_output(c->tls) ? RS_AGAIN : RS_PENDING;
}

/* One step of reading a request: feed what is buffered, else read. */
static read_step conn_read(hs_conn *c, ms_cx *cx, bool draining) {
    if (c->rpos < c->rlen) {
        feed(c);
        return RS_AGAIN;
    }
    if (draining && !hreq_started(&c->req))
        return RS_CLOSE;
    if (c->tls) {
        read_step st = tls_step(c, cx);
        if (st != RS_PENDING || c->rpos < c->rlen)
            return st;
    }
    char *into = c->tls ? c->traw : c->rbuf;
    ssize_t n;
    if (ms_stream_read(c->s, cx, into, HS_READ_BUFFER, &n, &c->err) == MS_POLL_PENDING) {
        if (!expired(c, cx))
            return RS_PENDING;
        if (!hreq_started(&c->req))
            return RS_CLOSE; /* idle: close quietly */
        refuse(c, 408, c->in_body ? "request timeout: the body did not arrive in time"
                                  : "request timeout: the headers did not arrive in time");
        return RS_AGAIN;
    }
    if (n <= 0)
        return RS_CLOSE; /* the client left (inside a request or not) */
    if (c->tls)
        return htls_put(c->tls, c->traw, (size_t)n) ? RS_AGAIN : RS_CLOSE;
    c->rpos = 0;
    c->rlen = (size_t)n;
    return RS_AGAIN;
}

typedef enum ka_step { KA_WAIT, KA_SENT, KA_DEAD } ka_step;

/* The keepalive of an open websocket (ping_interval, ping_timeout):
 * KA_SENT when a ping was queued (to be written), KA_DEAD when the peer
 * did not answer in time, else KA_WAIT with the timer armed for the next
 * decision.  The timer is armed lazily: bytes from the peer only move
 * the next decision later, so an earlier deadline already armed stays
 * and, when it fires, the decision is made again. */
static ka_step ws_keepalive(hs_conn *c, ms_cx *cx) {
    const hs_opts *o = &c->srv->o;
    if (!o->ws_ping_interval_ms)
        return KA_WAIT;
    for (int round = 0; round < 4; round++) {
        uint64_t now = ms_now_ns();
        if (hws_inbox_full(c->ws)) {
            c->ws_rx_ns = now; /* we are not reading: the silence is ours */
            c->ws_ping_ns = 0;
        }
        uint64_t due;
        if (c->ws_ping_ns) {
            due = c->ws_ping_ns + o->ws_ping_timeout_ms * 1000000ull;
            if (now >= due) {
                stat_add(HTTP_M_WS_PING_TIMEOUTS, 1);
                hws_timed_out(c->ws);
                return KA_DEAD;
            }
        } else {
            due = c->ws_rx_ns + o->ws_ping_interval_ms * 1000000ull;
            if (now >= due) {
                if (!hws_keepalive(c->ws))
                    return KA_DEAD;
                c->ws_ping_ns = now;
                return KA_SENT;
            }
        }
        if (!c->ws_timer_ns || c->ws_timer_ns > due) {
            c->ws_timer_ns = due;
            ms_timer_set_deadline(c->deadline, due);
        }
        if (!expired(c, cx))
            return KA_WAIT;
        c->ws_timer_ns = 0; /* fired: decide again */
    }
    return KA_WAIT;
}

/* An upgraded connection: the agent's messages out, the peer's frames
 * in, until the close handshake is over (then CP_FLUSH closes).  RS_CLOSE:
 * end now; RS_PENDING: wait; RS_AGAIN: the phase changed. */
static read_step ws_step(hs_conn *c, ms_cx *cx, bool draining) {
    hws *h = c->ws;
    hws_task_waker(h, ms_cx_waker(cx));
    for (;;) {
        bool progress = false;
        if (!hws_pump(h, draining))
            return RS_CLOSE;
        size_t n;
        const char *out = hws_output(h, &n);
        if (c->tls) {
            /* Into the engine only once its last output is out: the
             * engine's buffer stays bounded when the peer reads slowly. */
            read_step st = tls_send(c, cx);
            if (st == RS_CLOSE)
                return RS_CLOSE;
            if (n > 0 && st == RS_AGAIN) {
                if (!htls_write(c->tls, out, n))
                    return RS_CLOSE;
                hws_written(h, n);
                c->ws_rx_ns = ms_now_ns(); /* the peer takes our bytes: no ping needed */
                progress = true;
                continue;
            }
        } else if (n > 0) {
            ssize_t w;
            if (ms_stream_write(c->s, cx, out, n, &w, &c->err) != MS_POLL_PENDING) {
                if (w < 0)
                    return RS_CLOSE;
                hws_written(h, (size_t)w);
                if (w > 0)
                    c->ws_rx_ns = ms_now_ns(); /* the peer takes our bytes: no ping needed */
                progress = true;
            }
        }
        if (hws_close_sent(h) && !c->ws_close_armed) {
            c->ws_close_armed = true;
            ms_timer_set_after(c->deadline, HS_WS_CLOSE_MS);
        }
        if (hws_finished(h) && (!c->tls || (c->tout_sent == c->tout_len && !htls_has_output(c->tls)))) {
            c->phase = CP_FLUSH; /* the server closes the TCP connection first (RFC 6455 7.1.1) */
            ms_timer_set_after(c->deadline, c->srv->o.write_timeout_ms);
            return RS_AGAIN;
        }
        if (hws_can_read(h)) {
            if (c->rpos < c->rlen) {
                if (!hws_feed(h, c->rbuf + c->rpos, c->rlen - c->rpos))
                    return RS_CLOSE;
                c->rpos = c->rlen = 0;
                continue;
            }
            if (c->tls) {
                const char *what = NULL;
                int k = htls_read(c->tls, c->rbuf, sizeof c->rbuf, &what);
                if (k > 0) {
                    c->rpos = 0;
                    c->rlen = (size_t)k;
                    continue;
                }
                if (k == -1 || k == -2)
                    return RS_CLOSE;
            }
            char *into = c->tls ? c->traw : c->rbuf;
            ssize_t r;
            if (ms_stream_read(c->s, cx, into, HS_READ_BUFFER, &r, &c->err) != MS_POLL_PENDING) {
                if (r <= 0)
                    return RS_CLOSE; /* the peer vanished: 1006 */
                c->ws_rx_ns = ms_now_ns();
                c->ws_ping_ns = 0;
                if (c->tls) {
                    if (!htls_put(c->tls, c->traw, (size_t)r))
                        return RS_CLOSE;
                } else {
                    c->rpos = 0;
                    c->rlen = (size_t)r;
                }
                continue;
            }
        }
        if (progress)
            continue;
        if (c->ws_close_armed)
            return expired(c, cx) ? RS_CLOSE : RS_PENDING;
        ka_step ka = ws_keepalive(c, cx);
        if (ka == KA_DEAD)
            return RS_CLOSE;
        if (ka == KA_SENT)
            continue;
        return RS_PENDING;
    }
}

static ms_poll conn_poll(ms_cx *cx, void *state) {
    hs_conn *c = state;
    hs_server *srv = c->srv;
    pthread_mutex_lock(&srv->lock);
    ms_waker_store(&c->waker, ms_cx_waker(cx));
    bool forced = c->forced, draining = srv->draining;
    pthread_mutex_unlock(&srv->lock);
    if (forced)
        return MS_POLL_READY;
    for (;;) {
        switch (c->phase) {
        case CP_READ: {
            read_step st = conn_read(c, cx, draining);
            if (st == RS_CLOSE)
                return MS_POLL_READY;
            if (st == RS_PENDING)
                return MS_POLL_PENDING;
            break;
        }
        case CP_WAIT: {
            pthread_mutex_lock(&srv->lock);
            bool answered = c->answered;
            pthread_mutex_unlock(&srv->lock);
            if (!answered) {
                if (!srv->o.handler_timeout_ms || !expired(c, cx))
                    return MS_POLL_PENDING;
                if (handler_timed_out(c))
                    break; /* refuse() set CP_WRITE with the 504 */
            }
            c->phase = CP_WRITE;
            c->out_sent = 0;
            ms_timer_set_after(c->deadline, srv->o.write_timeout_ms);
            break;
        }
        case CP_WRITE: {
            send_step ss = send_all(c, cx, c->out, c->out_len);
            if (ss != SS_DONE)
                return ss == SS_PENDING ? MS_POLL_PENDING : MS_POLL_READY;
            written(c);
            break;
        }
        case CP_FLUSH:
        case CP_SHUTDOWN: {
            if (c->tls && c->phase == CP_FLUSH) {
                if (!c->notified)
                    htls_close_notify(c->tls);
                c->notified = true;
                read_step st = tls_send(c, cx);
                if (st != RS_AGAIN)
                    return st == RS_PENDING ? MS_POLL_PENDING : MS_POLL_READY;
            }
            int rc;
            ms_poll p = c->phase == CP_FLUSH ? ms_stream_flush(c->s, cx, &rc, &c->err)
                                             : ms_stream_shutdown(c->s, cx, &rc, &c->err);
            if (p == MS_POLL_PENDING)
                return expired(c, cx) ? MS_POLL_READY : MS_POLL_PENDING;
            if (rc != 0)
                return MS_POLL_READY;
            if (c->phase == CP_FLUSH) {
                c->phase = CP_SHUTDOWN;
            } else {
                /* Read what the client still sends until it closes, so
                 * that closing with unread input does not reset the
                 * connection before the client has read the answer. */
                c->phase = CP_LINGER;
                ms_timer_set_after(c->deadline, HS_LINGER_MS);
            }
            break;
        }
        case CP_WS: {
            read_step st = ws_step(c, cx, draining);
            if (st == RS_CLOSE)
                return MS_POLL_READY;
            if (st == RS_PENDING)
                return MS_POLL_PENDING;
            break;
        }
        case CP_CONTINUE: {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            send_step ss = send_all(c, cx, cont, sizeof cont - 1);
            if (ss != SS_DONE)
                return ss == SS_PENDING ? MS_POLL_PENDING : MS_POLL_READY;
            c->phase = CP_READ; /* the body: body_timeout runs since the headers */
            break;
        }
        case CP_LINGER:
            while (c->lingered < HS_LINGER_BYTES) {
                ssize_t n;
                if (ms_stream_read(c->s, cx, c->rbuf, sizeof c->rbuf, &n, &c->err) ==
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
    hs_conn *c = state;
    hs_server *srv = c->srv;
    bool was_queued;
    pthread_mutex_lock(&srv->lock);
    was_queued = c->queued;
    if (c->queued)
        unqueue(srv, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    if (c->busy) {
        c->busy = false;
        srv->busy--;
    }
    c->gone = true;
    hws *ws = c->ws;
    c->ws = NULL;
    ms_waker_drop(&c->waker);
    ms_waker w = ms_waker_clone(&srv->accept_waker);
    pthread_mutex_unlock(&srv->lock);
    if (!ms_waker_is_null(&w))
        ms_waker_wake(&w); /* room for a connection waiting in the backlog */
    ms_timer_free(c->deadline);
    c->deadline = NULL;
    ms_stream_close(c->s);
    c->s = NULL;
    htls_free(c->tls);
    c->tls = NULL;
    free(c->tout);
    free(c->traw);
    c->tout = c->traw = NULL;
    stat_add(HTTP_M_CONNECTIONS_OPEN, -1);
    if (ws)
        hws_end(ws);
    if (was_queued)
        conn_unref(c); /* the queue's reference */
    conn_unref(c);
}

static void conn_open(hs_server *srv, ms_runtime *rt, ms_stream *s) {
    hs_conn *c = malloc(sizeof *c);
    if (!c) {
        ms_stream_close(s);
        return;
    }
    memset(c, 0, offsetof(hs_conn, rbuf));
    atomic_init(&c->refs, 1);
    c->srv = srv;
    c->s = s;
    if (ms_timer_new(rt, &c->deadline, NULL) != 0) {
        ms_stream_close(s);
        free(c);
        return;
    }
    if (srv->tls) {
        c->tls = htls_new(srv->tls);
        c->tout = malloc(HS_READ_BUFFER);
        c->traw = malloc(HS_READ_BUFFER);
        if (!c->tls || !c->tout || !c->traw) {
            htls_free(c->tls);
            free(c->tout);
            free(c->traw);
            ms_timer_free(c->deadline);
            ms_stream_close(s);
            free(c);
            return;
        }
    }
    int one = 1;
    setsockopt(ms_stream_fd(s), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    hreq_init(&c->req, &srv->o.limits);
    ms_timer_set_after(c->deadline, srv->o.idle_timeout_ms);
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    pthread_mutex_lock(&srv->lock);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    pthread_mutex_unlock(&srv->lock);
    stat_add(HTTP_M_CONNECTIONS_OPEN, 1);
    stat_add(HTTP_M_CONNECTIONS_ACCEPTED, 1);
    if (ms_spawn(rt, conn_poll, c, conn_drop, NULL) != 0)
        conn_drop(c);
}

/* ---- the accept task ---- */

static ms_poll accept_poll(ms_cx *cx, void *state) {
    hs_server *srv = state;
    pthread_mutex_lock(&srv->lock);
    ms_waker_store(&srv->accept_waker, ms_cx_waker(cx));
    bool draining = srv->draining;
    pthread_mutex_unlock(&srv->lock);
    if (draining)
        return MS_POLL_READY;
    for (int taken = 0;; taken++) {
        if (taken == HS_ACCEPT_PER_POLL)
            return ms_cx_yield(cx);
        pthread_mutex_lock(&srv->lock);
        bool room = srv->nconns < srv->o.max_connections;
        pthread_mutex_unlock(&srv->lock);
        if (!room)
            return MS_POLL_PENDING; /* a closing connection wakes us */
        ms_stream *s = srv->held;
        srv->held = NULL;
        if (!s) {
            int rc;
            if (ms_listener_accept(srv->l, cx, &s, &rc, &srv->err) == MS_POLL_PENDING)
                return MS_POLL_PENDING;
            if (rc == MS_E_CLOSED)
                return MS_POLL_READY;
            if (rc != 0)
                continue; /* EMFILE and the like: the listener pauses and retries */
        }
        conn_open(srv, ms_cx_runtime(cx), s);
    }
}

static void accept_drop(void *state) {
    hs_server *srv = state;
    if (srv->held)
        ms_stream_close(srv->held);
    srv->held = NULL;
    ms_listener_close(srv->l);
    srv->l = NULL;
    server_unref(srv);
}

/* ---- draining and closing (any agent's thread) ---- */

/* Wakes every connection (and the accept task) to look at the flags. */
static void wake_all(hs_server *srv, bool force) {
    for (;;) {
        ms_waker w = {0};
        pthread_mutex_lock(&srv->lock);
        for (hs_conn *c = srv->conns; c; c = c->next) {
            if (force && !c->forced) {
                c->forced = true;
                w = ms_waker_clone(&c->waker);
                break;
            }
            if (!force && !c->forced && !ms_waker_is_null(&c->waker) && (!c->busy || c->ws)) {
                w = ms_waker_clone(&c->waker);
                ms_waker_drop(&c->waker);
                break;
            }
        }
        pthread_mutex_unlock(&srv->lock);
        if (ms_waker_is_null(&w))
            return;
        ms_waker_wake(&w);
    }
}

static void drain(hs_server *srv) {
    pthread_mutex_lock(&srv->lock);
    bool first = !srv->draining;
    srv->draining = true;
    ms_waker w = ms_waker_clone(&srv->accept_waker);
    pthread_mutex_unlock(&srv->lock);
    if (!ms_waker_is_null(&w))
        ms_waker_wake(&w);
    if (first)
        wake_all(srv, false);
}

/* Ends the takers' waits: they get nil. */
static void close_queue(hs_server *srv) {
    for (;;) {
        ms_waker w = {0};
        pthread_mutex_lock(&srv->lock);
        srv->closed = true;
        bool any = pop_taker(srv, &w);
        pthread_mutex_unlock(&srv->lock);
        if (!any)
            return;
        ms_waker_wake(&w);
    }
}

/* ---- the Lua side ---- */

typedef struct server_ud {
    hs_server *srv;             /* a reference; NULL once closed */
    bool owner;                 /* the handle serve made (closing it closes the server) */
} server_ud;

typedef struct request_ud {
    hs_conn *c;                 /* a reference until answered */
} request_ud;

static hs_server *check_server(lua_State *L) {
    server_ud *u = luaL_checkudata(L, 1, SERVER_MT);
    if (!u->srv)
        luaL_error(L, "ms.http: this server is closed");
    return u->srv;
}

/* Hands the answer (taken over; may be NULL: out of memory) to c's task. */
static void answer(hs_conn *c, char *out, size_t len, int status, bool close_after) {
    hs_server *srv = c->srv;
    pthread_mutex_lock(&srv->lock);
    bool gone = c->gone, late = c->timed_out;
    ms_waker w = {0};
    if (!gone && !late) {
        static const char oom[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
        if (!out) {
            out = strdup(oom);
            len = out ? sizeof oom - 1 : 0;
            status = 500;
            close_after = true;
        }
        c->out = out;
        c->out_len = len;
        c->status = status;
        c->close_after = close_after || srv->draining;
        c->answered = true;
        w = ms_waker_clone(&c->waker);
        out = NULL;
    }
    pthread_mutex_unlock(&srv->lock);
    free(out);
    if (late)
        stat_add(HTTP_M_LATE_ANSWERS, 1); /* 504 went already: dropped */
    if (!ms_waker_is_null(&w))
        ms_waker_wake(&w);
    conn_unref(c);
}

static void log_failure(hs_conn *c, const char *what) {
    size_t tlen;
    const char *t = hreq_target(&c->req, &tlen);
    hostlog(HOSTLOG_ERROR, "http.handler_failed", 0, NULL, "ms.http: %s %.*s: %s",
            hreq_method(&c->req), (int)(tlen > 200 ? 200 : tlen), t, what);
}

/* A 500 for the request (the handler failed, or its agent ended). */
static void answer_500(hs_conn *c, const char *why) {
    log_failure(c, why);
    stat_add(HTTP_M_HANDLER_ERRORS, 1);
    char *out = NULL;
    static const char body[] = "internal server error\n";
    int n = asprintf(&out,
                     "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; "
                     "charset=utf-8\r\nContent-Length: %zu\r\n%s\r\n%s",
                     sizeof body - 1, hreq_keep_alive(&c->req) ? "" : "Connection: close\r\n",
                     strcmp(hreq_method(&c->req), "HEAD") == 0 ? "" : body);
    answer(c, n < 0 ? NULL : out, n < 0 ? 0 : (size_t)n, 500, !hreq_keep_alive(&c->req));
}

static void release_conn(void *p) {
    conn_unref(p);
}

static void release_ws(void *p) {
    hws_unref(p);
}

static void release_request(void *p) {
    answer_500(p, "the request could not be handed to the handler (out of memory)");
}

static int request_gc(lua_State *L) {
    request_ud *u = lua_touserdata(L, 1);
    if (u && u->c) {
        hs_conn *c = u->c;
        u->c = NULL;
        answer_500(c, "the handler's agent let go of the request without answering");
    }
    return 0;
}

/* The request table: method, target, path, query, version, headers
 * (lower-case names; repeated fields joined with ", "), body. */
static void push_request_table(lua_State *L, hs_conn *c) {
    const hreq *r = &c->req;
    lua_createtable(L, 0, 8);
    lua_pushstring(L, hreq_method(r));
    lua_setfield(L, -2, "method");
    size_t tlen, plen, qlen, blen;
    const char *t = hreq_target(r, &tlen), *path, *query;
    lua_pushlstring(L, t, tlen);
    lua_setfield(L, -2, "target");
    hreq_path(r, &path, &plen, &query, &qlen);
    lua_pushlstring(L, path, plen);
    lua_setfield(L, -2, "path");
    if (query) {
        lua_pushlstring(L, query, qlen);
        lua_setfield(L, -2, "query");
    }
    lua_pushstring(L, hreq_version_minor(r) ? "1.1" : "1.0");
    lua_setfield(L, -2, "version");
    lua_createtable(L, 0, (int)hreq_nfields(r));
    for (uint32_t i = 0; i < hreq_nfields(r); i++) {
        const char *n, *v;
        size_t nl, vl;
        hreq_field_at(r, i, &n, &nl, &v, &vl);
        char lower[128];
        if (nl >= sizeof lower)
            continue; /* a name that long is nobody's header */
        for (size_t k = 0; k < nl; k++)
            lower[k] = (char)(n[k] >= 'A' && n[k] <= 'Z' ? n[k] + 32 : n[k]);
        lua_pushlstring(L, lower, nl);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isstring(L, -1)) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, v, vl);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, v, vl);
        }
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    const char *b = hreq_body(r, &blen);
    lua_pushlstring(L, b, blen);
    lua_setfield(L, -2, "body");
}

typedef struct take_op {
    hs_server *srv;             /* a reference while the task waits */
    hs_taker t;
} take_op;

_Static_assert(sizeof(take_op) <= sizeof(((lop *)0)->store), "take_op fits the op store");

static void taker_unlink(hs_server *srv, hs_taker *t) {
    if (!t->linked)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        srv->takers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->linked = false;
}

static void take_release(ltask *lt) {
    take_op *o = (take_op *)lt->op.store;
    if (!o->srv)
        return;
    pthread_mutex_lock(&o->srv->lock);
    taker_unlink(o->srv, &o->t);
    ms_waker w = o->t.waker;
    o->t.waker = (ms_waker){0};
    pthread_mutex_unlock(&o->srv->lock);
    ms_waker_drop(&w);
    server_unref(o->srv);
    o->srv = NULL;
}

static ms_poll take_poll(ltask *lt, ms_cx *cx) {
    take_op *o = (take_op *)lt->op.store;
    hs_server *srv = o->srv;
    pthread_mutex_lock(&srv->lock);
    hs_conn *c = srv->qfirst;
    bool closed = srv->closed;
    hws *ws = NULL;
    if (c) {
        ws = c->ws;
        if (ws)
            hws_ref(ws);
        srv->qfirst = c->qnext;
        if (!srv->qfirst)
            srv->qlast = NULL;
        c->qnext = NULL;
        c->queued = false;
        srv->queued--;
    }
    if (c || closed) {
        taker_unlink(srv, &o->t);
    } else {
        ms_waker_store(&o->t.waker, ms_cx_waker(cx));
        if (!o->t.linked) {
            o->t.prev = NULL;
            o->t.next = srv->takers;
            if (srv->takers)
                srv->takers->prev = &o->t;
            srv->takers = &o->t;
            o->t.linked = true;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    if (!c && !closed)
        return MS_POLL_PENDING;
    take_release(lt);
    lua_State *co = lt->co;
    if (!c) {
        lua_pushnil(co);
        lt->nres = 1;
        return MS_POLL_READY;
    }
    if (ws) {
        /* An upgraded connection: the handler gets a ws object (its
         * reference) and the request; the queue's reference on the
         * connection goes once the table is built. */
        hold_push(c, release_conn);
        hold_push(ws, release_ws);
        hws_push(co, ws);
        hold_pop(ws);
        hws_unref(ws);
        push_request_table(co, c);
        lua_pushboolean(co, 1);
        lua_setfield(co, -2, "websocket");
        hold_pop(c);
        conn_unref(c);
        lt->nres = 2;
        return MS_POLL_READY;
    }
    /* The queue's reference goes to the userdata (held while Lua
     * allocates it: a raise answers 500). */
    hold_push(c, release_request);
    request_ud *u = lua_newuserdata(co, sizeof *u);
    u->c = NULL;
    luaL_getmetatable(co, REQUEST_MT);
    lua_setmetatable(co, -2);
    u->c = c;
    hold_pop(c);
    push_request_table(co, c);
    lt->nres = 2;
    return MS_POLL_READY;
}

static void take_cancel(ltask *lt) {
    take_release(lt);
}

static void take_describe(const ltask *lt, lop_desc *d) {
    const take_op *o = (const take_op *)lt->op.store;
    snprintf(d->what, sizeof d->what, "http server #%llu (take)",
             o->srv ? (unsigned long long)o->srv->id : 0ull);
}

static const lop_kind take_kind = {"http take", take_describe};

static ms_poll take_now(ms_cx *cx, void *state) {
    return take_poll(state, cx);
}

/* srv:take() -> request, req | nil (the server is closed) */
static int server_take(lua_State *L) {
    hs_server *srv = check_server(L);
    ltask *lt = ltask_current(L, "server:take");
    take_op *o = (take_op *)lt->op.store;
    memset(o, 0, sizeof *o);
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    o->srv = srv;
    agent *a = lt->a;
    if (a->cx) {
        /* A request already queued is taken without a trip through the
         * agent's scheduler. */
        ms_waker w = {&ltask_waker_vtable, lt};
        lt->nres = 0;
        if (ms_cx_poll_with_waker(a->cx, &w, take_now, lt) == MS_POLL_READY) {
            int n = lt->nres;
            lt->nres = 0;
            return op_return_fast(L, lt, n);
        }
    }
    lt->op.kind = &take_kind;
    return op_suspend(L, lt, take_poll, take_cancel, 0);
}

/* Checks a header name (a token) and value (no CR, LF or NUL). */
static bool header_ok(const char *n, size_t nl, const char *v, size_t vl) {
    if (nl == 0)
        return false;
    for (size_t i = 0; i < nl; i++) {
        unsigned char ch = (unsigned char)n[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr("!#$%&'*+-.^_`|~", ch))))
            return false;
    }
    for (size_t i = 0; i < vl; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
            return false;
    return true;
}

static bool ieq(const char *a, size_t alen, const char *b) {
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/* Appends to a growing response; false on no memory. */
typedef struct obuf {
    char *p;
    size_t len, cap;
} obuf;

static bool ob_add(obuf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *g = realloc(b->p, cap);
        if (!g)
            return false;
        b->p = g;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

/* The response of the table at idx (read raw: no metamethod runs), or
 * NULL with *why set. */
static char *build_response(lua_State *L, int idx, hs_conn *c, int *status, size_t *len,
                            bool *close_after, const char **why) {
    static char whybuf[160];
    *why = NULL;
    size_t blen = 0;
    const char *body = "";
    *status = 200;
    if (lua_type(L, idx) == LUA_TSTRING) {
        body = lua_tolstring(L, idx, &blen);
    } else if (lua_type(L, idx) == LUA_TTABLE) {
        lua_pushliteral(L, "status");
        lua_rawget(L, idx);
        if (!lua_isnil(L, -1)) {
            double s = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER || s != (int)s || s < 100 || s > 599) {
                lua_pop(L, 1);
                *why = "the handler's status must be a whole number from 100 to 599";
                return NULL;
            }
            *status = (int)s;
        }
        lua_pop(L, 1);
        lua_pushliteral(L, "body");
        lua_rawget(L, idx);
        if (lua_type(L, -1) == LUA_TSTRING) {
            body = lua_tolstring(L, -1, &blen);
        } else if (!lua_isnil(L, -1)) {
            snprintf(whybuf, sizeof whybuf, "the handler's body must be a string, not a %s",
                     luaL_typename(L, -1));
            lua_pop(L, 1);
            *why = whybuf;
            return NULL;
        }
        lua_pop(L, 1); /* the body string stays anchored in the table */
    } else {
        snprintf(whybuf, sizeof whybuf,
                 "the handler must return a table {status=, headers=, body=} or a string, "
                 "not a %s",
                 luaL_typename(L, idx));
        *why = whybuf;
        return NULL;
    }
    bool keep = hreq_keep_alive(&c->req);
    bool head = strcmp(hreq_method(&c->req), "HEAD") == 0;
    obuf b = {0};
    char line[128];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", *status, reason(*status));
    bool ok = ob_add(&b, line, (size_t)n);
    bool has_type = false;
    if (lua_type(L, idx) == LUA_TTABLE) {
        lua_pushliteral(L, "headers");
        lua_rawget(L, idx);
        int h = lua_gettop(L);
        if (lua_type(L, h) == LUA_TTABLE) {
            lua_pushnil(L);
            while (ok && lua_next(L, h)) {
                if (lua_type(L, -2) != LUA_TSTRING ||
                    (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)) {
                    lua_pop(L, 3);
                    free(b.p);
                    *why = "the handler's headers must map names (strings) to strings or numbers";
                    return NULL;
                }
                size_t nl, vl;
                const char *hn = lua_tolstring(L, -2, &nl);
                char num[32];
                const char *hv;
                if (lua_type(L, -1) == LUA_TNUMBER) {
                    vl = (size_t)snprintf(num, sizeof num, "%.14g", lua_tonumber(L, -1));
                    hv = num;
                } else {
                    hv = lua_tolstring(L, -1, &vl);
                }
                if (!header_ok(hn, nl, hv, vl)) {
                    lua_pop(L, 3);
                    free(b.p);
                    *why = "the handler's header names must be tokens and values must have no "
                           "CR, LF or NUL";
                    return NULL;
                }
                /* Framing is the server's. */
                if (!ieq(hn, nl, "content-length") && !ieq(hn, nl, "transfer-encoding") &&
                    !ieq(hn, nl, "connection")) {
                    has_type = has_type || ieq(hn, nl, "content-type");
                    ok = ob_add(&b, hn, nl) && ob_add(&b, ": ", 2) && ob_add(&b, hv, vl) &&
                         ob_add(&b, "\r\n", 2);
                }
                lua_pop(L, 1);
            }
        } else if (!lua_isnil(L, h)) {
            lua_pop(L, 1);
            free(b.p);
            *why = "the handler's headers must be a table";
            return NULL;
        }
        lua_settop(L, h - 1);
    }
    if (!has_type)
        ok = ok && ob_add(&b, "Content-Type: text/plain; charset=utf-8\r\n", 41);
    bool no_body = *status < 200 || *status == 204 || *status == 304;
    if (!no_body) {
        n = snprintf(line, sizeof line, "Content-Length: %zu\r\n", blen);
        ok = ok && ob_add(&b, line, (size_t)n);
    }
    if (!keep)
        ok = ok && ob_add(&b, "Connection: close\r\n", 19);
    else if (hreq_version_minor(&c->req) == 0)
        ok = ok && ob_add(&b, "Connection: keep-alive\r\n", 24);
    ok = ok && ob_add(&b, "\r\n", 2);
    if (!head && !no_body)
        ok = ok && ob_add(&b, body, blen);
    if (!ok) {
        free(b.p);
        *why = "no memory for the response";
        return NULL;
    }
    *len = b.len;
    *close_after = !keep;
    return b.p;
}

static hs_conn *take_request(lua_State *L, int idx) {
    request_ud *u = luaL_checkudata(L, idx, REQUEST_MT);
    if (!u->c)
        luaL_error(L, "ms.http: this request was answered already");
    hs_conn *c = u->c;
    u->c = NULL;
    return c;
}

/* srv:respond(request, response) -> true | nil, why (answered 500) */
static int server_respond(lua_State *L) {
    check_server(L);
    luaL_checkudata(L, 2, REQUEST_MT);
    lua_settop(L, 3);
    request_ud *u = lua_touserdata(L, 2);
    if (!u->c)
        return luaL_error(L, "ms.http: this request was answered already");
    int status;
    size_t len = 0;
    bool close_after = false;
    const char *why;
    /* Built before the request is taken from the userdata: a raise here
     * (a memory error) leaves it to the userdata's collection. */
    char *out = build_response(L, 3, u->c, &status, &len, &close_after, &why);
    hs_conn *c = take_request(L, 2);
    if (!out) {
        char text[200];
        snprintf(text, sizeof text, "answered 500: %s", why);
        answer_500(c, text);
        lua_pushnil(L);
        lua_pushstring(L, why);
        return 2;
    }
    answer(c, out, len, status, close_after);
    lua_pushboolean(L, 1);
    return 1;
}

/* srv:fail(request, message): 500, the message logged. */
static int server_fail(lua_State *L) {
    check_server(L);
    const char *message = luaL_optstring(L, 3, "the handler failed");
    hs_conn *c = take_request(L, 2);
    char text[600];
    snprintf(text, sizeof text, "handler error: %s", message);
    answer_500(c, text);
    return 0;
}

static int server_address(lua_State *L) {
    hs_server *srv = check_server(L);
    lua_pushstring(L, srv->host);
    lua_pushinteger(L, srv->port);
    return 2;
}

static int server_id(lua_State *L) {
    lua_pushnumber(L, (lua_Number)check_server(L)->id);
    return 1;
}

static int server_drain(lua_State *L) {
    drain(check_server(L));
    return 0;
}

static int server_force(lua_State *L) {
    hs_server *srv = check_server(L);
    drain(srv);
    wake_all(srv, true);
    return 0;
}

/* srv:state() -> { connections, busy, queued, draining, closed } */
static int server_state(lua_State *L) {
    hs_server *srv = check_server(L);
    pthread_mutex_lock(&srv->lock);
    uint32_t nconns = srv->nconns, busy = srv->busy, queued = srv->queued;
    bool draining = srv->draining, closed = srv->closed;
    pthread_mutex_unlock(&srv->lock);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, nconns);
    lua_setfield(L, -2, "connections");
    lua_pushinteger(L, busy);
    lua_setfield(L, -2, "busy");
    lua_pushinteger(L, queued);
    lua_setfield(L, -2, "queued");
    lua_pushboolean(L, draining);
    lua_setfield(L, -2, "draining");
    lua_pushboolean(L, closed);
    lua_setfield(L, -2, "closed");
    return 1;
}

static void server_ud_close(server_ud *u) {
    hs_server *srv = u->srv;
    if (!srv)
        return;
    u->srv = NULL;
    if (u->owner) {
        drain(srv);
        wake_all(srv, true);
        close_queue(srv);
    }
    server_unref(srv);
}

static int server_close(lua_State *L) {
    server_ud *u = luaL_checkudata(L, 1, SERVER_MT);
    server_ud_close(u);
    return 0;
}

static int server_gc(lua_State *L) {
    server_ud *u = lua_touserdata(L, 1);
    if (u)
        server_ud_close(u);
    return 0;
}

static void push_server(lua_State *L, hs_server *srv, bool owner);

/* A whole number option in [min, max] (default def). */
static double opt_number(lua_State *L, int t, const char *name, double def, double min, double max,
                         bool whole) {
    lua_getfield(L, t, name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return def;
    }
    double v = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || v < min || v > max || (whole && v != (double)(int64_t)v))
        luaL_error(L, "ms.http.serve: %s must be %s from %g to %g", name,
                   whole ? "a whole number" : "a number", min, max);
    lua_pop(L, 1);
    return v;
}

/* _server.start{ listen=, max_header_bytes=, ... } -> server (owner) */
static int server_start(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "listen");
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "ms.http.serve: listen must be \"host:port\", not a %s",
                          luaL_typename(L, -1));
    const char *addr = lua_tostring(L, -1);
    char hostname[64];
    const char *colon = strrchr(addr, ':');
    char *end = NULL;
    bool v6 = addr[0] == '[';
    size_t hlen = colon ? (size_t)(colon - addr) : 0;
    const char *hstart = addr;
    if (v6 && colon && colon > addr && colon[-1] == ']') {
        hstart = addr + 1;
        hlen = (size_t)(colon - addr) - 2;
    }
    unsigned long port = colon && colon[1] >= '0' && colon[1] <= '9' ? strtoul(colon + 1, &end, 10)
                                                                      : 70000;
    if (!colon || hlen == 0 || hlen >= sizeof hostname || !end || *end || port > 65535)
        return luaL_error(L,
                          "ms.http.serve: listen \"%s\" is not host:port (e.g. "
                          "\"127.0.0.1:8080\", \"[::1]:8080\", port 0 for a free one)",
                          addr);
    memcpy(hostname, hstart, hlen);
    hostname[hlen] = '\0';
    hs_opts o;
    o.limits.header_bytes = (uint32_t)opt_number(L, 1, "max_header_bytes", 8192, 256, 1 << 20, true);
    o.limits.headers = (uint32_t)opt_number(L, 1, "max_headers", 100, 1, 10000, true);
    o.limits.body = (uint64_t)opt_number(L, 1, "max_body", 1 << 20, 0, 1ull << 32, true);
    o.header_timeout_ms = (uint64_t)(opt_number(L, 1, "header_timeout", 10, 0.001, 3600, false) * 1000);
    o.body_timeout_ms = (uint64_t)(opt_number(L, 1, "body_timeout", 30, 0.001, 3600, false) * 1000);
    o.idle_timeout_ms = (uint64_t)(opt_number(L, 1, "idle_timeout", 5, 0.001, 3600, false) * 1000);
    o.write_timeout_ms = (uint64_t)(opt_number(L, 1, "write_timeout", 30, 0.001, 3600, false) * 1000);
    o.handler_timeout_ms = (uint64_t)(opt_number(L, 1, "handler_timeout", 30, 0, 86400, false) * 1000);
    o.queue = (uint32_t)opt_number(L, 1, "queue", 1024, 1, 1 << 20, true);
    o.max_connections = (uint32_t)opt_number(L, 1, "max_connections", 10000, 1, 1 << 20, true);
    o.backlog = (int)opt_number(L, 1, "backlog", 511, 1, 65535, true);
    agent *a = ltask_current(L, "ms.http.serve")->a;
    ms_runtime *rt = a->h->rt;
    htls_ctx *tls = NULL;
    lua_getfield(L, 1, "tls");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
            return luaL_error(L, "ms.http.serve: tls must be a table { cert = PATH, key = PATH }");
        lua_getfield(L, -1, "cert");
        lua_getfield(L, -2, "key");
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "ms.http.serve: tls.cert and tls.key must be paths (strings) of "
                                 "PEM files");
        char terr[400];
        tls = htls_ctx_new(lua_tostring(L, -2), lua_tostring(L, -1), terr, sizeof terr);
        if (!tls)
            return luaL_error(L, "ms.http.serve: %s", terr);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    o.ws_on = false;
    o.ws_npaths = 0;
    o.ws_max_message = 1 << 20;
    o.ws_max_buffer = 1 << 20;
    o.ws_ping_interval_ms = 20000;
    o.ws_ping_timeout_ms = 20000;
    lua_getfield(L, 1, "websocket");
    if (lua_istable(L, -1)) {
        int w = lua_gettop(L);
        o.ws_on = true;
        o.ws_max_message = (uint64_t)opt_number(L, w, "max_message", 1 << 20, 1, 1ull << 31, true);
        o.ws_max_buffer = (size_t)opt_number(L, w, "max_buffer", (double)o.ws_max_message, 1024,
                                             1ull << 32, true);
        o.ws_ping_interval_ms =
            (uint64_t)(opt_number(L, w, "ping_interval", 20, 0, 3600, false) * 1000);
        o.ws_ping_timeout_ms =
            (uint64_t)(opt_number(L, w, "ping_timeout", 20, 0.001, 3600, false) * 1000);
        lua_getfield(L, w, "path");
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_createtable(L, 1, 0);
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, 1);
            lua_replace(L, -2);
        }
        if (lua_istable(L, -1)) {
            int t = lua_gettop(L);
            for (int i = 1;; i++) {
                lua_rawgeti(L, t, i);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    break;
                }
                size_t pl;
                const char *pth = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &pl) : NULL;
                if (!pth || pl == 0 || pth[0] != '/' || pl > 1024 || o.ws_npaths == HS_WS_MAX_PATHS) {
                    for (uint32_t k = 0; k < o.ws_npaths; k++)
                        free(o.ws_paths[k]);
                    htls_ctx_free(tls);
                    return luaL_error(L, "ms.http.serve: websocket.path must be a path starting "
                                         "with / (or a list of at most %d)", HS_WS_MAX_PATHS);
                }
                o.ws_paths[o.ws_npaths] = strdup(pth);
                if (!o.ws_paths[o.ws_npaths]) {
                    for (uint32_t k = 0; k < o.ws_npaths; k++)
                        free(o.ws_paths[k]);
                    htls_ctx_free(tls);
                    return luaL_error(L, "ms.http.serve: out of memory");
                }
                o.ws_npaths++;
                lua_pop(L, 1);
            }
        } else if (!lua_isnil(L, -1)) {
            htls_ctx_free(tls);
                    return luaL_error(L, "ms.http.serve: websocket.path must be a path (a string) or a "
                                 "list of paths");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    hs_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        htls_ctx_free(tls);
        for (uint32_t k = 0; k < o.ws_npaths; k++)
            free(o.ws_paths[k]);
        return luaL_error(L, "ms.http.serve: no memory for a server");
    }
    srv->tls = tls;
    ms_error err;
    int rc = ms_tcp_listen(rt, hostname, (uint16_t)port, o.backlog, &srv->l, &err);
    if (rc != 0) {
        htls_ctx_free(srv->tls);
        for (uint32_t k = 0; k < o.ws_npaths; k++)
            free(o.ws_paths[k]);
        free(srv);
        lua_pushnil(L);
        lerr_push(L, rc, err.message, NULL);
        return 2;
    }
    srv->o = o;
    snprintf(srv->host, sizeof srv->host, "%s", hostname);
    srv->port = ms_listener_port(srv->l);
    pthread_mutex_init(&srv->lock, NULL);
    atomic_init(&srv->refs, 2); /* the accept task and the owner's handle */
    pthread_mutex_lock(&reg_lock);
    srv->id = reg_next_id++;
    srv->reg_next = reg_first;
    reg_first = srv;
    pthread_mutex_unlock(&reg_lock);
    /* The handle first: a raise while it is made closes the server. */
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    push_server(L, srv, true);
    rc = ms_spawn(rt, accept_poll, srv, accept_drop, NULL);
    server_unref(srv);
    if (rc != 0) {
        accept_drop(srv);
        return luaL_error(L, "ms.http.serve: cannot start the accept task: %s", ms_err_name(rc));
    }
    return 1;
}

/* _server.attach(id) -> server (a worker's handle) | nil */
static int server_attach(lua_State *L) {
    uint64_t id = (uint64_t)luaL_checknumber(L, 1);
    pthread_mutex_lock(&reg_lock);
    hs_server *srv = reg_first;
    while (srv && srv->id != id)
        srv = srv->reg_next;
    if (srv)
        atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&reg_lock);
    if (!srv) {
        lua_pushnil(L);
        return 1;
    }
    push_server(L, srv, false);
    return 1;
}

static void release_server(void *p) {
    server_unref(p);
}

static void build_mts(lua_State *L) {
    hws_register(L);
    static const luaL_Reg methods[] = {
        {"take", server_take},     {"respond", server_respond}, {"fail", server_fail},
        {"address", server_address}, {"id", server_id},         {"drain", server_drain},
        {"force", server_force},   {"state", server_state},     {"close", server_close},
        {NULL, NULL}};
    if (luaL_newmetatable(L, SERVER_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, server_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, "ms.http.server");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, REQUEST_MT)) {
        lua_pushcfunction(L, request_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, "ms.http.request");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}

/* Takes over one reference to srv (released if this raises). */
static void push_server(lua_State *L, hs_server *srv, bool owner) {
    hold_push(srv, release_server);
    server_ud *u = lua_newuserdata(L, sizeof *u);
    u->srv = NULL;
    u->owner = false;
    luaL_getmetatable(L, SERVER_MT);
    lua_setmetatable(L, -2);
    u->srv = srv;
    u->owner = owner;
    hold_pop(srv);
}

void lms_http_server_register(lua_State *L) {
    build_mts(L);
    static const luaL_Reg prims[] = {{"start", server_start}, {"attach", server_attach},
                                     {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, prims);
    lua_setfield(L, -2, "_server");
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ms.http_server");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "serve");
    lua_setfield(L, -3, "serve");
    lua_pop(L, 1);
}
