/*
 * libs.c - an agent's standard libraries, opened on first use.
 */
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "agent.h"
#include "host.h"
#include "libs.h"
#include "lms.h"

/* An agent starts with the base library only; everything else is opened
 * on first use (see lazy_global), which keeps a new agent cheap and an
 * idle one small: all of LuaJIT's libraries cost about 34 KB of heap and
 * most of a spawn's time, and many agents use only a few of them.
 *
 * jit is among the lazy ones: opening it is what switches LuaJIT's
 * compiler on (and costs a CPU detection, ~20 us here), so an agent starts
 * interpreted and gets the JIT once it proves long-lived
 * (agent_jit_decide). */
static const luaL_Reg lazy_libs[] = {
    {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
    {LUA_MATHLIBNAME, luaopen_math}, {LUA_IOLIBNAME, luaopen_io},
    {LUA_OSLIBNAME, luaopen_os},     {LUA_DBLIBNAME, luaopen_debug},
    {LUA_BITLIBNAME, luaopen_bit},   {LUA_JITLIBNAME, luaopen_jit}, {NULL, NULL}};

/* ---- the sandbox (ms.agent.spawn{ sandbox = true }) ----
 *
 * What a sandboxed agent's code cannot reach: the JIT (jit), the FFI,
 * the debug library, io, the process-wide and file parts of os, binary
 * chunks (load and loadstring take text only; loadfile and dofile are
 * gone), and C modules (package.loadlib and the C searchers are gone;
 * require still finds Lua modules on the host's path).  With the JIT off,
 * the stop hook and the sandbox's own count hook always run. */

static bool in_sandbox(lua_State *L) {
    agent *a = agent_from_state(L);
    return a && a->sandbox;
}

/* Libraries a sandboxed agent does not get at all. */
static bool sandbox_refuses(const char *name) {
    return strcmp(name, LUA_IOLIBNAME) == 0 || strcmp(name, LUA_DBLIBNAME) == 0 ||
           strcmp(name, LUA_JITLIBNAME) == 0 || strcmp(name, LUA_FFILIBNAME) == 0;
}

/* os, less what touches the process or files: exit, execute, getenv,
 * remove, rename, setlocale, tmpname. */
static void sandbox_prune_os(lua_State *L) {
    static const char *const gone[] = {"exit",   "execute",   "getenv", "remove",
                                       "rename", "setlocale", "tmpname", NULL};
    for (int i = 0; gone[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, -2, gone[i]);
    }
}

/* load(chunk [, name [, mode [, env]]]) with the mode forced to text: a
 * binary chunk is bytecode the VM trusts, and a crafted one crashes it. */
static int sandbox_load(lua_State *L) {
    lua_settop(L, 4);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L);
}

/* loadstring(s [, name]): load(s, name, "t"). */
static int sandbox_loadstring(lua_State *L) {
    luaL_checkstring(L, 1);
    lua_settop(L, 2);
    lua_pushliteral(L, "t");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 3, LUA_MULTRET);
    return lua_gettop(L);
}

/* Rewrites the base library of a sandboxed agent. */
static void sandbox_base(lua_State *L) {
    lua_getfield(L, LUA_GLOBALSINDEX, "load");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, sandbox_load, 1);
    lua_setfield(L, LUA_GLOBALSINDEX, "load");
    lua_pushcclosure(L, sandbox_loadstring, 1);
    lua_setfield(L, LUA_GLOBALSINDEX, "loadstring");
    lua_pushnil(L);
    lua_setfield(L, LUA_GLOBALSINDEX, "loadfile");
    lua_pushnil(L);
    lua_setfield(L, LUA_GLOBALSINDEX, "dofile");
}

/* ---- processes started from an agent ----
 *
 * A child process gets the signal mask of the thread that starts it (fork
 * and posix_spawn alike), and an agent runs on a runtime thread, which
 * blocks the host's asynchronous signals (core/src/thread.c: SIGINT,
 * SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD).  A child started
 * with them blocked cannot be stopped with SIGTERM or SIGINT and never sees
 * SIGCHLD: `timeout 5 cmd` run by io.popen waited for ever (found by the
 * allocation-failure sweep).  So os.execute and io.popen run with those
 * signals unblocked in their thread for the call. */
static int with_process_signals(lua_State *L) {
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGCHLD);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    pthread_sigmask(SIG_UNBLOCK, &set, &old);
    int rc = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return lua_error(L);
    return lua_gettop(L);
}

/* The library table at the top: its field name runs with_process_signals. */
static void wrap_process_starter(lua_State *L, const char *name) {
    lua_getfield(L, -1, name);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushcclosure(L, with_process_signals, 1);
    lua_setfield(L, -2, name);
}

/* Opens a standard library the way luaL_openlibs does (its name as the
 * argument: it sets the global and package.loaded), and pushes it; for a
 * sandboxed agent, a library it may not have is nil. */
static void open_lazy_lib(lua_State *L, const luaL_Reg *lib) {
    if (sandbox_refuses(lib->name) && in_sandbox(L)) {
        lua_pushnil(L);
        return;
    }
    lua_pushcfunction(L, lib->func);
    lua_pushstring(L, lib->name);
    lua_call(L, 1, 0);
    lua_getfield(L, LUA_GLOBALSINDEX, lib->name);
    if (lib->func == luaopen_os && in_sandbox(L))
        sandbox_prune_os(L);
    if (lua_istable(L, -1) && (lib->func == luaopen_os || lib->func == luaopen_io))
        wrap_process_starter(L, lib->func == luaopen_os ? "execute" : "popen");
    /* Opening jit switched the compiler on: settle it for this agent now
     * (an agent that asks for jit early has the JIT early). */
    if (lib->func == luaopen_jit) {
        agent *a = agent_from_state(L);
        if (a)
            agent_jit_decide(a);
    }
}

/* Pushes the state's ms module, opening it on first use.  One table
 * whichever way it is reached first: the global ms, require "ms", or an
 * ms upvalue re-bound by load_main. */
static int open_ms(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_getfield(L, -1, "ms");
    /* Not a table: nil, or require's marker while it runs this loader. */
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_pushcfunction(L, luaopen_ms);
        lua_call(L, 0, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "ms");
    }
    lua_remove(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_GLOBALSINDEX, "ms");
    return 1;
}

/* package.preload entry for a lazy library (require "string" before the
 * global was read). */
static int lazy_loader(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    if (sandbox_refuses(name) && in_sandbox(L))
        return luaL_error(L, "%s is not available in a sandboxed agent", name);
    for (const luaL_Reg *lib = lazy_libs; lib->name; lib++) {
        if (strcmp(name, lib->name) == 0) {
            open_lazy_lib(L, lib);
            return 1;
        }
    }
    return luaL_error(L, "ms-host: no lazy library %s", name); /* a bug in ms-host */
}

/* Opens the package library (package, require, module) with the host's
 * search paths and the preload entries for the lazy libraries and ms. */
static void open_package(lua_State *L) {
    lua_pushcfunction(L, luaopen_package);
    lua_pushstring(L, LUA_LOADLIBNAME);
    lua_call(L, 1, 0);
    lua_getfield(L, LUA_GLOBALSINDEX, LUA_LOADLIBNAME);
    host *h = host_get();
    if (h && h->lua_path) {
        lua_pushstring(L, h->lua_path);
        lua_setfield(L, -2, "path");
    }
    if (h && h->lua_cpath) {
        lua_pushstring(L, h->lua_cpath);
        lua_setfield(L, -2, "cpath");
    }
    lua_getfield(L, -1, "preload");
    for (const luaL_Reg *lib = lazy_libs; lib->name; lib++) {
        lua_pushcfunction(L, lazy_loader);
        lua_setfield(L, -2, lib->name);
    }
    bool sandbox = in_sandbox(L);
    for (const luaL_Reg *r = h && h->preload && !sandbox ? h->preload : NULL; r && r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    /* ffi is require-only (no global), as in plain LuaJIT. */
    lua_pushcfunction(L, sandbox ? lazy_loader : luaopen_ffi);
    lua_setfield(L, -2, LUA_FFILIBNAME);
    lua_pushcfunction(L, open_ms);
    lua_setfield(L, -2, "ms");
    lua_pushcfunction(L, agent_jit_profile_refused);
    lua_setfield(L, -2, "jit.profile");
    lua_pop(L, 1);
    if (sandbox) {
        /* No C modules: no loadlib, no C searchers (the 3rd and 4th). */
        lua_pushnil(L);
        lua_setfield(L, -2, "loadlib");
        lua_getfield(L, -1, "loaders");
        lua_pushnil(L);
        lua_rawseti(L, -2, 4);
        lua_pushnil(L);
        lua_rawseti(L, -2, 3);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* _G's __index: the first read of a lazy library's name, of package,
 * require or module, or of ms opens it (which also sets the global, so
 * this runs once per name). */
static int lazy_global(lua_State *L) {
    const char *k = lua_tostring(L, 2);
    if (!k || lua_type(L, 2) != LUA_TSTRING)
        return 0;
    for (const luaL_Reg *lib = lazy_libs; lib->name; lib++) {
        if (strcmp(k, lib->name) == 0) {
            open_lazy_lib(L, lib);
            return 1;
        }
    }
    if (strcmp(k, LUA_LOADLIBNAME) == 0 || strcmp(k, "require") == 0 ||
        strcmp(k, "module") == 0) {
        open_package(L);
        lua_rawget(L, 1);
        return 1;
    }
    if (strcmp(k, "ms") == 0)
        return open_ms(L);
    return 0;
}

static int lazy_string_index(lua_State *L) {
    lua_getglobal(L, LUA_STRLIBNAME); /* opens it: strings get its metatable */
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);
    return 1;
}

/* A sandboxed agent's time slice: every SANDBOX_SLICE interpreted
 * instructions its running task yields to the back of the run queue, so
 * that the agent shares its worker even when its code never waits.  Only
 * on a worker, in a task (not on the blocking pool, not in host code). */
#define SANDBOX_SLICE 100000

static void sandbox_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    /* Only the task's own coroutine: yielding a coroutine of the agent's
     * code would end its coroutine.resume early, with no values. */
    if (agent_in_task(L) && lua_isyieldable(L))
        lua_yield(L, 0);
}

void libs_reset_hook(lua_State *L) {
    if (in_sandbox(L))
        lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, SANDBOX_SLICE);
    else
        lua_sethook(L, NULL, 0, 0);
}

void libs_open(lua_State *L) {
    lua_pushcfunction(L, luaopen_base);
    lua_pushstring(L, "");
    lua_call(L, 1, 0);
    if (in_sandbox(L)) {
        sandbox_base(L);
        libs_reset_hook(L);
    }
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lazy_global);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
    /* Strings' methods ("x"):rep(3) before anyone read the global string:
     * a stand-in metatable opens the library (which installs the real
     * one) on the first method looked up. */
    lua_pushliteral(L, "");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lazy_string_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}
