/*
 * lms_http_client.c - ms.http.request: HTTP(S) requests for agents.
 *
 * The exchange itself is libms's (ms_http_request_*: libcurl's multi
 * interface on the driver loop, one connection pool for the host).  This
 * file reads the options (raw reads only: a hostile table runs no code),
 * waits as an operation of the calling task (ops.h: a stop, ms.timeout or
 * t:abort cancels it, and cancelling frees the request, which takes the
 * transfer out of libcurl on the driver thread), and turns the outcome
 * into Lua values: status, headers, body, or nil and an error value whose
 * `reason` names what failed.
 *
 * Building those values can raise (the agent's memory limit, a finalizer
 * run by a collector step): the request is held (hold.h) while they are
 * built, so a raise frees it rather than leaking it.
 *
 * A stream (stream = true) answers once the head has arrived with an
 * ms.http_stream handle instead of the body; the handle is one of the
 * agent's OS handles (iohandle.h), so the agent's end closes it.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <lauxlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "hold.h"
#include "host.h"
#include "iohandle.h"
#include "lerr.h"
#include "lms.h"
#include "lms_http_client.h"
#include "lms_http_wsc.h"
#include "lms_tls_client.h"
#include "ltask.h"
#include "ops.h"

#define MAX_HEADERS 100
#define DEFAULT_TIMEOUT 30.0          /* seconds, the whole exchange */
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_MAX_SIZE (16u * 1024 * 1024)
#define MAX_REDIRECTS 50
#define MAX_URL 8192

/* ---- metrics ---- */

const host_metric_desc http_client_metric_descs[HCM_COUNT] = {
    [HCM_REQUESTS] = {"requests", "ms_http_client_requests_total", MS_METRIC_COUNTER,
                     "HTTP requests agents started (ms.http.request)."},
    [HCM_RESPONSES_1XX] = {"responses_1xx", "ms_http_client_responses_1xx_total",
                          MS_METRIC_COUNTER, "HTTP responses with a 1xx final status."},
    [HCM_RESPONSES_2XX] = {"responses_2xx", "ms_http_client_responses_2xx_total",
                          MS_METRIC_COUNTER, "HTTP responses with a 2xx status."},
    [HCM_RESPONSES_3XX] = {"responses_3xx", "ms_http_client_responses_3xx_total",
                          MS_METRIC_COUNTER, "HTTP responses with a 3xx status (not followed)."},
    [HCM_RESPONSES_4XX] = {"responses_4xx", "ms_http_client_responses_4xx_total",
                          MS_METRIC_COUNTER, "HTTP responses with a 4xx status."},
    [HCM_RESPONSES_5XX] = {"responses_5xx", "ms_http_client_responses_5xx_total",
                          MS_METRIC_COUNTER, "HTTP responses with a 5xx status."},
    [HCM_FAILED_DNS] = {"failed_dns", "ms_http_client_failed_dns_total", MS_METRIC_COUNTER,
                       "HTTP requests that failed resolving the host name."},
    [HCM_FAILED_CONNECT] = {"failed_connect", "ms_http_client_failed_connect_total",
                           MS_METRIC_COUNTER, "HTTP requests that got no connection."},
    [HCM_FAILED_TLS] = {"failed_tls", "ms_http_client_failed_tls_total", MS_METRIC_COUNTER,
                       "HTTP requests whose TLS handshake or certificate check failed."},
    [HCM_FAILED_TIMEOUT] = {"failed_timeout", "ms_http_client_failed_timeout_total",
                           MS_METRIC_COUNTER, "HTTP requests that timed out."},
    [HCM_FAILED_TOO_LARGE] = {"failed_too_large", "ms_http_client_failed_too_large_total",
                             MS_METRIC_COUNTER,
                             "HTTP responses refused for passing max_size or the agent's memory "
                             "limit."},
    [HCM_FAILED_PROTOCOL] = {"failed_protocol", "ms_http_client_failed_protocol_total",
                            MS_METRIC_COUNTER, "HTTP requests answered with something not HTTP."},
    [HCM_FAILED_RECEIVE] = {"failed_receive", "ms_http_client_failed_receive_total",
                           MS_METRIC_COUNTER,
                           "HTTP requests whose connection broke before the response ended."},
    [HCM_FAILED_OTHER] = {"failed_other", "ms_http_client_failed_other_total", MS_METRIC_COUNTER,
                         "HTTP requests that failed otherwise (send, redirects, proxy, URL, "
                         "memory, shutdown)."},
    [HCM_CANCELLED] = {"cancelled", "ms_http_client_cancelled_total", MS_METRIC_COUNTER,
                      "HTTP requests cancelled before their answer (stop, ms.timeout, abort)."},
    [HCM_CONNECTIONS_OPEN] = {"connections_open", "ms_http_client_connections_open",
                             MS_METRIC_GAUGE,
                             "Connections the HTTP client holds open (in use or pooled)."},
    [HCM_CONNECTIONS_OPENED] = {"connections_opened", "ms_http_client_connections_opened_total",
                               MS_METRIC_COUNTER, "Connections the HTTP client has opened."},
};

const double http_client_latency_bounds[HTTP_CLIENT_LATENCY_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 1e300,
};

const host_metric_desc http_client_latency_desc = {
    "latency", "ms_http_client_request_duration_seconds", MS_METRIC_HISTOGRAM,
    "Time from ms.http.request to its answer (response head for a stream, or failure).",
    MS_UNIT_NS};

static void count(http_client_metric m) {
    host *h = host_get();
    if (h)
        atomic_fetch_add_explicit(&h->http_client[m], 1, memory_order_relaxed);
}

static void count_latency(uint64_t ns) {
    host *h = host_get();
    if (!h)
        return;
    double s = (double)ns / 1e9;
    int i = 0;
    while (i < HTTP_CLIENT_LATENCY_BUCKETS - 1 && s > http_client_latency_bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->http_client_latency[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->http_client_latency_sum_ns, ns, memory_order_relaxed);
}

static void count_outcome(int status, ms_http_failure f) {
    static const http_client_metric by_failure[] = {
        [MS_HTTP_DNS] = HCM_FAILED_DNS,           [MS_HTTP_CONNECT] = HCM_FAILED_CONNECT,
        [MS_HTTP_TLS] = HCM_FAILED_TLS,           [MS_HTTP_TIMEOUT] = HCM_FAILED_TIMEOUT,
        [MS_HTTP_TOO_LARGE] = HCM_FAILED_TOO_LARGE, [MS_HTTP_PROTOCOL] = HCM_FAILED_PROTOCOL,
        [MS_HTTP_RECEIVE] = HCM_FAILED_RECEIVE,
    };
    if (f == MS_HTTP_OK) {
        if (status >= 100 && status < 600)
            count((http_client_metric)(HCM_RESPONSES_1XX + status / 100 - 1));
        return;
    }
    http_client_metric m = (unsigned)f < sizeof by_failure / sizeof by_failure[0] && by_failure[f]
                        ? by_failure[f]
                        : HCM_FAILED_OTHER;
    count(m);
}

void http_client_metric_values(uint64_t out[HCM_COUNT]) {
    host *h = host_get();
    for (int i = 0; i < HCM_COUNT; i++)
        out[i] = h ? atomic_load_explicit(&h->http_client[i], memory_order_relaxed) : 0;
    uint64_t open = 0, opened = 0;
    if (h)
        ms_http_client_connections(h->rt, &open, &opened);
    out[HCM_CONNECTIONS_OPEN] = open;
    out[HCM_CONNECTIONS_OPENED] = opened;
}

void http_client_latency_values(uint64_t buckets[HTTP_CLIENT_LATENCY_BUCKETS], uint64_t *sum_ns) {
    host *h = host_get();
    for (int i = 0; i < HTTP_CLIENT_LATENCY_BUCKETS; i++)
        buckets[i] = h ? atomic_load_explicit(&h->http_client_latency[i], memory_order_relaxed) : 0;
    *sum_ns = h ? atomic_load_explicit(&h->http_client_latency_sum_ns, memory_order_relaxed) : 0;
}

void lms_http_push_metrics(lua_State *L) {
    uint64_t v[HCM_COUNT], b[HTTP_CLIENT_LATENCY_BUCKETS], sum_ns;
    http_client_metric_values(v);
    http_client_latency_values(b, &sum_ns);
    lua_createtable(L, 0, HCM_COUNT + 1);
    for (int i = 0; i < HCM_COUNT; i++) {
        lua_pushnumber(L, (double)v[i]);
        lua_setfield(L, -2, http_client_metric_descs[i].key);
    }
    lua_createtable(L, 0, 3);
    lua_createtable(L, HTTP_CLIENT_LATENCY_BUCKETS, 0);
    uint64_t cum = 0;
    for (int i = 0; i < HTTP_CLIENT_LATENCY_BUCKETS; i++) {
        cum += b[i];
        lua_createtable(L, 0, 2);
        if (i + 1 < HTTP_CLIENT_LATENCY_BUCKETS) { /* the last (+Inf) has none: JSON has no infinity */
            lua_pushnumber(L, http_client_latency_bounds[i]);
            lua_setfield(L, -2, "le");
        }
        lua_pushnumber(L, (double)cum);
        lua_setfield(L, -2, "count");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "buckets");
    lua_pushnumber(L, (double)cum);
    lua_setfield(L, -2, "count");
    lua_pushnumber(L, (double)sum_ns / 1e9);
    lua_setfield(L, -2, "sum");
    lua_setfield(L, -2, http_client_latency_desc.key);
}

/* ---- the waiting operation ---- */

typedef struct hreq_op {
    /* The request is one of the agent's OS handles while it waits, so
     * agent_io_limit and host_io_limit bound how many an agent (and the
     * host) has in flight. */
    ioh io;
    ms_http_request *req;       /* NULL once answered or cancelled */
    uint64_t start_ns;
    size_t max_size;            /* what was asked of libms */
    int url_ref;                /* the URL, for error values */
    bool stream;
    bool limit_from_agent;      /* max_size is the agent's memory room */
    char method[24];
} hreq_op;

_Static_assert(sizeof(hreq_op) <= sizeof(((lop *)0)->store), "hreq_op fits the op store");

static hreq_op *op_of(ltask *lt) {
    return (hreq_op *)lt->op.store;
}

static const lop_kind request_kind = {"http request", NULL};

/* Only if the agent ends with the request still listed (its task's
 * cancel normally took it off first). */
static void request_close_io(ioh *io) {
    hreq_op *o = (hreq_op *)io;
    if (o->req) {
        ms_http_request_free(o->req);
        o->req = NULL;
    }
    ioh_closed(io);
}

static const ioh_kind request_io_kind = {"http request", IM_HTTP_REQUESTS_OPEN, request_close_io};

static void release_request(void *p) {
    ms_http_request_free(p);
}

static void unref_url(ltask *lt) {
    hreq_op *o = op_of(lt);
    if (o->url_ref != LUA_NOREF) {
        luaL_unref(lt->a->L, LUA_REGISTRYINDEX, o->url_ref);
        o->url_ref = LUA_NOREF;
    }
}

/* nil, error value { kind, code, message, ..., reason, method, url }. */
static int push_failure(lua_State *co, hreq_op *o, int code, const char *reason,
                        const char *message) {
    lua_pushnil(co);
    lua_rawgeti(co, LUA_REGISTRYINDEX, o->url_ref);
    const char *url = lua_tostring(co, -1);
    char text[1024];
    snprintf(text, sizeof text, "http %s %s: %s: %s", o->method, url ? url : "?", reason,
             message);
    lerr_push(co, code, text, NULL);
    lua_pushstring(co, reason);
    lua_setfield(co, -2, "reason");
    lua_pushstring(co, o->method);
    lua_setfield(co, -2, "method");
    lua_pushvalue(co, -2);
    lua_setfield(co, -2, "url");
    lua_remove(co, -2); /* the url */
    return 2;
}

/* The header block ("Name: value\n" lines) as a table: lower-case names,
 * a repeated header's values joined with ", ". */
static void push_headers(lua_State *co, const char *p, size_t len) {
    lua_createtable(co, 0, 8);
    const char *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && colon > p) {
            luaL_Buffer b;
            luaL_buffinit(co, &b);
            for (const char *q = p; q < colon; q++)
                luaL_addchar(&b, (char)tolower((unsigned char)*q));
            luaL_pushresult(&b);
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            lua_pushvalue(co, -1);
            lua_rawget(co, -3);
            if (lua_isnil(co, -1)) {
                lua_pop(co, 1);
                lua_pushlstring(co, v, (size_t)(ve - v));
            } else {
                lua_pushliteral(co, ", ");
                lua_pushlstring(co, v, (size_t)(ve - v));
                lua_concat(co, 3);
            }
            lua_rawset(co, -3);
        }
        p = eol + 1;
    }
}


/* ---- response streams ---- */

#define STREAM_MT "ms.http_stream"
#define STREAM_READ_DEFAULT (64 * 1024)
#define STREAM_READ_MAX (1024 * 1024)

/* The body of a response being read piecewise.  Owner's thread only (the
 * agent holding the userdata); on the agent's list of OS handles. */
typedef struct hstream {
    ioh io;
    ms_http_request *req;       /* NULL once closed */
    ltask *reader;              /* the task waiting in read, or NULL */
    char *buf;                  /* STREAM_READ_MAX bytes, on first read */
} hstream;

static void stream_close(hstream *s) {
    if (!s->req)
        return;
    ms_http_request_free(s->req); /* an unfinished transfer is cancelled */
    s->req = NULL;
    free(s->buf);
    s->buf = NULL;
    ioh_closed(&s->io);
}

static void stream_close_io(ioh *io) {
    stream_close((hstream *)io);
}

static const ioh_kind stream_kind = {"http stream", IM_HTTP_STREAMS_OPEN, stream_close_io};

typedef struct sread_op {
    hstream *s;
    size_t max;
    int ud_ref;                 /* anchors the userdata while the task waits */
} sread_op;

_Static_assert(sizeof(sread_op) <= sizeof(((lop *)0)->store), "sread_op fits the op store");

static const lop_kind stream_read_kind = {"http stream read", NULL};

static void sread_release(ltask *lt) {
    sread_op *o = (sread_op *)lt->op.store;
    if (o->s && o->s->reader == lt)
        o->s->reader = NULL;
    o->s = NULL;
    if (o->ud_ref != LUA_NOREF) {
        luaL_unref(lt->a->L, LUA_REGISTRYINDEX, o->ud_ref);
        o->ud_ref = LUA_NOREF;
    }
}

static ms_poll sread_poll(ltask *lt, ms_cx *cx) {
    sread_op *o = (sread_op *)lt->op.store;
    hstream *s = o->s;
    lua_State *co = lt->co;
    ssize_t n;
    ms_error e;
    if (!s->req) {
        sread_release(lt);
        lua_pushnil(co);
        lua_pushliteral(co, "closed");
        lt->nres = 2;
        return MS_POLL_READY;
    }
    if (ms_http_request_read(s->req, cx, s->buf, o->max, &n, &e) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    sread_release(lt);
    if (n > 0) {
        lua_pushlstring(co, s->buf, (size_t)n);
        lt->nres = 1;
    } else if (n == 0) {
        lua_pushnil(co);
        lt->nres = 1;
    } else {
        ms_http_failure f = ms_http_request_failure(s->req);
        count_outcome(0, f);
        lua_pushnil(co);
        lerr_push(co, (int)n, e.message, NULL);
        lua_pushstring(co, ms_http_failure_name(f));
        lua_setfield(co, -2, "reason");
        lt->nres = 2;
    }
    return MS_POLL_READY;
}

/* stream:read([max][, timeout]) -> chunk | nil (the end) | nil, "timeout"
 * | nil, "closed" | nil, err */
static int stream_read(lua_State *L) {
    hstream *s = luaL_checkudata(L, 1, STREAM_MT);
    lua_Integer max = luaL_optinteger(L, 2, STREAM_READ_DEFAULT);
    if (max < 1 || max > STREAM_READ_MAX)
        return luaL_argerror(L, 2, "max must be 1 to 1048576 bytes");
    double timeout = lms_opt_timeout(L, 3);
    if (!s->req) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (s->reader)
        return luaL_error(L, "stream:read: another task is already reading this stream");
    if (!s->buf && !(s->buf = malloc(STREAM_READ_MAX)))
        return luaL_error(L, "stream:read: out of memory");
    ltask *lt = ltask_current(L, "stream:read");
    op_set_deadline(L, lt, timeout); /* may raise: first */
    lua_pushvalue(L, 1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    sread_op *o = (sread_op *)lt->op.store;
    memset(o, 0, sizeof *o);
    o->s = s;
    o->max = (size_t)max;
    o->ud_ref = ref;
    s->reader = lt;
    lt->op.kind = &stream_read_kind;
    return op_suspend(L, lt, sread_poll, sread_release, 0);
}

/* stream:close(): the rest of the body is not read; the transfer stops. */
static int stream_close_l(lua_State *L) {
    hstream *s = luaL_checkudata(L, 1, STREAM_MT);
    if (s->reader)
        return luaL_error(L, "stream:close: a task is reading this stream; abort it first");
    stream_close(s);
    return 0;
}

static int stream_gc(lua_State *L) {
    hstream *s = lua_touserdata(L, 1);
    stream_close(s);
    return 0;
}

static int stream_tostring(lua_State *L) {
    hstream *s = luaL_checkudata(L, 1, STREAM_MT);
    lua_pushfstring(L, "ms.http_stream (%s)", s->req ? "open" : "closed");
    return 1;
}

/* Pushes a stream handle that takes r; false (nothing pushed, r not
 * taken) when the agent may open no more handles, with why in err. */
static bool stream_push(lua_State *co, agent *a, ms_http_request *r, char *err, size_t errlen) {
    if (!ioh_room(a, err, errlen))
        return false;
    hstream *s = lua_newuserdata(co, sizeof *s); /* may raise: r is held */
    memset(s, 0, sizeof *s);
    if (luaL_newmetatable(co, STREAM_MT)) {
        static const luaL_Reg methods[] = {
            {"read", stream_read}, {"close", stream_close_l}, {NULL, NULL}};
        lua_createtable(co, 0, 2);
        luaL_register(co, NULL, methods);
        lua_setfield(co, -2, "__index");
        lua_pushcfunction(co, stream_gc);
        lua_setfield(co, -2, "__gc");
        lua_pushcfunction(co, stream_tostring);
        lua_setfield(co, -2, "__tostring");
        lua_pushliteral(co, "ms.http_stream");
        lua_setfield(co, -2, "__metatable");
    }
    lua_setmetatable(co, -2);
    if (!ioh_open(a, &s->io, &stream_kind, err, errlen))
        return false; /* cannot happen after ioh_room on the owner's thread */
    s->req = r;
    return true;
}

static ms_poll request_poll(ltask *lt, ms_cx *cx) {
    hreq_op *o = op_of(lt);
    int rc;
    ms_error e;
    if (ms_http_request_poll(o->req, cx, &rc, &e) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    lua_State *co = lt->co;
    ms_http_request *r = o->req;
    o->req = NULL;
    ioh_closed(&o->io);
    count_latency(ms_now_ns() - o->start_ns);
    hold_push(r, release_request); /* building the values may raise */
    if (rc != 0) {
        ms_http_failure f = ms_http_request_failure(r);
        count_outcome(0, f);
        const char *why = e.message;
        char agent_text[200];
        if (f == MS_HTTP_TOO_LARGE && o->limit_from_agent) {
            snprintf(agent_text, sizeof agent_text,
                     "the response body passed %zu bytes, the room left under agent %s's memory "
                     "limit (%zu bytes)", o->max_size, lt->a->name, lt->a->mem_limit);
            why = agent_text;
        }
        lt->nres = push_failure(co, o, rc, ms_http_failure_name(f), why);
        hold_pop(r);
        ms_http_request_free(r);
        unref_url(lt);
        return MS_POLL_READY;
    }
    int status = ms_http_request_status(r);
    size_t hlen, blen = 0;
    const char *hdr = ms_http_request_headers(r, &hlen);
    const char *body = o->stream ? NULL : ms_http_request_body(r, &blen);
    agent *a = lt->a;
    size_t used = atomic_load_explicit(&a->mem_used, memory_order_relaxed);
    if (!o->stream && a->mem_limit && used + blen + hlen > a->mem_limit) {
        count_outcome(0, MS_HTTP_TOO_LARGE);
        char text[200];
        snprintf(text, sizeof text,
                 "the response body (%zu bytes) does not fit under agent %s's memory limit "
                 "(%zu bytes, %zu in use)", blen, a->name, a->mem_limit, used);
        lt->nres = push_failure(co, o, MS_E_EXHAUSTED, "too_large", text);
        hold_pop(r);
        ms_http_request_free(r);
        unref_url(lt);
        return MS_POLL_READY;
    }
    if (o->stream) {
        char text[256];
        if (!stream_push(co, a, r, text, sizeof text)) {
            count_outcome(0, MS_HTTP_OTHER);
            lt->nres = push_failure(co, o, MS_E_EXHAUSTED, "other", text);
            hold_pop(r);
            ms_http_request_free(r);
            unref_url(lt);
            return MS_POLL_READY;
        }
        hold_pop(r); /* the userdata owns it now */
    }
    count_outcome(status, MS_HTTP_OK);
    lua_pushinteger(co, status);
    push_headers(co, hdr, hlen);
    if (o->stream) {
        lua_pushvalue(co, -3); /* status, headers, stream */
        lua_remove(co, -4);
    } else {
        lua_pushlstring(co, body, blen);
        hold_pop(r);
        ms_http_request_free(r);
    }
    unref_url(lt);
    lt->nres = 3;
    return MS_POLL_READY;
}

static void request_cancel(ltask *lt) {
    hreq_op *o = op_of(lt);
    if (o->req) {
        count(HCM_CANCELLED);
        ms_http_request_free(o->req); /* the driver takes it out of libcurl */
        o->req = NULL;
        ioh_closed(&o->io);
    }
    unref_url(lt);
}

/* ---- reading the options ---- */

static const char *const option_names[] = {
    "url", "method", "headers", "body", "timeout", "connect_timeout", "max_size",
    "redirects", "verify", "ca_file", "proxy", "stream", NULL,
};

static int opt_error(lua_State *L, const char *fmt, const char *field) {
    return luaL_error(L, fmt, field);
}

/* The raw value of field in the table at 1, pushed. */
static int raw_field(lua_State *L, const char *field) {
    lua_pushstring(L, field);
    lua_rawget(L, 1);
    return lua_type(L, -1);
}

static const char *opt_string(lua_State *L, const char *field, size_t *len, size_t max) {
    int t = raw_field(L, field);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (t != LUA_TSTRING)
        luaL_error(L, "ms.http.request: %s must be a string, not a %s", field, lua_typename(L, t));
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (max && (n == 0 || n > max || memchr(s, '\0', n)))
        luaL_error(L, "ms.http.request: %s must be 1 to %d bytes without NUL", field, (int)max);
    if (len)
        *len = n;
    lua_pop(L, 1); /* still anchored by the options table */
    return s;
}

static double opt_number(lua_State *L, const char *field, double def, double min, double max) {
    int t = raw_field(L, field);
    double v = def;
    if (t == LUA_TNUMBER) {
        v = lua_tonumber(L, -1);
        if (!(v >= min && v <= max))
            luaL_error(L, "ms.http.request: %s = %f is out of range (allowed %g..%g)", field, v, min,
                       max);
    } else if (t != LUA_TNIL) {
        luaL_error(L, "ms.http.request: %s must be a number, not a %s", field, lua_typename(L, t));
    }
    lua_pop(L, 1);
    return v;
}

static bool opt_bool(lua_State *L, const char *field, bool def) {
    int t = raw_field(L, field);
    bool v = def;
    if (t == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "ms.http.request: %s must be a boolean, not a %s", field, lua_typename(L, t));
    lua_pop(L, 1);
    return v;
}

static bool is_token(const char *s, size_t n) {
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c)) || c == 0)
            return false;
    }
    return true;
}

static void check_keys(lua_State *L) {
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        bool known = false;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            for (int i = 0; option_names[i] && !known; i++)
                known = strcmp(k, option_names[i]) == 0;
            if (!known)
                opt_error(L, "ms.http.request: unknown option '%s'", k);
        } else {
            luaL_error(L, "ms.http.request: option names are strings, not a %s",
                       lua_typename(L, lua_type(L, -1)));
        }
    }
}

/* The headers table as "Name: value" strings pushed on L (anchored
 * there), their pointers in lines. */
static size_t read_headers(lua_State *L, const char **lines) {
    int t = raw_field(L, "headers");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (t != LUA_TTABLE)
        luaL_error(L, "ms.http.request: headers must be a table of name = value, not a %s",
                   lua_typename(L, t));
    int tbl = lua_gettop(L);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "ms.http.request: header names must be strings, not a %s",
                       lua_typename(L, lua_type(L, -2)));
        size_t nl, vl;
        const char *name = lua_tolstring(L, -2, &nl);
        if (!is_token(name, nl) || nl > 256)
            luaL_error(L, "ms.http.request: header name '%s' is not a valid HTTP token", name);
        int vt = lua_type(L, -1);
        if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
            luaL_error(L, "ms.http.request: header %s must be a string or a number, not a %s",
                       name, lua_typename(L, vt));
        if (vt == LUA_TNUMBER) {
            lua_pushfstring(L, "%s", lua_tostring(L, -1)); /* converts a copy, not the key */
            lua_replace(L, -2);
        }
        const char *value = lua_tolstring(L, -1, &vl);
        for (size_t i = 0; i < vl; i++)
            if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
                luaL_error(L, "ms.http.request: header %s's value contains CR, LF or NUL", name);
        if (n == MAX_HEADERS)
            luaL_error(L, "ms.http.request: more than %d headers", MAX_HEADERS);
        luaL_checkstack(L, 4, "ms.http.request: headers");
        lua_pushfstring(L, "%s: %s", name, value);
        lines[n++] = lua_tostring(L, -1);
        lua_insert(L, tbl); /* keep it below the table and the iteration */
        tbl++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the headers table */
    return n;
}

/* ms.http.request{ url, method, headers, body, timeout, connect_timeout,
 * max_size, redirects, verify, ca_file, proxy, stream }
 *   -> status, headers, body | status, headers, stream | nil, err */
static int http_request(lua_State *L) {
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_argerror(L, 1, "ms.http.request takes a table of options { url = ... }");
    lua_settop(L, 1);
    check_keys(L);
    ms_http_opts o;
    memset(&o, 0, sizeof o);
    o.url = opt_string(L, "url", NULL, MAX_URL);
    if (!o.url)
        return luaL_error(L, "ms.http.request: url is required");
    size_t mlen = 3;
    o.method = opt_string(L, "method", &mlen, 20);
    if (o.method && !is_token(o.method, mlen))
        return luaL_error(L, "ms.http.request: method '%s' is not a valid HTTP token", o.method);
    if (!o.method)
        o.method = "GET";
    int t = raw_field(L, "body");
    if (t != LUA_TNIL && t != LUA_TSTRING)
        return luaL_error(L, "ms.http.request: body must be a string, not a %s",
                          lua_typename(L, t));
    if (t == LUA_TSTRING)
        o.body = lua_tolstring(L, -1, &o.body_len);
    lua_pop(L, 1);
    double timeout = opt_number(L, "timeout", DEFAULT_TIMEOUT, 0, 7 * 24 * 3600.0);
    double connect = opt_number(L, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, 0, 3600);
    int ms_given = raw_field(L, "max_size");
    lua_pop(L, 1);
    double max_size = opt_number(L, "max_size", DEFAULT_MAX_SIZE, 1, 1e15);
    o.max_redirects = (uint32_t)opt_number(L, "redirects", 0, 0, MAX_REDIRECTS);
    o.insecure = !opt_bool(L, "verify", true);
    o.ca_file = opt_string(L, "ca_file", NULL, 4096);
    if (o.ca_file && access(o.ca_file, R_OK) != 0)
        return luaL_error(L, "ms.http.request: ca_file '%s' cannot be read", o.ca_file);
    o.proxy = opt_string(L, "proxy", NULL, MAX_URL);
    o.stream = opt_bool(L, "stream", false);
    const char *lines[MAX_HEADERS];
    o.nheaders = read_headers(L, lines);
    o.headers = lines;
    o.timeout_ms = (uint64_t)(timeout * 1000.0 + 0.5);
    o.connect_timeout_ms = (uint64_t)(connect * 1000.0 + 0.5);
    if (connect > 0 && o.connect_timeout_ms == 0)
        o.connect_timeout_ms = 1;

    ltask *lt = ltask_current(L, "ms.http.request");
    agent *a = lt->a;
    /* The agent's memory limit bounds a whole body: it must fit in what
     * the agent has left (a stream's chunks are small). */
    bool from_agent = false;
    if (!o.stream && a->mem_limit) {
        size_t used = atomic_load_explicit(&a->mem_used, memory_order_relaxed);
        size_t room = a->mem_limit > used ? a->mem_limit - used : 1;
        if (ms_given == LUA_TNIL || max_size > (double)room) {
            max_size = (double)room;
            from_agent = true;
        }
    }
    o.max_size = o.stream && ms_given == LUA_TNIL ? 0 : (uint64_t)max_size;

    lua_pushstring(L, "url");
    lua_rawget(L, 1);
    int url_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* may raise: before the request */
    count(HCM_REQUESTS);
    char limit[256];
    if (!ioh_room(a, limit, sizeof limit)) {
        hreq_op *op = op_of(lt);
        memset(op, 0, sizeof *op);
        op->url_ref = url_ref;
        snprintf(op->method, sizeof op->method, "%s", o.method);
        count(HCM_FAILED_OTHER);
        int n = push_failure(L, op, MS_E_EXHAUSTED, "limit", limit);
        luaL_unref(L, LUA_REGISTRYINDEX, url_ref);
        return n;
    }
    ms_http_request *r;
    ms_error e;
    int rc = ms_http_request_start(a->h->rt, &o, &r, &e);
    hreq_op *op = op_of(lt);
    memset(op, 0, sizeof *op);
    op->url_ref = url_ref;
    snprintf(op->method, sizeof op->method, "%s", o.method);
    if (rc != 0) {
        count(HCM_FAILED_OTHER);
        int n = push_failure(L, op, rc, rc == MS_E_SHUTTING_DOWN ? "shutdown" : "other", e.message);
        luaL_unref(L, LUA_REGISTRYINDEX, url_ref);
        return n;
    }
    op->req = r;
    ioh_open(a, &op->io, &request_io_kind, limit, sizeof limit); /* room was checked */
    op->start_ns = ms_now_ns();
    op->max_size = (size_t)o.max_size;
    op->stream = o.stream;
    op->limit_from_agent = from_agent;
    lt->op.kind = &request_kind;
    return op_suspend(L, lt, request_poll, request_cancel, 0);
}

static int websocket_unavailable(lua_State *L) {
    lua_pushvalue(L, lua_upvalueindex(1));
    return lua_error(L);
}

void lms_http_client_register(lua_State *L) {
    lua_pushcfunction(L, http_request);
    lua_setfield(L, -2, "request");
    /* The WebSocket client: framing in C (lms_http_wsc.c), the socket and
     * the handshake in Lua (lua/ms/websocket.lua), whose connect must be
     * a Lua function: it waits, and a wait cannot cross a C call. */
    lms_http_wsc_register(L);
    lms_tls_client_register(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ms.websocket");
    if (lua_pcall(L, 1, 1, 0) == 0) {
        lua_getfield(L, -1, "connect");
        lua_setfield(L, -3, "websocket");
        lua_pop(L, 1);
        return;
    }
    /* Not found (plain LuaJIT without the ms Lua directory on its
     * package.path): ms.http.request still works; websocket says why not. */
    lua_pushcclosure(L, websocket_unavailable, 1);
    lua_setfield(L, -2, "websocket");
}
