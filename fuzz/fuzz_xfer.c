/*
 * fuzz_xfer.c - fuzz target: the message decoder (agents/xfer.c) on arbitrary
 * bytes.  Messages are in-process today, but the format will travel
 * between hosts, so the decoder must hold against any input.
 *
 * Input: byte 0 gives the blob's handles (bits 0-1: how many, 0 to 3;
 * bits 2-4: each a semaphore or a channel, made fresh for the input); the
 * rest is the encoding, in a heap block of exactly its size (so that ASan
 * sees a read past its end).
 *
 * What must hold: xfer_decode either raises "malformed message ..." or
 * pushes a value; that value xfer_encode accepts (the decoder takes only
 * what the encoder can write), and its encoding decodes to an equal value.
 * Every handle reference is released exactly once (a double release is a
 * use after free for ASan, a missing one a leak).  xfer_get_lstr (the
 * console's reading of a blob) stays within the blob.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lhandle.h"
#include "ms.h"
#include "xfer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

static int decode(lua_State *S) {
    xfer_decode(S, lua_touserdata(S, 1));
    return 1;
}

/* Deep equality of the values at a and b (absolute indices). */
static int same(lua_State *S, int a, int b, int depth) {
    int t = lua_type(S, a);
    if (t != lua_type(S, b) || depth > 200)
        return 0;
    switch (t) {
    case LUA_TNUMBER: {
        double x = lua_tonumber(S, a), y = lua_tonumber(S, b);
        return x == y || (x != x && y != y);
    }
    case LUA_TUSERDATA: {
        xh_type ta, tb;
        void *pa = lh_to_handle(S, a, &ta), *pb = lh_to_handle(S, b, &tb);
        return pa && pa == pb && ta == tb;
    }
    case LUA_TTABLE: {
        int n = 0, m = 0;
        lua_pushnil(S);
        while (lua_next(S, a)) {
            int v = lua_gettop(S);
            lua_pushvalue(S, v - 1);
            lua_rawget(S, b);
            int ok = same(S, v, lua_gettop(S), depth + 1);
            lua_pop(S, 2);
            if (!ok) {
                lua_pop(S, 1);
                return 0;
            }
            n++;
        }
        lua_pushnil(S);
        while (lua_next(S, b)) {
            lua_pop(S, 1);
            m++;
        }
        return n == m;
    }
    default:
        return lua_rawequal(S, a, b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
    }
    /* The blob: its handles, then its bytes in a block of their exact size
     * (xfer_put_handle also writes a tag into the buffer, which goes). */
    xfer x;
    xfer_init(&x);
    unsigned nh = data[0] & 3;
    for (unsigned i = 0; i < nh; i++) {
        if (data[0] & (4u << i)) {
            ms_chan *ch;
            if (ms_chan_new(2, NULL, &ch) == 0) {
                xfer_put_handle(&x, XH_CHAN, ch); /* takes its own reference */
                ms_chan_unref(ch);
            }
        } else {
            ms_sem *s;
            if (ms_sem_new(1, &s) == 0) {
                xfer_put_handle(&x, XH_SEM, s);
                ms_sem_unref(s);
            }
        }
    }
    size_t len = size - 1;
    x.buf = malloc(len ? len : 1);
    memcpy(x.buf, data + 1, len);
    x.len = x.cap = len;

    size_t got;
    const char *s = xfer_get_lstr(&x, &got);
    if (s && (s < x.buf || s + got > x.buf + x.len))
        abort();

    lua_settop(L, 0);
    lua_pushcfunction(L, decode);
    lua_pushlightuserdata(L, &x);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        const char *e = lua_tostring(L, -1);
        if (!e || (!strstr(e, "malformed message") && !strstr(e, "not enough memory"))) {
            fprintf(stderr, "xfer_decode raised something else: %s\n", e ? e : "(not a string)");
            abort();
        }
    } else {
        /* The round trip. */
        int v = lua_gettop(L);
        xfer y;
        xfer_init(&y);
        char err[300];
        if (!xfer_encode(L, v, &y, "value", err, sizeof err)) {
            fprintf(stderr, "a decoded value does not encode again: %s\n", err);
            abort();
        }
        lua_pushcfunction(L, decode);
        lua_pushlightuserdata(L, &y);
        if (lua_pcall(L, 1, 1, 0) != 0) {
            fprintf(stderr, "a re-encoded value does not decode: %s\n", lua_tostring(L, -1));
            abort();
        }
        if (!same(L, v, lua_gettop(L), 0)) {
            fprintf(stderr, "the round trip changed the value\n");
            abort();
        }
        xfer_clear(&y);
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT, 0); /* the handles' userdata release theirs */
    xfer_clear(&x);
    return 0;
}
