/*
 * tune.c - live tuning of the host and its runtime: the primitive under
 * ms.tune (lua/ms/tune.lua) and the SIGHUP reload.
 *
 * A request is a set of profile fields with values already checked and
 * normalised by ms.profile (counts, seconds, bytes).  It is applied as a
 * whole or not at all: every runtime field is first set on a copy of the
 * live configuration (ms_config_set, then ms_config_validate for the rules
 * between fields) and the worker count is checked against the ceiling, so
 * a bad value in the middle of a request leaves the earlier ones unapplied.
 * Only then is each field changed, by its owner: libms for the runtime's
 * (ms_runtime_tune), the host lock for the host's.  Each change is an
 * "ms.tuned" event and counts in ms.metrics().tune_changes.
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "events.h"
#include "facts.h"
#include "host.h"
#include "mail.h"
#include "tune.h"

/* The live fields and their kinds are the profile's (facts.c): a live
 * field found by its profile name, or false. */
static bool find_live(const char *name, profile_field *f) {
    return profile_field_find(name, f) && f->live;
}

/* The text ms_config_set takes for a runtime field's value. */
static void config_text(const profile_field *f, double v, char *buf, size_t n) {
    if (f->kind == PF_DURATION)
        snprintf(buf, n, "%.0fms", v * 1000.0);
    else if (f->kind == PF_BOOL)
        snprintf(buf, n, "%s", v != 0 ? "true" : "false");
    else
        snprintf(buf, n, "%.0f", v);
}

/* A runtime field's value in c, in the profile's units. */
static double runtime_value(const profile_field *f, const ms_config *c) {
    uint64_t v = 0;
    ms_config_get(c, f->name, &v);
    return f->kind == PF_DURATION ? v / 1000.0 : (double)v;
}

/* The host's live fields, by their owner here.  Under h->lock. */
static double host_value(host *h, const profile_field *f) {
    if (strcmp(f->name, "agent_memory_limit") == 0)
        return (double)h->default_mem_limit;
    if (strcmp(f->name, "jit_agent_limit") == 0)
        return h->jit_agent_limit;
    if (strcmp(f->name, "mailbox_limit") == 0)
        return (double)h->mailbox_limit;
    if (strcmp(f->name, "runaway_stop_after") == 0)
        return h->runaway;
    if (strcmp(f->name, "agent_io_limit") == 0)
        return atomic_load(&h->agent_io_limit);
    if (strcmp(f->name, "host_io_limit") == 0)
        return atomic_load(&h->host_io_limit);
    return 0;
}

static void host_set(host *h, const profile_field *f, double v) {
    pthread_mutex_lock(&h->lock);
    if (strcmp(f->name, "agent_memory_limit") == 0) {
        h->default_mem_limit = (size_t)v;
    } else if (strcmp(f->name, "jit_agent_limit") == 0) {
        h->jit_agent_limit = (uint32_t)v;
    } else if (strcmp(f->name, "runaway_stop_after") == 0) {
        h->runaway = (int)v; /* for agents spawned from now on */
    } else if (strcmp(f->name, "agent_io_limit") == 0) {
        /* Checked at each open: handles already open stay open. */
        atomic_store(&h->agent_io_limit, (uint32_t)v);
    } else if (strcmp(f->name, "host_io_limit") == 0) {
        atomic_store(&h->host_io_limit, (uint32_t)v);
    } else if (strcmp(f->name, "mailbox_limit") == 0) {
        /* The default for new agents and the limit of every running one:
         * a lower limit refuses new sends until the mailbox drains below
         * it; nothing queued is dropped. */
        h->mailbox_limit = (size_t)v;
        for (agent *a = h->agents; a; a = a->next_reg)
            mail_set_limit(a, (size_t)v);
    }
    pthread_mutex_unlock(&h->lock);
}

int host_settings(host *h, const char **names, double *values, int max) {
    profile_field f;
    int n = 0;
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; n < max && profile_field_at(i, &f); i++) {
        if (f.runtime || !f.live)
            continue;
        names[n] = f.name;
        values[n++] = host_value(h, &f);
    }
    pthread_mutex_unlock(&h->lock);
    return n;
}

void host_setting_set(host *h, const char *name, double value) {
    profile_field f;
    if (profile_field_find(name, &f) && !f.runtime && f.live)
        host_set(h, &f, value);
}

bool host_is_live_field(const char *name) {
    profile_field f;
    return find_live(name, &f);
}

int host_tune(host *h, const tune_req *req, int n, const char *source, tune_change *out,
              char *err, size_t errlen) {
    /* Check everything first. */
    ms_config live, probe;
    ms_runtime_live_config(h->rt, &live);
    probe = live;
    for (int i = 0; i < n; i++) {
        profile_field field, *f = &field;
        if (!find_live(req[i].name, f)) {
            snprintf(err, errlen, "field '%s' cannot change while the host runs (it takes a "
                                  "restart)", req[i].name);
            return MS_E_CONFIG_INVALID;
        }
        if (!(req[i].value >= 0) || isinf(req[i].value)) {
            snprintf(err, errlen, "field '%s': %g is not a valid value", req[i].name,
                     req[i].value);
            return MS_E_CONFIG_INVALID;
        }
        if (!f->runtime)
            continue;
        char text[48];
        config_text(f, req[i].value, text, sizeof text);
        ms_error e;
        if (ms_config_set(&probe, f->name, text, &e) != 0) {
            snprintf(err, errlen, "%s", e.message);
            return e.code;
        }
    }
    ms_metrics *m = ms_metrics_snapshot(h->rt);
    uint32_t max_workers = m ? m->max_workers : live.worker_threads;
    ms_metrics_free(m);
    if (probe.worker_threads > max_workers) {
        snprintf(err, errlen, "field 'worker_threads': %u is above max_worker_threads = %u (the "
                              "ceiling is fixed when the runtime starts)",
                 probe.worker_threads, max_workers);
        return MS_E_CONFIG_INVALID;
    }
    ms_error e;
    if (ms_config_validate(&probe, &e) != 0) {
        snprintf(err, errlen, "%s", e.message);
        return e.code;
    }

    /* Apply. */
    int changed = 0;
    for (int i = 0; i < n; i++) {
        profile_field field, *f = &field;
        find_live(req[i].name, f);
        double old;
        if (f->runtime) {
            old = runtime_value(f, &live);
        } else {
            pthread_mutex_lock(&h->lock);
            old = host_value(h, f);
            pthread_mutex_unlock(&h->lock);
        }
        if (old == req[i].value)
            continue;
        if (f->runtime) {
            char text[48];
            config_text(f, req[i].value, text, sizeof text);
            if (ms_runtime_tune(h->rt, f->name, text, &e) != 0) {
                /* Only a refused thread or a shutdown gets here, after the
                 * checks: report what was applied so far with the error. */
                snprintf(err, errlen, "%s (applied before it: %d change%s)", e.message, changed,
                         changed == 1 ? "" : "s");
                return e.code;
            }
        } else {
            host_set(h, f, req[i].value);
        }
        if (out) {
            out[changed].name = f->name;
            out[changed].old_value = old;
            out[changed].new_value = req[i].value;
        }
        changed++;
        atomic_fetch_add_explicit(&h->tune_changes, 1, memory_order_relaxed);
        const char *keys[] = {"field", "old", "new", "source"};
        const char *strs[] = {f->name, NULL, NULL, source};
        double nums[] = {0, old, req[i].value, 0};
        events_publish_host("ms.tuned", keys, strs, nums, 4);
    }
    return changed;
}

/* ---- ms._tune(settings, source) -> { {field, old, new}, ... } ---- */

/* At most this many fields in one request (there are fewer live ones). */
#define TUNE_MAX 64

static int l_tune_apply(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *source = luaL_optstring(L, 2, "ms.tune");
    host *h = host_get();
    if (!h)
        return luaL_error(L, "ms.tune: no runtime (use ms.run)");
    tune_req req[TUNE_MAX];
    int n = 0;
    profile_field f;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!k || !find_live(k, &f) || !lua_isnumber(L, -1) || n == TUNE_MAX)
            return luaL_error(L, "ms.tune: %s is not a live field with a number",
                              k ? k : luaL_typename(L, -2));
        req[n].name = f.name; /* static: the tables' own string */
        req[n].value = lua_tonumber(L, -1);
        n++;
        lua_pop(L, 1);
    }
    /* In the order of the profile's fields, so that a request is applied
     * the same way every time (pairs() order is not). */
    tune_req sorted[TUNE_MAX];
    int ns = 0;
    for (size_t i = 0; profile_field_at(i, &f); i++)
        for (int j = 0; j < n; j++)
            if (strcmp(req[j].name, f.name) == 0)
                sorted[ns++] = req[j];
    tune_change out[TUNE_MAX];
    char err[MS_ERROR_MESSAGE_MAX + 64];
    int changed = host_tune(h, sorted, ns, source, out, err, sizeof err);
    if (changed < 0)
        return luaL_error(L, "ms.tune: %s", err);
    lua_createtable(L, changed, 0);
    for (int i = 0; i < changed; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, out[i].name);
        lua_setfield(L, -2, "field");
        lua_pushnumber(L, out[i].old_value);
        lua_setfield(L, -2, "old");
        lua_pushnumber(L, out[i].new_value);
        lua_setfield(L, -2, "new");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

void tune_push_primitive(lua_State *L) {
    lua_pushcfunction(L, l_tune_apply);
}
