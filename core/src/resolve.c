/*
 * resolve.c - name resolution for connections, without blocking a worker.
 *
 * getaddrinfo blocks (it may read files and ask a DNS server), so it must
 * not run on a worker.  The driver starts libuv's uv_getaddrinfo, which
 * runs it on libuv's own thread pool and calls back on the driver loop;
 * the task polls the request like any other driver object.  The request
 * meets the task under its lock:
 *
 *   driver: starts the lookup (op_start), and in the callback copies the
 *           addresses out, sets done and wakes the task; if the task has
 *           let go meanwhile (abandoned), the callback frees instead.
 *   task:   polls done; ms_resolve_free either frees a finished request or
 *           (op_free, on the driver) cancels an unfinished one, whose
 *           callback then runs with UV_EAI_CANCELED and frees.
 *
 * A lookup that libuv cannot cancel (already running on its pool) ends in
 * its own time; the task does not wait for it.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "stream.h"

#define container(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define RESOLVE_MAX 16 /* addresses kept per lookup */

struct ms_resolve {
    driver *d;                  /* immutable */
    char *host;                 /* immutable */
    int family;                 /* immutable: AF_UNSPEC, AF_INET or AF_INET6 */
    uv_getaddrinfo_t req;       /* driver thread only */
    drv_op op_start, op_free;
    pthread_mutex_t lock;
    bool done, abandoned;       /* under lock */
    int rc;                     /* under lock: uv error, 0 on success */
    struct sockaddr_storage addrs[RESOLVE_MAX]; /* under lock until done, then immutable */
    size_t naddrs;
    ms_waker waker;             /* under lock */
};

static void resolve_free_memory(ms_resolve *r) {
    ms_waker_drop(&r->waker);
    pthread_mutex_destroy(&r->lock);
    free(r->host);
    free(r);
}

static void lookup_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    ms_resolve *r = req->data;
    pthread_mutex_lock(&r->lock);
    size_t n = 0;
    for (struct addrinfo *ai = res; ai && n < RESOLVE_MAX; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (ai->ai_addrlen > sizeof r->addrs[0])
            continue;
        memset(&r->addrs[n], 0, sizeof r->addrs[n]);
        memcpy(&r->addrs[n], ai->ai_addr, ai->ai_addrlen);
        n++;
    }
    r->naddrs = n;
    r->rc = status != 0 ? status : n == 0 ? UV_EAI_NONAME : 0;
    r->done = true;
    bool abandoned = r->abandoned;
    ms_waker w = abandoned ? (ms_waker){0} : ms_waker_clone(&r->waker);
    pthread_mutex_unlock(&r->lock);
    if (res)
        uv_freeaddrinfo(res);
    if (abandoned) {
        resolve_free_memory(r);
        return;
    }
    ms_waker_wake(&w);
}

static void op_start(driver *d, drv_op *op) {
    ms_resolve *r = container(op, ms_resolve, op_start);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = r->family;
    hints.ai_socktype = SOCK_STREAM;
    r->req.data = r;
    int rc = uv_getaddrinfo(&d->loop, &r->req, lookup_cb, r->host, NULL, &hints);
    if (rc != 0)
        lookup_cb(&r->req, rc, NULL);
}

static void op_free(driver *d, drv_op *op) {
    ms_resolve *r = container(op, ms_resolve, op_free);
    pthread_mutex_lock(&r->lock);
    if (r->done) {
        pthread_mutex_unlock(&r->lock);
        resolve_free_memory(r);
        return;
    }
    r->abandoned = true;
    pthread_mutex_unlock(&r->lock);
    /* The callback runs (UV_EAI_CANCELED if the cancel took) and frees. */
    uv_cancel((uv_req_t *)&r->req);
}

int ms_resolve_start(ms_runtime *rt, const char *host, int family, ms_resolve **out,
                     ms_error *err) {
    if (!drv_of(rt, false, true, "name resolution", err))
        return MS_E_NOT_ENABLED;
    if (!host || !*host)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT, "resolve: the host name is empty");
    if (family != 0 && family != 4 && family != 6)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "resolve: family %d is not 0, 4 or 6", family);
    ms_resolve *r = calloc(1, sizeof *r);
    if (!r || !(r->host = strdup(host))) {
        free(r);
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory to resolve a name");
    }
    r->d = rt->driver;
    r->family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
    pthread_mutex_init(&r->lock, NULL);
    r->op_start.fn = op_start;
    r->op_free.fn = op_free;
    if (!drv_submit(r->d, &r->op_start)) {
        resolve_free_memory(r);
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    }
    *out = r;
    return 0;
}

ms_poll ms_resolve_poll(ms_resolve *r, ms_cx *cx, int *rc, ms_error *err) {
    pthread_mutex_lock(&r->lock);
    if (!r->done) {
        ms_waker_store(&r->waker, ms_cx_waker(cx));
        pthread_mutex_unlock(&r->lock);
        return MS_POLL_PENDING;
    }
    int status = r->rc;
    pthread_mutex_unlock(&r->lock);
    if (status == 0) {
        *rc = 0;
    } else if (status == UV_EAI_NONAME || status == UV_EAI_NODATA || status == UV_EAI_FAIL) {
        *rc = ms_error_set(err, MS_E_IO, "unknown host \"%s\" (%s)", r->host,
                           uv_err_name(status));
    } else {
        *rc = stream_uv_error(err, status, "resolve");
    }
    return MS_POLL_READY;
}

size_t ms_resolve_count(const ms_resolve *r) {
    return r->naddrs;
}

int ms_resolve_address(const ms_resolve *r, size_t i, char *buf, size_t len) {
    if (i >= r->naddrs || len < INET6_ADDRSTRLEN)
        return MS_E_INVALID_ARGUMENT;
    const struct sockaddr_storage *ss = &r->addrs[i];
    const void *a = ss->ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)ss)->sin_addr
                                             : (const void *)&((struct sockaddr_in6 *)ss)->sin6_addr;
    return inet_ntop(ss->ss_family, a, buf, (socklen_t)len) ? 0 : MS_E_INVALID_ARGUMENT;
}

void ms_resolve_free(ms_resolve *r) {
    if (!r)
        return;
    if (!drv_submit(r->d, &r->op_free)) {
        /* The driver has stopped: its loop closed every request. */
        drv_wait_finished(r->d);
        resolve_free_memory(r);
    }
}
