/*
 * lms_process.c - ms.process: child processes for agents.
 *
 * A process is libms's ms_process (core/src/process.c: uv_spawn on the
 * driver, reaped by libuv's SIGCHLD handling there, so no zombie is
 * left) behind a userdata that is one of the agent's open OS handles
 * (iohandle.h): when the agent ends, or the handle is collected, the
 * child is killed (kill_on_exit, the default) or left to run and reaped
 * when it exits.  Its pipes are ordinary ms.net sockets (lms_net.c),
 * counted as sockets, in the handle's environment table.
 *
 * Spawning and waiting are operations of the calling task (ops.h): a
 * timeout, a stop, ms.timeout or t:abort end the wait at once (the
 * spawn's child, if it started meanwhile, is killed with its handle).
 */
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "hold.h"
#include "host.h"
#include "iohandle.h"
#include "lerr.h"
#include "lms.h"
#include "lms_net.h"
#include "lms_process.h"
#include "ltask.h"
#include "ops.h"

#define MAX_ARGS 4096
#define MAX_ENV 4096

/* The userdata.  io is on the owner's list while p is open; the agent
 * thread alone touches any of it. */
typedef struct lproc {
    ioh io;
    ms_process *p;              /* NULL once closed */
    int pid;
    bool started;               /* the spawn completed */
    bool exited;
    int64_t status;
    int signal;
    ltask *waiter;              /* the task waiting on it */
} lproc;

static void proc_close(lproc *u) {
    if (!u->p)
        return;
    ms_process_free(u->p);
    u->p = NULL;
    ioh_closed(&u->io);
}

static void close_io(ioh *io) {
    proc_close((lproc *)io);
}

static const ioh_kind proc_kind = {"process", IM_PROCESSES_OPEN, close_io};

static lproc *check_proc(lua_State *L) {
    return lms_check_udata(L, 1, LMS_MT_PROCESS);
}

static int proc_gc(lua_State *L) {
    lproc *u = lua_touserdata(L, 1);
    if (u)
        proc_close(u);
    return 0;
}

/* ---- options ---- */

/* A NULL-terminated copy of the strings built from the table at idx,
 * freed by the caller (free_strv); the Lua values stay on nothing. */
typedef struct strv {
    char **v;
    size_t n;
} strv;

static void free_strv(strv *s) {
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static void release_strv(void *p) {
    free_strv(p);
    free(p);
}

static bool strv_push(strv *s, const char *text, size_t len) {
    char **grown = realloc(s->v, (s->n + 2) * sizeof *grown);
    if (!grown)
        return false;
    s->v = grown;
    if (!(s->v[s->n] = malloc(len + 1)))
        return false;
    memcpy(s->v[s->n], text, len);
    s->v[s->n][len] = '\0';
    s->n++;
    s->v[s->n] = NULL;
    return true;
}

static ms_stdio check_stdio(lua_State *L, const char *field, ms_stdio def) {
    lua_getfield(L, 1, field); /* the spec is a plain table: checked raw below */
    ms_stdio r = def;
    if (!lua_isnil(L, -1)) {
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(v, "pipe") == 0)
            r = MS_STDIO_PIPE;
        else if (strcmp(v, "null") == 0)
            r = MS_STDIO_NULL;
        else if (strcmp(v, "inherit") == 0)
            r = MS_STDIO_INHERIT;
        else
            luaL_error(L, "ms.process.spawn: %s must be \"pipe\", \"null\" or \"inherit\"",
                       field);
    }
    lua_pop(L, 1);
    return r;
}

/* ---- waiting ---- */

typedef struct proc_op {
    lproc *u;
    int ud_ref;                 /* the userdata, anchored while waiting */
} proc_op;

_Static_assert(sizeof(proc_op) <= sizeof(((lop *)0)->store), "proc_op fits the op store");

static void release_ref(ltask *lt) {
    proc_op *o = (proc_op *)lt->op.store;
    if (o->u && o->u->waiter == lt)
        o->u->waiter = NULL;
    if (o->ud_ref != LUA_NOREF) {
        luaL_unref(lt->a->L, LUA_REGISTRYINDEX, o->ud_ref);
        o->ud_ref = LUA_NOREF;
    }
    o->u = NULL;
}

/* Pushes the pipe i as a socket into the handle's environment table
 * (at the top of co) under name. */
static void adopt_pipe(ltask *lt, lproc *u, int i, const char *name) {
    lua_State *co = lt->co;
    ms_stream *s = ms_process_take_stream(u->p, i);
    if (!s)
        return;
    char err[256];
    lsock *ls = lsock_from_stream(lt->a, s, true, err, sizeof err);
    if (!ls)
        return; /* over the limit: the pipe is closed (the child sees it) */
    lsock_push(co, ls);
    lua_setfield(co, -2, name);
}

static ms_poll spawn_poll(ltask *lt, ms_cx *cx) {
    proc_op *o = (proc_op *)lt->op.store;
    lproc *u = o->u;
    lua_State *co = lt->co;
    if (!u->p) {
        release_ref(lt);
        lua_pushnil(co);
        lerr_push(co, MS_E_CLOSED, "ms.process.spawn: the process handle was closed", NULL);
        lt->nres = 2;
        return MS_POLL_READY;
    }
    int rc, pid;
    ms_error e;
    if (ms_process_poll_started(u->p, cx, &rc, &pid, &e) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    u->started = true;
    if (rc != 0) {
        proc_close(u);
        u->exited = true;
        release_ref(lt);
        lua_pushnil(co);
        lerr_push(co, rc, e.message, NULL);
        lt->nres = 2;
        return MS_POLL_READY;
    }
    u->pid = pid;
    host *h = host_get();
    if (h)
        atomic_fetch_add_explicit(&h->io[IM_PROCESSES_SPAWNED], 1, memory_order_relaxed);
    lua_rawgeti(co, LUA_REGISTRYINDEX, o->ud_ref);
    lua_getfenv(co, -1);
    adopt_pipe(lt, u, 0, "stdin");
    adopt_pipe(lt, u, 1, "stdout");
    adopt_pipe(lt, u, 2, "stderr");
    lua_pop(co, 1);
    release_ref(lt);
    lt->nres = 1;
    return MS_POLL_READY;
}

static void proc_cancel(ltask *lt) {
    release_ref(lt);
}

/* ms.process.spawn{ program, args..., env =, cwd =, stdin =, stdout =,
 * stderr =, kill_on_exit = } -> process | nil, err */
static int proc_spawn(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getmetatable(L, 1))
        return luaL_argerror(L, 1, "the spec must be a plain table (no metatable)");
    double timeout = lms_opt_timeout(L, 2);
    ltask *lt = ltask_current(L, "ms.process.spawn");
    ms_process_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.stdio[0] = check_stdio(L, "stdin", MS_STDIO_NULL);
    opts.stdio[1] = check_stdio(L, "stdout", MS_STDIO_PIPE);
    opts.stdio[2] = check_stdio(L, "stderr", MS_STDIO_INHERIT);
    lua_getfield(L, 1, "kill_on_exit");
    opts.kill_on_free = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "cwd");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "ms.process.spawn: cwd must be a string");
    int cwd_idx = lua_gettop(L);
    /* The strings are copied into C memory held meanwhile (hold.h): a
     * raise while reading the table would lose them. */
    strv *args = calloc(1, sizeof *args), *env = calloc(1, sizeof *env);
    if (!args || !env) {
        free(args);
        free(env);
        return luaL_error(L, "ms.process.spawn: out of memory");
    }
    hold_push(args, release_strv);
    hold_push(env, release_strv);
    size_t n = lua_objlen(L, 1);
    if (n == 0 || n > MAX_ARGS)
        return luaL_error(L, "ms.process.spawn: the spec's array part must hold the program and "
                             "its arguments (1 to %d strings)", MAX_ARGS);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            return luaL_error(L, "ms.process.spawn: argument %d is a %s, not a string", (int)i,
                              luaL_typename(L, -1));
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (memchr(s, '\0', len))
            return luaL_error(L, "ms.process.spawn: argument %d contains a NUL byte", (int)i);
        if (!strv_push(args, s, len))
            return luaL_error(L, "ms.process.spawn: out of memory");
        lua_pop(L, 1);
    }
    lua_getfield(L, 1, "env");
    bool has_env = !lua_isnil(L, -1);
    if (has_env) {
        if (lua_type(L, -1) != LUA_TTABLE)
            return luaL_error(L, "ms.process.spawn: env must be a table of NAME = value");
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) != LUA_TSTRING ||
                (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
                return luaL_error(L, "ms.process.spawn: env must map names to strings");
            if (env->n >= MAX_ENV)
                return luaL_error(L, "ms.process.spawn: more than %d env entries", MAX_ENV);
            lua_pushvalue(L, -2);
            lua_pushliteral(L, "=");
            lua_pushvalue(L, -3);
            lua_concat(L, 3);
            size_t len;
            const char *kv = lua_tolstring(L, -1, &len);
            if (memchr(kv, '\0', len) || strchr(lua_tostring(L, -3), '='))
                return luaL_error(L, "ms.process.spawn: env entry %s is not NAME=value",
                                  lua_tostring(L, -3));
            if (!strv_push(env, kv, len))
                return luaL_error(L, "ms.process.spawn: out of memory");
            lua_pop(L, 2);
        }
        /* An empty table: an empty environment (a NULL-terminated
         * array with no entries). */
        if (!env->v && !(env->v = calloc(1, sizeof *env->v)))
            return luaL_error(L, "ms.process.spawn: out of memory");
    }
    lua_pop(L, 1);
    char err[256];
    if (!ioh_room(lt->a, err, sizeof err)) {
        lua_pushnil(L);
        lerr_push(L, MS_E_EXHAUSTED, err, NULL);
        return 2;
    }
    /* The handle first (it may raise), then the child. */
    lproc *u = lua_newuserdata(L, sizeof *u);
    memset(u, 0, sizeof *u);
    lms_push_mt(L, LMS_MT_PROCESS);
    lua_setmetatable(L, -2);
    lua_createtable(L, 0, 3);
    lua_setfenv(L, -2);
    int ud_idx = lua_gettop(L);
    op_set_deadline(L, lt, timeout);
    lua_pushvalue(L, ud_idx);
    int ud_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    opts.file = args->v[0];
    opts.args = args->v;
    opts.env = has_env ? env->v : NULL;
    opts.cwd = lua_isnil(L, cwd_idx) ? NULL : lua_tostring(L, cwd_idx);
    ms_error e;
    int rc = ms_process_spawn(lt->a->h->rt, &opts, &u->p, &e);
    hold_pop(env);
    hold_pop(args);
    release_strv(env);
    release_strv(args);
    if (rc != 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, ud_ref);
        op_reset_light(lt);
        u->p = NULL;
        lua_pushnil(L);
        lerr_push(L, rc, e.message, NULL);
        return 2;
    }
    ioh_open(lt->a, &u->io, &proc_kind, err, sizeof err); /* room checked above */
    proc_op *o = (proc_op *)lt->op.store;
    o->u = u;
    o->ud_ref = ud_ref;
    u->waiter = lt;
    return op_suspend(L, lt, spawn_poll, proc_cancel, 0);
}

static ms_poll wait_poll(ltask *lt, ms_cx *cx) {
    proc_op *o = (proc_op *)lt->op.store;
    lproc *u = o->u;
    if (!u->exited) {
        if (!u->p) {
            release_ref(lt);
            lua_pushnil(lt->co);
            lua_pushliteral(lt->co, "closed");
            lt->nres = 2;
            return MS_POLL_READY;
        }
        int64_t status;
        int sig;
        if (ms_process_poll_exit(u->p, cx, &status, &sig) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        u->exited = true;
        u->status = status;
        u->signal = sig;
    }
    release_ref(lt);
    if (u->signal) {
        lua_pushnil(lt->co);
        lua_pushinteger(lt->co, u->signal);
    } else {
        lua_pushnumber(lt->co, (double)u->status);
        lua_pushnil(lt->co);
    }
    lt->nres = 2;
    return MS_POLL_READY;
}

/* p:wait([timeout]) -> exit_code, nil | nil, signal | nil, "timeout" */
static int proc_wait(lua_State *L) {
    lproc *u = check_proc(L);
    double timeout = lms_opt_timeout(L, 2);
    ltask *lt = ltask_current(L, "process:wait");
    if (u->waiter && u->waiter != lt)
        return luaL_error(L, "process:wait: another task of this agent is already waiting on "
                             "this process");
    if (u->exited) {
        if (u->signal) {
            lua_pushnil(L);
            lua_pushinteger(L, u->signal);
        } else {
            lua_pushnumber(L, (double)u->status);
            lua_pushnil(L);
        }
        return 2;
    }
    if (!u->p) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    op_set_deadline(L, lt, timeout);
    lua_pushvalue(L, 1);
    proc_op *o = (proc_op *)lt->op.store;
    o->ud_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    o->u = u;
    u->waiter = lt;
    return op_suspend(L, lt, wait_poll, proc_cancel, 0);
}

static int signal_number(lua_State *L, int idx) {
    static const struct {
        const char *name;
        int sig;
    } names[] = {{"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP},
                 {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP},
                 {"CONT", SIGCONT}, {"ALRM", SIGALRM}, {"PIPE", SIGPIPE}};
    if (lua_isnoneornil(L, idx))
        return SIGTERM;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        double d = lua_tonumber(L, idx);
        if (d >= 1 && d < 65 && d == (int)d)
            return (int)d;
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (strncmp(s, "SIG", 3) == 0)
            s += 3;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(s, names[i].name) == 0)
                return names[i].sig;
    }
    return luaL_argerror(L, idx, "a signal is a number 1..64 or a name (\"TERM\", \"KILL\", ...)");
}

/* p:kill([signal]) -> true | nil, "exited" */
static int proc_kill(lua_State *L) {
    lproc *u = check_proc(L);
    int sig = signal_number(L, 2);
    if (!u->p || u->exited || !u->started) {
        lua_pushnil(L);
        lua_pushliteral(L, "exited");
        return 2;
    }
    ms_process_kill(u->p, sig);
    lua_pushboolean(L, 1);
    return 1;
}

static int proc_pid(lua_State *L) {
    lproc *u = check_proc(L);
    lua_pushinteger(L, u->pid);
    return 1;
}

/* p:close(): lets go of the child (killed if kill_on_exit) and its
 * pipes. */
static int proc_close_m(lua_State *L) {
    lproc *u = check_proc(L);
    proc_close(u);
    lua_getfenv(L, 1);
    static const char *const pipes[] = {"stdin", "stdout", "stderr"};
    for (int i = 0; i < 3; i++) {
        lua_getfield(L, -1, pipes[i]);
        if (!lua_isnil(L, -1)) {
            lua_getfield(L, -1, "close");
            lua_pushvalue(L, -2);
            lua_call(L, 1, 0);
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* p.stdin, p.stdout, p.stderr from the environment table, then methods. */
static int proc_index(lua_State *L) {
    lua_getfenv(L, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 2);
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int proc_tostring(lua_State *L) {
    lproc *u = lua_touserdata(L, 1);
    lua_pushfstring(L, "ms.process (pid %d, %s)", u->pid,
                    u->exited ? "exited" : u->p ? "running" : "closed");
    return 1;
}

void lms_build_process_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"wait", proc_wait}, {"kill", proc_kill}, {"pid", proc_pid},
        {"close", proc_close_m}, {NULL, NULL},
    };
    luaL_newmetatable(L, "ms.process");
    lua_pushcfunction(L, proc_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, proc_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, proc_index);
    lua_setfield(L, -2, "__index");
    lua_createtable(L, 0, 5);
    lua_setfield(L, -2, "methods");
    /* Methods carry the metatable as upvalue 1 (lms_check_udata). */
    lua_getfield(L, -1, "methods");
    for (const luaL_Reg *r = methods; r->name; r++) {
        lua_pushvalue(L, -2);
        lua_pushcclosure(L, r->func, 1);
        lua_setfield(L, -2, r->name);
    }
    lua_pop(L, 1);
}

void lms_process_push_module(lua_State *L) {
    static const luaL_Reg fns[] = {{"spawn", proc_spawn}, {NULL, NULL}};
    lua_createtable(L, 0, 1);
    luaL_register(L, NULL, fns);
}
