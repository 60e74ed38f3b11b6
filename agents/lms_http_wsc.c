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
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <wslay/wslay.h>

#include "lms_http_wsc.h"

#define CODEC_MT "ms.ws_codec"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct wmsg {
    struct wmsg *next;
    uint8_t opcode;
    uint16_t status;            /* a close's status code */
    size_t len;
    char data[];
} wmsg;

typedef struct codec {
    wslay_event_context_ptr ctx;    /* NULL once freed */
    const char *in;             /* bytes being fed (during feed only) */
    size_t in_len, in_off;
    char *out;                  /* bytes wslay wrote, for the socket */
    size_t out_len, out_cap;
    wmsg *head, *tail;          /* messages received, oldest first */
    bool failed;                /* out of memory in a callback */
} codec;

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *ud) {
    codec *c = ud;
    (void)flags;
    size_t left = c->in_len - c->in_off;
    if (left == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t k = left < len ? left : len;
    memcpy(buf, c->in + c->in_off, k);
    c->in_off += k;
    return (ssize_t)k;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud) {
    codec *c = ud;
    (void)flags;
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        char *grown = realloc(c->out, cap);
        if (!grown) {
            c->failed = true;
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        c->out = grown;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return (ssize_t)len;
}

static int on_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud) {
    (void)ctx;
    (void)ud;
    return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -1;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud) {
    codec *c = ud;
    (void)ctx;
    if (arg->opcode == WSLAY_PING)
        return; /* wslay queued the pong */
    size_t len = arg->msg_length;
    const uint8_t *p = arg->msg;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && len >= 2) {
        p += 2; /* the status code, given apart; the reason follows */
        len -= 2;
    } else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        len = 0;
    }
    wmsg *m = malloc(sizeof *m + len + 1);
    if (!m) {
        c->failed = true;
        return;
    }
    m->next = NULL;
    m->opcode = arg->opcode;
    m->status = arg->status_code;
    m->len = len;
    memcpy(m->data, p, len);
    m->data[len] = '\0';
    if (c->tail)
        c->tail->next = m;
    else
        c->head = m;
    c->tail = m;
}

static codec *check_codec(lua_State *L) {
    codec *c = luaL_checkudata(L, 1, CODEC_MT);
    if (!c->ctx)
        luaL_error(L, "websocket codec: already freed");
    return c;
}

static int codec_free(lua_State *L) {
    codec *c = luaL_checkudata(L, 1, CODEC_MT);
    if (c->ctx)
        wslay_event_context_free(c->ctx);
    c->ctx = NULL;
    while (c->head) {
        wmsg *m = c->head;
        c->head = m->next;
        free(m);
    }
    c->tail = NULL;
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    return 0;
}

/* Pushes the wslay result rc as nil, "what failed" when it is an error. */
static int result(lua_State *L, codec *c, int rc, const char *what) {
    if (c->failed || rc == WSLAY_ERR_NOMEM)
        return luaL_error(L, "websocket: out of memory %s", what);
    if (rc == WSLAY_ERR_NO_MORE_MSG) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (rc != 0 && rc != WSLAY_ERR_WOULDBLOCK) {
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
    c->in = p;
    c->in_len = len;
    c->in_off = 0;
    int rc = wslay_event_recv(c->ctx);
    c->in = NULL;
    c->in_len = c->in_off = 0;
    if (rc == 0 && !c->failed)
        rc = wslay_event_send(c->ctx); /* pongs and a close's answer */
    return result(L, c, rc, "receive");
}

/* codec:queue(kind, data) or codec:queue("close", reason, code) ->
 * true | nil, "closed" | nil, why.  kind: "text", "binary", "ping", "pong". */
static int codec_queue(lua_State *L) {
    codec *c = check_codec(L);
    const char *kind = luaL_checkstring(L, 2);
    size_t len;
    const char *data = luaL_optlstring(L, 3, "", &len);
    int rc;
    if (strcmp(kind, "close") == 0) {
        lua_Integer code = luaL_optinteger(L, 4, 1000);
        if (len > 123)
            return luaL_argerror(L, 3, "a close reason is at most 123 bytes");
        if (code != 0 && (code < 1000 || code > 4999 || code == 1004 || code == 1005 ||
                          code == 1006 || code == 1015))
            return luaL_argerror(L, 4, "a close code is 1000..4999, not 1004-1006 or 1015");
        rc = wslay_event_queue_close(c->ctx, (uint16_t)code, (const uint8_t *)data, len);
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
        struct wslay_event_msg m = {op, (const uint8_t *)data, len};
        rc = wslay_event_queue_msg(c->ctx, &m);
    }
    if (rc == 0)
        rc = wslay_event_send(c->ctx);
    return result(L, c, rc, "send");
}

/* codec:output() -> the bytes to write to the socket ("" if none). */
static int codec_output(lua_State *L) {
    codec *c = check_codec(L);
    lua_pushlstring(L, c->out ? c->out : "", c->out_len);
    c->out_len = 0;
    return 1;
}

/* codec:next() -> data, kind[, code] for the oldest message received, or
 * nothing.  kind: "text", "binary", "pong", "close" (data the reason,
 * code the status, 0 when the peer gave none). */
static int codec_next(lua_State *L) {
    codec *c = check_codec(L);
    wmsg *m = c->head;
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
    c->head = m->next;
    if (!c->head)
        c->tail = NULL;
    free(m);
    return 3;
}

/* codec:state() -> close_received, close_sent, want_read, has_message,
 * the status code of the close sent (wslay's own: 1002 for a protocol
 * error, 1009 for a message past max_message) */
static int codec_state(lua_State *L) {
    codec *c = check_codec(L);
    lua_pushboolean(L, wslay_event_get_close_received(c->ctx));
    lua_pushboolean(L, wslay_event_get_close_sent(c->ctx));
    lua_pushboolean(L, wslay_event_want_read(c->ctx));
    lua_pushboolean(L, c->head != NULL);
    lua_pushinteger(L, wslay_event_get_status_code_sent(c->ctx));
    return 5;
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
            {NULL, NULL}};
        lua_createtable(L, 0, 6);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, codec_free);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    static const struct wslay_event_callbacks cbs = {
        on_recv, on_send, on_genmask, NULL, NULL, NULL, on_msg};
    if (wslay_event_context_client_init(&c->ctx, &cbs, c) != 0) {
        c->ctx = NULL;
        return luaL_error(L, "websocket: out of memory");
    }
    wslay_event_config_set_max_recv_msg_length(c->ctx, (uint64_t)max);
    return 1;
}

/* Pushes the Sec-WebSocket-Accept for key: base64 of the SHA-1 of the
 * key and the RFC 6455 GUID. */
static int push_accept(lua_State *L, const char *key, size_t n) {
    unsigned char digest[EVP_MAX_MD_SIZE], accept[64];
    char text[64 + sizeof WS_GUID];
    if (n > 64)
        return luaL_error(L, "websocket: a key is at most 64 bytes");
    memcpy(text, key, n);
    memcpy(text + n, WS_GUID, sizeof WS_GUID);
    unsigned int dlen = 0;
    if (!EVP_Digest(text, n + sizeof WS_GUID - 1, digest, &dlen, EVP_sha1(), NULL))
        return luaL_error(L, "websocket: SHA-1 failed");
    EVP_EncodeBlock(accept, digest, (int)dlen);
    lua_pushstring(L, (char *)accept);
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

void lms_http_wsc_register(lua_State *L) {
    lua_pushcfunction(L, new_codec);
    lua_setfield(L, -2, "_ws_codec");
    lua_pushcfunction(L, new_key);
    lua_setfield(L, -2, "_ws_key");
    lua_pushcfunction(L, accept_of);
    lua_setfield(L, -2, "_ws_accept");
}
