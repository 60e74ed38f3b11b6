/*
 * http_ws.c - ms.http.serve's WebSocket connections after the upgrade:
 * the inbox and outbox between the connection's task and the agent, and
 * the ws object the websocket handler gets (http_ws.h).
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "hold.h"
#include "http_ws.h"
#include "lms_http_server.h"
#include "ltask.h"
#include "ops.h"
#include "ws_frames.h"

#define WS_MT "ms.http.websocket"
/* The task stops reading while this much of its own output waits. */
#define HWS_OUT_HIGH (64 * 1024)

struct hws {
    _Atomic uint32_t refs;      /* the task, the agent's userdata */
    uint64_t max_message;       /* immutable */
    size_t max_buffer;          /* immutable: inbox and outbox bound, bytes */
    pthread_mutex_t lock;
    /* Under lock: */
    wsf_msg *in_head, *in_tail; /* received, for the agent */
    size_t in_bytes;
    wsf_msg *out_head, *out_tail; /* from the agent, for the task */
    size_t out_bytes;
    bool agent_close;           /* the agent closed: agent_code/reason go after the outbox */
    uint16_t agent_code;
    bool closed;                /* no more messages: code/reason say why */
    uint16_t code;
    size_t reason_len;
    char reason[124];
    bool task_gone;
    bool handle_gone;
    ms_waker task_waker, rx_waker, tx_waker;
    /* Under park_lock: parked by ws:_park() for another agent to
     * attach (ms.http._ws_attach); the list holds a reference. */
    uint64_t park_id;           /* 0: not parked */
    struct hws *park_next;
    /* The task's own: */
    wsf f;
    bool going_away;            /* 1001 queued */
    bool agent_close_done;      /* the agent's close handed to the engine */
    char agent_reason[124];     /* under lock until agent_close_done */
    size_t agent_reason_len;
};

static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static hws *parked;
static uint64_t park_next_id = 1;

/* Takes h (or, h NULL, the one parked as id) off the parked list: the
 * list's reference is then the caller's.  NULL when it is not there. */
static hws *unpark(hws *h, uint64_t id) {
    pthread_mutex_lock(&park_lock);
    hws *found = NULL;
    for (hws **p = &parked; *p; p = &(*p)->park_next)
        if (h ? *p == h : (*p)->park_id == id) {
            found = *p;
            *p = found->park_next;
            found->park_next = NULL;
            found->park_id = 0;
            break;
        }
    pthread_mutex_unlock(&park_lock);
    return found;
}

static void count(http_metric m, int64_t n) {
    http_server_stat_add(m, n);
}

void hws_ref(hws *h) {
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
}

void hws_unref(hws *h) {
    if (atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1)
        return;
    wsf_free(&h->f);
    for (wsf_msg *m = h->in_head, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    for (wsf_msg *m = h->out_head, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    ms_waker_drop(&h->task_waker);
    ms_waker_drop(&h->rx_waker);
    ms_waker_drop(&h->tx_waker);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

hws *hws_new(uint64_t max_message, size_t max_buffer, const char *accept) {
    hws *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    if (wsf_init(&h->f, true, max_message) != 0) {
        free(h);
        return NULL;
    }
    char head[200];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (!wsf_out_add(&h->f, head, (size_t)n)) {
        wsf_free(&h->f);
        free(h);
        return NULL;
    }
    atomic_init(&h->refs, 1);
    h->max_message = max_message;
    h->max_buffer = max_buffer;
    pthread_mutex_init(&h->lock, NULL);
    return h;
}

void hws_task_waker(hws *h, const ms_waker *w) {
    pthread_mutex_lock(&h->lock);
    ms_waker_store(&h->task_waker, w);
    pthread_mutex_unlock(&h->lock);
}

/* Sets why the connection is over, the first time (under lock). */
static void set_closed(hws *h, uint16_t code, const char *reason, size_t len) {
    if (h->closed)
        return;
    h->closed = true;
    h->code = code;
    if (len > sizeof h->reason)
        len = sizeof h->reason;
    memcpy(h->reason, reason, len);
    h->reason_len = len;
}

static void wake_agent(hws *h) {
    pthread_mutex_lock(&h->lock);
    ms_waker r = h->rx_waker, t = h->tx_waker;
    h->rx_waker = h->tx_waker = (ms_waker){0};
    pthread_mutex_unlock(&h->lock);
    if (!ms_waker_is_null(&r))
        ms_waker_wake(&r);
    if (!ms_waker_is_null(&t))
        ms_waker_wake(&t);
}

/* After the engine ran: what it refused on its own (1002, 1007, 1009). */
static void note_engine_close(hws *h) {
    if (!wslay_event_get_close_sent(h->f.ctx) || wslay_event_get_close_received(h->f.ctx))
        return;
    uint16_t code = h->f.refused ? h->f.refused : wslay_event_get_status_code_sent(h->f.ctx);
    const char *why = code == 1009   ? "message too large (max_message)"
                      : code == 1007 ? "text message is not UTF-8"
                      : code == 1001 ? "the server is going away"
                                     : "protocol error";
    pthread_mutex_lock(&h->lock);
    bool first = !h->closed;
    set_closed(h, code, why, strlen(why));
    pthread_mutex_unlock(&h->lock);
    if (first)
        wake_agent(h);
}

bool hws_pump(hws *h, bool going_away) {
    if (h->f.out_len > 0)
        return true;
    if (wslay_event_get_close_sent(h->f.ctx))
        return true;
    pthread_mutex_lock(&h->lock);
    wsf_msg *list = h->out_head;
    h->out_head = h->out_tail = NULL;
    bool had = h->out_bytes > 0;
    h->out_bytes = 0;
    bool close = h->agent_close && !h->agent_close_done;
    uint16_t code = h->agent_code;
    ms_waker tx = had ? h->tx_waker : (ms_waker){0};
    if (had)
        h->tx_waker = (ms_waker){0};
    pthread_mutex_unlock(&h->lock);
    if (!ms_waker_is_null(&tx))
        ms_waker_wake(&tx); /* room in the outbox */
    bool ok = true;
    while (list) {
        wsf_msg *m = list;
        list = m->next;
        if (ok) {
            int rc = wsf_queue(&h->f, m->opcode, m->data, m->len);
            if (rc == WSLAY_ERR_NOMEM)
                ok = false;
            else if (rc == 0 && m->opcode != WSLAY_PING)
                count(HTTP_M_WS_MESSAGES_OUT, 1);
        }
        free(m);
    }
    if (!ok)
        return false;
    if (close) {
        h->agent_close_done = true;
        if (wsf_queue_close(&h->f, code, h->agent_reason, h->agent_reason_len) == WSLAY_ERR_NOMEM)
            return false;
    } else if (going_away && !h->going_away) {
        static const char why[] = "the server is going away";
        h->going_away = true;
        if (wsf_queue_close(&h->f, 1001, why, sizeof why - 1) == WSLAY_ERR_NOMEM)
            return false;
        pthread_mutex_lock(&h->lock);
        set_closed(h, 1001, why, sizeof why - 1);
        pthread_mutex_unlock(&h->lock);
        wake_agent(h);
    }
    return true;
}

const char *hws_output(hws *h, size_t *n) {
    *n = h->f.out_len;
    return h->f.out;
}

void hws_written(hws *h, size_t n) {
    wsf_out_consume(&h->f, n);
}

bool hws_can_read(hws *h) {
    if (!wslay_event_want_read(h->f.ctx) || h->f.out_len >= HWS_OUT_HIGH)
        return false;
    pthread_mutex_lock(&h->lock);
    bool room = h->in_bytes < h->max_buffer;
    pthread_mutex_unlock(&h->lock);
    return room;
}

bool hws_feed(hws *h, const char *p, size_t n) {
    int rc = wsf_feed(&h->f, p, n);
    if (rc == WSLAY_ERR_NOMEM)
        return false;
    bool any = false;
    for (wsf_msg *m; (m = wsf_pop(&h->f));) {
        if (m->opcode == WSLAY_CONNECTION_CLOSE) {
            pthread_mutex_lock(&h->lock);
            set_closed(h, m->status ? m->status : 1005, m->data, m->len);
            pthread_mutex_unlock(&h->lock);
            free(m);
            any = true;
            continue;
        }
        count(HTTP_M_WS_MESSAGES_IN, 1);
        pthread_mutex_lock(&h->lock);
        if (h->in_tail)
            h->in_tail->next = m;
        else
            h->in_head = m;
        h->in_tail = m;
        h->in_bytes += m->len + 1;
        pthread_mutex_unlock(&h->lock);
        any = true;
    }
    note_engine_close(h);
    if (any)
        wake_agent(h);
    return true;
}

bool hws_keepalive(hws *h) {
    return wsf_keepalive(&h->f) != WSLAY_ERR_NOMEM;
}

bool hws_inbox_full(hws *h) {
    pthread_mutex_lock(&h->lock);
    bool full = h->in_bytes >= h->max_buffer;
    pthread_mutex_unlock(&h->lock);
    return full;
}

void hws_timed_out(hws *h) {
    static const char why[] = "the peer did not answer a ping within ping_timeout";
    pthread_mutex_lock(&h->lock);
    set_closed(h, 1006, why, sizeof why - 1);
    pthread_mutex_unlock(&h->lock);
}

bool hws_finished(hws *h) {
    return wsf_finished(&h->f);
}

bool hws_close_sent(hws *h) {
    return wslay_event_get_close_sent(h->f.ctx);
}

void hws_end(hws *h) {
    pthread_mutex_lock(&h->lock);
    set_closed(h, 1006, "the connection ended without a close", 36);
    uint16_t code = h->code;
    h->task_gone = true;
    ms_waker_drop(&h->task_waker);
    pthread_mutex_unlock(&h->lock);
    wake_agent(h);
    /* Parked and never attached (the agent meant for it did not start):
     * the list's reference goes with the connection. */
    if (unpark(h, 0))
        hws_unref(h);
    count(HTTP_M_WS_OPEN, -1);
    switch (code) {
    case 1000: case 1001: case 1005: count(HTTP_M_WS_CLOSED_NORMAL, 1); break;
    case 1002: count(HTTP_M_WS_CLOSED_PROTOCOL, 1); break;
    case 1006: count(HTTP_M_WS_CLOSED_ABNORMAL, 1); break;
    case 1007: count(HTTP_M_WS_CLOSED_UTF8, 1); break;
    case 1009: count(HTTP_M_WS_CLOSED_TOO_BIG, 1); break;
    default: count(HTTP_M_WS_CLOSED_OTHER, 1); break;
    }
    hws_unref(h);
}

/* ---- the agent's side ---- */

typedef struct ws_ud {
    hws *h;                     /* a reference; NULL once let go */
    bool closed;                /* ws:close() was called */
} ws_ud;

static ws_ud *check_ws(lua_State *L) {
    ws_ud *u = luaL_checkudata(L, 1, WS_MT);
    if (!u->h)
        luaL_error(L, "websocket: this connection was let go");
    return u;
}

/* Hands the agent's close to the task (under no lock). */
static void agent_close(hws *h, uint16_t code, const char *reason, size_t len) {
    pthread_mutex_lock(&h->lock);
    ms_waker w = {0};
    if (!h->agent_close && !h->task_gone) {
        h->agent_close = true;
        h->agent_code = code;
        if (len > sizeof h->agent_reason)
            len = sizeof h->agent_reason;
        memcpy(h->agent_reason, reason, len);
        h->agent_reason_len = len;
        set_closed(h, code, reason, len);
        w = ms_waker_clone(&h->task_waker);
    }
    pthread_mutex_unlock(&h->lock);
    if (!ms_waker_is_null(&w))
        ms_waker_wake(&w);
}

static void ws_let_go(ws_ud *u, uint16_t code, const char *why) {
    hws *h = u->h;
    if (!h)
        return;
    u->h = NULL;
    if (!u->closed)
        agent_close(h, code, why, strlen(why));
    hws_unref(h);
}

static int ws_gc(lua_State *L) {
    ws_ud *u = lua_touserdata(L, 1);
    if (u)
        ws_let_go(u, 1011, "the handler's agent let go of the connection");
    return 0;
}

void hws_push(lua_State *L, hws *h) {
    ws_ud *u = lua_newuserdata(L, sizeof *u);
    u->h = NULL;
    u->closed = false;
    luaL_getmetatable(L, WS_MT);
    lua_setmetatable(L, -2);
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    u->h = h;
}

/* The operation's store: the connection and which wait. */
typedef struct ws_op {
    hws *h;                     /* a reference while the task waits */
    bool send;
    uint8_t op;                 /* send: the message's opcode, */
    const char *p;              /* its bytes (anchored on the coroutine's stack) */
    size_t n;
} ws_op;

_Static_assert(sizeof(ws_op) <= sizeof(((lop *)0)->store), "ws_op fits the op store");

/* Pushes the oldest message (data, kind), or nil, "closed", code, reason
 * when none is left and the connection is over; 0 when it must wait.
 * Under no lock. */
wsf_msg *hws_pop_message(hws *h) {
    pthread_mutex_lock(&h->lock);
    wsf_msg *m = h->in_head;
    ms_waker w = {0};
    if (m) {
        bool was_full = h->in_bytes >= h->max_buffer;
        h->in_head = m->next;
        if (!h->in_head)
            h->in_tail = NULL;
        h->in_bytes -= m->len + 1;
        m->next = NULL;
        if (was_full && h->in_bytes < h->max_buffer)
            w = ms_waker_clone(&h->task_waker); /* the task may read again */
    }
    pthread_mutex_unlock(&h->lock);
    if (!ms_waker_is_null(&w))
        ms_waker_wake(&w);
    return m;
}

static int push_next(lua_State *L, hws *h) {
    /* Closed is read first: the messages that came before the close are
     * in the inbox by then, so none is lost behind a "closed". */
    pthread_mutex_lock(&h->lock);
    bool closed = h->closed || h->task_gone;
    uint16_t code = h->code;
    char reason[sizeof h->reason];
    size_t rlen = h->reason_len;
    memcpy(reason, h->reason, rlen);
    pthread_mutex_unlock(&h->lock);
    wsf_msg *m = hws_pop_message(h);
    if (m) {
        hold_push(m, free);
        lua_pushlstring(L, m->data, m->len);
        lua_pushstring(L, m->opcode == WSLAY_TEXT_FRAME     ? "text"
                          : m->opcode == WSLAY_BINARY_FRAME ? "binary"
                                                            : "pong");
        hold_pop(m);
        free(m);
        return 2;
    }
    if (!closed)
        return 0;
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    lua_pushinteger(L, code);
    lua_pushlstring(L, reason, rlen);
    return 4;
}

static void ws_op_release(ltask *lt) {
    ws_op *o = (ws_op *)lt->op.store;
    if (!o->h)
        return;
    pthread_mutex_lock(&o->h->lock);
    ms_waker w;
    if (o->send) {
        w = o->h->tx_waker;
        o->h->tx_waker = (ms_waker){0};
    } else {
        w = o->h->rx_waker;
        o->h->rx_waker = (ms_waker){0};
    }
    pthread_mutex_unlock(&o->h->lock);
    ms_waker_drop(&w);
    hws_unref(o->h);
    o->h = NULL;
}

static ms_poll recv_poll(ltask *lt, ms_cx *cx) {
    ws_op *o = (ws_op *)lt->op.store;
    hws *h = o->h;
    pthread_mutex_lock(&h->lock);
    bool ready = h->in_head || h->closed || h->task_gone;
    if (!ready)
        ms_waker_store(&h->rx_waker, ms_cx_waker(cx));
    pthread_mutex_unlock(&h->lock);
    if (!ready)
        return MS_POLL_PENDING;
    int n = push_next(lt->co, h);
    ws_op_release(lt);
    if (n == 0) { /* taken meanwhile by nobody else: cannot happen (one receiver) */
        lua_pushnil(lt->co);
        lua_pushliteral(lt->co, "closed");
        n = 2;
    }
    lt->nres = n;
    return MS_POLL_READY;
}

static void ws_op_cancel(ltask *lt) {
    ws_op_release(lt);
}

static void ws_describe(const ltask *lt, lop_desc *d) {
    const ws_op *o = (const ws_op *)lt->op.store;
    snprintf(d->what, sizeof d->what, "websocket (%s)", o->send ? "send" : "receive");
}

static const lop_kind ws_kind = {"websocket", ws_describe};

/* ws:receive([timeout]) -> data, "text" | "binary" | "pong"
 *                        | nil, "closed", code, reason | nil, "timeout" */
static int ws_receive(lua_State *L) {
    ws_ud *u = check_ws(L);
    double timeout = luaL_optnumber(L, 2, -1);
    int n = push_next(L, u->h);
    if (n)
        return n;
    ltask *lt = ltask_current(L, "ws:receive");
    pthread_mutex_lock(&u->h->lock);
    bool other = !ms_waker_is_null(&u->h->rx_waker);
    pthread_mutex_unlock(&u->h->lock);
    if (other)
        return luaL_error(L, "ws:receive: another task is already receiving on this websocket");
    op_set_deadline(L, lt, timeout);
    ws_op *o = (ws_op *)lt->op.store;
    memset(o, 0, sizeof *o);
    atomic_fetch_add_explicit(&u->h->refs, 1, memory_order_relaxed);
    o->h = u->h;
    lt->op.kind = &ws_kind;
    return op_suspend(L, lt, recv_poll, ws_op_cancel, 0);
}

/* Whether a message of need bytes fits the outbox now (under lock). */
static bool out_room(hws *h, size_t need) {
    return h->out_bytes == 0 || h->out_bytes + need <= h->max_buffer;
}

/* Appends a message to the outbox: 1 done, 0 full, -1 closed, -2 no
 * memory. */
static int enqueue(hws *h, uint8_t op, const char *p, size_t n) {
    wsf_msg *m = malloc(sizeof *m + n + 1);
    if (!m)
        return -2;
    m->next = NULL;
    m->opcode = op;
    m->status = 0;
    m->len = n;
    memcpy(m->data, p, n);
    m->data[n] = '\0';
    pthread_mutex_lock(&h->lock);
    int rc = 1;
    if (h->closed || h->task_gone || h->agent_close)
        rc = -1;
    else if (!out_room(h, n + 1))
        rc = 0;
    ms_waker w = {0};
    if (rc == 1) {
        if (h->out_tail)
            h->out_tail->next = m;
        else
            h->out_head = m;
        h->out_tail = m;
        h->out_bytes += n + 1;
        w = ms_waker_clone(&h->task_waker);
        m = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    free(m);
    if (!ms_waker_is_null(&w))
        ms_waker_wake(&w);
    return rc;
}

/* A send waiting for room: the data stays anchored on the coroutine's
 * stack (the one value op_suspend kept) until it is copied in. */
static ms_poll send_poll(ltask *lt, ms_cx *cx) {
    ws_op *o = (ws_op *)lt->op.store;
    hws *h = o->h;
    pthread_mutex_lock(&h->lock);
    bool ready = out_room(h, o->n + 1) || h->closed || h->task_gone || h->agent_close;
    if (!ready)
        ms_waker_store(&h->tx_waker, ms_cx_waker(cx));
    pthread_mutex_unlock(&h->lock);
    if (!ready)
        return MS_POLL_PENDING;
    int rc = enqueue(h, o->op, o->p, o->n);
    if (rc == 0) { /* a ping took the room meanwhile: wait again */
        pthread_mutex_lock(&h->lock);
        ms_waker_store(&h->tx_waker, ms_cx_waker(cx));
        pthread_mutex_unlock(&h->lock);
        return MS_POLL_PENDING;
    }
    ws_op_release(lt);
    lua_settop(lt->co, 0);
    if (rc == 1) {
        lua_pushboolean(lt->co, 1);
        lt->nres = 1;
    } else {
        lua_pushnil(lt->co);
        lua_pushstring(lt->co, rc == -1 ? "closed" : "out of memory");
        lt->nres = 2;
    }
    return MS_POLL_READY;
}

static uint8_t kind_of(lua_State *L, int idx, const char *def) {
    const char *kind = luaL_optstring(L, idx, def);
    if (strcmp(kind, "text") == 0)
        return WSLAY_TEXT_FRAME;
    if (strcmp(kind, "binary") == 0)
        return WSLAY_BINARY_FRAME;
    luaL_argerror(L, idx, "the kind is \"text\" or \"binary\"");
    return 0;
}

/* ws:send(data[, "text" | "binary"[, timeout]]) -> true | nil, "closed"
 * | nil, "timeout": waits while the outbox is full (back-pressure). */
static int ws_send(lua_State *L) {
    ws_ud *u = check_ws(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    uint8_t op = kind_of(L, 3, "text");
    double timeout = luaL_optnumber(L, 4, -1);
    int rc = enqueue(u->h, op, p, n);
    if (rc == -2)
        return luaL_error(L, "ws:send: out of memory");
    if (rc == 1) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (rc == -1) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    ltask *lt = ltask_current(L, "ws:send");
    pthread_mutex_lock(&u->h->lock);
    bool other = !ms_waker_is_null(&u->h->tx_waker);
    pthread_mutex_unlock(&u->h->lock);
    if (other)
        return luaL_error(L, "ws:send: another task is already waiting to send on this websocket");
    op_set_deadline(L, lt, timeout);
    ws_op *o = (ws_op *)lt->op.store;
    memset(o, 0, sizeof *o);
    atomic_fetch_add_explicit(&u->h->refs, 1, memory_order_relaxed);
    o->h = u->h;
    o->send = true;
    o->op = op;
    o->p = p;
    o->n = n;
    lua_settop(L, 2);
    lt->op.kind = &ws_kind;
    return op_suspend(L, lt, send_poll, ws_op_cancel, 1);
}

/* ws:ping([data]) -> true | nil, "closed" */
static int ws_ping(lua_State *L) {
    ws_ud *u = check_ws(L);
    size_t n;
    const char *p = luaL_optlstring(L, 2, "", &n);
    if (n > 125)
        return luaL_argerror(L, 2, "a ping carries at most 125 bytes");
    int rc = enqueue(u->h, WSLAY_PING, p, n);
    if (rc == -2)
        return luaL_error(L, "ws:ping: out of memory");
    if (rc == -1) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    lua_pushboolean(L, 1); /* a full outbox drops a ping: pings are best effort */
    return 1;
}

/* ws:close([code[, reason]]) -> true */
static int ws_close(lua_State *L) {
    ws_ud *u = luaL_checkudata(L, 1, WS_MT);
    lua_Integer code = luaL_optinteger(L, 2, 1000);
    size_t n;
    const char *reason = luaL_optlstring(L, 3, "", &n);
    if (code < 1000 || code > 4999 || code == 1004 || code == 1005 || code == 1006 ||
        code == 1015)
        return luaL_argerror(L, 2, "a close code is 1000..4999, not 1004-1006 or 1015");
    if (n > 123)
        return luaL_argerror(L, 3, "a close reason is at most 123 bytes");
    if (u->h && !u->closed) {
        u->closed = true;
        agent_close(u->h, (uint16_t)code, reason, n);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ws:closed() -> true once no message can come or go */
static int ws_closed(lua_State *L) {
    ws_ud *u = luaL_checkudata(L, 1, WS_MT);
    bool closed = true;
    if (u->h) {
        pthread_mutex_lock(&u->h->lock);
        closed = (u->h->closed || u->h->task_gone) && !u->h->in_head;
        pthread_mutex_unlock(&u->h->lock);
    }
    lua_pushboolean(L, closed);
    return 1;
}

/* ws:_park() -> id: hands the connection over to the agent that will
 * call ms.http._ws_attach(id); this object lets go of it (no close). */
static int ws_park(lua_State *L) {
    ws_ud *u = check_ws(L);
    hws *h = u->h;
    pthread_mutex_lock(&park_lock);
    h->park_id = park_next_id++;
    h->park_next = parked;
    parked = h;
    uint64_t id = h->park_id;
    pthread_mutex_unlock(&park_lock);
    u->h = NULL; /* its reference is the list's now */
    lua_pushnumber(L, (lua_Number)id);
    return 1;
}

/* ms.http._ws_attach(id) -> ws | nil (gone, or attached already) */
static int ws_attach(lua_State *L) {
    uint64_t id = (uint64_t)luaL_checknumber(L, 1);
    /* The userdata first, so that a raise takes nothing off the list. */
    ws_ud *u = lua_newuserdata(L, sizeof *u);
    u->h = NULL;
    u->closed = false;
    luaL_getmetatable(L, WS_MT);
    lua_setmetatable(L, -2);
    hws *h = unpark(NULL, id);
    if (!h) {
        lua_pushnil(L);
        return 1;
    }
    u->h = h; /* the list's reference */
    return 1;
}

static int ws_tostring(lua_State *L) {
    ws_ud *u = luaL_checkudata(L, 1, WS_MT);
    lua_pushfstring(L, "ms.http.websocket (server side%s)", u->h ? "" : ", let go");
    return 1;
}

void hws_register(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"send", ws_send},     {"receive", ws_receive}, {"ping", ws_ping},
        {"close", ws_close},    {"closed", ws_closed},   {"_park", ws_park},
        {NULL, NULL}};
    if (luaL_newmetatable(L, WS_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, ws_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, ws_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "ms.http.websocket");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, ws_attach);
    lua_setfield(L, -2, "_ws_attach");
}
