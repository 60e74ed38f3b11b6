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
 * A client that breaks the protocol gets one `error` frame after what is
 * already on its way, and the connection ends: its input is read and
 * thrown away from then on (so a client gone meanwhile is noticed), never
 * parsed again.  A frame must complete within CON_FRAME_TIMEOUT_MS of its
 * first byte, and output that the client does not take for
 * CON_WRITE_TIMEOUT_MS ends the connection.  When all CON_MAX_CONNS slots
 * are taken, the next connection evicts one: the oldest that has not sent
 * a complete line yet, else (every one has) the one whose last line is
 * the oldest -- once it has had CON_EVICT_GRACE_MS since its accept or
 * that line; until then the next connection waits (in the kernel's
 * backlog).  So idle or hostile connections cannot lock an attaching
 * user out: a new client gets its turn, and CON_EVICT_GRACE_MS to receive
 * the banner and send its first line.
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
#include "hostlog.h"
#include "lhandle.h"
#include "mail.h"
#include "spawn.h"
#include "xfer.h"

#define CON_MAX_CONNS 64            /* consoles at once; a new one evicts one */
#define CON_MAX_LINE (64 * 1024)     /* one input line, bytes */
#define CON_HEADER_MAX 32            /* "line 65536\n" and the like */
#define CON_INBOX_CAPACITY 16        /* lines queued for a busy session */
#define CON_FRAME_TIMEOUT_MS 10000   /* from a frame's first byte to its last */
#define CON_WRITE_TIMEOUT_MS 30000   /* output the client does not take */
#define CON_EVICT_GRACE_MS 2000      /* a connection this fresh stays */
#define CON_ACCEPT_PER_POLL 8        /* then the accept task yields */

typedef struct con_conn con_conn;

typedef struct con_server {
    _Atomic uint32_t refs;      /* the accept task + one per connection task */
    _Atomic uint32_t conns;     /* connection tasks alive */
    ms_listener *l;             /* accept task only */
    agent *dispatcher;          /* a reference; immutable */
    uint64_t next_id;           /* accept task only */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* immutable */
    /* The connections not evicted, oldest first (under lock); evictions
     * pick from here. */
    pthread_mutex_t lock;
    con_conn *first, *last;
    uint32_t listed;
    /* Accept task only: a connection accepted but not yet admitted (every
     * slot taken, none evictable yet), and the timer it waits on. */
    ms_stream *held;
    ms_timer *wait;
} con_server;

/* A connection.  Only its own task touches it, except the fields marked
 * as under the server's lock. */
struct con_conn {
    con_server *srv;
    /* Under srv->lock: */
    con_conn *prev, *next;      /* on the server's list unless evicted */
    bool evicted;               /* the accept task wants it gone */
    bool proven;                /* it has sent a complete line */
    uint64_t active_ns;         /* its last complete line, or its accept */
    ms_waker waker;             /* the task's, for an eviction */
    /* The task's own: */
    ms_timer *deadline;         /* NULL without enable_time */
    uint64_t deadline_ns;       /* what deadline is set to, 0 = disarmed */
    uint64_t partial_since;     /* an incomplete frame waits for bytes, 0 = no */
    uint64_t write_since;       /* output waits for the client, 0 = no */
    bool bad;                   /* protocol error: error frame queued, input ignored */
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
};

static void drop_blob(void *v) {
    xfer_free(v);
}

static void server_unref(con_server *srv) {
    if (atomic_fetch_sub_explicit(&srv->refs, 1, memory_order_acq_rel) == 1) {
        agent_unref(srv->dispatcher);
        pthread_mutex_destroy(&srv->lock);
        free(srv);
    }
}

/* Under srv->lock. */
static void unlist(con_server *srv, con_conn *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        srv->last = c->prev;
    c->prev = c->next = NULL;
    srv->listed--;
}

/* Makes room for a new connection: the oldest one that has not sent a
 * complete line yet, else the one idle longest, is told to end -- once it
 * has had CON_EVICT_GRACE_MS since its accept or its last line (active_ns,
 * which is its accept until a line comes).  False when none can go yet:
 * *wait_until is when one can. */
static bool evict_one(con_server *srv, uint64_t now, uint64_t *wait_until) {
    const uint64_t grace = (uint64_t)CON_EVICT_GRACE_MS * 1000000u;
    pthread_mutex_lock(&srv->lock);
    con_conn *victim = NULL;
    for (con_conn *c = srv->first; c && !victim; c = c->next)
        if (!c->proven)
            victim = c;
    if (!victim)
        for (con_conn *c = srv->first; c; c = c->next)
            if (!victim || c->active_ns < victim->active_ns)
                victim = c;
    if (!victim || victim->active_ns + grace > now) {
        *wait_until = victim ? victim->active_ns + grace : now + grace;
        pthread_mutex_unlock(&srv->lock);
        return false;
    }
    unlist(srv, victim);
    victim->evicted = true;
    ms_waker w = ms_waker_clone(&victim->waker);
    pthread_mutex_unlock(&srv->lock);
    ms_waker_wake(&w);
    return true;
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

/* The protocol was broken: one error frame goes after what is already
 * queued, the session is told (its inbox closes), and from now on the
 * input is only read to be dropped; once the output is out, the
 * connection ends. */
static void conn_bad(con_conn *c, const char *why, size_t len) {
    out_frame(c, "error", why, len);
    c->bad = true;
    c->session_done = true;
    c->rlen = 0;
    c->partial_since = 0;
    ms_chan_close(c->inbox);
}

static const char why_frame[] = "protocol error: expected \"line <length>\\n\" and at most 65536 "
                                "bytes (see docs/console.md)\n";
static const char why_slow[] = "protocol error: a frame did not complete within 10 s\n";

/* Arms the connection's timer for the earlier of its deadlines (a frame
 * waiting for its bytes, output waiting for the client); true when one
 * has passed: which one, the caller tells from the times. */
static bool deadline_passed(con_conn *c, ms_cx *cx) {
    if (!c->deadline)
        return false;
    uint64_t at = 0;
    if (c->partial_since)
        at = c->partial_since + (uint64_t)CON_FRAME_TIMEOUT_MS * 1000000u;
    if (c->write_since) {
        uint64_t w = c->write_since + (uint64_t)CON_WRITE_TIMEOUT_MS * 1000000u;
        at = at && at < w ? at : w;
    }
    if (at == 0) {
        if (c->deadline_ns) {
            ms_timer_cancel(c->deadline);
            c->deadline_ns = 0;
        }
        return false;
    }
    if (at != c->deadline_ns) {
        ms_timer_set_deadline(c->deadline, at);
        c->deadline_ns = at;
    }
    return ms_timer_poll(c->deadline, cx) == MS_POLL_READY;
}

static ms_poll conn_poll(ms_cx *cx, void *state) {
    con_conn *c = state;
    con_server *srv = c->srv;
    pthread_mutex_lock(&srv->lock);
    bool evicted = c->evicted;
    if (!evicted)
        ms_waker_store(&c->waker, ms_cx_waker(cx));
    pthread_mutex_unlock(&srv->lock);
    if (evicted)
        return conn_end(c);
    for (;;) {
        bool progress = false;
        /* Replies first, so a client that stops reading holds back only
         * itself (the outbox fills, the session waits). */
        while (c->out_sent < c->out_len) {
            ssize_t n;
            if (ms_stream_write(c->s, cx, c->out + c->out_sent, c->out_len - c->out_sent, &n,
                                &c->err) == MS_POLL_PENDING) {
                if (!c->write_since)
                    c->write_since = ms_now_ns();
                break;
            }
            if (n < 0)
                return conn_end(c);
            c->out_sent += (size_t)n;
            c->write_since = 0;
            progress = true;
        }
        if (c->out_sent == c->out_len) {
            c->out_sent = c->out_len = 0;
            c->write_since = 0;
        }
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
            if (ms_stream_flush(c->s, cx, &rc, &c->err) == MS_POLL_PENDING) {
                if (!c->write_since)
                    c->write_since = ms_now_ns();
                if (deadline_passed(c, cx))
                    return conn_end(c);
                return MS_POLL_PENDING;
            }
            return conn_end(c);
        }
        /* Lines to the session, one at a time through a bounded inbox. */
        if (!c->sending && !c->bad) {
            xfer *line = NULL;
            parse_result p = parse_line(c, &line);
            if (p == PARSE_BAD) {
                conn_bad(c, why_frame, sizeof why_frame - 1);
                progress = true;
            } else if (p == PARSE_LINE) {
                c->sending = line;
                c->partial_since = 0;
                pthread_mutex_lock(&srv->lock);
                c->proven = true;
                c->active_ns = ms_now_ns();
                pthread_mutex_unlock(&srv->lock);
                progress = true;
            } else if (c->rlen > 0 && !c->partial_since) {
                c->partial_since = ms_now_ns();
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
         * works, so the session learns of it as soon as it replies.  After
         * a protocol error what arrives is dropped unread. */
        if (!c->sending && c->rlen < sizeof c->in) {
            ssize_t n;
            if (ms_stream_read(c->s, cx, c->in + c->rlen, sizeof c->in - c->rlen, &n, &c->err) ==
                MS_POLL_READY) {
                if (n <= 0)
                    return conn_end(c);
                if (!c->bad)
                    c->rlen += (size_t)n;
                progress = true;
            }
        }
        if (!progress) {
            if (!deadline_passed(c, cx))
                return MS_POLL_PENDING;
            uint64_t now = ms_now_ns();
            if (c->write_since &&
                now >= c->write_since + (uint64_t)CON_WRITE_TIMEOUT_MS * 1000000u)
                return conn_end(c); /* the client does not take its output */
            conn_bad(c, why_slow, sizeof why_slow - 1);
            continue;
        }
        if (!ms_coop_proceed(cx))
            return MS_POLL_PENDING;
    }
}

static void conn_drop(void *state) {
    con_conn *c = state;
    con_server *srv = c->srv;
    pthread_mutex_lock(&srv->lock);
    if (!c->evicted)
        unlist(srv, c);
    ms_waker_drop(&c->waker);
    pthread_mutex_unlock(&srv->lock);
    ms_timer_free(c->deadline);
    if (c->sending && !ms_chan_waiter_cancel(c->inbox, &c->inw))
        xfer_free(c->sending);
    ms_chan_waiter_cancel(c->outbox, &c->outw);
    ms_chan_close(c->inbox);
    ms_chan_close(c->outbox);
    ms_chan_unref(c->inbox);
    ms_chan_unref(c->outbox);
    ms_stream_close(c->s);
    free(c->out);
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
    if (ms_runtime_config(rt)->enable_time)
        ms_timer_new(rt, &c->deadline, NULL); /* none: no deadlines for it */
    c->s = s;
    c->srv = srv;
    c->active_ns = ms_now_ns();
    pthread_mutex_lock(&srv->lock);
    c->prev = srv->last;
    if (srv->last)
        srv->last->next = c;
    else
        srv->first = c;
    srv->last = c;
    srv->listed++;
    pthread_mutex_unlock(&srv->lock);
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->conns, 1, memory_order_relaxed);
    if (!announce(srv, c, ++srv->next_id)) {
        conn_drop(c);
        return;
    }
    if (ms_spawn(rt, conn_poll, c, conn_drop, NULL) != 0)
        conn_drop(c);
}

/* Whether a new connection may be served now (evicting one if all slots
 * are taken); if not, *wait_until says when to ask again. */
static bool admit(con_server *srv, uint64_t *wait_until) {
    uint64_t now = ms_now_ns();
    pthread_mutex_lock(&srv->lock);
    uint32_t listed = srv->listed;
    pthread_mutex_unlock(&srv->lock);
    /* Evicted tasks end at their next poll; should they lag behind, new
     * connections wait rather than pile up. */
    if (atomic_load_explicit(&srv->conns, memory_order_relaxed) >= 2 * CON_MAX_CONNS) {
        *wait_until = now + 10 * 1000000u;
        return false;
    }
    return listed < CON_MAX_CONNS || evict_one(srv, now, wait_until);
}

static ms_poll accept_poll(ms_cx *cx, void *state) {
    con_server *srv = state;
    for (int taken = 0;; taken++) {
        /* A few at a time: the new connections get going before newer
         * ones arrive. */
        if (taken == CON_ACCEPT_PER_POLL)
            return ms_cx_yield(cx);
        ms_stream *s = srv->held;
        srv->held = NULL;
        if (!s) {
            int rc;
            ms_error err;
            if (ms_listener_accept(srv->l, cx, &s, &rc, &err) == MS_POLL_PENDING)
                return MS_POLL_PENDING;
            if (rc == MS_E_CLOSED)
                return MS_POLL_READY;
            if (rc != 0)
                continue; /* a failed accept: listening goes on */
        }
        uint64_t wait_until;
        if (!admit(srv, &wait_until)) {
            /* It waits (and those behind it, in the kernel's backlog). */
            srv->held = s;
            if (!srv->wait) {
                ms_stream_close(s); /* no timers: it cannot wait */
                srv->held = NULL;
                continue;
            }
            ms_timer_set_deadline(srv->wait, wait_until);
            if (ms_timer_poll(srv->wait, cx) == MS_POLL_PENDING)
                return MS_POLL_PENDING;
            continue;
        }
        conn_open(srv, ms_cx_runtime(cx), s);
    }
}

static void accept_drop(void *state) {
    con_server *srv = state;
    if (srv->held)
        ms_stream_close(srv->held);
    srv->held = NULL;
    ms_timer_free(srv->wait);
    srv->wait = NULL;
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
    if (ms_runtime_config(h->rt)->enable_time)
        ms_timer_new(h->rt, &srv->wait, NULL); /* none: a full console closes newcomers */
    pthread_mutex_init(&srv->lock, NULL);
    atomic_init(&srv->refs, 1);
    atomic_init(&srv->conns, 0);
    rc = ms_spawn(h->rt, accept_poll, srv, accept_drop, NULL);
    if (rc != 0) {
        accept_drop(srv);
        return ms_error_set(err, rc, "console %s: cannot start its task: %s", path,
                            ms_err_name(rc));
    }
    hostlog(HOSTLOG_INFO, "console.listen", 0, NULL, "console on %s (ms-host attach %s)", path,
            path);
    return 0;
}
