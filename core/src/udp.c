/*
 * udp.c - datagram sockets.
 *
 * The task does the I/O itself: recvfrom and sendto with MSG_DONTWAIT on
 * its own thread (both are safe on a socket other threads only watch).
 * Only when a receive finds nothing does it ask the driver to watch the
 * socket (op_arm: a uv_poll_t, stopped again at the first readiness) and
 * wait for the wake; it then tries again.  A readiness that comes
 * between the failed recvfrom and the arming is not lost: the poll
 * reports a socket that is already readable at once.
 *
 *   driver thread: poll, poll_live, the ops.
 *   under lock:    waker, err (a poll error, reported once).
 *   immutable:     d, fd (closed with the poll handle).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime.h"
#include "sockaddr.h"
#include "stream.h"

#define container(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

struct ms_udp {
    driver *d;
    int fd;
    uv_poll_t poll;
    bool poll_live;
    drv_op op_open, op_arm, op_close;
    pthread_mutex_t lock;
    ms_waker waker;
    int err;
};

static void udp_free_memory(ms_udp *u) {
    if (u->fd >= 0)
        close(u->fd);
    ms_waker_drop(&u->waker);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

static void readable_cb(uv_poll_t *h, int status, int events) {
    ms_udp *u = h->data;
    uv_poll_stop(h);
    pthread_mutex_lock(&u->lock);
    if (status < 0)
        u->err = status;
    ms_waker w = ms_waker_clone(&u->waker);
    pthread_mutex_unlock(&u->lock);
    ms_waker_wake(&w);
}

static void op_open(driver *d, drv_op *op) {
    ms_udp *u = container(op, ms_udp, op_open);
    int rc = uv_poll_init(&d->loop, &u->poll, u->fd);
    if (rc == 0) {
        u->poll.data = u;
        u->poll_live = true;
        return;
    }
    pthread_mutex_lock(&u->lock);
    u->err = rc;
    ms_waker w = ms_waker_clone(&u->waker);
    pthread_mutex_unlock(&u->lock);
    ms_waker_wake(&w);
}

static void op_arm(driver *d, drv_op *op) {
    ms_udp *u = container(op, ms_udp, op_arm);
    if (u->poll_live && !uv_is_closing((uv_handle_t *)&u->poll))
        uv_poll_start(&u->poll, UV_READABLE, readable_cb);
}

static void close_cb(uv_handle_t *h) {
    udp_free_memory(h->data);
}

static void op_close(driver *d, drv_op *op) {
    ms_udp *u = container(op, ms_udp, op_close);
    if (u->poll_live && !uv_is_closing((uv_handle_t *)&u->poll))
        uv_close((uv_handle_t *)&u->poll, close_cb); /* a uv_poll_t leaves fd open */
    else if (!u->poll_live)
        udp_free_memory(u);
}

int ms_udp_open(ms_runtime *rt, const char *host, uint16_t port, ms_udp **out, ms_error *err) {
    if (!drv_of(rt, false, true, "a UDP socket", err))
        return MS_E_NOT_ENABLED;
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = sockaddr_parse(host, port, &ss, &len, err);
    if (rc != 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ms_error_set(err, errno == EMFILE || errno == ENFILE ? MS_E_EXHAUSTED : MS_E_IO,
                            "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        int e = errno;
        close(fd);
        return ms_error_set(err, MS_E_IO, "cannot bind UDP %s port %u: %s",
                            host ? host : "localhost", port, strerror(e));
    }
    ms_udp *u = calloc(1, sizeof *u);
    if (!u) {
        close(fd);
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a UDP socket");
    }
    u->d = rt->driver;
    u->fd = fd;
    pthread_mutex_init(&u->lock, NULL);
    u->op_open.fn = op_open;
    u->op_arm.fn = op_arm;
    u->op_close.fn = op_close;
    if (!drv_submit(u->d, &u->op_open)) {
        udp_free_memory(u);
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    }
    *out = u;
    return 0;
}

static int errno_error(ms_error *err, int e, const char *what) {
    return ms_error_set(err, e == ENOMEM || e == ENOBUFS ? MS_E_NO_MEMORY : MS_E_IO, "%s: %s",
                        what, strerror(e));
}

ms_poll ms_udp_recv(ms_udp *u, ms_cx *cx, void *buf, size_t cap, ssize_t *n,
                    struct sockaddr_storage *from, ms_error *err) {
    if (!ms_coop_proceed(cx))
        return MS_POLL_PENDING;
    for (int attempt = 0; attempt < 2; attempt++) {
        socklen_t flen = sizeof *from;
        memset(from, 0, sizeof *from);
        ssize_t k = recvfrom(u->fd, buf, cap, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)from,
                             &flen);
        if (k >= 0) {
            *n = (size_t)k > cap ? (ssize_t)cap : k;
            return MS_POLL_READY;
        }
        if (errno == EINTR) {
            attempt--;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            *n = errno_error(err, errno, "recvfrom");
            return MS_POLL_READY;
        }
        if (attempt == 1)
            break;
        pthread_mutex_lock(&u->lock);
        int perr = u->err;
        u->err = 0;
        if (!perr)
            ms_waker_store(&u->waker, ms_cx_waker(cx));
        pthread_mutex_unlock(&u->lock);
        if (perr) {
            *n = stream_uv_error(err, perr, "recv");
            return MS_POLL_READY;
        }
        drv_submit(u->d, &u->op_arm);
        /* Once more: a datagram may have come before the arming. */
    }
    return MS_POLL_PENDING;
}

int ms_udp_send(ms_udp *u, const void *buf, size_t len, const char *host, uint16_t port,
                ms_error *err) {
    struct sockaddr_storage ss;
    socklen_t slen;
    int rc = sockaddr_parse(host, port, &ss, &slen, err);
    if (rc != 0)
        return rc;
    for (;;) {
        ssize_t k = sendto(u->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&ss,
                           slen);
        if (k >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return ms_error_set(err, MS_E_EXHAUSTED,
                                "sendto: the socket's send buffer is full (EAGAIN)");
        return errno_error(err, errno, "sendto");
    }
}

int ms_udp_fd(const ms_udp *u) {
    return u->fd;
}

void ms_udp_close(ms_udp *u) {
    if (!u)
        return;
    if (!drv_submit(u->d, &u->op_close)) {
        drv_wait_finished(u->d);
        udp_free_memory(u);
    }
}
