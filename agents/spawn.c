/*
 * spawn.c - ms.agent.spawn{...}: the spawn table read into a new agent,
 * which is then registered (taking its name atomically) and started.
 *
 * Every field is read first, onto the spawner's stack, before any C memory
 * is taken: a read can run the table's metamethods or fail for memory, and
 * a raise then leaves nothing behind.  After that only raw reads of
 * values already on the stack follow (no conversion in place, nothing
 * that allocates in the spawner's state), except string.dump and the
 * encoding of args, which are protected or raise nothing.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "hold.h"
#include "host.h"
#include "spawn.h"
#include "xfer.h"

/* The spawn table's fields, in the order they are pushed. */
enum { F_FN, F_FILE, F_MODULE, F_NAME, F_MEMORY_LIMIT, F_RESTARTS, F_JIT, F_SUPERVISED, F_ARGS,
       F_RUNAWAY, F_TRAP_EXIT, F_SANDBOX, F_NAME_SCOPE, F_COUNT };
static const char *const field_names[F_COUNT] = {
    "fn",   "file",       "module", "name",    "memory_limit", "restarts",  "jit",
    "supervised", "args", "runaway", "trap_exit", "sandbox", "name_scope"};

/* What a bad value was, for an error message, without converting it. */
static void describe_value(lua_State *L, int idx, char *buf, size_t len) {
    if (lua_type(L, idx) == LUA_TNUMBER)
        snprintf(buf, len, "%.14g", lua_tonumber(L, idx));
    else if (lua_type(L, idx) == LUA_TSTRING)
        snprintf(buf, len, "'%.40s'", lua_tostring(L, idx));
    else
        snprintf(buf, len, "a %s", lua_typename(L, lua_type(L, idx)));
}

/* Checks fn's upvalues (only the ms module may be captured: the child gets
 * its own) and dumps its bytecode into a.  fn at idx; the state's ms
 * module (or nil) at ms_idx. */
static bool take_fn(lua_State *L, int idx, int ms_idx, agent *a, char *err, size_t errlen) {
    if (!lua_isfunction(L, idx) || lua_iscfunction(L, idx)) {
        snprintf(err, errlen, "fn must be a Lua function, got %s",
                 lua_iscfunction(L, idx) ? "a C function" : luaL_typename(L, idx));
        return false;
    }
    char names[200] = "";
    for (int i = 1;; i++) {
        const char *up = lua_getupvalue(L, idx, i);
        if (!up)
            break;
        bool is_ms = lua_rawequal(L, -1, ms_idx) && !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (is_ms && a->n_ms_upvals < 8) {
            a->ms_upvals[a->n_ms_upvals++] = (uint8_t)i;
            continue;
        }
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "", *up ? up : "?");
    }
    if (names[0]) {
        snprintf(err, errlen,
                 "fn captures upvalues (%s); an agent shares nothing, so pass data through "
                 "args instead",
                 names);
        return false;
    }
    return true;
}

/* string.dump(fn), run protected: reading the global string may open the
 * library (libs.c), which allocates. */
static int dump_function(lua_State *L) {
    lua_getglobal(L, "string");
    lua_getfield(L, -1, "dump");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* Dumps the function at idx into a. */
static bool dump_fn(lua_State *L, int idx, int dump_idx, agent *a, char *err, size_t errlen) {
    lua_pushvalue(L, dump_idx);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "cannot copy fn: %s",
                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error)");
        lua_pop(L, 1);
        return false;
    }
    size_t len;
    const char *code = lua_tolstring(L, -1, &len);
    a->src = SRC_FN;
    a->src_text = malloc(len ? len : 1);
    if (!a->src_text) {
        lua_pop(L, 1);
        snprintf(err, errlen, "no memory to copy fn");
        return false;
    }
    memcpy(a->src_text, code, len);
    a->src_len = len;
    lua_pop(L, 1);
    return true;
}


/* A whole number field in [min, max] at idx, or false with err set. */
static bool take_whole(lua_State *L, int idx, const char *field, double min, double max,
                       const char *rule, double *out, char *err, size_t errlen) {
    double v = lua_tonumber(L, idx);
    if (lua_type(L, idx) != LUA_TNUMBER || v < min || v > max || v != (double)(uint64_t)v) {
        char got[64];
        describe_value(L, idx, got, sizeof got);
        snprintf(err, errlen, "%s must be %s, got %s", field, rule, got);
        return false;
    }
    *out = v;
    return true;
}

/* Reads the fields at base (F_COUNT values) into a.  The ms module (or
 * nil) is at ms_idx, dump_function just above it. */
static bool read_spec(lua_State *L, int base, int ms_idx, agent *a, char *err, size_t errlen) {
    int nsrc = !lua_isnil(L, base + F_FN) + !lua_isnil(L, base + F_FILE) +
               !lua_isnil(L, base + F_MODULE);
    if (nsrc != 1) {
        snprintf(err, errlen, "give exactly one of fn, file or module (got %d)", nsrc);
        return false;
    }
    if (!lua_isnil(L, base + F_FN)) {
        if (!take_fn(L, base + F_FN, ms_idx, a, err, errlen) ||
            !dump_fn(L, base + F_FN, ms_idx + 1, a, err, errlen))
            return false;
    } else {
        bool file = !lua_isnil(L, base + F_FILE);
        int at = base + (file ? F_FILE : F_MODULE);
        if (lua_type(L, at) != LUA_TSTRING) {
            snprintf(err, errlen, file ? "file must be a path string, got %s"
                                       : "module must be a module name, got %s",
                     luaL_typename(L, at));
            return false;
        }
        a->src = file ? SRC_FILE : SRC_MODULE;
        a->src_text = strdup(lua_tostring(L, at));
        if (!a->src_text) {
            snprintf(err, errlen, "no memory for the spawn");
            return false;
        }
    }
    /* name_scope: "cluster" (the default) or "host"; the name is claimed
     * in the cluster (lms_cluster.c's wrapper of spawn) unless "host". */
    int scope = base + F_NAME_SCOPE;
    if (!lua_isnil(L, scope) &&
        (lua_type(L, scope) != LUA_TSTRING || (strcmp(lua_tostring(L, scope), "host") != 0 &&
                                               strcmp(lua_tostring(L, scope), "cluster") != 0))) {
        char shown[64];
        describe_value(L, scope, shown, sizeof shown);
        snprintf(err, errlen, "name_scope must be \"cluster\" or \"host\", got %s", shown);
        return false;
    }
    int at = base + F_NAME;
    if (!lua_isnil(L, at)) {
        size_t len;
        if (lua_type(L, at) != LUA_TSTRING) {
            snprintf(err, errlen, "name must be a string, got %s", luaL_typename(L, at));
            return false;
        }
        const char *nm = lua_tolstring(L, at, &len);
        if (len == 0 || len > AGENT_NAME_MAX || strlen(nm) != len) {
            snprintf(err, errlen,
                     len == 0 ? "name must not be empty"
                     : strlen(nm) != len
                         ? "name must not contain a zero byte"
                         : "name is %zu bytes long; an agent name has at most %d bytes",
                     len, AGENT_NAME_MAX);
            return false;
        }
        memcpy(a->name, nm, len + 1);
    }
    double v;
    if (!lua_isnil(L, base + F_MEMORY_LIMIT)) {
        if (!take_whole(L, base + F_MEMORY_LIMIT, "memory_limit", 0, 1e15,
                        "0 (none) or at least 16384 bytes", &v, err, errlen))
            return false;
        if (v > 0 && v < 16384) {
            snprintf(err, errlen, "memory_limit must be 0 (none) or at least 16384 bytes, got %.0f",
                     v);
            return false;
        }
        a->mem_limit = (size_t)v;
    }
    if (!lua_isnil(L, base + F_RESTARTS)) {
        if (!take_whole(L, base + F_RESTARTS, "restarts", 0, UINT32_MAX, "a whole number >= 0",
                        &v, err, errlen))
            return false;
        a->restarts = (uint32_t)v;
    }
    at = base + F_RUNAWAY;
    if (lua_type(L, at) == LUA_TSTRING && strcmp(lua_tostring(L, at), "report") == 0) {
        a->runaway = RUNAWAY_REPORT;
    } else if (lua_type(L, at) == LUA_TSTRING && strcmp(lua_tostring(L, at), "stop") == 0) {
        a->runaway = RUNAWAY_STOP;
    } else if (!lua_isnil(L, at)) {
        if (!take_whole(L, at, "runaway", 1, 1000000,
                        "\"report\", \"stop\" or a count of stalls >= 1", &v, err, errlen))
            return false;
        a->runaway = (int)v;
    }
    if (lua_type(L, base + F_JIT) == LUA_TBOOLEAN && !lua_toboolean(L, base + F_JIT))
        a->jit_off = true;
    a->supervised = lua_toboolean(L, base + F_SUPERVISED);
    /* A sandboxed agent's children are sandboxed too: otherwise spawning
     * one would be the way out. */
    agent *spawner = agent_from_state(L);
    if (lua_toboolean(L, base + F_SANDBOX) || (spawner && spawner->sandbox))
        a->sandbox = a->jit_off = true;
    /* Declared at spawn, so that a stop right after it (a supervisor
     * whose next child fails to start) already knows. */
    atomic_store_explicit(&a->traps_exit, lua_toboolean(L, base + F_TRAP_EXIT),
                          memory_order_relaxed);
    if (!lua_isnil(L, base + F_ARGS)) {
        a->args = xfer_new();
        if (!a->args) {
            snprintf(err, errlen, "no memory for args");
            return false;
        }
        if (!xfer_encode(L, base + F_ARGS, a->args, "args", err, errlen))
            return false;
    }
    return true;
}

static void release_agent(void *a) {
    agent_unref(a);
}

agent *spawn_agent(lua_State *L, int idx, char *err, size_t errlen) {
    host *h = host_get();
    if (!h) {
        snprintf(err, errlen, "no runtime: call ms.run first");
        return NULL;
    }
    if (!lua_istable(L, idx)) {
        snprintf(err, errlen, "ms.agent.spawn expects a table, got %s", luaL_typename(L, idx));
        return NULL;
    }
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    /* Everything that may raise first (see the top of the file). */
    lua_checkstack(L, F_COUNT + 4);
    int base = lua_gettop(L) + 1;
    for (int i = 0; i < F_COUNT; i++)
        lua_getfield(L, idx, field_names[i]);
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED"); /* package.loaded */
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "ms");
    else
        lua_pushnil(L);
    int ms_idx = lua_gettop(L);
    lua_pushcfunction(L, dump_function); /* at ms_idx + 1 */
    agent *a = agent_new(h);
    if (!a) {
        lua_settop(L, base - 1);
        snprintf(err, errlen, "no memory for an agent");
        return NULL;
    }
    /* Encoding args may raise (hold.h). */
    hold_push(a, release_agent);
    bool ok = read_spec(L, base, ms_idx, a, err, errlen);
    hold_pop(a);
    lua_settop(L, base - 1);
    if (!ok || !agent_start(a, err, errlen)) {
        agent_unref(a);
        return NULL;
    }
    return a; /* the caller gets the creation reference */
}

agent *spawn_agent_spec(host *h, const spawn_spec *s, char *err, size_t errlen) {
    agent *a = agent_new(h);
    if (!a) {
        xfer_free(s->args);
        snprintf(err, errlen, "no memory for an agent");
        return NULL;
    }
    a->args = s->args;
    a->spawned_remotely = s->spawned_remotely;
    a->spawned_by = s->spawner_host;
    atomic_store_explicit(&a->traps_exit, s->trap_exit, memory_order_relaxed);
    a->src = s->src;
    a->src_len = s->len ? s->len : strlen(s->text);
    a->src_text = malloc(a->src_len + 1);
    if (a->src_text) {
        memcpy(a->src_text, s->text, a->src_len);
        a->src_text[a->src_len] = 0;
    }
    if (s->name && strlen(s->name) > AGENT_NAME_MAX) {
        snprintf(err, errlen, "name is %zu bytes long; an agent name has at most %d bytes",
                 strlen(s->name), AGENT_NAME_MAX);
        agent_unref(a);
        return NULL;
    }
    if (s->name)
        snprintf(a->name, sizeof a->name, "%s", s->name);
    if (s->main) {
        a->mem_limit = 0;
        a->main_agent = true;
    }
    bool ok = a->src_text != NULL;
    if (ok && s->argv) {
        a->argv = calloc((size_t)s->argc + 1, sizeof *a->argv);
        ok = a->argv != NULL;
        for (int i = 0; ok && i < s->argc; i++, a->argc++)
            ok = (a->argv[i] = strdup(s->argv[i])) != NULL;
    }
    if (!ok) {
        snprintf(err, errlen, "no memory for an agent");
        agent_unref(a);
        return NULL;
    }
    if (!agent_start(a, err, errlen)) {
        agent_unref(a);
        return NULL;
    }
    return a;
}
