/*
 * facts.h - the host's descriptor tables: every field a profile may set,
 * and the host's own metrics.
 *
 * One list per fact.  libms describes its configuration fields
 * (ms_config_field_at) and its metrics (ms_metric_descs); facts.c adds
 * what the host alone knows - its own profile fields (limits of agents,
 * the metrics endpoint and file, the console, the tuner) and its per-agent
 * metrics - and puts both together in the order users see them.  The
 * profile checker (lua/ms/profile.lua, through ms._profile_fields), live
 * tuning (tune.c, ms.tune), the host's settings (host.c, ms.metrics()),
 * ms-host's start-up, its metrics collector and endpoint (/metrics,
 * /metrics.json), and the checks that keep the docs in step
 * (spec/facts_spec.lua, through ms._metric_descs) all walk these tables
 * instead of keeping lists of their own.
 */
#ifndef MS_AGENTS_FACTS_H
#define MS_AGENTS_FACTS_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ms.h"

/* ---- profile fields ---- */

typedef enum pf_kind {
    PF_COUNT,    /* a whole number */
    PF_DURATION, /* seconds */
    PF_SIZE,     /* bytes */
    PF_BOOL,
    PF_STRING,
    PF_LISTEN,   /* "host:port" or false */
    PF_PATH      /* a path or false */
} pf_kind;

typedef struct profile_field {
    const char *name;          /* as a profile names it (durations without _ms) */
    pf_kind kind;
    double nonzero_min;        /* when not 0: the least value other than 0 */
    double min, max;           /* allowed, inclusive, in seconds or bytes;
                                  PF_PATH: max is the longest path in bytes */
    double def;                /* the default: a number, or 0/1 for PF_BOOL;
                                  false for PF_LISTEN and PF_PATH */
    const char *def_text;      /* PF_STRING: the default; else NULL */
    bool runtime;              /* libms's field (ms_config_set takes it by name) */
    bool live;                 /* ms.tune and SIGHUP may change it */
    bool relative_to_profile;  /* PF_PATH: relative to the profile's directory */
    bool must_exist;           /* PF_PATH: must name a readable file */
    const char *zero;          /* what 0 means, when it means something special */
    const char *help;          /* one line */
} profile_field;

/* Every profile field in the order users see them (profile.describe,
 * ms.tune's order of applying): the description, libms's settable fields
 * in ms_config's order, then the host's.  Field i into *out; false past
 * the end. */
bool profile_field_at(size_t i, profile_field *out);
/* The field a profile calls name; false for none. */
bool profile_field_find(const char *name, profile_field *out);

/* ---- the host's metrics ---- */

/* The per-agent metrics, indexing agent_metric_descs and the values an
 * exporter copies out of the registry. */
typedef enum agent_metric {
    AM_MAILBOX,
    AM_RECEIVED,
    AM_MEMORY,
    AM_MEMORY_LIMIT,
    AM_POLLS,
    AM_RESTARTS,
    AM_CPU,
    AM_IO_HANDLES,
    AM_COUNT
} agent_metric;

typedef struct host_metric_desc {
    const char *key;           /* the member in /metrics.json's "agents" entries */
    const char *prom;          /* the Prometheus family */
    ms_metric_type type;
    const char *help;          /* one line, ending with a full stop */
    ms_metric_unit unit;       /* a time: stored in ns, shown in seconds */
} host_metric_desc;

/* Indexed by agent_metric; labelled {agent="NAME",id="N"} in /metrics. */
extern const host_metric_desc agent_metric_descs[AM_COUNT];
/* The number of agents in the registry (no labels). */
extern const host_metric_desc agents_metric_desc;

/* ms.fs's counters (fsjob.h), host-wide, no labels: ms.metrics().files
 * by key, /metrics by prom. */
typedef enum file_metric {
    FM_OPEN,
    FM_OPENED,
    FM_BYTES_READ,
    FM_BYTES_WRITTEN,
    FM_JOBS,
    FM_DISCARDED,
    FM_COUNT
} file_metric;

extern const host_metric_desc file_metric_descs[FM_COUNT];
/* The counters' values now, indexed by file_metric. */
void file_metric_values(uint64_t out[FM_COUNT]);
/* The host's I/O figures (sockets, processes; iohandle.c, lms_net.c),
 * indexing io_metric_descs and host.io. */
typedef enum io_metric {
    IM_SOCKETS_OPEN,
    IM_PROCESSES_OPEN,
    IM_BYTES_READ,
    IM_BYTES_WRITTEN,
    IM_ACCEPTED,
    IM_CONNECT_FAILURES,
    IM_PROCESSES_SPAWNED,
    IM_REFUSED,
    IM_HTTP_STREAMS_OPEN,
    IM_HTTP_REQUESTS_OPEN,
    IM_COUNT
} io_metric;

/* Indexed by io_metric; no labels in /metrics, `io` in ms.metrics() and
 * /metrics.json. */
extern const host_metric_desc io_metric_descs[IM_COUNT];

/* ms.http.serve's figures, and the WebSocket client's (HTTP_M_WSC_*),
 * host-wide (lms_http_server.c keeps them: http_server_stats), indexing
 * http_metric_descs; no labels in /metrics,
 * `http` in ms.metrics() and /metrics.json. */
typedef enum http_metric {
    HTTP_M_REQUESTS_1XX,
    HTTP_M_REQUESTS_2XX,
    HTTP_M_REQUESTS_3XX,
    HTTP_M_REQUESTS_4XX,
    HTTP_M_REQUESTS_5XX,
    HTTP_M_CONNECTIONS_OPEN,
    HTTP_M_CONNECTIONS_ACCEPTED,
    HTTP_M_REJECTED_400,
    HTTP_M_REJECTED_408,
    HTTP_M_REJECTED_413,
    HTTP_M_REJECTED_431,
    HTTP_M_REJECTED_503,
    HTTP_M_HANDLER_ERRORS,
    HTTP_M_HANDLER_TIMEOUTS,
    HTTP_M_CONTINUES,
    HTTP_M_LATE_ANSWERS,
    HTTP_M_TLS_HANDSHAKE_FAILURES,
    HTTP_M_WS_OPEN,
    HTTP_M_WS_ACCEPTED,
    HTTP_M_WS_REJECTED,
    HTTP_M_WS_MESSAGES_IN,
    HTTP_M_WS_MESSAGES_OUT,
    HTTP_M_WS_CLOSED_NORMAL,
    HTTP_M_WS_CLOSED_PROTOCOL,
    HTTP_M_WS_CLOSED_UTF8,
    HTTP_M_WS_CLOSED_TOO_BIG,
    HTTP_M_WS_CLOSED_ABNORMAL,
    HTTP_M_WS_CLOSED_OTHER,
    HTTP_M_WS_PING_TIMEOUTS,
    HTTP_M_WSC_TLS_FAILURES,
    HTTP_M_WSC_PING_TIMEOUTS,
    HTTP_M_COUNT
} http_metric;

extern const host_metric_desc http_metric_descs[HTTP_M_COUNT];
/* The requests' latency histogram (its buckets: lms_http_server.h). */
extern const host_metric_desc http_latency_metric_desc;

/* The JIT and its machine-code window (agent_jit.c, jitwin.c), host-wide,
 * no labels: ms.metrics().jit by key.  Not yet rendered by /metrics
 * (ms-host/metrics_http.c; the facts spec leaves scope "jit" out there). */
typedef enum jit_metric {
    JM_STATES,
    JM_WINDOW_AREAS,
    JM_WINDOW_FREE,
    JM_WINDOW_RESERVE,
    JM_MAPPINGS,
    JM_MAX_MAPPINGS,
    JM_GRANTED,
    JM_REFUSED,
    JM_LIMITED,
    JM_FALLBACKS,
    JM_MEASUREMENTS,
    JM_MEASURE_TIME,
    JM_COUNT
} jit_metric;

extern const host_metric_desc jit_metric_descs[JM_COUNT];
/* The values now, indexed by jit_metric (h may be NULL: no states). */
struct host;
void jit_metric_values(struct host *h, uint64_t out[JM_COUNT]);

/* The HTTP client's figures (lms_http_client.c), host-wide, no labels:
 * ms.metrics().http_client by key, /metrics by prom.  The responses by status
 * class and the failures by what failed are counters the client counts
 * when a request ends; the connections come from libms
 * (ms_http_client_connections). */
typedef enum http_client_metric {
    HCM_REQUESTS,
    HCM_RESPONSES_1XX,
    HCM_RESPONSES_2XX,
    HCM_RESPONSES_3XX,
    HCM_RESPONSES_4XX,
    HCM_RESPONSES_5XX,
    HCM_FAILED_DNS,
    HCM_FAILED_CONNECT,
    HCM_FAILED_TLS,
    HCM_FAILED_TIMEOUT,
    HCM_FAILED_TOO_LARGE,
    HCM_FAILED_PROTOCOL,
    HCM_FAILED_RECEIVE,
    HCM_FAILED_OTHER,
    HCM_CANCELLED,
    HCM_CONNECTIONS_OPEN,
    HCM_CONNECTIONS_OPENED,
    HCM_COUNT
} http_client_metric;

extern const host_metric_desc http_client_metric_descs[HCM_COUNT];

/* The request latency histogram: from ms.http.request to its answer
 * (response or failure), in seconds; bucket i counts requests that took
 * at most http_client_latency_bounds[i] (the last, +Inf, all). */
#define HTTP_CLIENT_LATENCY_BUCKETS 14
extern const double http_client_latency_bounds[HTTP_CLIENT_LATENCY_BUCKETS];
extern const host_metric_desc http_client_latency_desc;

/* Sets ms._profile_fields and ms._metric_descs in the table at the top of
 * L (the ms module). */
void facts_register(lua_State *L);

#endif
