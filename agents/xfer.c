/*
 * xfer.c - copying Lua values between agents.
 *
 * Agents share nothing, so a message is encoded in the sender's state into
 * a flat buffer and rebuilt in the receiver's.  Plain data (nil, booleans,
 * numbers, strings, nested tables) is copied; shared objects (agents,
 * semaphores, channels, reply slots) travel as references: the blob holds
 * one reference per handle, and decoding hands it to the new userdata.
 * Anything else (functions, coroutines, other userdata, cdata) is refused
 * at the sender with the path of the value ("args.handlers[2] is a
 * function").  Cycles are refused too (a shared subtable that is not a
 * cycle is copied twice): a message is a tree.
 *
 * Why not string.buffer: its encoder cannot carry our handles, reports a
 * failure without saying where in the value it happened, and would need a
 * second walk for both; one C walk does it all.
 *
 * Format: a tag byte, then for numbers 8 bytes, strings a u32 length and
 * the bytes, tables a u32 count of pairs and the pairs, handles a u32
 * index into the blob's handle array.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lhandle.h"
#include "ms.h"
#include "xfer.h"

enum { T_NIL = XT_NIL, T_FALSE = XT_FALSE, T_TRUE = XT_TRUE, T_NUM = XT_NUM, T_STR = XT_STR,
       T_TABLE = XT_TABLE, T_HANDLE = XT_HANDLE }; /* xfer.h */

void xfer_init(xfer *x) {
    x->buf = x->inline_buf;
    x->len = 0;
    x->cap = XFER_INLINE;
    x->handles = NULL;
    x->nhandles = x->hcap = 0;
    x->failed = false;
}

xfer *xfer_new(void) {
    xfer *x = malloc(sizeof *x);
    if (x)
        xfer_init(x);
    return x;
}

bool xfer_reserve(xfer *x, size_t bytes, uint32_t handles) {
    if (bytes > x->cap) {
        char *b = x->buf == x->inline_buf ? malloc(bytes) : realloc(x->buf, bytes);
        if (!b)
            return false;
        if (x->buf == x->inline_buf)
            memcpy(b, x->buf, x->len);
        x->buf = b;
        x->cap = bytes;
    }
    if (handles > x->hcap) {
        xhandle *h = realloc(x->handles, handles * sizeof *h);
        if (!h)
            return false;
        x->handles = h;
        x->hcap = handles;
    }
    return true;
}

void xfer_clear(xfer *x) {
    for (uint32_t i = 0; i < x->nhandles; i++)
        if (x->handles[i].ptr)
            lh_unref_handle(x->handles[i].type, x->handles[i].ptr);
    free(x->handles);
    if (x->buf != x->inline_buf)
        free(x->buf);
    x->buf = x->inline_buf;
    x->len = 0;
    x->cap = XFER_INLINE;
    x->handles = NULL;
    x->nhandles = x->hcap = 0;
    x->failed = false;
}

void xfer_free(xfer *x) {
    if (x) {
        xfer_clear(x);
        free(x);
    }
}

static bool put(xfer *x, const void *p, size_t n) {
    if (x->failed)
        return false;
    if (x->len + n > x->cap) {
        size_t cap = x->cap * 2;
        while (cap < x->len + n)
            cap *= 2;
        char *b;
        if (x->buf == x->inline_buf) {
            b = malloc(cap);
            if (b)
                memcpy(b, x->buf, x->len);
        } else {
            b = realloc(x->buf, cap);
        }
        if (!b) {
            x->failed = true; /* later puts write nothing: no torn blob */
            return false;
        }
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, p, n);
    x->len += n;
    return true;
}

static bool put_u8(xfer *x, uint8_t v) { return put(x, &v, 1); }
static bool put_u32(xfer *x, uint32_t v) { return put(x, &v, 4); }

/* The path of the value being encoded ("args.handlers[2]") is only
 * needed for an error message, so it is not built as the walk goes: each
 * level remembers the stack index of its current key (the keys stay on the
 * Lua stack during the walk) and the path is spelled out on failure. */
typedef struct enc {
    lua_State *L;
    xfer *x;
    char *err;
    size_t errlen;
    const char *root;
    const void *stack[XFER_MAX_DEPTH]; /* tables being encoded: cycle check */
    int keys[XFER_MAX_DEPTH];          /* stack index of each level's key, 0 if none */
    int depth;
} enc;

static void spell_path(enc *e, char *path, size_t size) {
    snprintf(path, size, "%s", e->root);
    for (int i = 0; i < e->depth; i++) {
        int k = e->keys[i];
        if (!k)
            continue;
        size_t used = strlen(path);
        if (lua_type(e->L, k) == LUA_TSTRING)
            snprintf(path + used, size - used, ".%s", lua_tostring(e->L, k));
        else if (lua_type(e->L, k) == LUA_TNUMBER)
            snprintf(path + used, size - used, "[%.14g]", lua_tonumber(e->L, k));
        else
            snprintf(path + used, size - used, "[<%s>]", luaL_typename(e->L, k));
    }
}

static bool fail(enc *e, const char *fmt, const char *what) {
    char path[256];
    spell_path(e, path, sizeof path);
    snprintf(e->err, e->errlen, fmt, path, what);
    return false;
}

static bool enc_value(enc *e, int idx);

static bool enc_table(enc *e, int idx) {
    lua_State *L = e->L;
    const void *p = lua_topointer(L, idx);
    for (int i = 0; i < e->depth; i++)
        if (e->stack[i] == p)
            return fail(e, "%s contains itself (a cycle)%s", "");
    if (e->depth >= XFER_MAX_DEPTH)
        return fail(e, "%s is nested too deeply%s", "");
    if (lua_getmetatable(L, idx)) {
        lua_pop(L, 1);
        return fail(e, "%s is a table with a metatable%s (only plain tables can be sent)", "");
    }
    e->keys[e->depth] = 0;
    e->stack[e->depth++] = p;
    if (!put_u8(e->x, T_TABLE))
        return fail(e, "%s: out of memory%s", "");
    size_t count_at = e->x->len;
    uint32_t n = 0;
    if (!put_u32(e->x, 0))
        return fail(e, "%s: out of memory%s", "");
    lua_checkstack(L, 4);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int top = lua_gettop(L);
        int kt = lua_type(L, top - 1);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
            const char *tn = luaL_typename(L, top - 1); /* a static string */
            bool r = fail(e, "%s has a key of type %s (only strings, numbers and booleans)", tn);
            lua_pop(L, 2);
            return r;
        }
        if (!enc_value(e, top - 1))
            return false;
        e->keys[e->depth - 1] = top - 1; /* the value's path ends in this key */
        if (!enc_value(e, top))
            return false;
        e->keys[e->depth - 1] = 0;
        lua_pop(L, 1);
        n++;
    }
    memcpy(e->x->buf + count_at, &n, 4);
    e->depth--;
    return true;
}

static bool enc_value(enc *e, int idx) {
    lua_State *L = e->L;
    xfer *x = e->x;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return put_u8(x, T_NIL) || fail(e, "%s: out of memory%s", "");
    case LUA_TBOOLEAN:
        return put_u8(x, lua_toboolean(L, idx) ? T_TRUE : T_FALSE) ||
               fail(e, "%s: out of memory%s", "");
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, idx);
        return (put_u8(x, T_NUM) && put(x, &d, sizeof d)) || fail(e, "%s: out of memory%s", "");
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (len > UINT32_MAX)
            return fail(e, "%s is a string too long to send%s", "");
        return (put_u8(x, T_STR) && put_u32(x, (uint32_t)len) && put(x, s, len)) ||
               fail(e, "%s: out of memory%s", "");
    }
    case LUA_TTABLE:
        return enc_table(e, idx < 0 ? lua_gettop(L) + idx + 1 : idx);
    case LUA_TUSERDATA: {
        xh_type type;
        void *ptr = lh_to_handle(L, idx, &type);
        if (!ptr)
            break;
        if (type == XH_CHAN && !lh_before_export(L, idx, e->err, e->errlen))
            return false;
        if (type == XH_SOCK) {
            /* A socket moves: it must be this agent's and idle, and in
             * the message once (two receivers cannot both own it). */
            char why[160];
            if (!lh_before_export(L, idx, why, sizeof why))
                return fail(e, "%s cannot be sent: %s", why);
            for (uint32_t i = 0; i < x->nhandles; i++)
                if (x->handles[i].ptr == ptr)
                    return fail(e, "%s is a socket already in this message%s", "");
        }
        if (x->nhandles == x->hcap) {
            uint32_t cap = x->hcap ? x->hcap * 2 : 4;
            xhandle *h = realloc(x->handles, cap * sizeof *h);
            if (!h) {
                x->failed = true;
                return fail(e, "%s: out of memory%s", "");
            }
            x->handles = h;
            x->hcap = cap;
        }
        lh_ref_handle(type, ptr);
        x->handles[x->nhandles] = (xhandle){type, ptr};
        return (put_u8(x, T_HANDLE) && put_u32(x, x->nhandles++)) ||
               fail(e, "%s: out of memory%s", "");
    }
    default:
        break;
    }
    return fail(e,
                "%s is a %s, which cannot be sent to another agent (send data, or a semaphore, "
                "channel, agent, socket or listener handle)",
                luaL_typename(L, idx));
}

bool xfer_encode(lua_State *L, int idx, xfer *x, const char *what, char *err, size_t errlen) {
    enc e = {.L = L, .x = x, .err = err, .errlen = errlen, .root = what};
    int abs = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    if (!enc_value(&e, abs)) {
        bool oom = x->failed;
        xfer_clear(x);
        x->failed = oom; /* the caller may tell memory from a bad value */
        return false;
    }
    lh_after_export(x);
    return true;
}

/* ---- decoding ---- */

/* The decoder trusts nothing in the bytes: a blob comes from our encoder
 * today, but the format will travel between hosts, and a fuzzer feeds it
 * arbitrary bytes (fuzz/fuzz_xfer.c).  Every read is bounds-checked,
 * tables nest at most XFER_MAX_DEPTH deep (as the encoder allows), keys
 * are what the encoder accepts (strings, numbers that are not NaN,
 * booleans), each handle is taken once, and the value must end exactly at
 * the end of the blob.  Anything else raises "malformed message ...". */

typedef struct dec {
    lua_State *L;
    xfer *x;
    size_t pos;
    int depth;
} dec;

static void malformed(dec *d, const char *what, unsigned long long n) {
    char text[160];
    snprintf(text, sizeof text, "malformed message at byte %zu of %zu: %s %llu", d->pos,
             d->x->len, what, n);
    luaL_error(d->L, "%s", text);
}

static const char *take(dec *d, size_t n) {
    if (d->x->len - d->pos < n)
        malformed(d, "truncated: bytes wanted", n);
    const char *p = d->x->buf + d->pos;
    d->pos += n;
    return p;
}

static uint32_t get_u32(dec *d) {
    uint32_t v;
    memcpy(&v, take(d, 4), 4);
    return v;
}

static void dec_value(dec *d, bool key) {
    lua_State *L = d->L;
    size_t at = d->pos;
    uint8_t tag = (uint8_t)*take(d, 1);
    if (key && tag != T_FALSE && tag != T_TRUE && tag != T_NUM && tag != T_STR) {
        d->pos = at;
        malformed(d, "a table key of tag", tag);
    }
    switch (tag) {
    case T_NIL:
        lua_pushnil(L);
        break;
    case T_FALSE:
        lua_pushboolean(L, 0);
        break;
    case T_TRUE:
        lua_pushboolean(L, 1);
        break;
    case T_NUM: {
        double v;
        memcpy(&v, take(d, sizeof v), sizeof v);
        if (key && v != v) {
            d->pos = at;
            malformed(d, "a NaN table key, tag", tag);
        }
        lua_pushnumber(L, v);
        break;
    }
    case T_STR: {
        uint32_t n = get_u32(d);
        const char *p = take(d, n);
        lua_pushlstring(L, p, n);
        break;
    }
    case T_TABLE: {
        uint32_t n = get_u32(d);
        if (++d->depth > XFER_MAX_DEPTH)
            malformed(d, "tables nested deeper than", XFER_MAX_DEPTH);
        /* A pair takes at least two bytes. */
        if (n > (d->x->len - d->pos) / 2)
            malformed(d, "truncated: table pairs", n);
        luaL_checkstack(L, 4, "decoding a message");
        lua_createtable(L, 0, (int)(n < 1024 ? n : 1024));
        for (uint32_t i = 0; i < n; i++) {
            dec_value(d, true);
            dec_value(d, false);
            lua_rawset(L, -3);
        }
        d->depth--;
        break;
    }
    case T_HANDLE: {
        uint32_t i = get_u32(d);
        if (i >= d->x->nhandles || !d->x->handles[i].ptr)
            malformed(d, "no such handle (or taken twice):", i);
        xhandle *h = &d->x->handles[i];
        void *ptr = h->ptr;
        h->ptr = NULL; /* the reference moves: lh_push_handle takes it */
        lh_push_handle(L, h->type, ptr);
        break;
    }
    default:
        d->pos = at;
        malformed(d, "unknown tag", tag);
    }
}

void xfer_decode(lua_State *L, xfer *x) {
    if (x->len == 0) {
        lua_pushnil(L);
        return;
    }
    dec d = {L, x, 0, 0};
    dec_value(&d, false);
    if (d.pos != x->len)
        malformed(&d, "bytes after the value:", x->len - d.pos);
}

/* ---- building by hand ---- */

void xfer_put_table(xfer *x, uint32_t pairs) {
    put_u8(x, T_TABLE);
    put_u32(x, pairs);
}

void xfer_put_str(xfer *x, const char *s) {
    xfer_put_lstr(x, s, strlen(s));
}

void xfer_put_lstr(xfer *x, const char *s, size_t n) {
    put_u8(x, T_STR);
    put_u32(x, (uint32_t)n);
    put(x, s, n);
}

const char *xfer_get_lstr(const xfer *x, size_t *len) {
    uint32_t n;
    if (x->len < 5 || (unsigned char)x->buf[0] != T_STR)
        return NULL;
    memcpy(&n, x->buf + 1, 4);
    if ((size_t)n != x->len - 5)
        return NULL;
    *len = n;
    return x->buf + 5;
}

void xfer_put_bool(xfer *x, bool b) {
    put_u8(x, b ? T_TRUE : T_FALSE);
}

void xfer_put_nil(xfer *x) {
    put_u8(x, T_NIL);
}

void xfer_put_num(xfer *x, double d) {
    put_u8(x, T_NUM);
    put(x, &d, sizeof d);
}

void xfer_put_handle(xfer *x, xh_type type, void *ptr) {
    if (x->failed)
        return;
    if (x->nhandles == x->hcap) {
        uint32_t cap = x->hcap ? x->hcap * 2 : 4;
        xhandle *h = realloc(x->handles, cap * sizeof *h);
        if (!h) {
            x->failed = true;
            return;
        }
        x->handles = h;
        x->hcap = cap;
    }
    lh_ref_handle(type, ptr);
    x->handles[x->nhandles] = (xhandle){type, ptr};
    put_u8(x, T_HANDLE);
    put_u32(x, x->nhandles++);
}
