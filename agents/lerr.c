/*
 * lerr.c - error values, and reading a raised value safely.
 *
 * A raised value is whatever an agent's code passed to error(): possibly a
 * table whose metamethods raise or never return.  The host reads it only
 * with raw accesses (lerr_message), so describing a failure cannot fail
 * or run agent code.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lerr.h"
#include "lms.h"
#include "ms.h"

void lerr_push(lua_State *L, int code, const char *message, const char *traceback) {
    lua_createtable(L, 0, 7);
    lua_pushstring(L, ms_err_kind_name(ms_err_kind_of(code)));
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, ms_err_name(code));
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message ? message : ms_err_name(code));
    lua_setfield(L, -2, "message");
    if (traceback) {
        lua_pushstring(L, traceback);
        lua_setfield(L, -2, "traceback");
    }
    lua_pushstring(L, ms_severity_name(ms_err_severity(code)));
    lua_setfield(L, -2, "severity");
    ms_recovery r = ms_err_recovery(code);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, ms_recovery_name(r.kind));
    lua_setfield(L, -2, "strategy");
    if (r.kind == MS_RECOVER_RETRY) {
        lua_pushinteger(L, (lua_Integer)r.max_attempts);
        lua_setfield(L, -2, "max_attempts");
        lua_pushnumber(L, (double)r.delay_ms / 1000.0);
        lua_setfield(L, -2, "delay");
    } else if (r.kind == MS_RECOVER_CIRCUIT_BREAKER) {
        lua_pushinteger(L, (lua_Integer)r.failure_threshold);
        lua_setfield(L, -2, "failure_threshold");
        lua_pushnumber(L, (double)r.reset_timeout_ms / 1000.0);
        lua_setfield(L, -2, "reset_timeout");
    }
    lua_setfield(L, -2, "recovery");
    /* tostring(err) gives the message. */
    lms_push_mt(L, LMS_MT_ERROR);
    lua_setmetatable(L, -2);
}

/* A string or number value at idx as a new C string; NULL for any other
 * type.  Reads only (no conversion in place, no metamethod). */
static char *plain_text(lua_State *co, int idx) {
    if (lua_type(co, idx) == LUA_TSTRING) {
        size_t len;
        const char *p = lua_tolstring(co, idx, &len);
        char *m = malloc(len + 1);
        if (m) {
            memcpy(m, p, len);
            m[len] = 0;
        }
        return m;
    }
    if (lua_type(co, idx) == LUA_TNUMBER) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.14g", lua_tonumber(co, idx));
        return strdup(buf);
    }
    return NULL;
}

char *lerr_message(lua_State *co) {
    if (lua_gettop(co) == 0)
        return strdup("(no error value)");
    char *m = plain_text(co, -1);
    if (m)
        return m;
    if (lua_type(co, -1) == LUA_TTABLE) {
        /* err.message, found by a raw walk: lua_getfield would run a
         * hostile __index, and pushing the key string could allocate. */
        int t = lua_gettop(co);
        lua_pushnil(co);
        while (lua_next(co, t)) {
            size_t klen;
            if (lua_type(co, -2) == LUA_TSTRING &&
                strcmp(lua_tolstring(co, -2, &klen), "message") == 0 && klen == 7) {
                m = plain_text(co, -1);
                lua_pop(co, 2);
                break;
            }
            lua_pop(co, 1);
        }
        if (m)
            return m;
    }
    char buf[80];
    snprintf(buf, sizeof buf, "(a %s was raised as the error; see err.value)",
             lua_typename(co, lua_type(co, -1)));
    return strdup(buf);
}

char *lerr_traceback(lua_State *L, lua_State *co) {
    luaL_traceback(L, co, NULL, 0);
    const char *tb = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    char *copy = strdup(tb);
    lua_pop(L, 1);
    return copy;
}
