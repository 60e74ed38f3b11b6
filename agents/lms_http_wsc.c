/*
 * lms_http_wsc.c - the WebSocket client's framing: wslay's event API
 * run over memory buffers, for lua/ms/websocket.lua, which owns the
 * socket (ms.net) and the handshake (docs/http.md, "WebSocket client").
 *
 * wslay wants to read and write through callbacks; here its reads come
 * from the bytes fed in (codec:feed) and its writes go to an output
 * buffer (codec:output), so the socket I/O stays in Lua, where every wait
 * is an operation a stop or a timeout interrupts.  wslay reassembles
 * fragments, masks what the client sends, answers pings with pongs and
 * answers a close; messages received wait in a C queue until codec:next
 * hands them to Lua one at a time.  Nothing calls Lua while wslay runs
 * (a raise would unwind through it): the callbacks only copy bytes, and
 * the Lua values are built after wslay has returned.
 *
 * Owner's thread only: a codec is a userdata of one agent.
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "lerr.h"
#include "lms_http_server.h"
#include "lms_http_wsc.h"
#include "ms.h"
#include "ws_frames.h"

#define CODEC_MT "ms.ws_codec"

/* The engine (ws_frames.c); f.ctx NULL once freed. */
typedef struct codec {
    wsf f;
} codec;

static codec *check_codec(lua_State *L) {
    codec *c = luaL_checkudata(L, 1, CODEC_MT);
    if (!c->f.ctx)
        luaL_error(L, "websocket codec: already freed");
    return c;
}

static int codec_free(lua_State *L) {
    codec *c = luaL_checkudata(L, 1, CODEC_MT);
    wsf_free(&c->f);
    return 0;
}

/* Pushes the wslay result rc as nil, "what failed" when it is an error. */
static int result(lua_State *L, codec *c, int rc, const char *what) {
    (void)c;
    if (rc == WSLAY_ERR_NOMEM)
        return luaL_error(L, "websocket: out of memory %s", what);
    if (rc == WSLAY_ERR_NO_MORE_MSG) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "websocket %s failed (wslay error %d)", what, rc);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* codec:feed(bytes) -> true | nil, why: wslay reads them all. */
static int codec_feed(lua_State *L) {
    codec *c = check_codec(L);
    size_t len;
    const char *p = luaL_checklstring(L, 2, &len);
    return result(L, c, wsf_feed(&c->f, p, len), "receive");
}

/* codec:queue(kind, data) or codec:queue("close", reason, code) ->
 * true | nil, "closed" | nil, why.  kind: "text", "binary", "ping", "pong",
 * or "keepalive" (a ping whose pong is not delivered: WSF_KEEPALIVE). */
static int codec_queue(lua_State *L) {
    codec *c = check_codec(L);
    const char *kind = luaL_checkstring(L, 2);
    size_t len;
    const char *data = luaL_optlstring(L, 3, "", &len);
    int rc;
    if (strcmp(kind, "keepalive") == 0) {
        rc = wsf_keepalive(&c->f);
    } else if (strcmp(kind, "close") == 0) {
        lua_Integer code = luaL_optinteger(L, 4, 1000);
        if (len > 123)
            return luaL_argerror(L, 3, "a close reason is at most 123 bytes");
        if (code != 0 && (code < 1000 || code > 4999 || code == 1004 || code == 1005 ||
                          code == 1006 || code == 1015))
            return luaL_argerror(L, 4, "a close code is 1000..4999, not 1004-1006 or 1015");
        rc = wsf_queue_close(&c->f, (uint16_t)code, data, len);
    } else {
        uint8_t op = strcmp(kind, "text") == 0     ? WSLAY_TEXT_FRAME
                     : strcmp(kind, "binary") == 0 ? WSLAY_BINARY_FRAME
                     : strcmp(kind, "ping") == 0   ? WSLAY_PING
                     : strcmp(kind, "pong") == 0   ? WSLAY_PONG
                                                   : 0;
        if (!op)
            return luaL_argerror(L, 2, "the kind is \"text\", \"binary\", \"ping\" or \"pong\"");
        if ((op == WSLAY_PING || op == WSLAY_PONG) && len > 125)
            return luaL_argerror(L, 3, "a ping or pong carries at most 125 bytes");
        rc = wsf_queue(&c->f, op, data, len);
    }
    return result(L, c, rc, "send");
}

/* codec:output() -> the bytes to write to the socket ("" if none). */
static int codec_output(lua_State *L) {
    codec *c = check_codec(L);
    lua_pushlstring(L, c->f.out ? c->f.out : "", c->f.out_len);
    c->f.out_len = 0;
    return 1;
}

/* codec:next() -> data, kind[, code] for the oldest message received, or
 * nothing.  kind: "text", "binary", "pong", "close" (data the reason,
 * code the status, 0 when the peer gave none). */
static int codec_next(lua_State *L) {
    codec *c = check_codec(L);
    wsf_msg *m = c->f.head;
    if (!m)
        return 0;
    lua_pushlstring(L, m->data, m->len);
    switch (m->opcode) {
    case WSLAY_TEXT_FRAME: lua_pushliteral(L, "text"); break;
    case WSLAY_BINARY_FRAME: lua_pushliteral(L, "binary"); break;
    case WSLAY_PONG: lua_pushliteral(L, "pong"); break;
    default: lua_pushliteral(L, "close"); break;
    }
    lua_pushinteger(L, m->status);
    /* Built: now it may go. */
    free(wsf_pop(&c->f));
    return 3;
}

/* codec:state() -> close_received, close_sent, want_read, has_message,
 * the status code of the close sent (wslay's own: 1002 for a protocol
 * error, 1009 for a message past max_message) */
static int codec_state(lua_State *L) {
    codec *c = check_codec(L);
    lua_pushboolean(L, wslay_event_get_close_received(c->f.ctx));
    lua_pushboolean(L, wslay_event_get_close_sent(c->f.ctx));
    lua_pushboolean(L, wslay_event_want_read(c->f.ctx));
    lua_pushboolean(L, c->f.head != NULL);
    lua_pushinteger(L, wslay_event_get_status_code_sent(c->f.ctx));
    return 5;
}

/* codec:ping_timed_out(): counts a connection ended by the keepalive. */
static int codec_ping_timed_out(lua_State *L) {
    (void)L;
    http_server_stat_add(HTTP_M_WSC_PING_TIMEOUTS, 1);
    return 0;
}

/* ms.http._ws_codec(max_message) -> a client codec */
static int new_codec(lua_State *L) {
    lua_Integer max = luaL_checkinteger(L, 1);
    if (max < 1)
        return luaL_argerror(L, 1, "max_message must be at least 1 byte");
    codec *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    if (luaL_newmetatable(L, CODEC_MT)) {
        static const luaL_Reg methods[] = {
            {"feed", codec_feed},     {"queue", codec_queue}, {"output", codec_output},
            {"next", codec_next},     {"state", codec_state}, {"free", codec_free},
            {"ping_timed_out", codec_ping_timed_out}, {NULL, NULL}};
        lua_createtable(L, 0, 7);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, codec_free);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (wsf_init(&c->f, false, (uint64_t)max) != 0)
        return luaL_error(L, "websocket: out of memory");
    return 1;
}

/* Pushes the Sec-WebSocket-Accept for key. */
static int push_accept(lua_State *L, const char *key, size_t n) {
    char accept[32];
    if (n > 64)
        return luaL_error(L, "websocket: a key is at most 64 bytes");
    if (!wsf_accept_of(key, n, accept))
        return luaL_error(L, "websocket: SHA-1 failed");
    lua_pushstring(L, accept);
    return 1;
}

/* ms.http._ws_key() -> key, accept: a Sec-WebSocket-Key (16 random
 * bytes, base64) and the Sec-WebSocket-Accept a server must answer. */
static int new_key(lua_State *L) {
    unsigned char raw[16], key[32];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return luaL_error(L, "websocket: no random bytes for the key");
    EVP_EncodeBlock(key, raw, sizeof raw);
    lua_pushstring(L, (char *)key);
    return 1 + push_accept(L, (char *)key, strlen((char *)key));
}

/* ms.http._ws_accept(key) -> the Sec-WebSocket-Accept for key (for a
 * server: the allocation-failure sweep's driver is one). */
static int accept_of(lua_State *L) {
    size_t n;
    const char *key = luaL_checklstring(L, 1, &n);
    return push_accept(L, key, n);
}

/* ms.http._ws_error(reason, message) -> an error value (docs/errors.md)
 * with its reason: Timeout for "timeout", IoError for the rest. */
static int new_error(lua_State *L) {
    const char *reason = luaL_checkstring(L, 1);
    const char *message = luaL_checkstring(L, 2);
    lerr_push(L, strcmp(reason, "timeout") == 0 ? MS_E_TIMEOUT : MS_E_IO, message, NULL);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "reason");
    return 1;
}

void lms_http_wsc_register(lua_State *L) {
    lua_pushcfunction(L, new_error);
    lua_setfield(L, -2, "_ws_error");
    lua_pushcfunction(L, new_codec);
    lua_setfield(L, -2, "_ws_codec");
    lua_pushcfunction(L, new_key);
    lua_setfield(L, -2, "_ws_key");
    lua_pushcfunction(L, accept_of);
    lua_setfield(L, -2, "_ws_accept");
}
