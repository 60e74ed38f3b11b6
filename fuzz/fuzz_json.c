/*
 * fuzz_json.c - fuzz target: ms.json.decode (agents/ljson.c) on arbitrary
 * bytes, with a round trip.
 *
 * What must hold: decode either returns a value or nil and an error value
 * whose position lies within the text and whose line and column agree
 * with it; it never crashes, hangs or leaks (the parsed tree is freed on
 * every path).  A decoded value encodes (unless it holds a string that is
 * not UTF-8, which cJSON passes through and the encoder refuses with its
 * path), and that text decodes and encodes again to the same text (keys
 * sorted, so the order of members does not matter).
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

static void check(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_json: %s\n", what);
        abort();
    }
}

/* json.encode(v, {sort_keys = true}) of the value at idx: the text, or
 * NULL (nothing pushed) when it was refused. */
static const char *encode_sorted(int json, int idx, size_t *len) {
    lua_getfield(L, json, "encode");
    lua_pushvalue(L, idx);
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "sort_keys");
    check(lua_pcall(L, 2, 2, 0) == 0, "encode raised");
    if (lua_isnil(L, -2)) {
        lua_getfield(L, -1, "message");
        const char *m = lua_tostring(L, -1);
        check(m && strstr(m, "not valid UTF-8"), m ? m : "encode refused without a message");
        lua_pop(L, 3);
        return NULL;
    }
    lua_pop(L, 1);
    return lua_tolstring(L, -1, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
    }
    lua_settop(L, 0);
    ljson_push_module(L);
    int json = lua_gettop(L);
    lua_getfield(L, json, "decode");
    lua_pushlstring(L, (const char *)data, size);
    check(lua_pcall(L, 1, 2, 0) == 0, "decode raised");
    if (lua_isnil(L, -2)) {
        lua_getfield(L, -1, "position");
        lua_getfield(L, -2, "line");
        lua_getfield(L, -3, "column");
        if (!lua_isnil(L, -3)) { /* not the number-range error, which has a path */
            size_t pos = (size_t)lua_tonumber(L, -3);
            check(pos <= size, "position past the end");
            size_t line = 1, col = 1;
            for (size_t i = 0; i < pos; i++) {
                if (data[i] == '\n') {
                    line++;
                    col = 1;
                } else {
                    col++;
                }
            }
            check((size_t)lua_tonumber(L, -2) == line && (size_t)lua_tonumber(L, -1) == col,
                  "line and column disagree with the position");
        }
        lua_settop(L, 0);
        lua_gc(L, LUA_GCCOLLECT, 0);
        return 0;
    }
    lua_pop(L, 1);
    int value = lua_gettop(L);
    size_t len1;
    const char *text1 = encode_sorted(json, value, &len1);
    if (text1) {
        int t1 = lua_gettop(L);
        lua_getfield(L, json, "decode");
        lua_pushvalue(L, t1);
        check(lua_pcall(L, 1, 2, 0) == 0, "decode of the encoder's text raised");
        check(!lua_isnil(L, -2), "the encoder's text does not decode");
        lua_pop(L, 1);
        size_t len2;
        const char *text2 = encode_sorted(json, lua_gettop(L), &len2);
        check(text2 && len1 == len2 && memcmp(text1, text2, len1) == 0,
              "the round trip changed the text");
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
