/*
 * lms_tls_client.c - a client-side TLS engine for Lua (http_tls.c's, in
 * the client role), for lua/ms/websocket.lua's wss:// (docs/http.md,
 * "WebSocket client").
 *
 * As with the framing (lms_http_wsc.c), the socket stays in Lua, where
 * every wait is an ms.net operation that a stop or a timeout interrupts:
 * Lua puts the bytes it read into the engine and writes out what the
 * engine has for the peer.  Nothing here waits.
 *
 * Bytes leave the engine only once Lua holds them: read peeks, builds the
 * string, then consumes; output builds the string, then drops.  A raise
 * in between (the agent's memory limit) loses nothing of the stream.
 *
 * Owner's thread only: an engine is a userdata of one agent.
 */
#include <lauxlib.h>
#include <string.h>

#include "http_tls.h"
#include "facts.h"
#include "lms_http_server.h"
#include "lms_tls_client.h"

#define TLSC_MT "ms.tls_client"
#define TLSC_CHUNK 16384

typedef struct tlsc {
    htls_ctx *ctx; /* this connection's own (its verify options) */
    htls *t;       /* NULL once freed */
    bool started;  /* handshake called: freed before it completed counts a failure */
    char buf[TLSC_CHUNK];
} tlsc;

static tlsc *check_tlsc(lua_State *L) {
    tlsc *c = luaL_checkudata(L, 1, TLSC_MT);
    if (!c->t)
        luaL_error(L, "tls: the engine is already freed");
    return c;
}

static int tlsc_free(lua_State *L) {
    tlsc *c = luaL_checkudata(L, 1, TLSC_MT);
    /* Counted here rather than where each failure is seen: a handshake
     * ends early in many ways (a refused certificate, a peer gone, a
     * timeout, the agent stopped while it waits) and every one of them
     * frees the engine. */
    if (c->t && c->started && !htls_established(c->t))
        http_server_stat_add(HTTP_M_WSC_TLS_FAILURES, 1);
    htls_free(c->t);
    htls_ctx_free(c->ctx);
    c->t = NULL;
    c->ctx = NULL;
    return 0;
}

/* t:put(bytes): what the socket delivered. */
static int tlsc_put(lua_State *L) {
    tlsc *c = check_tlsc(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (n && !htls_put(c->t, p, n))
        return luaL_error(L, "tls: out of memory");
    return 0;
}

/* t:handshake() -> true (done) | false (more input wanted) | nil, why */
static int tlsc_handshake(lua_State *L) {
    tlsc *c = check_tlsc(L);
    char what[256];
    c->started = true;
    int rc = htls_handshake(c->t, what, sizeof what);
    if (rc >= 0) {
        lua_pushboolean(L, rc == 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, what);
    return 2;
}

/* t:read() -> decrypted bytes | "" (more input wanted) | nil, "closed"
 * (the peer's close_notify) | nil, why */
static int tlsc_read(lua_State *L) {
    tlsc *c = check_tlsc(L);
    const char *what = NULL;
    int n = htls_peek(c->t, c->buf, sizeof c->buf, &what);
    if (n >= 0) {
        lua_pushlstring(L, c->buf, (size_t)n);
        htls_consume(c->t, (size_t)n);
        return 1;
    }
    lua_pushnil(L);
    if (n == -1)
        lua_pushliteral(L, "closed");
    else
        lua_pushstring(L, what);
    return 2;
}

/* t:write(data) -> true | nil, why: encrypted into the output. */
static int tlsc_write(lua_State *L) {
    tlsc *c = check_tlsc(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (n && !htls_write(c->t, p, n)) {
        lua_pushnil(L);
        lua_pushliteral(L, "cannot encrypt (the connection failed or no memory)");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* t:output() -> the bytes waiting for the peer ("" if none). */
static int tlsc_output(lua_State *L) {
    tlsc *c = check_tlsc(L);
    const char *p;
    size_t n = htls_peek_output(c->t, &p);
    lua_pushlstring(L, n ? p : "", n);
    htls_drop_output(c->t, n);
    return 1;
}

/* t:close_notify(): queues the TLS close for the peer. */
static int tlsc_close_notify(lua_State *L) {
    htls_close_notify(check_tlsc(L)->t);
    return 0;
}

/* ms.http._tls_client(host, verify, ca_file) -> engine; raises when
 * ca_file cannot be read or without memory. */
static int new_tlsc(lua_State *L) {
    const char *host = luaL_checkstring(L, 1);
    bool verify = lua_toboolean(L, 2);
    const char *ca_file = luaL_optstring(L, 3, NULL);
    tlsc *c = lua_newuserdata(L, sizeof *c);
    c->ctx = NULL;
    c->t = NULL;
    c->started = false;
    if (luaL_newmetatable(L, TLSC_MT)) {
        static const luaL_Reg methods[] = {
            {"put", tlsc_put},       {"handshake", tlsc_handshake}, {"read", tlsc_read},
            {"write", tlsc_write},   {"output", tlsc_output},       {"close_notify", tlsc_close_notify},
            {"free", tlsc_free},     {NULL, NULL}};
        lua_createtable(L, 0, 7);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, tlsc_free);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    /* From here the finalizer owns what is stored in c. */
    char err[400];
    c->ctx = htls_client_ctx_new(verify, ca_file, err, sizeof err);
    if (!c->ctx)
        return luaL_error(L, "%s", err);
    c->t = htls_new_client(c->ctx, host);
    if (!c->t)
        return luaL_error(L, "tls: no memory for a TLS engine");
    return 1;
}

void lms_tls_client_register(lua_State *L) {
    lua_pushcfunction(L, new_tlsc);
    lua_setfield(L, -2, "_tls_client");
}
