/*
 * console.c - ms-host's console: a Unix socket that `ms-host attach`
 * connects to for a REPL inside the running host (docs/console.md).
 *
 * The socket side is C, run as libms tasks like the metrics endpoint: one
 * task accepts, and each connection is a task that turns the client's
 * frames into strings on a channel (its inbox) and the strings the session
 * sends back (on its outbox) into frames.  The Lua side is agents: the
 * dispatcher (lua/ms/console_agent.lua, spawned here at start) receives
 * one message per connection carrying the two channels and spawns a
 * session agent for it (lua/ms/console_session.lua), which evaluates lines
 * with the same lua/ms/repl.lua as `ms-host repl`.  So every console has
 * its own isolated Lua state, and nothing a client does reaches another
 * agent except through what its session evaluates.
 *
 * A client that goes away (cleanly, abruptly, or in the middle of a
 * request) ends its connection task, which closes both channels: the
 * session's next receive or send fails and the session agent ends.  The
 * host is not otherwise touched.
 *
 * Safety: the socket is created with mode 0600 (a umask around the bind,
 * and a chmod after it), so only the host's user can connect: a console
 * runs arbitrary Lua in the host.  There is no TCP console.  An existing
 * PATH is reused only when it is a stale socket (connecting is refused);
 * anything else at PATH is refused, never replaced.  The socket file is
 * removed when the runtime shuts down (the accept task's drop).
 *
 * Lifetime: the tasks run until the runtime shuts down, which cancels
 * them; the server is refcounted by the accept task and every connection
 * task, since cancellation ends them in no particular order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "console.h"
#include "host.h"
#include "lhandle.h"
#include "mail.h"
#include "spawn.h"
#include "xfer.h"

#define CON_MAX_CONNS 64            /* consoles at once; more are closed */
#define CON_MAX_LINE (64 * 1024)     /* one input line, bytes */
#define CON_HEADER_MAX 32            /* "line 65536\n" and the like */
#define CON_INBOX_CAPACITY 16        /* lines queued for a busy session */

typedef struct con_server {
    _Atomic uint32_t refs;      /* the accept task + one per connection task */
    _Atomic uint32_t conns;     /* connection tasks alive */
    ms_listener *l;             /* accept task only */
    agent *dispatcher;          /* a reference; immutable */
    uint64_t next_id;           /* accept task only */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* immutable */
} con_server;

/* A connection.  Only its own task touches it. */
typedef struct con_conn {
    con_server *srv;
    ms_stream *s;
    ms_chan *inbox;             /* lines to the session (our reference) */
    ms_chan *outbox;            /* replies from the session (our reference) */
    ms_chan_waiter inw, outw;
    xfer *sending;              /* a line waiting for room in the inbox */
    bool session_done;          /* the outbox was closed: the session ended */
    char *out;                  /* frames to write */
    size_t out_len, out_sent, out_cap;
    size_t rlen;                /* bytes in in */
    ms_error err;
    char in[CON_HEADER_MAX + CON_MAX_LINE];
} con_conn;

static void drop_blob(void *v) {
    xfer_free(v);
}

static void server_unref(con_server *srv) {
    if (atomic_fetch_sub_explicit(&srv->refs, 1, memory_order_acq_rel) == 1) {
        agent_unref(srv->dispatcher);
        free(srv);
    }
}

/* ---- frames: "<kind> <length>\n<payload>" ---- */

static bool out_frame(con_conn *c, const char *kind, const char *payload, size_t len) {
    char head[CON_HEADER_MAX];
    int hl = snprintf(head, sizeof head, "%s %zu\n", kind, len);
    size_t need = c->out_len + (size_t)hl + len;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *grown = realloc(c->out, cap);
        if (!grown)
            return false;
        c->out = grown;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, head, (size_t)hl);
    memcpy(c->out + c->out_len + hl, payload, len);
    c->out_len = need;
    return true;
}

/* A session's reply is one string: a kind letter ('o' output, then the
 * main prompt; 'm' output, then the continuation prompt) and the text. */
static bool reply_to_frame(con_conn *c, xfer *x) {
    size_t len;
    const char *s = xfer_get_lstr(x, &len);
    if (!s || len == 0)
        return false;
    return out_frame(c, s[0] == 'm' ? "more" : "out", s + 1, len - 1);
}

typedef enum parse_result { PARSE_NEED_MORE, PARSE_LINE, PARSE_BAD } parse_result;

/* Takes one complete "line N\n<N bytes>" frame off the front of c->in into
 * a new blob in *line. */
static parse_result parse_line(con_conn *c, xfer **line) {
    char *nl = memchr(c->in, '\n', c->rlen < CON_HEADER_MAX ? c->rlen : CON_HEADER_MAX);
    if (!nl)
        return c->rlen >= CON_HEADER_MAX ? PARSE_BAD : PARSE_NEED_MORE;
    if (c->rlen < 5 || memcmp(c->in, "line ", 5) != 0)
        return PARSE_BAD;
    /* Digits only: strtoul alone would take "+5", " 5" and "-0". */
    if (c->in[5] < '0' || c->in[5] > '9')
        return PARSE_BAD;
    char *end;
    unsigned long n = strtoul(c->in + 5, &end, 10);
    if (end == c->in + 5 || end != nl || n > CON_MAX_LINE)
        return PARSE_BAD;
    size_t head = (size_t)(nl - c->in) + 1;
    if (c->rlen < head + n)
        return PARSE_NEED_MORE;
    xfer *x = xfer_new();
    if (!x)
        return PARSE_BAD;
    xfer_put_lstr(x, c->in + head, n);
    if (x->failed) {
        xfer_free(x);
        return PARSE_BAD;
    }
    memmove(c->in, c->in + head + n, c->rlen - head - n);
    c->rlen -= head + n;
    *line = x;
    return PARSE_LINE;
}

/* ---- the connection task ---- */

/* Ends the conversation: the session sees its channels closed. */
static ms_poll conn_end(con_conn *c) {
    ms_chan_close(c->inbox);
    ms_chan_close(c->outbox);
    return MS_POLL_READY;
}

static ms_poll conn_poll(ms_cx *cx, void *state) {
    con_conn *c = state;
    for (;;) {
        bool progress = false;
        /* Replies first, so a client that stops reading holds back only
         * itself (the outbox fills, the session waits). */
        while (c->out_sent < c->out_len) {
            ssize_t n;
            if (ms_stream_write(c->s, cx, c->out + c->out_sent, c->out_len - c->out_sent, &n,
                                &c->err) == MS_POLL_PENDING)
                break;
            if (n < 0)
                return conn_end(c);
            c->out_sent += (size_t)n;
            progress = true;
        }
        if (c->out_sent == c->out_len)
            c->out_sent = c->out_len = 0;
        /* A write the driver fails after it was queued (no memory for the
         * request, a broken pipe) is told to the next flush: ask now, so
         * that the connection ends rather than wait for a client that waits
         * for us (found by the allocation-failure sweep). */
        if (!c->session_done && c->out_len == 0) {
            int frc;
            if (ms_stream_flush(c->s, cx, &frc, &c->err) == MS_POLL_READY && frc != 0)
                return conn_end(c);
        }
        if (!c->session_done && c->out_len == 0) {
            void *v;
            int rc;
            if (ms_chan_recv_poll(c->outbox, &c->outw, cx, &v, &rc) == MS_POLL_READY) {
                ms_chan_waiter_init(&c->outw);
                progress = true;
                if (rc != 0) {
                    c->session_done = true;
                } else {
                    bool ok = reply_to_frame(c, v);
                    xfer_free(v);
                    if (!ok)
                        return conn_end(c);
                }
            }
        }
        if (c->session_done && c->out_len == 0) {
            int rc;
            if (ms_stream_flush(c->s, cx, &rc, &c->err) == MS_POLL_PENDING)
                return MS_POLL_PENDING;
            return conn_end(c);
        }
        /* Lines to the session, one at a time through a bounded inbox. */
        if (!c->sending) {
            xfer *line = NULL;
            parse_result p = parse_line(c, &line);
            if (p == PARSE_BAD) {
                static const char why[] = "protocol error: expected \"line <length>\\n\" and at "
                                          "most 65536 bytes (see docs/console.md)\n";
                out_frame(c, "error", why, sizeof why - 1);
                c->session_done = true;
                ms_chan_close(c->inbox);
                continue;
            }
            if (p == PARSE_LINE) {
                c->sending = line;
                progress = true;
            }
        }
        if (c->sending) {
            int rc;
            if (ms_chan_send_poll(c->inbox, &c->inw, c->sending, cx, &rc) == MS_POLL_READY) {
                ms_chan_waiter_init(&c->inw);
                if (rc != 0) {
                    xfer_free(c->sending);
                    c->sending = NULL;
                    return conn_end(c);
                }
                c->sending = NULL;
                progress = true;
            }
        }
        /* Reading also notices a client that went away while its session
         * works, so the session learns of it as soon as it replies. */
        if (!c->sending && c->rlen < sizeof c->in) {
            ssize_t n;
            if (ms_stream_read(c->s, cx, c->in + c->rlen, sizeof c->in - c->rlen, &n, &c->err) ==
                MS_POLL_READY) {
                if (n <= 0)
                    return conn_end(c);
                c->rlen += (size_t)n;
                progress = true;
            }
        }
        if (!progress)
            return MS_POLL_PENDING;
        if (!ms_coop_proceed(cx))
            return MS_POLL_PENDING;
    }
}

static void conn_drop(void *state) {
    con_conn *c = state;
    if (c->sending && !ms_chan_waiter_cancel(c->inbox, &c->inw))
        xfer_free(c->sending);
    ms_chan_waiter_cancel(c->outbox, &c->outw);
    ms_chan_close(c->inbox);
    ms_chan_close(c->outbox);
    ms_chan_unref(c->inbox);
    ms_chan_unref(c->outbox);
    ms_stream_close(c->s);
    free(c->out);
    con_server *srv = c->srv;
    free(c);
    atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
    server_unref(srv);
}

/* Tells the dispatcher agent about a new connection: { id =, inbox =,
 * outbox = }.  False if it cannot (gone, out of memory). */
static bool announce(con_server *srv, con_conn *c, uint64_t id) {
    msg *m = msg_new();
    if (!m)
        return false;
    xfer_put_table(m->body, 3);
    xfer_put_str(m->body, "id");
    xfer_put_num(m->body, (double)id);
    xfer_put_str(m->body, "inbox");
    xfer_put_handle(m->body, XH_CHAN, c->inbox);
    xfer_put_str(m->body, "outbox");
    xfer_put_handle(m->body, XH_CHAN, c->outbox);
    char err[200];
    if (m->body->failed || mail_deliver(srv->dispatcher, m, err, sizeof err) != 0) {
        msg_free(m);
        return false;
    }
    return true;
}

static void conn_open(con_server *srv, ms_runtime *rt, ms_stream *s) {
    con_conn *c = malloc(sizeof *c);
    if (!c) {
        ms_stream_close(s);
        return;
    }
    memset(c, 0, offsetof(con_conn, in));
    if (ms_chan_new(CON_INBOX_CAPACITY, drop_blob, &c->inbox) != 0) {
        free(c);
        ms_stream_close(s);
        return;
    }
    if (ms_chan_new(CON_INBOX_CAPACITY, drop_blob, &c->outbox) != 0) {
        ms_chan_unref(c->inbox);
        free(c);
        ms_stream_close(s);
        return;
    }
    ms_chan_waiter_init(&c->inw);
    ms_chan_waiter_init(&c->outw);
    c->s = s;
    c->srv = srv;
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->conns, 1, memory_order_relaxed);
    if (!announce(srv, c, ++srv->next_id)) {
        conn_drop(c);
        return;
    }
    if (ms_spawn(rt, conn_poll, c, conn_drop, NULL) != 0)
        conn_drop(c);
}

static ms_poll accept_poll(ms_cx *cx, void *state) {
    con_server *srv = state;
    for (;;) {
        ms_stream *s;
        int rc;
        ms_error err;
        if (ms_listener_accept(srv->l, cx, &s, &rc, &err) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (rc == MS_E_CLOSED)
            return MS_POLL_READY;
        if (rc != 0)
            continue; /* a failed accept (EMFILE...): listening goes on */
        if (atomic_load_explicit(&srv->conns, memory_order_relaxed) >= CON_MAX_CONNS) {
            ms_stream_close(s);
            continue;
        }
        conn_open(srv, ms_cx_runtime(cx), s);
    }
}

static void accept_drop(void *state) {
    con_server *srv = state;
    ms_listener_close(srv->l);
    srv->l = NULL;
    unlink(srv->path);
    server_unref(srv);
}

/* ---- start ---- */

/* PATH must be free: nothing there, or a socket nobody listens on (left
 * by a host that did not shut down), which is removed. */
static int claim_path(const char *path, ms_error *err) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return ms_error_set(err, MS_E_IO, "console %s: %s", path, strerror(errno));
    }
    if (!S_ISSOCK(st.st_mode))
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "console %s exists and is not a socket; refusing to replace it", path);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ms_error_set(err, MS_E_IO, "console %s: socket: %s", path, strerror(errno));
    int rc = connect(fd, (struct sockaddr *)&un, sizeof un);
    int e = errno;
    close(fd);
    if (rc == 0)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "console %s: another process is listening on it", path);
    if (e != ECONNREFUSED)
        return ms_error_set(err, MS_E_IO, "console %s: cannot tell whether it is in use: %s",
                            path, strerror(e));
    if (unlink(path) != 0 && errno != ENOENT)
        return ms_error_set(err, MS_E_IO, "console %s: cannot remove the stale socket: %s", path,
                            strerror(errno));
    return 0;
}

/* Spawns the dispatcher agent from L (the main state, not yet an agent). */
static agent *spawn_dispatcher(host *h, ms_error *err) {
    char why[256];
    spawn_spec spec = {.src = SRC_MODULE, .text = "ms.console_agent", .name = "ms.console"};
    agent *a = spawn_agent_spec(h, &spec, why, sizeof why);
    if (!a)
        ms_error_set(err, MS_E_INVALID_ARGUMENT, "console: cannot start its agent: %s", why);
    return a;
}

int console_start(host *h, const char *path, ms_error *err) {
    con_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for the console");
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof srv->path) {
        free(srv);
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "console \"%s\": a socket path must be 1 to %zu bytes long", path,
                            sizeof srv->path - 1);
    }
    memcpy(srv->path, path, len + 1);
    int rc = claim_path(path, err);
    if (rc != 0) {
        free(srv);
        return rc;
    }
    /* The umask covers the moment bind creates the file; the chmod is for
     * file systems that ignore it.  No other thread creates files while
     * the host starts. */
    mode_t old = umask(0177);
    ms_error lerr;
    rc = ms_unix_listen(h->rt, path, 16, &srv->l, &lerr);
    umask(old);
    if (rc != 0) {
        free(srv);
        return ms_error_set(err, rc, "console %s: %s", path, lerr.message);
    }
    if (chmod(path, 0600) != 0) {
        int e = errno;
        ms_listener_close(srv->l);
        unlink(path);
        free(srv);
        return ms_error_set(err, MS_E_IO, "console %s: chmod 0600: %s", path, strerror(e));
    }
    srv->dispatcher = spawn_dispatcher(h, err);
    if (!srv->dispatcher) {
        ms_listener_close(srv->l);
        unlink(path);
        free(srv);
        return MS_E_INVALID_ARGUMENT;
    }
    atomic_init(&srv->refs, 1);
    atomic_init(&srv->conns, 0);
    rc = ms_spawn(h->rt, accept_poll, srv, accept_drop, NULL);
    if (rc != 0) {
        accept_drop(srv);
        return ms_error_set(err, rc, "console %s: cannot start its task: %s", path,
                            ms_err_name(rc));
    }
    fprintf(stderr, "ms-host: console on %s (ms-host attach %s)\n", path, path);
    return 0;
}
