/*
 * facts.c - the host's descriptor tables (see facts.h): the profile fields
 * only the host has, libms's fields seen as a profile sees them, the
 * host's metrics, and their Lua view for lua/ms/profile.lua and the specs.
 */
#include <limits.h>
#include <string.h>
#include <sys/un.h>

#include <lauxlib.h>

#include "facts.h"

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
    {.name = "tuner", .kind = PF_PATH, .max = PATH_MAX - 1, .relative_to_profile = true,
     .must_exist = true, .help = "Lua tuner script run beside the host, or false for none"},
    {.name = "agent_memory_limit", .kind = PF_SIZE, .max = 1024 * GIB, .live = true,
     .nonzero_min = 16 * KIB, /* what an agent's state needs to start */
     .zero = "none", .help = "default Lua heap limit of an agent, bytes; 0 = none"},
    {.name = "jit_agent_limit", .kind = PF_COUNT, .max = 1000000, .def = 2000, .live = true,
     .zero = "JIT off for every agent",
     .help = "agents allowed to JIT-compile before new ones run with the JIT off"},
    {.name = "mailbox_limit", .kind = PF_COUNT, .max = 100000000, .live = true,
     .zero = "unbounded", .help = "messages an agent's mailbox may hold; 0 = unbounded"},
    {.name = "cluster", .kind = PF_STRING, .def_text = "",
     .help = "NATS URL of the cluster to join at start (nats://host:port), or \"\" for none "
             "(docs/cluster.md)"},
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
};

const host_metric_desc agents_metric_desc = {"agents", "ms_agents", MS_METRIC_GAUGE,
                                             "Agents in the host's registry."};

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
    set_str(L, "help", d->help);
}

/* ms._metric_descs() -> { { key, name, prom, type, scope, unit, help },
 * ... }: libms's metrics (scope "runtime" or "worker"; unit "ns", "us",
 * "ms" or absent), then the host's ("host", "agent").  For the checks that
 * keep docs/metrics.md and the exporters in step with the tables. */
static int l_metric_descs(lua_State *L) {
    static const char *const units[] = {NULL, "ns", "us", "ms"};
    size_t n;
    const ms_metric_desc *d = ms_metric_descs(&n);
    lua_createtable(L, (int)(n + AM_COUNT + 1), 0);
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
    return 1;
}

void facts_register(lua_State *L) {
    lua_pushcfunction(L, l_profile_fields);
    lua_setfield(L, -2, "_profile_fields");
    lua_pushcfunction(L, l_metric_descs);
    lua_setfield(L, -2, "_metric_descs");
}
