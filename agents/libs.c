/*
 * libs.c - an agent's standard libraries, opened on first use.
 */
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
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

/* Opens a standard library the way luaL_openlibs does (its name as the
 * argument: it sets the global and package.loaded), and pushes it. */
static void open_lazy_lib(lua_State *L, const luaL_Reg *lib) {
    lua_pushcfunction(L, lib->func);
    lua_pushstring(L, lib->name);
    lua_call(L, 1, 0);
    lua_getfield(L, LUA_GLOBALSINDEX, lib->name);
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
    for (const luaL_Reg *r = h && h->preload ? h->preload : NULL; r && r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    /* ffi is require-only (no global), as in plain LuaJIT. */
    lua_pushcfunction(L, luaopen_ffi);
    lua_setfield(L, -2, LUA_FFILIBNAME);
    lua_pushcfunction(L, open_ms);
    lua_setfield(L, -2, "ms");
    lua_pop(L, 2);
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

void libs_open(lua_State *L) {
    lua_pushcfunction(L, luaopen_base);
    lua_pushstring(L, "");
    lua_call(L, 1, 0);
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
