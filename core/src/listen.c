/*
 * listen.c - listening sockets and outgoing connections.
 *
 * A listening socket is created, bound and put to listen with plain system
 * calls on the caller's thread, so that "address in use" or "permission
 * denied" come back from ms_tcp_listen itself; the descriptor is then
 * handed to the driver, which watches it (a uv_poll_t) and accepts itself
 * (accept4), up to ACCEPT_BATCH connections per readiness so that timers
 * and other sockets get their turn.  Accepted streams wait in a FIFO until
 * a task takes them; at LISTEN_QUEUE_MAX waiting the driver stops
 * accepting until the task has taken half, so a task that takes its time
 * leaves further connections in the kernel's backlog (delayed, in order)
 * rather than holding descriptors and buffers for them.  Connecting is
 * asynchronous: the driver starts it and the connect object reports.
 *
 * Running out of descriptors (EMFILE, ENFILE) or memory while accepting:
 * as libuv's documentation advises, the listener stops accepting and tries
 * again ACCEPT_RETRY_MS later (the poll handle is stopped, a timer re-arms
 * it); meanwhile the connections wait in the kernel's backlog.  Not
 * libuv's own listener: when its reserve descriptor is gone it calls the
 * connection callback with EMFILE and accepts again at once, in a loop
 * that never returns to the event loop (timers and signals stop).  Each
 * failed accept counts in the driver's accept_errors, each pause in
 * accept_pauses (ms_metrics).
 *
 * Hosts are numeric addresses ("127.0.0.1", "::1") or "localhost": name
 * resolution blocks, so a caller that needs it resolves on the blocking
 * pool first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime.h"
#include "sockaddr.h"
#include "stream.h"

#define container(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* ---- addresses ---- */

static int fill_unix(const char *path, struct sockaddr_un *un, ms_error *err) {
    memset(un, 0, sizeof *un);
    if (!path || !*path)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT, "a Unix socket needs a path");
    if (strlen(path) >= sizeof un->sun_path)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "Unix socket path is %zu bytes long (at most %zu): %s", strlen(path),
                            sizeof un->sun_path - 1, path);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, strlen(path) + 1);
    return 0;
}

/* ---- listeners ---- */

#define ACCEPT_BATCH 64      /* connections accepted per readiness */
#define ACCEPT_RETRY_MS 100  /* pause after running out of descriptors */
#define LISTEN_QUEUE_MAX 64  /* accepted streams waiting for the task */

struct ms_listener {
    driver *d;                  /* immutable */
    bool is_pipe;               /* immutable */
    uint16_t port;              /* immutable */
    int fd;                     /* the listening socket; closed when freed */
    /* Driver thread only: */
    uv_poll_t poll;             /* readable: connections to accept */
    uv_timer_t retry;           /* re-arms poll after a pause */
    bool poll_live, retry_live; /* initialised (their close is pending or not) */
    int closing;                /* handles whose close callback is due */
    bool retrying;              /* the retry timer runs (paused after a failure) */
    drv_op op_open, op_close, op_resume;
    pthread_mutex_t lock;
    ms_stream *first, *last;    /* under lock: accepted, not yet taken */
    size_t queued;              /* under lock: how many */
    bool full;                  /* under lock: the driver stopped for a full queue */
    int err;                    /* under lock: uv error from listening */
    ms_waker waker;             /* under lock */
};

/* The accepted streams nobody took are closed by op_lclose on the loop;
 * if the loop finished first (the driver's stop closed every handle,
 * without a callback), they are still queued, and their memory is freed
 * here. */
static void listener_free_memory(ms_listener *l) {
    ms_stream *s = l->first;
    while (s) {
        ms_stream *next = s->next_accepted;
        stream_free_memory(s);
        s = next;
    }
    if (l->fd >= 0)
        close(l->fd); /* a uv_poll_t never closes the descriptor it watches */
    ms_waker_drop(&l->waker);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static void listener_wake(ms_listener *l) {
    ms_waker w = ms_waker_clone(&l->waker);
    pthread_mutex_unlock(&l->lock);
    ms_waker_wake(&w);
}

static void readable_cb(uv_poll_t *h, int status, int events);

/* Watches for connections again, unless paused after a failure or the
 * queue is full (each of which restarts it when it ends). */
static void resume_polling(ms_listener *l) {
    pthread_mutex_lock(&l->lock);
    bool full = l->full;
    pthread_mutex_unlock(&l->lock);
    if (!full && !l->retrying && l->poll_live && !uv_is_closing((uv_handle_t *)&l->poll))
        uv_poll_start(&l->poll, UV_READABLE, readable_cb);
}

static void retry_cb(uv_timer_t *t) {
    ms_listener *l = t->data;
    l->retrying = false;
    resume_polling(l);
}

static void op_resume(driver *d, drv_op *op) {
    resume_polling(container(op, ms_listener, op_resume));
}

/* Out of descriptors or memory: stop accepting for a while. */
static void pause_accepting(ms_listener *l) {
    atomic_fetch_add_explicit(&l->d->accept_pauses, 1, memory_order_relaxed);
    uv_poll_stop(&l->poll);
    if (l->retry_live && !uv_is_closing((uv_handle_t *)&l->retry)) {
        l->retrying = true;
        uv_timer_start(&l->retry, retry_cb, ACCEPT_RETRY_MS, 0);
    }
}

/* A stream around an accepted descriptor (which it then owns), or NULL
 * with the descriptor closed. */
static ms_stream *adopt(ms_listener *l, int fd) {
    ms_stream *s = stream_new(l->d);
    if (!s) {
        close(fd);
        return NULL;
    }
    int rc = l->is_pipe ? uv_pipe_init(&l->d->loop, &s->h.pipe, 0)
                        : uv_tcp_init(&l->d->loop, &s->h.tcp);
    if (rc != 0) {
        close(fd);
        stream_free_memory(s);
        return NULL;
    }
    s->handle_live = true;
    s->h.stream.data = s;
    rc = l->is_pipe ? uv_pipe_open(&s->h.pipe, fd) : uv_tcp_open(&s->h.tcp, fd);
    if (rc != 0) {
        close(fd);
        stream_close_now(s);
        return NULL;
    }
    if (!l->is_pipe)
        uv_tcp_nodelay(&s->h.tcp, 1);
    s->fd = fd;
    stream_start_reading(s);
    return s;
}

static void readable_cb(uv_poll_t *h, int status, int events) {
    ms_listener *l = h->data;
    if (status < 0) {
        pthread_mutex_lock(&l->lock);
        l->err = status;
        listener_wake(l);
        return;
    }
    pthread_mutex_lock(&l->lock);
    size_t room = LISTEN_QUEUE_MAX > l->queued ? LISTEN_QUEUE_MAX - l->queued : 0;
    pthread_mutex_unlock(&l->lock);
    if (room > ACCEPT_BATCH)
        room = ACCEPT_BATCH;
    ms_stream *first = NULL, *last = NULL;
    size_t n = 0;
    for (size_t i = 0; i < room; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue; /* that connection is gone; the next may be fine */
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM, ...: accepting again now
             * would fail the same way. */
            atomic_fetch_add_explicit(&l->d->accept_errors, 1, memory_order_relaxed);
            pause_accepting(l);
            break;
        }
        ms_stream *s = adopt(l, fd);
        if (!s) {
            atomic_fetch_add_explicit(&l->d->accept_errors, 1, memory_order_relaxed);
            pause_accepting(l);
            break;
        }
        if (last)
            last->next_accepted = s;
        else
            first = s;
        last = s;
        n++;
    }
    pthread_mutex_lock(&l->lock);
    if (first) {
        if (l->last)
            l->last->next_accepted = first;
        else
            l->first = first;
        l->last = last;
        l->queued += n;
    }
    if (l->queued >= LISTEN_QUEUE_MAX && !l->full) {
        /* The task is behind: the rest wait in the kernel's backlog. */
        l->full = true;
        uv_poll_stop(&l->poll);
    }
    if (first)
        listener_wake(l);
    else
        pthread_mutex_unlock(&l->lock);
}

static void listener_close_cb(uv_handle_t *h) {
    ms_listener *l = h->data;
    if (--l->closing == 0)
        listener_free_memory(l);
}

static void op_open(driver *d, drv_op *op) {
    ms_listener *l = container(op, ms_listener, op_open);
    int rc = uv_timer_init(&d->loop, &l->retry);
    if (rc == 0) {
        l->retry_live = true;
        l->retry.data = l;
        rc = uv_poll_init(&d->loop, &l->poll, l->fd);
    }
    if (rc == 0) {
        l->poll_live = true;
        l->poll.data = l;
        rc = uv_poll_start(&l->poll, UV_READABLE, readable_cb);
    }
    if (rc != 0) {
        pthread_mutex_lock(&l->lock);
        l->err = rc;
        listener_wake(l);
    }
}

static void op_lclose(driver *d, drv_op *op) {
    ms_listener *l = container(op, ms_listener, op_close);
    /* The streams accepted and not taken are closed now, through the loop
     * (their close callbacks free them): later, the driver's stop may have
     * closed their handles without a callback, and their memory could then
     * be neither freed (libuv may still hold it) nor reached. */
    pthread_mutex_lock(&l->lock);
    ms_stream *s = l->first;
    l->first = l->last = NULL;
    l->queued = 0;
    pthread_mutex_unlock(&l->lock);
    while (s) {
        ms_stream *next = s->next_accepted;
        stream_close_now(s);
        s = next;
    }
    l->closing = 1; /* held until both closes are under way */
    if (l->poll_live && !uv_is_closing((uv_handle_t *)&l->poll)) {
        l->closing++;
        uv_close((uv_handle_t *)&l->poll, listener_close_cb);
    }
    if (l->retry_live && !uv_is_closing((uv_handle_t *)&l->retry)) {
        l->closing++;
        uv_close((uv_handle_t *)&l->retry, listener_close_cb);
    }
    if (--l->closing == 0)
        listener_free_memory(l);
}

static int listen_fd(ms_runtime *rt, int fd, bool is_pipe, uint16_t port, ms_listener **out,
                     ms_error *err) {
    driver *d = rt->driver;
    ms_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a listener");
    }
    l->d = d;
    l->fd = fd;
    l->is_pipe = is_pipe;
    l->port = port;
    pthread_mutex_init(&l->lock, NULL);
    l->op_open.fn = op_open;
    l->op_close.fn = op_lclose;
    l->op_resume.fn = op_resume;
    if (!drv_submit(d, &l->op_open)) {
        close(fd);
        pthread_mutex_destroy(&l->lock);
        free(l);
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    }
    *out = l;
    return 0;
}

int ms_tcp_listen(ms_runtime *rt, const char *host, uint16_t port, int backlog,
                  ms_listener **out, ms_error *err) {
    if (!drv_of(rt, false, true, "a TCP listener", err))
        return MS_E_NOT_ENABLED;
    struct sockaddr_storage ss;
    int rc = sockaddr_parse(host, port, &ss, NULL, err);
    if (rc != 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ms_error_set(err, errno == EMFILE || errno == ENFILE ? MS_E_EXHAUSTED : MS_E_IO,
                            "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t len = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return ms_error_set(err, MS_E_IO, "cannot listen on %s port %u: %s",
                            host ? host : "localhost", port, strerror(e));
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    uint16_t actual = port;
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
        actual = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                  : ((struct sockaddr_in6 *)&bound)->sin6_port);
    return listen_fd(rt, fd, false, actual, out, err);
}

int ms_unix_listen(ms_runtime *rt, const char *path, int backlog, ms_listener **out,
                   ms_error *err) {
    if (!drv_of(rt, false, true, "a Unix socket listener", err))
        return MS_E_NOT_ENABLED;
    struct sockaddr_un un;
    int rc = fill_unix(path, &un, err);
    if (rc != 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ms_error_set(err, errno == EMFILE || errno == ENFILE ? MS_E_EXHAUSTED : MS_E_IO,
                            "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&un, sizeof un) != 0 ||
        listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return ms_error_set(err, MS_E_IO, "cannot listen on %s: %s", path, strerror(e));
    }
    return listen_fd(rt, fd, true, 0, out, err);
}

int ms_listener_fd(const ms_listener *l) {
    return l->fd;
}

uint16_t ms_listener_port(const ms_listener *l) {
    return l->port;
}

ms_poll ms_listener_accept(ms_listener *l, ms_cx *cx, ms_stream **out, int *rc, ms_error *err) {
    if (!ms_coop_proceed(cx))
        return MS_POLL_PENDING;
    pthread_mutex_lock(&l->lock);
    ms_stream *s = l->first;
    if (s) {
        l->first = s->next_accepted;
        if (!l->first)
            l->last = NULL;
        s->next_accepted = NULL;
        l->queued--;
        bool resume = l->full && l->queued <= LISTEN_QUEUE_MAX / 2;
        if (resume)
            l->full = false;
        pthread_mutex_unlock(&l->lock);
        if (resume)
            drv_submit(l->d, &l->op_resume);
        *out = s;
        *rc = 0;
        return MS_POLL_READY;
    }
    if (l->err) {
        int e = l->err;
        l->err = 0;
        pthread_mutex_unlock(&l->lock);
        *out = NULL;
        *rc = stream_uv_error(err, e, "accept");
        return MS_POLL_READY;
    }
    ms_waker_store(&l->waker, ms_cx_waker(cx));
    pthread_mutex_unlock(&l->lock);
    return MS_POLL_PENDING;
}

void ms_listener_close(ms_listener *l) {
    if (!l)
        return;
    if (!drv_submit(l->d, &l->op_close)) {
        drv_wait_finished(l->d);
        listener_free_memory(l);
    }
}

/* ---- connecting ---- */

struct ms_connect {
    driver *d;                  /* immutable */
    bool is_pipe;               /* immutable */
    struct sockaddr_storage addr;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    uv_connect_t req;           /* driver thread only */
    ms_stream *stream;          /* under lock once connected */
    drv_op op_start, op_free;
    pthread_mutex_t lock;
    bool done, abandoned;       /* under lock */
    int rc;                     /* under lock */
    ms_waker waker;             /* under lock */
};

static void connect_free_memory(ms_connect *c) {
    ms_waker_drop(&c->waker);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void connect_cb(uv_connect_t *req, int status) {
    ms_connect *c = req->data;
    ms_stream *failed = NULL;
    if (status == 0) {
        uv_os_fd_t fd = -1;
        uv_fileno((uv_handle_t *)&c->stream->h, &fd);
        c->stream->fd = fd; /* published by c->lock below */
        stream_start_reading(c->stream);
    } else {
        /* A failed connection's handle is useless: close it here. */
        pthread_mutex_lock(&c->lock);
        failed = c->stream;
        c->stream = NULL;
        pthread_mutex_unlock(&c->lock);
    }
    if (failed)
        stream_close_now(failed);
    pthread_mutex_lock(&c->lock);
    c->done = true;
    c->rc = status;
    if (c->abandoned) {
        /* Nobody wants the result any more. */
        ms_stream *s = c->stream;
        c->stream = NULL;
        pthread_mutex_unlock(&c->lock);
        if (s)
            stream_close_now(s);
        connect_free_memory(c);
        return;
    }
    ms_waker w = ms_waker_clone(&c->waker);
    pthread_mutex_unlock(&c->lock);
    ms_waker_wake(&w);
}

static void op_cstart(driver *d, drv_op *op) {
    ms_connect *c = container(op, ms_connect, op_start);
    /* First: connect_cb finds c through it on every path, the failures
     * below included (the allocation-failure sweep: a refused stream
     * crashed here). */
    c->req.data = c;
    ms_stream *s = stream_new(d);
    int rc = s ? 0 : UV_ENOMEM;
    if (s) {
        rc = c->is_pipe ? uv_pipe_init(&d->loop, &s->h.pipe, 0) : uv_tcp_init(&d->loop, &s->h.tcp);
        if (rc == 0) {
            s->handle_live = true;
            s->h.stream.data = s;
            c->stream = s;
            if (c->is_pipe) {
                uv_pipe_connect(&c->req, &s->h.pipe, c->path, connect_cb);
                return; /* uv_pipe_connect reports errors through the callback */
            }
            uv_tcp_nodelay(&s->h.tcp, 1);
            rc = uv_tcp_connect(&c->req, &s->h.tcp, (struct sockaddr *)&c->addr, connect_cb);
            if (rc == 0)
                return;
            c->stream = NULL;
            stream_close_now(s);
        } else {
            stream_free_memory(s);
        }
    }
    connect_cb(&c->req, rc);
}

static void op_cfree(driver *d, drv_op *op) {
    ms_connect *c = container(op, ms_connect, op_free);
    pthread_mutex_lock(&c->lock);
    if (!c->done) {
        /* Still connecting: closing the handle makes connect_cb run with
         * UV_ECANCELED, which then frees. */
        c->abandoned = true;
        ms_stream *s = c->stream;
        pthread_mutex_unlock(&c->lock);
        if (s)
            stream_close_now(s);
        return;
    }
    ms_stream *s = c->stream;
    c->stream = NULL;
    pthread_mutex_unlock(&c->lock);
    if (s)
        stream_close_now(s);
    connect_free_memory(c);
}

static int connect_start(ms_runtime *rt, ms_connect *c, ms_connect **out, ms_error *err) {
    c->d = rt->driver;
    pthread_mutex_init(&c->lock, NULL);
    c->op_start.fn = op_cstart;
    c->op_free.fn = op_cfree;
    if (!drv_submit(c->d, &c->op_start)) {
        connect_free_memory(c);
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    }
    *out = c;
    return 0;
}

int ms_tcp_connect(ms_runtime *rt, const char *host, uint16_t port, ms_connect **out,
                   ms_error *err) {
    if (!drv_of(rt, false, true, "a TCP connection", err))
        return MS_E_NOT_ENABLED;
    ms_connect *c = calloc(1, sizeof *c);
    if (!c)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a connection");
    int rc = sockaddr_parse(host, port, &c->addr, NULL, err);
    if (rc != 0) {
        free(c);
        return rc;
    }
    return connect_start(rt, c, out, err);
}

int ms_unix_connect(ms_runtime *rt, const char *path, ms_connect **out, ms_error *err) {
    if (!drv_of(rt, false, true, "a Unix socket connection", err))
        return MS_E_NOT_ENABLED;
    struct sockaddr_un un;
    int rc = fill_unix(path, &un, err);
    if (rc != 0)
        return rc;
    ms_connect *c = calloc(1, sizeof *c);
    if (!c)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a connection");
    c->is_pipe = true;
    memcpy(c->path, un.sun_path, sizeof c->path);
    return connect_start(rt, c, out, err);
}

ms_poll ms_connect_poll(ms_connect *c, ms_cx *cx, ms_stream **out, int *rc, ms_error *err) {
    pthread_mutex_lock(&c->lock);
    if (!c->done) {
        ms_waker_store(&c->waker, ms_cx_waker(cx));
        pthread_mutex_unlock(&c->lock);
        return MS_POLL_PENDING;
    }
    int status = c->rc;
    ms_stream *s = c->stream;
    c->stream = NULL;
    pthread_mutex_unlock(&c->lock);
    if (status != 0) {
        *out = NULL;
        *rc = stream_uv_error(err, status, "connect");
        return MS_POLL_READY;
    }
    if (!s) {
        *out = NULL;
        *rc = ms_error_set(err, MS_E_INVALID_ARGUMENT, "connection already taken");
        return MS_POLL_READY;
    }
    *out = s;
    *rc = 0;
    return MS_POLL_READY;
}

void ms_connect_free(ms_connect *c) {
    if (!c)
        return;
    if (!drv_submit(c->d, &c->op_free)) {
        drv_wait_finished(c->d);
        pthread_mutex_lock(&c->lock);
        ms_stream *s = c->stream;
        c->stream = NULL;
        pthread_mutex_unlock(&c->lock);
        if (s)
            stream_free_memory(s);
        connect_free_memory(c);
    }
}
