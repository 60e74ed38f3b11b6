/*
 * lms_net.c - ms.net: stream sockets (TCP, Unix) and listeners for
 * agents.
 *
 * A socket is a C object (lsock) around a libms stream or listener; a
 * Lua userdata holds one reference to it.  The socket belongs to one
 * agent at a time, on that agent's list of open OS handles (iohandle.h):
 * its end closes what it still holds, and collecting a forgotten handle
 * closes it too.  Handing it to another agent in a message (xfer.c's
 * XH_SOCK) moves it: a successful encode kills the sender's handle, the
 * blob carries the one reference, and the receiver's decode adopts it; a
 * blob freed unread (the receiver died first) closes it.
 *
 * Every wait (connect, accept, read, write, shutdown, resolve) is an
 * operation of the calling task (ops.h): it takes a timeout, and a stop,
 * ms.timeout or t:abort cancels it at once.  An operation first polls
 * right away with the running task's waker, so a read that finds its
 * bytes already buffered returns without a trip through the scheduler.
 *
 * What a task may touch: an lsock belongs to its owner's thread (the
 * thread polling the owning agent); in flight it belongs to nobody, and
 * the message's hand-over publishes it to the receiver.  The libms
 * stream below it has its own lock with the driver (stream.h).
 * One task at a time reads (or accepts) and one writes: a second gets an
 * error rather than a queue.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "hold.h"
#include "host.h"
#include "iohandle.h"
#include "lerr.h"
#include "lhandle.h"
#include "lms.h"
#include "lms_net.h"
#include "ltask.h"
#include "netaddr.h"
#include "ops.h"

#define READ_CHUNK (16 * 1024)          /* room made before each read */
#define READ_SOME_MAX (64 * 1024)       /* s:read() returns at most this */
#define READ_LINE_MAX (1024 * 1024)     /* a longer line is an error */
#define READ_MAX (64 * 1024 * 1024)     /* s:read(n) and s:read("a") */

/* ---- the socket object ---- */

typedef struct lsock_ud lsock_ud;

struct lsock {
    ioh io;                     /* on the owner's list (iohandle.h) */
    _Atomic uint32_t refs;      /* the userdata, a blob in flight, waiting operations */
    bool listener, is_pipe;     /* immutable */
    bool udp;                   /* immutable: a datagram socket (u) */
    /* Owner's thread (see the file comment): */
    ms_stream *s;               /* NULL for a listener, or once closed */
    ms_listener *l;             /* NULL for a stream, or once closed */
    ms_udp *u;                  /* a datagram socket, NULL once closed */
    bool closed;
    lsock_ud *ud;               /* the owning handle, NULL in flight */
    ltask *reader, *writer;     /* the tasks waiting on it */
    char *buf;                  /* bytes read ahead of what was asked */
    size_t bstart, blen, bcap;
    bool eof;
    char *unlink_path;          /* a Unix listener's socket file */
    /* A decode adopted it: a second decode of the same blob (a copied
     * event) must not adopt it again.  Exchanged by decoders. */
    _Atomic bool taken;
};

/* Why a handle's socket is gone. */
enum { GONE_NONE, GONE_HANDED, GONE_TAKEN };

struct lsock_ud {
    lhandle h;                  /* h.type XH_SOCK, h.ptr the lsock (a reference) */
    uint8_t gone;
};

static void close_os(lsock *ls);

static void close_io(ioh *io) {
    close_os((lsock *)io);
}

static const ioh_kind sock_kind = {"socket", IM_SOCKETS_OPEN, close_io};

static host *the_host(void) {
    return host_get();
}

static void count(io_metric m, uint64_t n) {
    host *h = the_host();
    if (h)
        atomic_fetch_add_explicit(&h->io[m], n, memory_order_relaxed);
}

void lsock_ref(lsock *ls) {
    atomic_fetch_add_explicit(&ls->refs, 1, memory_order_relaxed);
}

void lsock_unref(lsock *ls) {
    if (atomic_fetch_sub_explicit(&ls->refs, 1, memory_order_acq_rel) != 1)
        return;
    close_os(ls);
    free(ls);
}

/* Closes the OS object (once) and wakes the tasks waiting on it, whose
 * operations then report "closed". */
static void close_os(lsock *ls) {
    if (ls->closed)
        return;
    ls->closed = true;
    if (ls->s)
        ms_stream_close(ls->s);
    if (ls->l)
        ms_listener_close(ls->l);
    if (ls->u)
        ms_udp_close(ls->u);
    ls->s = NULL;
    ls->l = NULL;
    ls->u = NULL;
    if (ls->unlink_path)
        unlink(ls->unlink_path);
    free(ls->unlink_path);
    ls->unlink_path = NULL;
    free(ls->buf);
    ls->buf = NULL;
    ls->blen = ls->bstart = ls->bcap = 0;
    ioh_closed(&ls->io);
    if (ls->reader)
        ltask_wake_by_ref(ls->reader);
    if (ls->writer)
        ltask_wake_by_ref(ls->writer);
}

static lsock *lsock_new(agent *a, char *err, size_t errlen) {
    if (!ioh_room(a, err, errlen))
        return NULL;
    lsock *ls = calloc(1, sizeof *ls);
    if (!ls) {
        snprintf(err, errlen, "no memory for a socket");
        return NULL;
    }
    atomic_init(&ls->refs, 1);
    atomic_init(&ls->taken, true);
    if (!ioh_open(a, &ls->io, &sock_kind, err, errlen)) {
        free(ls);
        return NULL;
    }
    return ls;
}

lsock *lsock_from_stream(agent *a, ms_stream *s, bool is_pipe, char *err, size_t errlen) {
    lsock *ls = lsock_new(a, err, errlen);
    if (!ls) {
        ms_stream_close(s);
        return NULL;
    }
    ls->s = s;
    ls->is_pipe = is_pipe;
    return ls;
}

static void release_lsock(void *p) {
    lsock_unref(p);
}

void lsock_push(lua_State *L, lsock *ls) {
    hold_push(ls, release_lsock);
    lsock_ud *u = lua_newuserdata(L, sizeof *u);
    u->h.type = XH_SOCK;
    u->h.ptr = NULL;
    u->h.lc = NULL;
    u->gone = GONE_NONE;
    lms_push_mt(L, ls->udp ? LMS_MT_UDP : ls->listener ? LMS_MT_LISTENER : LMS_MT_SOCKET);
    lua_setmetatable(L, -2);
    u->h.ptr = ls;
    ls->ud = u;
    hold_pop(ls);
}

/* ---- hand-over (xfer.c) ---- */

bool lsock_can_export(lua_State *L, int idx, char *err, size_t errlen) {
    lsock_ud *u = lua_touserdata(L, idx);
    lsock *ls = u ? u->h.ptr : NULL;
    if (!ls || ls->ud != u) {
        snprintf(err, errlen, "this agent no longer holds that socket");
        return false;
    }
    if (ls->closed) {
        snprintf(err, errlen, "the socket is closed");
        return false;
    }
    if (ls->reader || ls->writer) {
        snprintf(err, errlen,
                 "a task of this agent is %s it; a socket is handed over only when idle",
                 ls->reader ? "reading (or accepting on)" : "writing");
        return false;
    }
    return true;
}

void lsock_exported(lsock *ls) {
    lsock_ud *u = ls->ud;
    if (!u)
        return; /* in the blob twice: xfer refuses that before we get here */
    ls->ud = NULL;
    u->h.ptr = NULL;
    u->gone = GONE_HANDED;
    ioh_detach(&ls->io);
    atomic_store_explicit(&ls->taken, false, memory_order_relaxed);
    lsock_unref(ls); /* the handle's: the blob holds its own */
}

void lsock_push_received(lua_State *L, lsock *ls) {
    if (atomic_exchange_explicit(&ls->taken, true, memory_order_acq_rel)) {
        /* Another copy of this blob (a copied event) adopted it first:
         * this one gets a dead handle. */
        hold_push(ls, release_lsock);
        lsock_ud *u = lua_newuserdata(L, sizeof *u);
        u->h.type = XH_SOCK;
        u->h.ptr = NULL;
        u->h.lc = NULL;
        u->gone = GONE_TAKEN;
        lms_push_mt(L, ls->udp ? LMS_MT_UDP : ls->listener ? LMS_MT_LISTENER : LMS_MT_SOCKET);
        lua_setmetatable(L, -2);
        hold_pop(ls);
        lsock_unref(ls);
        return;
    }
    ioh_attach(agent_from_state(L), &ls->io);
    lsock_push(L, ls);
}

/* ---- handles ---- */

static lsock_ud *check_ud(lua_State *L, int idx, lms_mt mt) {
    lsock_ud *u = lms_check_udata(L, idx, mt);
    if (!u->h.ptr)
        luaL_error(L, "%s", u->gone == GONE_TAKEN
                                ? "this socket handle is dead: another agent took the socket"
                                : "this socket was handed to another agent in a message; "
                                  "this handle is dead");
    return u;
}

static lsock *check_sock(lua_State *L) {
    return check_ud(L, 1, LMS_MT_SOCKET)->h.ptr;
}

static lsock *check_listener(lua_State *L) {
    return check_ud(L, 1, LMS_MT_LISTENER)->h.ptr;
}

static int sock_gc(lua_State *L) {
    lsock_ud *u = lua_touserdata(L, 1);
    lsock *ls = u ? u->h.ptr : NULL;
    if (!ls)
        return 0;
    u->h.ptr = NULL;
    if (ls->ud == u)
        ls->ud = NULL;
    /* Forgotten while open: closed now (a waiting task holds its own
     * reference and sees it closed). */
    close_os(ls);
    lsock_unref(ls);
    return 0;
}

static int push_closed(lua_State *L) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
}

static int push_error(lua_State *L, int code, const char *text) {
    lua_pushnil(L);
    lerr_push(L, code, text, NULL);
    return 2;
}

/* ---- operations: poll now, else wait ---- */

typedef struct conn_job conn_job;

typedef struct net_op {
    lsock *ls;                  /* the socket, or NULL (connect, resolve) */
    bool held;                  /* a reference and the waiter slot are taken */
    bool is_writer;
    int mode;                   /* read: RD_* */
    size_t n;                   /* read: bytes wanted (RD_N) or at most (RD_SOME) */
    size_t scanned;             /* read line: bytes searched for a newline */
    const char *data;           /* write: the string (anchored by ref when held) */
    size_t len, off;
    int ref;
    conn_job *job;              /* connect */
    ms_resolve *res;            /* resolve */
} net_op;

_Static_assert(sizeof(net_op) <= sizeof(((lop *)0)->store), "net_op fits the op store");

static net_op *op_of(ltask *lt) {
    return (net_op *)lt->op.store;
}

/* Lets go of the socket and the waiter slot (completion or cancel). */
static void op_release(ltask *lt) {
    net_op *o = op_of(lt);
    if (o->ref != LUA_NOREF && o->ref != 0) {
        luaL_unref(lt->a->L, LUA_REGISTRYINDEX, o->ref);
        o->ref = LUA_NOREF;
    }
    if (!o->held)
        return;
    o->held = false;
    lsock *ls = o->ls;
    if (o->is_writer ? ls->writer == lt : ls->reader == lt) {
        if (o->is_writer)
            ls->writer = NULL;
        else
            ls->reader = NULL;
    }
    lsock_unref(ls);
}

typedef struct now_call {
    ltask *lt;
    lop_poll_fn fn;
} now_call;

static ms_poll now_adapter(ms_cx *cx, void *state) {
    now_call *c = state;
    return c->fn(c->lt, cx);
}

/* Runs the operation set up in lt's store: polled at once (its results
 * are then on L's top), else the task waits for it with a deadline. */
static int run_op(lua_State *L, ltask *lt, lop_poll_fn poll, lop_cancel_fn cancel,
                  double timeout) {
    net_op *o = op_of(lt);
    agent *a = lt->a;
    if (a->cx) {
        ms_waker w = {&ltask_waker_vtable, lt};
        now_call c = {lt, poll};
        lt->nres = 0;
        if (ms_cx_poll_with_waker(a->cx, &w, now_adapter, &c) == MS_POLL_READY) {
            int n = lt->nres;
            lt->nres = 0;
            return op_return_fast(L, lt, n);
        }
    }
    op_set_deadline(L, lt, timeout); /* may raise: nothing taken yet */
    if (o->data) {
        /* A write's string (argument 2), anchored while the task waits;
         * the first poll ran while it was on the stack. */
        lua_pushvalue(L, 2);
        o->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (o->ls) {
        lsock_ref(o->ls);
        o->held = true;
        if (o->is_writer)
            o->ls->writer = lt;
        else
            o->ls->reader = lt;
    }
    return op_suspend(L, lt, poll, cancel, 0);
}

static void net_cancel(ltask *lt) {
    op_release(lt);
}

static ms_poll ready(ltask *lt, int nres) {
    lt->nres = nres;
    op_release(lt);
    return MS_POLL_READY;
}

/* ---- reading ---- */

enum { RD_SOME, RD_N, RD_LINE, RD_LINE_KEEP, RD_ALL };

/* Pushes k bytes from the front of the buffer and consumes them. */
static void push_take(lua_State *co, lsock *ls, size_t k, size_t push) {
    lua_pushlstring(co, ls->buf + ls->bstart, push);
    ls->bstart += k;
    ls->blen -= k;
    if (ls->blen == 0)
        ls->bstart = 0;
}

/* Whether the buffer answers the read; pushes the results if so. */
static int try_answer(lsock *ls, net_op *o, lua_State *co) {
    switch (o->mode) {
    case RD_SOME:
        if (ls->blen == 0)
            break;
        push_take(co, ls, ls->blen < o->n ? ls->blen : o->n, ls->blen < o->n ? ls->blen : o->n);
        return 1;
    case RD_N:
        if (ls->blen < o->n)
            break;
        push_take(co, ls, o->n, o->n);
        return 1;
    case RD_LINE:
    case RD_LINE_KEEP: {
        const char *start = ls->buf + ls->bstart;
        const char *nl = o->scanned < ls->blen
                             ? memchr(start + o->scanned, '\n', ls->blen - o->scanned)
                             : NULL;
        o->scanned = ls->blen;
        if (!nl)
            break;
        size_t k = (size_t)(nl - start) + 1, len = k;
        if (o->mode == RD_LINE) {
            len--;
            if (len > 0 && start[len - 1] == '\r')
                len--;
        }
        o->scanned = 0;
        push_take(co, ls, k, len);
        return 1;
    }
    default:
        break;
    }
    if (!ls->eof)
        return 0;
    /* The peer closed: what is left answers as far as it can. */
    switch (o->mode) {
    case RD_ALL:
        push_take(co, ls, ls->blen, ls->blen);
        return 1;
    case RD_LINE:
    case RD_LINE_KEEP:
        if (ls->blen == 0)
            break;
        push_take(co, ls, ls->blen, ls->blen);
        return 1;
    case RD_N:
        if (ls->blen == 0)
            break;
        lua_pushnil(co);
        lua_pushliteral(co, "closed");
        push_take(co, ls, ls->blen, ls->blen);
        return 3;
    default:
        break;
    }
    return push_closed(co);
}

/* Makes room for a read at the end of the buffer; false past the read's
 * limit. */
static bool make_room(lsock *ls, size_t limit) {
    if (ls->bcap - ls->bstart - ls->blen >= READ_CHUNK)
        return true;
    if (ls->bstart > 0) {
        memmove(ls->buf, ls->buf + ls->bstart, ls->blen);
        ls->bstart = 0;
        if (ls->bcap - ls->blen >= READ_CHUNK)
            return true;
    }
    if (ls->blen >= limit)
        return false;
    size_t cap = ls->bcap ? ls->bcap * 2 : 4 * READ_CHUNK;
    while (cap - ls->blen < READ_CHUNK)
        cap *= 2;
    char *b = realloc(ls->buf, cap);
    if (!b)
        return false;
    ls->buf = b;
    ls->bcap = cap;
    return true;
}

static size_t mode_limit(const net_op *o) {
    return o->mode == RD_LINE || o->mode == RD_LINE_KEEP ? READ_LINE_MAX
           : o->mode == RD_N                            ? o->n
                                                        : READ_MAX;
}

static ms_poll read_poll(ltask *lt, ms_cx *cx) {
    net_op *o = op_of(lt);
    lsock *ls = o->ls;
    lua_State *co = lt->co;
    for (;;) {
        if (ls->closed)
            return ready(lt, push_closed(co));
        int n = try_answer(ls, o, co);
        if (n)
            return ready(lt, n);
        /* Unanswered with the limit's worth buffered: a line that long
         * (or a stream that long for "a") is refused here, exactly at
         * the limit, whatever sizes the reads came in. */
        bool over = o->mode != RD_N && o->mode != RD_SOME && ls->blen >= mode_limit(o);
        if (over || !make_room(ls, mode_limit(o))) {
            char text[160];
            if (o->mode == RD_LINE || o->mode == RD_LINE_KEEP)
                snprintf(text, sizeof text, "read: a line longer than %d bytes", READ_LINE_MAX);
            else
                snprintf(text, sizeof text, "read: more than %zu bytes (or out of memory)",
                         mode_limit(o));
            return ready(lt, push_error(co, MS_E_EXHAUSTED, text));
        }
        ssize_t got;
        ms_error err;
        char *at = ls->buf + ls->bstart + ls->blen;
        if (ms_stream_read(ls->s, cx, at, ls->bcap - ls->bstart - ls->blen, &got, &err) ==
            MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (got > 0) {
            ls->blen += (size_t)got;
            count(IM_BYTES_READ, (uint64_t)got);
        } else if (got == 0) {
            ls->eof = true;
        } else {
            return ready(lt, push_error(co, (int)got, err.message));
        }
    }
}

/* s:read([what][, timeout]): what is nil (some bytes), a count, "l" (a
 * line without its end), "L" (with it) or "a" (everything until the peer
 * closes). */
static int sock_read(lua_State *L) {
    lsock *ls = check_sock(L);
    int mode = RD_SOME;
    size_t n = READ_SOME_MAX;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        double d = lua_tonumber(L, 2);
        if (!(d >= 0 && d <= READ_MAX) || d != (double)(size_t)d)
            return luaL_argerror(L, 2, "a byte count must be a whole number from 0 to 64 MiB");
        mode = RD_N;
        n = (size_t)d;
    } else if (lua_type(L, 2) == LUA_TSTRING) {
        const char *f = lua_tostring(L, 2);
        if (*f == '*')
            f++;
        mode = strcmp(f, "l") == 0 ? RD_LINE : strcmp(f, "L") == 0 ? RD_LINE_KEEP
               : strcmp(f, "a") == 0 ? RD_ALL : -1;
        if (mode < 0)
            return luaL_argerror(L, 2, "format must be a byte count, \"l\", \"L\" or \"a\"");
    } else if (!lua_isnoneornil(L, 2)) {
        return luaL_argerror(L, 2, "format must be a byte count, \"l\", \"L\" or \"a\"");
    }
    double timeout = lms_opt_timeout(L, 3);
    ltask *lt = ltask_current(L, "socket:read");
    if (ls->listener)
        return luaL_error(L, "socket:read: this is a listener");
    if (ls->reader && ls->reader != lt)
        return luaL_error(L, "socket:read: another task of this agent is already reading this "
                             "socket; one task at a time reads it");
    if (ls->closed)
        return push_closed(L);
    if (mode == RD_N && n == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    net_op *o = op_of(lt);
    memset(o, 0, sizeof *o);
    o->ref = LUA_NOREF;
    o->ls = ls;
    o->mode = mode;
    o->n = n;
    return run_op(L, lt, read_poll, net_cancel, timeout);
}

/* ---- writing ---- */

static ms_poll write_poll(ltask *lt, ms_cx *cx) {
    net_op *o = op_of(lt);
    lsock *ls = o->ls;
    while (o->off < o->len) {
        if (ls->closed)
            return ready(lt, push_closed(lt->co));
        ssize_t n;
        ms_error err;
        if (ms_stream_write(ls->s, cx, o->data + o->off, o->len - o->off, &n, &err) ==
            MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (n < 0)
            return ready(lt, push_error(lt->co, (int)n, err.message));
        o->off += (size_t)n;
        count(IM_BYTES_WRITTEN, (uint64_t)n);
    }
    lua_pushboolean(lt->co, 1);
    return ready(lt, 1);
}

static ms_poll flush_poll(ltask *lt, ms_cx *cx) {
    net_op *o = op_of(lt);
    if (o->ls->closed)
        return ready(lt, push_closed(lt->co));
    int rc;
    ms_error err;
    ms_poll p = o->mode ? ms_stream_shutdown(o->ls->s, cx, &rc, &err)
                        : ms_stream_flush(o->ls->s, cx, &rc, &err);
    if (p == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (rc < 0)
        return ready(lt, push_error(lt->co, rc, err.message));
    lua_pushboolean(lt->co, 1);
    return ready(lt, 1);
}

static ltask *writer_task(lua_State *L, lsock *ls, const char *fname) {
    ltask *lt = ltask_current(L, fname);
    if (ls->listener)
        luaL_error(L, "%s: this is a listener", fname);
    if (ls->writer && ls->writer != lt)
        luaL_error(L, "%s: another task of this agent is already writing this socket; one "
                      "task at a time writes it", fname);
    return lt;
}

/* s:write(data[, timeout]) -> true once all of data is queued (waiting
 * while MS_STREAM_WRITE_BUFFER bytes are queued already). */
static int sock_write(lua_State *L) {
    lsock *ls = check_sock(L);
    size_t len;
    if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
        return luaL_argerror(L, 2, "data must be a string");
    const char *data = lua_tolstring(L, 2, &len);
    double timeout = lms_opt_timeout(L, 3);
    ltask *lt = writer_task(L, ls, "socket:write");
    if (ls->closed)
        return push_closed(L);
    net_op *o = op_of(lt);
    memset(o, 0, sizeof *o);
    o->ref = LUA_NOREF;
    o->ls = ls;
    o->is_writer = true;
    o->data = data;
    o->len = len;
    return run_op(L, lt, write_poll, net_cancel, timeout);
}

static int flush_or_shutdown(lua_State *L, int shutdown, const char *fname) {
    lsock *ls = check_sock(L);
    double timeout = lms_opt_timeout(L, 2);
    ltask *lt = writer_task(L, ls, fname);
    if (ls->closed)
        return push_closed(L);
    net_op *o = op_of(lt);
    memset(o, 0, sizeof *o);
    o->ref = LUA_NOREF;
    o->ls = ls;
    o->is_writer = true;
    o->mode = shutdown;
    return run_op(L, lt, flush_poll, net_cancel, timeout);
}

static int sock_flush(lua_State *L) {
    return flush_or_shutdown(L, 0, "socket:flush");
}

static int sock_shutdown(lua_State *L) {
    return flush_or_shutdown(L, 1, "socket:shutdown");
}

/* s:close(): at once, dropping what is queued; again (or on a handle
 * handed over) does nothing. */
static int sock_close(lua_State *L) {
    lsock_ud *u = lms_check_udata(L, 1, LMS_MT_SOCKET);
    if (u->h.ptr)
        close_os(u->h.ptr);
    return 0;
}

/* ---- addresses and options ---- */

static int push_sockaddr(lua_State *L, const struct sockaddr_storage *ss, socklen_t len) {
    char addr_text[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ss;
        inet_ntop(AF_INET, &in->sin_addr, addr_text, sizeof addr_text);
        lua_pushstring(L, addr_text);
        lua_pushinteger(L, ntohs(in->sin_port));
        return 2;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, addr_text, sizeof addr_text);
        lua_pushstring(L, addr_text);
        lua_pushinteger(L, ntohs(in6->sin6_port));
        return 2;
    }
    if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const void *)ss;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t max = len > off ? (size_t)len - off : 0;
        if (max > sizeof un->sun_path)
            max = sizeof un->sun_path; /* the kernel's length may count past it */
        size_t n = strnlen(un->sun_path, max);
        lua_pushlstring(L, un->sun_path, n);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

static int fd_of(lsock *ls) {
    if (ls->closed)
        return -1;
    return ls->udp ? ms_udp_fd(ls->u) : ls->listener ? ms_listener_fd(ls->l) : ms_stream_fd(ls->s);
}

static int address(lua_State *L, lsock *ls, bool peer) {
    int fd = fd_of(ls);
    if (fd < 0)
        return push_closed(L);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                  : getsockname(fd, (struct sockaddr *)&ss, &len);
    if (rc != 0) {
        char text[128];
        snprintf(text, sizeof text, "%s: %s", peer ? "getpeername" : "getsockname",
                 strerror(errno));
        return push_error(L, MS_E_IO, text);
    }
    if (ss.ss_family == AF_UNIX && ls->unlink_path && !peer) {
        lua_pushstring(L, ls->unlink_path);
        return 1;
    }
    return push_sockaddr(L, &ss, len);
}

static int sock_local_address(lua_State *L) {
    return address(L, check_sock(L), false);
}

static int sock_peer_address(lua_State *L) {
    return address(L, check_sock(L), true);
}

static int set_opt(lua_State *L, int fd, int level, int name, int value, const char *what) {
    if (setsockopt(fd, level, name, &value, sizeof value) != 0) {
        char text[128];
        snprintf(text, sizeof text, "%s: %s", what, strerror(errno));
        return push_error(L, MS_E_IO, text);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* s:nodelay([on]): TCP_NODELAY (on by default for ms.net sockets). */
static int sock_nodelay(lua_State *L) {
    lsock *ls = check_sock(L);
    int on = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
    int fd = fd_of(ls);
    if (fd < 0)
        return push_closed(L);
    if (ls->is_pipe)
        return push_error(L, MS_E_INVALID_ARGUMENT, "nodelay: not a TCP socket");
    return set_opt(L, fd, IPPROTO_TCP, TCP_NODELAY, on, "nodelay");
}

/* s:keepalive(on[, idle_seconds]) */
static int sock_keepalive(lua_State *L) {
    lsock *ls = check_sock(L);
    int on = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
    double idle = luaL_optnumber(L, 3, 0);
    if (idle < 0 || idle > 32767 || idle != idle)
        return luaL_argerror(L, 3, "idle must be between 0 and 32767 seconds");
    int fd = fd_of(ls);
    if (fd < 0)
        return push_closed(L);
    if (ls->is_pipe)
        return push_error(L, MS_E_INVALID_ARGUMENT, "keepalive: not a TCP socket");
    if (on && idle >= 1) {
        int n = set_opt(L, fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)idle, "keepalive");
        if (lua_isnil(L, -n))
            return n;
        lua_pop(L, n);
    }
    return set_opt(L, fd, SOL_SOCKET, SO_KEEPALIVE, on, "keepalive");
}

static int sock_is_closed(lua_State *L) {
    lsock_ud *u = lms_check_udata(L, 1, LMS_MT_SOCKET);
    lua_pushboolean(L, !u->h.ptr || ((lsock *)u->h.ptr)->closed);
    return 1;
}

static int sock_tostring(lua_State *L) {
    lsock_ud *u = lua_touserdata(L, 1);
    lsock *ls = u ? u->h.ptr : NULL;
    lua_pushfstring(L, "%s (%s)", !ls ? "ms.socket" : ls->udp ? "ms.udp" : ls->listener ? "ms.listener" : "ms.socket",
                    !ls ? "handed over" : ls->closed ? "closed" : "open");
    return 1;
}

/* ---- addresses given by the caller ---- */

static int addr_error(lua_State *L, int idx, const char *why) {
    char text[256];
    snprintf(text, sizeof text, "%s (an address is \"host:port\", \"[ipv6]:port\", "
                              "\"unix:/path\" or {host=, port=} | {path=})", why);
    return luaL_argerror(L, idx, text);
}

/* Reads an address without running any code of the value: strings by
 * lua_type, tables by raw reads; netaddr.c judges what they hold. */
static void check_address(lua_State *L, int idx, net_addr *out) {
    memset(out, 0, sizeof *out);
    const char *why = NULL;
    if (lua_type(L, idx) == LUA_TTABLE) {
        lua_pushliteral(L, "path");
        lua_rawget(L, idx);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t n;
            const char *p = lua_tolstring(L, -1, &n);
            why = netaddr_set_path(out, p, n);
            lua_pop(L, 1);
            if (why)
                addr_error(L, idx, why);
            return;
        }
        lua_pop(L, 1);
        lua_pushliteral(L, "host");
        lua_rawget(L, idx);
        lua_pushliteral(L, "port");
        lua_rawget(L, idx);
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TNUMBER)
            addr_error(L, idx, "a table address needs a string host and a number port, or a "
                               "string path");
        size_t n;
        const char *h = lua_tolstring(L, -2, &n);
        why = netaddr_set_host(out, h, n);
        if (!why)
            why = netaddr_set_port(out, lua_tonumber(L, -1));
        lua_pop(L, 2);
        if (why)
            addr_error(L, idx, why);
        return;
    }
    if (lua_type(L, idx) != LUA_TSTRING) {
        char text[96];
        snprintf(text, sizeof text, "got a %s", luaL_typename(L, idx));
        addr_error(L, idx, text);
    }
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    why = netaddr_parse(out, s, n);
    if (why)
        addr_error(L, idx, why);
}

static bool is_numeric(const char *name) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* ---- connecting ---- */

struct conn_job {
    net_addr addr;
    ms_resolve *res;            /* a name being or having been resolved */
    bool resolved;
    size_t next;                /* the next address to try */
    ms_connect *c;              /* the connection being made */
    char current[300];
    int code;                   /* the last failure */
    char err[700];
};

static void job_free(conn_job *j) {
    if (!j)
        return;
    ms_connect_free(j->c);
    ms_resolve_free(j->res);
    free(j);
}

static ms_poll connect_fail(ltask *lt, conn_job *j) {
    count(IM_CONNECT_FAILURES, 1);
    int n = push_error(lt->co, j->code ? j->code : MS_E_IO, j->err);
    return ready(lt, n);
}

/* Starts a connection to the next address; false when none is left. */
static bool next_attempt(ltask *lt, conn_job *j) {
    ms_runtime *rt = lt->a->h->rt;
    ms_error e;
    int rc;
    if (j->addr.is_pipe) {
        if (j->next++ > 0)
            return false;
        snprintf(j->current, sizeof j->current, "%s", j->addr.path);
        rc = ms_unix_connect(rt, j->addr.path, &j->c, &e);
    } else {
        char text[sizeof j->addr.host];
        if (j->res) {
            if (j->next >= ms_resolve_count(j->res))
                return false;
            ms_resolve_address(j->res, j->next++, text, sizeof text);
        } else {
            if (j->next++ > 0)
                return false;
            snprintf(text, sizeof text, "%s", j->addr.host);
        }
        snprintf(j->current, sizeof j->current, "%s", text);
        rc = ms_tcp_connect(rt, text, j->addr.port, &j->c, &e);
    }
    if (rc != 0) {
        j->c = NULL;
        j->code = rc;
        snprintf(j->err, sizeof j->err, "connect to %s: %s", j->current, e.message);
    }
    return true;
}

static ms_poll connect_poll(ltask *lt, ms_cx *cx) {
    net_op *o = op_of(lt);
    conn_job *j = o->job;
    ms_error e;
    int rc;
    if (j->res && !j->resolved) {
        if (ms_resolve_poll(j->res, cx, &rc, &e) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (rc != 0) {
            j->code = rc;
            snprintf(j->err, sizeof j->err, "connect: %s", e.message);
            ms_poll p = connect_fail(lt, j);
            job_free(j);
            o->job = NULL;
            return p;
        }
        j->resolved = true;
    }
    for (;;) {
        if (j->c) {
            ms_stream *s;
            if (ms_connect_poll(j->c, cx, &s, &rc, &e) == MS_POLL_PENDING)
                return MS_POLL_PENDING;
            ms_connect_free(j->c);
            j->c = NULL;
            if (rc == 0) {
                char err[256];
                lsock *ls = lsock_from_stream(lt->a, s, j->addr.is_pipe, err, sizeof err);
                job_free(j);
                o->job = NULL;
                if (!ls) {
                    count(IM_CONNECT_FAILURES, 1);
                    return ready(lt, push_error(lt->co, MS_E_EXHAUSTED, err));
                }
                lsock_push(lt->co, ls);
                return ready(lt, 1);
            }
            j->code = rc;
            snprintf(j->err, sizeof j->err, "connect to %s%s%u: %s", j->current,
                     j->addr.is_pipe ? "" : " port ", j->addr.is_pipe ? 0u : j->addr.port,
                     e.message);
            if (j->addr.is_pipe)
                snprintf(j->err, sizeof j->err, "connect to %s: %s", j->current, e.message);
        }
        if (!next_attempt(lt, j) || (!j->c && j->addr.is_pipe)) {
            ms_poll p = connect_fail(lt, j);
            job_free(j);
            o->job = NULL;
            return p;
        }
    }
}

static void connect_cancel(ltask *lt) {
    net_op *o = op_of(lt);
    if (o->job) {
        if (lt->op.deadline && ms_timer_deadline(lt->op.deadline) <= ms_now_ns())
            count(IM_CONNECT_FAILURES, 1); /* timed out */
        job_free(o->job);
        o->job = NULL;
    }
    op_release(lt);
}

/* ms.net.connect(address[, timeout]) -> socket | nil, err
 * No fast path: the deadline is armed first (it may raise), so that
 * nothing allocated afterwards can be lost to a raise. */
static int net_connect(lua_State *L) {
    net_addr addr;
    check_address(L, 1, &addr);
    double timeout = lms_opt_timeout(L, 2);
    ltask *lt = ltask_current(L, "ms.net.connect");
    char err[256];
    if (!ioh_room(lt->a, err, sizeof err))
        return push_error(L, MS_E_EXHAUSTED, err);
    op_set_deadline(L, lt, timeout);
    conn_job *j = calloc(1, sizeof *j);
    if (!j) {
        op_reset_light(lt);
        return luaL_error(L, "ms.net.connect: out of memory");
    }
    j->addr = addr;
    snprintf(j->err, sizeof j->err, "connect: no address to try");
    if (!addr.is_pipe && !is_numeric(addr.host)) {
        ms_error e;
        int rc = ms_resolve_start(lt->a->h->rt, addr.host, 0, &j->res, &e);
        if (rc != 0) {
            free(j);
            op_reset_light(lt);
            count(IM_CONNECT_FAILURES, 1);
            return push_error(L, rc, e.message);
        }
    }
    net_op *o = op_of(lt);
    memset(o, 0, sizeof *o);
    o->ref = LUA_NOREF;
    o->job = j;
    return op_suspend(L, lt, connect_poll, connect_cancel, 0);
}

/* ---- listening ---- */

static ms_poll accept_poll(ltask *lt, ms_cx *cx) {
    net_op *o = op_of(lt);
    lsock *ls = o->ls;
    if (ls->closed)
        return ready(lt, push_closed(lt->co));
    ms_stream *s;
    int rc;
    ms_error e;
    if (ms_listener_accept(ls->l, cx, &s, &rc, &e) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (rc < 0)
        return ready(lt, push_error(lt->co, rc, e.message));
    char err[256];
    lsock *c = lsock_from_stream(lt->a, s, ls->is_pipe, err, sizeof err);
    if (!c)
        return ready(lt, push_error(lt->co, MS_E_EXHAUSTED, err));
    count(IM_ACCEPTED, 1);
    lsock_push(lt->co, c);
    return ready(lt, 1);
}

/* l:accept([timeout]) -> socket | nil, "timeout" | nil, "closed" | nil, err */
static int listener_accept(lua_State *L) {
    lsock *ls = check_listener(L);
    double timeout = lms_opt_timeout(L, 2);
    ltask *lt = ltask_current(L, "listener:accept");
    if (ls->reader && ls->reader != lt)
        return luaL_error(L, "listener:accept: another task of this agent is already "
                             "accepting; one task at a time accepts");
    if (ls->closed)
        return push_closed(L);
    char err[256];
    if (!ioh_room(lt->a, err, sizeof err))
        return push_error(L, MS_E_EXHAUSTED, err);
    net_op *o = op_of(lt);
    memset(o, 0, sizeof *o);
    o->ref = LUA_NOREF;
    o->ls = ls;
    return run_op(L, lt, accept_poll, net_cancel, timeout);
}

static int listener_address(lua_State *L) {
    return address(L, check_listener(L), false);
}

static int listener_close(lua_State *L) {
    lsock_ud *u = lms_check_udata(L, 1, LMS_MT_LISTENER);
    if (u->h.ptr)
        close_os(u->h.ptr);
    return 0;
}

static int listener_is_closed(lua_State *L) {
    lsock_ud *u = lms_check_udata(L, 1, LMS_MT_LISTENER);
    lua_pushboolean(L, !u->h.ptr || ((lsock *)u->h.ptr)->closed);
    return 1;
}

/* ms.net.listen(address[, { backlog = n }]) -> listener | nil, err */
static int net_listen(lua_State *L) {
    net_addr addr;
    check_address(L, 1, &addr);
    int backlog = 0;
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "backlog");
        lua_rawget(L, 2);
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) < 1 ||
                lua_tonumber(L, -1) > 65535)
                return luaL_argerror(L, 2, "backlog must be a number from 1 to 65535");
            backlog = (int)lua_tonumber(L, -1);
        }
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, 2)) {
        return luaL_argerror(L, 2, "options must be a table { backlog = n }");
    }
    agent *a = agent_from_state(L);
    host *h = the_host();
    if (!h)
        return luaL_error(L, "ms.net.listen: no host runs in this Lua state");
    char err[256];
    lsock *ls = lsock_new(a, err, sizeof err);
    if (!ls)
        return push_error(L, MS_E_EXHAUSTED, err);
    ls->listener = true;
    ls->is_pipe = addr.is_pipe;
    ms_error e;
    int rc;
    if (addr.is_pipe) {
        rc = ms_unix_listen(h->rt, addr.path, backlog, &ls->l, &e);
        if (rc == 0)
            ls->unlink_path = strdup(addr.path);
    } else {
        const char *bind_to = strcmp(addr.host, "*") == 0 ? "0.0.0.0" : addr.host;
        if (!is_numeric(bind_to) && strcmp(bind_to, "localhost") != 0) {
            rc = ms_error_set(&e, MS_E_INVALID_ARGUMENT,
                              "listen: host \"%s\" is not a numeric address, localhost or *",
                              bind_to);
        } else {
            rc = ms_tcp_listen(h->rt, bind_to, addr.port, backlog, &ls->l, &e);
        }
    }
    if (rc != 0) {
        ls->l = NULL;
        lsock_unref(ls);
        return push_error(L, rc, e.message);
    }
    lsock_push(L, ls);
    return 1;
}

/* ---- resolving ---- */

static ms_poll resolve_poll(ltask *lt, ms_cx *cx) {
    net_op *o = op_of(lt);
    int rc;
    ms_error e;
    if (ms_resolve_poll(o->res, cx, &rc, &e) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    lua_State *co = lt->co;
    if (rc != 0) {
        ms_resolve_free(o->res);
        o->res = NULL;
        return ready(lt, push_error(co, rc, e.message));
    }
    /* Copied out first: building the table may raise. */
    size_t n = ms_resolve_count(o->res);
    char addrs[16][INET6_ADDRSTRLEN];
    for (size_t i = 0; i < n && i < 16; i++)
        if (ms_resolve_address(o->res, i, addrs[i], sizeof addrs[i]) != 0)
            addrs[i][0] = '\0';
    ms_resolve_free(o->res);
    o->res = NULL;
    lua_createtable(co, (int)n, 0);
    for (size_t i = 0; i < n && i < 16; i++) {
        lua_pushstring(co, addrs[i]);
        lua_rawseti(co, -2, (int)i + 1);
    }
    return ready(lt, 1);
}

static void resolve_cancel(ltask *lt) {
    net_op *o = op_of(lt);
    ms_resolve_free(o->res);
    o->res = NULL;
}

/* ms.net.resolve(host[, timeout]) -> { "addr", ... } | nil, err */
static int net_resolve(lua_State *L) {
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_argerror(L, 1, "the host must be a string");
    size_t n;
    const char *name = lua_tolstring(L, 1, &n);
    if (n == 0 || n > 255 || memchr(name, '\0', n))
        return luaL_argerror(L, 1, "the host must be 1 to 255 bytes, without NUL");
    double timeout = lms_opt_timeout(L, 2);
    ltask *lt = ltask_current(L, "ms.net.resolve");
    op_set_deadline(L, lt, timeout); /* first: it may raise */
    ms_resolve *r;
    ms_error e;
    int rc = ms_resolve_start(lt->a->h->rt, name, 0, &r, &e);
    if (rc != 0) {
        op_reset_light(lt);
        return push_error(L, rc, e.message);
    }
    net_op *o = op_of(lt);
    memset(o, 0, sizeof *o);
    o->ref = LUA_NOREF;
    o->res = r;
    return op_suspend(L, lt, resolve_poll, resolve_cancel, 0);
}

/* ---- datagrams ---- */

#define UDP_MAX 65536

static ms_poll udp_recv_poll(ltask *lt, ms_cx *cx) {
    net_op *o = op_of(lt);
    lsock *ls = o->ls;
    lua_State *co = lt->co;
    if (ls->closed)
        return ready(lt, push_closed(co));
    if (!ls->buf) {
        if (!(ls->buf = malloc(UDP_MAX)))
            return ready(lt, push_error(co, MS_E_NO_MEMORY, "recv: out of memory"));
        ls->bcap = UDP_MAX;
    }
    ssize_t n;
    struct sockaddr_storage from;
    ms_error e;
    if (ms_udp_recv(ls->u, cx, ls->buf, ls->bcap, &n, &from, &e) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (n < 0)
        return ready(lt, push_error(co, (int)n, e.message));
    count(IM_BYTES_READ, (uint64_t)n);
    lua_pushlstring(co, ls->buf, (size_t)n);
    return ready(lt, 1 + push_sockaddr(co, &from, sizeof from));
}

static lsock *check_udp(lua_State *L) {
    return check_ud(L, 1, LMS_MT_UDP)->h.ptr;
}

/* u:recv([timeout]) -> data, host, port | nil, "timeout" | nil, "closed" | nil, err */
static int udp_recv(lua_State *L) {
    lsock *ls = check_udp(L);
    double timeout = lms_opt_timeout(L, 2);
    ltask *lt = ltask_current(L, "udp:recv");
    if (ls->reader && ls->reader != lt)
        return luaL_error(L, "udp:recv: another task of this agent is already receiving");
    if (ls->closed)
        return push_closed(L);
    net_op *o = op_of(lt);
    memset(o, 0, sizeof *o);
    o->ref = LUA_NOREF;
    o->ls = ls;
    return run_op(L, lt, udp_recv_poll, net_cancel, timeout);
}

/* u:send(data, address) -> true | nil, err (never waits: UDP may drop) */
static int udp_send(lua_State *L) {
    lsock *ls = check_udp(L);
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_argerror(L, 2, "data must be a string");
    size_t len;
    const char *data = lua_tolstring(L, 2, &len);
    if (len > UDP_MAX - 1)
        return luaL_argerror(L, 2, "a datagram is at most 65535 bytes");
    net_addr addr;
    check_address(L, 3, &addr);
    if (addr.is_pipe)
        return luaL_argerror(L, 3, "a UDP address is host:port");
    if (ls->closed)
        return push_closed(L);
    ms_error e;
    int rc = ms_udp_send(ls->u, data, len, addr.host, addr.port, &e);
    if (rc != 0)
        return push_error(L, rc, e.message);
    count(IM_BYTES_WRITTEN, len);
    lua_pushboolean(L, 1);
    return 1;
}

static int udp_local_address(lua_State *L) {
    return address(L, check_udp(L), false);
}

static int udp_close(lua_State *L) {
    lsock_ud *u = lms_check_udata(L, 1, LMS_MT_UDP);
    if (u->h.ptr)
        close_os(u->h.ptr);
    return 0;
}

static int udp_is_closed(lua_State *L) {
    lsock_ud *u = lms_check_udata(L, 1, LMS_MT_UDP);
    lua_pushboolean(L, !u->h.ptr || ((lsock *)u->h.ptr)->closed);
    return 1;
}

/* ms.net.udp([address]) -> udp socket | nil, err; bound to address
 * (default "0.0.0.0:0": any interface, a free port). */
static int net_udp(lua_State *L) {
    net_addr addr;
    if (lua_isnoneornil(L, 1)) {
        memset(&addr, 0, sizeof addr);
        strcpy(addr.host, "0.0.0.0");
    } else {
        check_address(L, 1, &addr);
        if (addr.is_pipe)
            return luaL_argerror(L, 1, "a UDP address is host:port");
    }
    host *h = the_host();
    if (!h)
        return luaL_error(L, "ms.net.udp: no host runs in this Lua state");
    char err[256];
    lsock *ls = lsock_new(agent_from_state(L), err, sizeof err);
    if (!ls)
        return push_error(L, MS_E_EXHAUSTED, err);
    ls->udp = true;
    ms_error e;
    const char *bind_to = strcmp(addr.host, "*") == 0 ? "0.0.0.0" : addr.host;
    int rc = ms_udp_open(h->rt, bind_to, addr.port, &ls->u, &e);
    if (rc != 0) {
        ls->u = NULL;
        lsock_unref(ls);
        return push_error(L, rc, e.message);
    }
    lsock_push(L, ls);
    return 1;
}

void lms_build_udp_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"recv", udp_recv},
        {"send", udp_send},
        {"close", udp_close},
        {"closed", udp_is_closed},
        {"local_address", udp_local_address},
        {NULL, NULL},
    };
    lms_new_handle_mt(L, "ms.udp", NULL, 5, sock_tostring, NULL);
    lua_pushcfunction(L, sock_gc);
    lua_setfield(L, -2, "__gc");
    lms_add_checked_methods(L, methods);
}

/* ---- the module and metatables ---- */

void lms_build_socket_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"read", sock_read},
        {"write", sock_write},
        {"flush", sock_flush},
        {"shutdown", sock_shutdown},
        {"close", sock_close},
        {"closed", sock_is_closed},
        {"local_address", sock_local_address},
        {"peer_address", sock_peer_address},
        {"nodelay", sock_nodelay},
        {"keepalive", sock_keepalive},
        {NULL, NULL},
    };
    lms_new_handle_mt(L, "ms.socket", NULL, 10, sock_tostring, NULL);
    lua_pushcfunction(L, sock_gc);
    lua_setfield(L, -2, "__gc");
    lms_add_checked_methods(L, methods);
}

void lms_build_listener_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"accept", listener_accept},
        {"close", listener_close},
        {"closed", listener_is_closed},
        {"local_address", listener_address},
        {NULL, NULL},
    };
    lms_new_handle_mt(L, "ms.listener", NULL, 4, sock_tostring, NULL);
    lua_pushcfunction(L, sock_gc);
    lua_setfield(L, -2, "__gc");
    lms_add_checked_methods(L, methods);
}

void lms_net_push_module(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"connect", net_connect},
        {"listen", net_listen},
        {"resolve", net_resolve},
        {"udp", net_udp},
        {NULL, NULL},
    };
    lua_createtable(L, 0, 4);
    luaL_register(L, NULL, fns);
}
