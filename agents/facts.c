/*
 * facts.c - the host's descriptor tables (see facts.h): the profile fields
 * only the host has, libms's fields seen as a profile sees them, the
 * host's metrics, and their Lua view for lua/ms/profile.lua and the specs
 * (with the working directory, which profile.lua names files by).
 */
#include <limits.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <lauxlib.h>

#include "facts.h"
#include "fsjob.h"
#include "host.h"
#include "jitwin.h"

#define KIB 1024.0
#define GIB (KIB * KIB * KIB)
#define DAY 86400.0

/* The longest path the console's socket may have (sun_path keeps a NUL). */
#define CONSOLE_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* The host's own fields, in the order users see them, with libms's where
 * the row without a name is.  The one place where their ranges, defaults
 * and liveness are written; how a live one is applied is tune.c's.
 * Defaults not given are 0, false or "". */
static const profile_field host_fields[] = {
    {.name = "description", .kind = PF_STRING, .def_text = "",
     .help = "what the profile is for, one line (every profile file must set it)"},
    {.name = NULL}, /* libms's fields, in ms_config's order */
    {.name = "metrics_listen", .kind = PF_LISTEN,
     .help = "host:port of the metrics HTTP endpoint, or false for none"},
    {.name = "metrics_file", .kind = PF_PATH, .max = PATH_MAX - 1,
     .help = "file to append a metrics snapshot to, one JSON line every metrics_interval "
             "and a final one at exit, or false for none"},
    {.name = "metrics_interval", .kind = PF_DURATION, .min = 0.01, .max = DAY, .def = 1,
     .help = "time between the metrics collector's snapshots (with metrics_file)"},
    {.name = "console", .kind = PF_PATH, .max = CONSOLE_PATH_MAX,
     .help = "Unix socket path for `ms-host attach`, or false for none"},
    {.name = "tasks_dump_file", .kind = PF_PATH, .max = PATH_MAX - 1,
     .help = "file SIGUSR1 appends the live task dump to, or false for stderr"},
    {.name = "tuner", .kind = PF_PATH, .max = PATH_MAX - 1, .relative_to_profile = true,
     .must_exist = true, .help = "Lua tuner script run beside the host, or false for none"},
    {.name = "agent_memory_limit", .kind = PF_SIZE, .max = 1024 * GIB, .live = true,
     .nonzero_min = 16 * KIB, /* what an agent's state needs to start */
     .zero = "none", .help = "default Lua heap limit of an agent, bytes; 0 = none"},
    {.name = "jit_agent_limit", .kind = PF_COUNT, .max = 1000000, .def = 1000000, .live = true,
     .zero = "JIT off for every agent",
     .help = "upper bound on agents with the JIT on at once; within it, new agents get the "
             "JIT while the machine-code window has room"},
    {.name = "mailbox_limit", .kind = PF_COUNT, .max = 100000000, .live = true,
     .zero = "unbounded", .help = "messages an agent's mailbox may hold; 0 = unbounded"},
    {.name = "agent_io_limit", .kind = PF_COUNT, .max = 10000000, .def = 4096, .live = true,
     .zero = "none",
     .help = "OS handles (files, sockets, listeners, processes) one agent may hold open; 0 = "
             "none"},
    {.name = "host_io_limit", .kind = PF_COUNT, .max = 100000000, .live = true,
     .zero = "none beyond the OS's descriptor limit",
     .help = "OS handles all agents together may hold open; 0 = none"},
    {.name = "cluster", .kind = PF_STRING, .def_text = "",
     .help = "NATS URL of the cluster to join at start (nats://host:port), or \"\" for none "
             "(docs/cluster.md)"},
    {.name = "cluster_name", .kind = PF_STRING, .def_text = "",
     .help = "this host's name in the cluster (letters, digits, . _ -; at most 47 bytes), "
             "which supervisors' child specs may name; \"\" for none"},
    {.name = "cluster_heartbeat", .kind = PF_DURATION, .min = 0.01, .max = 10, .def = 0.1,
     .help = "time between this host's heartbeats to the cluster"},
    {.name = "cluster_loss_after", .kind = PF_DURATION, .min = 0.05, .max = 600, .def = 3,
     .help = "silence after which another host is declared lost (its agents exit "
             "\"noconnection\"), and after which a host cut off from the broker fences itself"},
    {.name = "cluster_broker_grace", .kind = PF_DURATION, .min = 0, .max = 600, .def = 5,
     .help = "after this host reconnects to the broker, nobody is declared lost for this long"},
    {.name = "runaway_stop_after", .kind = PF_COUNT, .max = 1000000, .live = true,
     .zero = "report only",
     .help = "stop an agent at its Nth stall past stall_threshold (exit reason runaway); "
             "0 = report only; an agent's own runaway option overrides it"},
};

#define NHOST (sizeof host_fields / sizeof host_fields[0])

/* libms's field d as a profile sees it; false for the ones a profile
 * cannot set (the thread name, the hooks). */
static bool from_libms(const ms_config_field_desc *d, profile_field *out) {
    double scale = 1;
    pf_kind kind;
    switch (d->kind) {
    case MS_CONFIG_COUNT: kind = PF_COUNT; break;
    case MS_CONFIG_DURATION: kind = PF_DURATION; scale = 1000; break;
    case MS_CONFIG_SIZE: kind = PF_SIZE; break;
    case MS_CONFIG_BOOL: kind = PF_BOOL; break;
    default: return false;
    }
    *out = (profile_field){
        .name = d->alias ? d->alias : d->name,
        .kind = kind,
        .min = kind == PF_BOOL ? 0 : (double)d->min / scale,
        .max = kind == PF_BOOL ? 0 : (double)d->max / scale,
        .def = (double)d->default_value / scale,
        .runtime = true,
        .live = d->live,
        .zero = d->zero,
        .help = d->help,
    };
    return true;
}

bool profile_field_at(size_t i, profile_field *out) {
    ms_config_field_desc d;
    for (size_t k = 0; k < NHOST; k++) {
        if (host_fields[k].name) {
            if (i-- == 0) {
                *out = host_fields[k];
                return true;
            }
            continue;
        }
        for (size_t j = 0; ms_config_field_at(j, &d) == 0; j++) {
            profile_field f;
            if (!from_libms(&d, &f))
                continue;
            if (i-- == 0) {
                *out = f;
                return true;
            }
        }
    }
    return false;
}

bool profile_field_find(const char *name, profile_field *out) {
    profile_field f;
    for (size_t i = 0; name && profile_field_at(i, &f); i++) {
        if (strcmp(f.name, name) == 0) {
            *out = f;
            return true;
        }
    }
    return false;
}

/* ---- the host's metrics ---- */

const host_metric_desc agent_metric_descs[AM_COUNT] = {
    [AM_MAILBOX] = {"mailbox", "ms_agent_mailbox_depth", MS_METRIC_GAUGE,
                    "Messages waiting in the agent's mailbox."},
    [AM_RECEIVED] = {"received", "ms_agent_messages_received_total", MS_METRIC_COUNTER,
                     "Messages the agent has received."},
    [AM_MEMORY] = {"memory", "ms_agent_memory_bytes", MS_METRIC_GAUGE,
                   "Bytes of the agent's Lua heap."},
    [AM_MEMORY_LIMIT] = {"memory_limit", "ms_agent_memory_limit_bytes", MS_METRIC_GAUGE,
                         "The agent's Lua heap limit, 0 if none."},
    [AM_POLLS] = {"polls", "ms_agent_polls_total", MS_METRIC_COUNTER,
                  "Times the agent's task was polled."},
    [AM_RESTARTS] = {"restarts", "ms_agent_restarts", MS_METRIC_GAUGE,
                     "Times a supervisor restarted this agent's child slot."},
    [AM_CPU] = {"cpu", "ms_agent_cpu_seconds_total", MS_METRIC_COUNTER,
                "Time the agent's polls took on the workers, summed.", MS_UNIT_NS},
    [AM_IO_HANDLES] = {"io_handles", "ms_agent_io_handles", MS_METRIC_GAUGE,
                       "OS handles (sockets, listeners, processes) the agent holds open."},
};

const host_metric_desc io_metric_descs[IM_COUNT] = {
    [IM_SOCKETS_OPEN] = {"sockets_open", "ms_io_sockets_open", MS_METRIC_GAUGE,
                         "Sockets and listeners agents hold open (or in flight between them)."},
    [IM_PROCESSES_OPEN] = {"processes_open", "ms_io_processes_open", MS_METRIC_GAUGE,
                           "Subprocess handles agents hold (running or not yet waited for)."},
    [IM_BYTES_READ] = {"bytes_read", "ms_io_read_bytes_total", MS_METRIC_COUNTER,
                       "Bytes agents read from sockets and pipes."},
    [IM_BYTES_WRITTEN] = {"bytes_written", "ms_io_written_bytes_total", MS_METRIC_COUNTER,
                          "Bytes agents queued for writing to sockets and pipes."},
    [IM_ACCEPTED] = {"accepted", "ms_io_accepted_total", MS_METRIC_COUNTER,
                     "Connections agents accepted."},
    [IM_CONNECT_FAILURES] = {"connect_failures", "ms_io_connect_failures_total",
                             MS_METRIC_COUNTER,
                             "Connects that failed (refused, unknown host, timed out)."},
    [IM_PROCESSES_SPAWNED] = {"processes_spawned", "ms_io_processes_spawned_total",
                              MS_METRIC_COUNTER, "Subprocesses agents started."},
    [IM_REFUSED] = {"limit_refusals", "ms_io_limit_refusals_total", MS_METRIC_COUNTER,
                    "Handles refused by agent_io_limit or host_io_limit."},
    [IM_HTTP_STREAMS_OPEN] = {"http_streams_open", "ms_io_http_streams_open", MS_METRIC_GAUGE,
                              "HTTP response streams agents hold open (ms.http.request "
                              "with stream = true)."},
    [IM_HTTP_REQUESTS_OPEN] = {"http_requests_open", "ms_io_http_requests_open",
                               MS_METRIC_GAUGE,
                               "HTTP requests agents are waiting on (ms.http.request)."},
};

const host_metric_desc http_metric_descs[HTTP_M_COUNT] = {
    [HTTP_M_REQUESTS_1XX] = {"requests_1xx", "ms_http_requests_1xx_total", MS_METRIC_COUNTER,
                             "HTTP requests answered with a 1xx status by ms.http.serve."},
    [HTTP_M_REQUESTS_2XX] = {"requests_2xx", "ms_http_requests_2xx_total", MS_METRIC_COUNTER,
                             "HTTP requests answered with a 2xx status by ms.http.serve."},
    [HTTP_M_REQUESTS_3XX] = {"requests_3xx", "ms_http_requests_3xx_total", MS_METRIC_COUNTER,
                             "HTTP requests answered with a 3xx status by ms.http.serve."},
    [HTTP_M_REQUESTS_4XX] = {"requests_4xx", "ms_http_requests_4xx_total", MS_METRIC_COUNTER,
                             "HTTP requests answered with a 4xx status by ms.http.serve."},
    [HTTP_M_REQUESTS_5XX] = {"requests_5xx", "ms_http_requests_5xx_total", MS_METRIC_COUNTER,
                             "HTTP requests answered with a 5xx status by ms.http.serve."},
    [HTTP_M_CONNECTIONS_OPEN] = {"connections_open", "ms_http_connections_open", MS_METRIC_GAUGE,
                                 "HTTP connections ms.http.serve holds open."},
    [HTTP_M_CONNECTIONS_ACCEPTED] = {"connections_accepted", "ms_http_connections_accepted_total",
                                     MS_METRIC_COUNTER,
                                     "HTTP connections ms.http.serve accepted."},
    [HTTP_M_REJECTED_400] = {"rejected_400", "ms_http_rejected_400_total", MS_METRIC_COUNTER,
                             "Malformed HTTP requests refused with 400."},
    [HTTP_M_REJECTED_408] = {"rejected_408", "ms_http_rejected_408_total", MS_METRIC_COUNTER,
                             "HTTP requests refused with 408: headers or body too slow."},
    [HTTP_M_REJECTED_413] = {"rejected_413", "ms_http_rejected_413_total", MS_METRIC_COUNTER,
                             "HTTP requests refused with 413: a body over max_body."},
    [HTTP_M_REJECTED_431] = {"rejected_431", "ms_http_rejected_431_total", MS_METRIC_COUNTER,
                             "HTTP requests refused with 431: headers over their limits."},
    [HTTP_M_REJECTED_503] = {"rejected_503", "ms_http_rejected_503_total", MS_METRIC_COUNTER,
                             "HTTP requests refused with 503: the queue was full."},
    [HTTP_M_HANDLER_ERRORS] = {"handler_errors", "ms_http_handler_errors_total",
                               MS_METRIC_COUNTER,
                               "HTTP requests answered 500 for their handler (it raised, "
                               "returned garbage or its agent ended)."},
    [HTTP_M_HANDLER_TIMEOUTS] = {"handler_timeouts", "ms_http_handler_timeouts_total",
                                 MS_METRIC_COUNTER,
                                 "HTTP requests answered 504: no answer within handler_timeout."},
    [HTTP_M_CONTINUES] = {"continues", "ms_http_continues_total", MS_METRIC_COUNTER,
                          "Interim 100 Continue answers sent to requests with "
                          "Expect: 100-continue."},
    [HTTP_M_LATE_ANSWERS] = {"late_answers", "ms_http_late_answers_total", MS_METRIC_COUNTER,
                             "Handler answers dropped because their request had been answered "
                             "504 (handler_timeout) already."},
    [HTTP_M_TLS_HANDSHAKE_FAILURES] = {"tls_handshake_failures",
                                       "ms_http_tls_handshake_failures_total", MS_METRIC_COUNTER,
                                       "TLS handshakes ms.http.serve's connections failed."},
    [HTTP_M_WS_OPEN] = {"websockets_open", "ms_http_websockets_open", MS_METRIC_GAUGE,
                        "WebSocket connections ms.http.serve holds open."},
    [HTTP_M_WS_ACCEPTED] = {"websockets_accepted", "ms_http_websockets_accepted_total",
                            MS_METRIC_COUNTER, "WebSocket upgrades ms.http.serve accepted."},
    [HTTP_M_WS_REJECTED] = {"websocket_upgrades_rejected",
                            "ms_http_websocket_upgrades_rejected_total", MS_METRIC_COUNTER,
                            "WebSocket upgrades refused with 400 or 426 (bad handshake)."},
    [HTTP_M_WS_MESSAGES_IN] = {"websocket_messages_in", "ms_http_websocket_messages_in_total",
                               MS_METRIC_COUNTER,
                               "WebSocket messages (text, binary, pong) received by "
                               "ms.http.serve."},
    [HTTP_M_WS_MESSAGES_OUT] = {"websocket_messages_out",
                                "ms_http_websocket_messages_out_total", MS_METRIC_COUNTER,
                                "WebSocket messages (text, binary) ms.http.serve sent."},
    [HTTP_M_WS_CLOSED_NORMAL] = {"websocket_closed_normal",
                                 "ms_http_websocket_closed_normal_total", MS_METRIC_COUNTER,
                                 "WebSocket connections closed with 1000, 1001 or no code."},
    [HTTP_M_WS_CLOSED_PROTOCOL] = {"websocket_closed_protocol_error",
                                   "ms_http_websocket_closed_protocol_error_total",
                                   MS_METRIC_COUNTER,
                                   "WebSocket connections closed with 1002 (protocol error)."},
    [HTTP_M_WS_CLOSED_UTF8] = {"websocket_closed_invalid_utf8",
                               "ms_http_websocket_closed_invalid_utf8_total", MS_METRIC_COUNTER,
                               "WebSocket connections closed with 1007 (text not UTF-8)."},
    [HTTP_M_WS_CLOSED_TOO_BIG] = {"websocket_closed_too_big",
                                  "ms_http_websocket_closed_too_big_total", MS_METRIC_COUNTER,
                                  "WebSocket connections closed with 1009 (past max_message)."},
    [HTTP_M_WS_CLOSED_ABNORMAL] = {"websocket_closed_abnormal",
                                   "ms_http_websocket_closed_abnormal_total", MS_METRIC_COUNTER,
                                   "WebSocket connections that ended without a close "
                                   "handshake (1006: the peer vanished, a timeout)."},
    [HTTP_M_WS_CLOSED_OTHER] = {"websocket_closed_other", "ms_http_websocket_closed_other_total",
                                MS_METRIC_COUNTER,
                                "WebSocket connections closed with another code (1011 for a "
                                "handler that failed, the application's own)."},
    [HTTP_M_WS_PING_TIMEOUTS] = {"websocket_ping_timeouts",
                                 "ms_http_websocket_ping_timeouts_total", MS_METRIC_COUNTER,
                                 "WebSocket connections ms.http.serve ended because the peer "
                                 "did not answer a keepalive ping within ping_timeout."},
    [HTTP_M_WSC_PING_TIMEOUTS] = {"websocket_client_ping_timeouts",
                                  "ms_http_websocket_client_ping_timeouts_total",
                                  MS_METRIC_COUNTER,
                                  "Connections of ms.http.websocket ended because the server "
                                  "did not answer a keepalive ping within ping_timeout."},
    [HTTP_M_WSC_TLS_FAILURES] = {"websocket_client_tls_failures",
                                 "ms_http_websocket_client_tls_failures_total", MS_METRIC_COUNTER,
                                 "wss:// connections of ms.http.websocket whose TLS handshake "
                                 "did not complete (certificate refused, peer gone, garbage, "
                                 "timeout, agent stopped)."},
};

const host_metric_desc http_latency_metric_desc = {
    "latency", "ms_http_request_duration_seconds", MS_METRIC_HISTOGRAM,
    "Time from an HTTP request's first byte to its answer queued for writing.", MS_UNIT_NS};

const host_metric_desc agents_metric_desc = {"agents", "ms_agents", MS_METRIC_GAUGE,
                                             "Agents in the host's registry.", MS_UNIT_NONE};

const host_metric_desc file_metric_descs[FM_COUNT] = {
    [FM_OPEN] = {"open", "ms_files_open", MS_METRIC_GAUGE,
                 "File handles open through ms.fs, all agents."},
    [FM_OPENED] = {"opened", "ms_files_opened_total", MS_METRIC_COUNTER,
                   "File handles opened through ms.fs since start."},
    [FM_BYTES_READ] = {"bytes_read", "ms_file_read_bytes_total", MS_METRIC_COUNTER,
                       "Bytes read from files by ms.fs."},
    [FM_BYTES_WRITTEN] = {"bytes_written", "ms_file_written_bytes_total", MS_METRIC_COUNTER,
                          "Bytes written to files by ms.fs."},
    [FM_JOBS] = {"jobs", "ms_file_jobs_total", MS_METRIC_COUNTER,
                 "File calls of ms.fs run on the blocking pool."},
    [FM_DISCARDED] = {"discarded", "ms_file_discarded_total", MS_METRIC_COUNTER,
                      "File call results thrown away because their task was stopped."},
};

void file_metric_values(uint64_t out[FM_COUNT]) {
    fs_counters c;
    fsjob_counters(&c);
    out[FM_OPEN] = c.open;
    out[FM_OPENED] = c.opened;
    out[FM_BYTES_READ] = c.bytes_read;
    out[FM_BYTES_WRITTEN] = c.bytes_written;
    out[FM_JOBS] = c.jobs;
    out[FM_DISCARDED] = c.discarded;
}

const host_metric_desc jit_metric_descs[JM_COUNT] = {
    [JM_STATES] = {"states", "ms_jit_states", MS_METRIC_GAUGE,
                   "Agent states with the JIT on."},
    [JM_WINDOW_AREAS] = {"window_areas", "ms_jit_window_areas", MS_METRIC_GAUGE,
                         "64 KB machine-code areas within LuaJIT's jump range of its VM."},
    [JM_WINDOW_FREE] = {"window_free_areas", "ms_jit_window_free_areas", MS_METRIC_GAUGE,
                        "Of those, the areas free at the last measurement."},
    [JM_WINDOW_RESERVE] = {"window_reserve_areas", "ms_jit_window_reserve_areas",
                           MS_METRIC_GAUGE,
                           "Areas kept free: no state gets the JIT when only these are left."},
    [JM_MAPPINGS] = {"mappings", "ms_jit_process_mappings", MS_METRIC_GAUGE,
                     "Memory mappings of the process at the last measurement."},
    [JM_MAX_MAPPINGS] = {"max_mappings", "ms_jit_process_mappings_limit", MS_METRIC_GAUGE,
                         "The kernel's limit on them (vm.max_map_count)."},
    [JM_GRANTED] = {"granted", "ms_jit_granted_total", MS_METRIC_COUNTER,
                    "Agent states given the JIT."},
    [JM_REFUSED] = {"refused", "ms_jit_window_refusals_total", MS_METRIC_COUNTER,
                    "Agent states started with the JIT off because the window had no room."},
    [JM_LIMITED] = {"limited", "ms_jit_limit_refusals_total", MS_METRIC_COUNTER,
                    "Agent states started with the JIT off because of jit_agent_limit."},
    [JM_FALLBACKS] = {"fallbacks", "ms_jit_fallbacks_total", MS_METRIC_COUNTER,
                      "Agent states switched to the interpreter because LuaJIT could not "
                      "allocate machine code for them."},
    [JM_MEASUREMENTS] = {"measurements", "ms_jit_window_measurements_total",
                         MS_METRIC_COUNTER, "Times the window was measured."},
    [JM_MEASURE_TIME] = {"measure_time", "ms_jit_window_measure_duration_seconds",
                         MS_METRIC_GAUGE, "What the last measurement of the window took.",
                         MS_UNIT_NS},
};

void jit_metric_values(struct host *h, uint64_t out[JM_COUNT]) {
    jitwin_stats w;
    jitwin_get_stats(&w);
    out[JM_STATES] = h ? atomic_load_explicit(&h->jit_agents, memory_order_relaxed) : 0;
    out[JM_WINDOW_AREAS] = w.window_areas;
    out[JM_WINDOW_FREE] = w.free_areas;
    out[JM_WINDOW_RESERVE] = w.reserve_areas;
    out[JM_MAPPINGS] = w.mappings;
    out[JM_MAX_MAPPINGS] = w.max_mappings;
    out[JM_GRANTED] = w.granted;
    out[JM_REFUSED] = w.refused;
    out[JM_LIMITED] = h ? atomic_load_explicit(&h->jit_limited, memory_order_relaxed) : 0;
    out[JM_FALLBACKS] = w.fallbacks;
    out[JM_MEASUREMENTS] = w.measurements;
    out[JM_MEASURE_TIME] = w.measure_ns;
}

/* ---- the Lua view ---- */

static const char *pf_kind_name(pf_kind k) {
    static const char *const names[] = {
        [PF_COUNT] = "count", [PF_DURATION] = "duration", [PF_SIZE] = "size",
        [PF_BOOL] = "bool",   [PF_STRING] = "string",     [PF_LISTEN] = "listen",
        [PF_PATH] = "path_or_false",
    };
    return names[k];
}

static void set_str(lua_State *L, const char *k, const char *v) {
    if (!v)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_true(lua_State *L, const char *k, bool v) {
    if (!v)
        return;
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, k);
}

/* ms._profile_fields() -> { { name, kind, min, max, nonzero_min, default,
 * config, live, zero, doc, relative_to_profile, must_exist }, ... } in
 * profile order:
 * what lua/ms/profile.lua builds its checker from.  min and max only where
 * they apply; the flags only when true. */
static int l_profile_fields(lua_State *L) {
    lua_newtable(L);
    profile_field f;
    for (size_t i = 0; profile_field_at(i, &f); i++) {
        lua_createtable(L, 0, 10);
        set_str(L, "name", f.name);
        set_str(L, "kind", pf_kind_name(f.kind));
        if (f.kind == PF_COUNT || f.kind == PF_DURATION || f.kind == PF_SIZE) {
            set_num(L, "min", f.min);
            set_num(L, "max", f.max);
            if (f.nonzero_min > 0)
                set_num(L, "nonzero_min", f.nonzero_min);
        } else if (f.kind == PF_PATH) {
            set_num(L, "max", f.max);
        }
        switch (f.kind) {
        case PF_COUNT:
        case PF_DURATION:
        case PF_SIZE:
            lua_pushnumber(L, f.def);
            break;
        case PF_BOOL:
            lua_pushboolean(L, f.def != 0);
            break;
        case PF_STRING:
            lua_pushstring(L, f.def_text ? f.def_text : "");
            break;
        default:
            lua_pushboolean(L, 0);
            break;
        }
        lua_setfield(L, -2, "default");
        set_true(L, "config", f.runtime);
        set_true(L, "live", f.live);
        set_true(L, "relative_to_profile", f.relative_to_profile);
        set_true(L, "must_exist", f.must_exist);
        set_str(L, "zero", f.zero);
        set_str(L, "doc", f.help);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static const char *type_name(ms_metric_type t) {
    return t == MS_METRIC_COUNTER ? "counter" : t == MS_METRIC_HISTOGRAM ? "histogram" : "gauge";
}

static void push_host_metric(lua_State *L, const host_metric_desc *d, const char *scope) {
    lua_createtable(L, 0, 6);
    set_str(L, "key", d->key);
    set_str(L, "name", d->key);
    set_str(L, "prom", d->prom);
    set_str(L, "type", type_name(d->type));
    set_str(L, "scope", scope);
    set_str(L, "unit", d->unit == MS_UNIT_NS ? "ns" : NULL);
    set_str(L, "help", d->help);
}

/* ms._metric_descs() -> { { key, name, prom, type, scope, unit, help },
 * ... }: libms's metrics (scope "runtime" or "worker"; unit "ns", "us",
 * "ms" or absent), then the host's ("host", "agent", "io", "jit").  For the checks that
 * keep docs/metrics.md and the exporters in step with the tables. */
static int l_metric_descs(lua_State *L) {
    static const char *const units[] = {NULL, "ns", "us", "ms"};
    size_t n;
    const ms_metric_desc *d = ms_metric_descs(&n);
    lua_createtable(L, (int)(n + AM_COUNT + FM_COUNT + IM_COUNT + HTTP_M_COUNT + HCM_COUNT +
                             JM_COUNT + 3),
                    0);
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 7);
        set_str(L, "key", d[i].key);
        set_str(L, "name", d[i].name);
        set_str(L, "prom", d[i].prom);
        set_str(L, "type", type_name(d[i].type));
        set_str(L, "scope", d[i].scope == MS_METRIC_WORKER ? "worker" : "runtime");
        set_str(L, "unit", units[d[i].unit]);
        set_str(L, "help", d[i].help);
        lua_rawseti(L, -2, ++k);
    }
    push_host_metric(L, &agents_metric_desc, "host");
    lua_rawseti(L, -2, ++k);
    for (int i = 0; i < AM_COUNT; i++) {
        push_host_metric(L, &agent_metric_descs[i], "agent");
        lua_rawseti(L, -2, ++k);
    }
    for (int i = 0; i < FM_COUNT; i++) {
        push_host_metric(L, &file_metric_descs[i], "host");
        lua_rawseti(L, -2, ++k);
    }
    for (int i = 0; i < IM_COUNT; i++) {
        push_host_metric(L, &io_metric_descs[i], "io");
        lua_rawseti(L, -2, ++k);
    }
    for (int i = 0; i < HTTP_M_COUNT; i++) {
        push_host_metric(L, &http_metric_descs[i], "http");
        lua_rawseti(L, -2, ++k);
    }
    push_host_metric(L, &http_latency_metric_desc, "http");
    lua_rawseti(L, -2, ++k);
    for (int i = 0; i < JM_COUNT; i++) {
        push_host_metric(L, &jit_metric_descs[i], "jit");
        lua_rawseti(L, -2, ++k);
    }
    for (int i = 0; i < HCM_COUNT; i++) {
        push_host_metric(L, &http_client_metric_descs[i], "http_client");
        lua_rawseti(L, -2, ++k);
    }
    push_host_metric(L, &http_client_latency_desc, "http_client");
    lua_rawseti(L, -2, ++k);
    return 1;
}

/* ms._cwd() -> the working directory (getcwd(3)), or nil: profile.lua
 * names files relative to it.  Here rather than through the FFI, whose
 * first load in a state (lj_ctype_init) leaks what it allocated when an
 * allocation fails part way (found by the allocation-failure sweep). */
static int l_cwd(lua_State *L) {
    char buf[PATH_MAX];
    if (!getcwd(buf, sizeof buf))
        return 0;
    lua_pushstring(L, buf);
    return 1;
}

void facts_register(lua_State *L) {
    lua_pushcfunction(L, l_cwd);
    lua_setfield(L, -2, "_cwd");
    lua_pushcfunction(L, l_profile_fields);
    lua_setfield(L, -2, "_profile_fields");
    lua_pushcfunction(L, l_metric_descs);
    lua_setfield(L, -2, "_metric_descs");
}
