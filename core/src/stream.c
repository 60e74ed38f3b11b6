/*
 * stream.c - reading and writing connected streams; see stream.h for who
 * may touch what.
 */
#include "stream.h"

#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define container(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

int stream_uv_error(ms_error *err, int uverr, const char *what) {
    int code = uverr == UV_ENOMEM || uverr == UV_ENOBUFS ? MS_E_NO_MEMORY
             : uverr == UV_ECANCELED                     ? MS_E_CLOSED
             : uverr == UV_EMFILE || uverr == UV_ENFILE  ? MS_E_EXHAUSTED
                                                         : MS_E_IO;
    return ms_error_set(err, code, "%s: %s (%s)", what, uv_strerror(uverr), uv_err_name(uverr));
}

/* ---- driver side ---- */

static void wake_clone(ms_stream *s, ms_waker *slot) {
    ms_waker w = ms_waker_clone(slot);
    pthread_mutex_unlock(&s->lock);
    ms_waker_wake(&w);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    ms_stream *s = h->data;
    pthread_mutex_lock(&s->lock);
    if (s->rstart > 0) {
        memmove(s->rbuf, s->rbuf + s->rstart, s->rlen);
        s->rstart = 0;
    }
    size_t used = s->rlen;
    pthread_mutex_unlock(&s->lock);
    /* Only this thread writes past rstart + rlen: no lock needed there. */
    *buf = uv_buf_init(s->rbuf + used, (unsigned)(MS_STREAM_READ_BUFFER - used));
}

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
    ms_stream *s = h->data;
    if (nread == 0)
        return; /* EAGAIN */
    pthread_mutex_lock(&s->lock);
    if (nread > 0) {
        s->rlen += (size_t)nread;
        if (s->rstart + s->rlen >= MS_STREAM_READ_BUFFER && s->rstart == 0) {
            /* Full: stop taking bytes from the kernel until the task reads,
             * so the peer feels the back-pressure. */
            uv_read_stop(h);
            s->reading = false;
            s->read_paused = true;
        }
    } else if (nread == UV_ENOBUFS) {
        uv_read_stop(h);
        s->reading = false;
        s->read_paused = true;
    } else {
        if (nread == UV_EOF)
            s->eof = true;
        else
            s->read_err = (int)nread;
        uv_read_stop(h);
        s->reading = false;
    }
    wake_clone(s, &s->rwaker);
}

void stream_start_reading(ms_stream *s) {
    if (!s->handle_live || s->reading || uv_is_closing((uv_handle_t *)&s->h))
        return;
    int rc = uv_read_start(&s->h.stream, alloc_cb, read_cb);
    if (rc == 0) {
        s->reading = true;
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->read_err = rc;
    wake_clone(s, &s->rwaker);
}

static void op_read(driver *d, drv_op *op) {
    stream_start_reading(container(op, ms_stream, op_read));
}

typedef struct write_req {
    uv_write_t req;
    ms_stream *s;
    size_t len;
    char *data;
} write_req;

static void write_cb(uv_write_t *req, int status) {
    write_req *w = (write_req *)req;
    ms_stream *s = w->s;
    free(w->data);
    pthread_mutex_lock(&s->lock);
    s->inflight -= w->len;
    if (status < 0 && !s->write_err)
        s->write_err = status;
    free(w);
    wake_clone(s, &s->wwaker);
}

/* Hands whatever the task queued to one uv_write. */
static void flush_now(ms_stream *s) {
    if (!s->handle_live || uv_is_closing((uv_handle_t *)&s->h))
        return;
    write_req *w = malloc(sizeof *w);
    pthread_mutex_lock(&s->lock);
    if (s->wlen == 0 || !w) {
        if (s->wlen && !w && !s->write_err) {
            s->write_err = UV_ENOMEM;
            wake_clone(s, &s->wwaker);
        } else {
            pthread_mutex_unlock(&s->lock);
        }
        free(w);
        return;
    }
    w->s = s;
    w->len = s->wlen;
    w->data = s->wbuf;
    s->wbuf = NULL;
    s->wlen = s->wcap = 0;
    s->inflight += w->len;
    pthread_mutex_unlock(&s->lock);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, &s->h.stream, &b, 1, write_cb);
    if (rc != 0) {
        pthread_mutex_lock(&s->lock);
        s->inflight -= w->len;
        s->write_err = rc;
        free(w->data);
        free(w);
        wake_clone(s, &s->wwaker);
    }
}

static void op_flush(driver *d, drv_op *op) {
    flush_now(container(op, ms_stream, op_flush));
}

typedef struct shutdown_req {
    uv_shutdown_t req;
    ms_stream *s;
} shutdown_req;

static void shutdown_cb(uv_shutdown_t *req, int status) {
    shutdown_req *r = (shutdown_req *)req;
    ms_stream *s = r->s;
    free(r);
    pthread_mutex_lock(&s->lock);
    s->shutdown_done = true;
    s->shutdown_rc = status;
    wake_clone(s, &s->wwaker);
}

static void op_shutdown(driver *d, drv_op *op) {
    ms_stream *s = container(op, ms_stream, op_shutdown);
    flush_now(s);
    int rc = UV_ENOMEM;
    shutdown_req *r = malloc(sizeof *r);
    if (r && s->handle_live && !uv_is_closing((uv_handle_t *)&s->h)) {
        r->s = s;
        /* libuv runs the shutdown after the writes queued before it. */
        rc = uv_shutdown(&r->req, &s->h.stream, shutdown_cb);
        if (rc == 0)
            return;
    } else if (r) {
        rc = UV_ECANCELED;
    }
    free(r);
    pthread_mutex_lock(&s->lock);
    s->shutdown_done = true;
    s->shutdown_rc = rc;
    wake_clone(s, &s->wwaker);
}

void stream_free_memory(ms_stream *s) {
    ms_waker_drop(&s->rwaker);
    ms_waker_drop(&s->wwaker);
    free(s->rbuf);
    free(s->wbuf);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void close_cb(uv_handle_t *h) {
    stream_free_memory(h->data);
}

static void walk_close_cb(uv_handle_t *h) {
    ms_stream *s = h->data;
    s->walk_done = true;
    if (s->release)
        stream_free_memory(s);
}

void stream_close_at_stop(uv_handle_t *h) {
    ms_stream *s = h->data;
    s->walk_closed = true;
    uv_close(h, walk_close_cb);
}

void stream_close_now(ms_stream *s) {
    if (s->walk_closed) {
        /* The stop's walk closed it: free once that close is done. */
        if (s->walk_done)
            stream_free_memory(s);
        else
            s->release = true;
        return;
    }
    if (s->handle_live && !uv_is_closing((uv_handle_t *)&s->h))
        uv_close((uv_handle_t *)&s->h, close_cb);
    else if (!s->handle_live)
        stream_free_memory(s);
}

static void op_close(driver *d, drv_op *op) {
    stream_close_now(container(op, ms_stream, op_close));
}

ms_stream *stream_new(driver *d) {
    ms_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->rbuf = malloc(MS_STREAM_READ_BUFFER);
    if (!s->rbuf) {
        free(s);
        return NULL;
    }
    s->d = d;
    s->fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    s->op_read.fn = op_read;
    s->op_flush.fn = op_flush;
    s->op_shutdown.fn = op_shutdown;
    s->op_close.fn = op_close;
    s->h.stream.data = s;
    return s;
}

/* ---- task side ---- */

ms_poll ms_stream_read(ms_stream *s, ms_cx *cx, void *buf, size_t cap, ssize_t *n,
                       ms_error *err) {
    if (!ms_coop_proceed(cx))
        return MS_POLL_PENDING;
    bool resume = false;
    pthread_mutex_lock(&s->lock);
    if (s->rlen > 0 && cap > 0) {
        size_t k = s->rlen < cap ? s->rlen : cap;
        memcpy(buf, s->rbuf + s->rstart, k);
        s->rstart += k;
        s->rlen -= k;
        if (s->read_paused && s->rlen <= MS_STREAM_READ_BUFFER / 2) {
            s->read_paused = false;
            resume = true;
        }
        pthread_mutex_unlock(&s->lock);
        if (resume)
            drv_submit(s->d, &s->op_read);
        *n = (ssize_t)k;
        return MS_POLL_READY;
    }
    if (s->eof || cap == 0) {
        pthread_mutex_unlock(&s->lock);
        *n = 0;
        return MS_POLL_READY;
    }
    if (s->read_err) {
        int e = s->read_err;
        pthread_mutex_unlock(&s->lock);
        *n = stream_uv_error(err, e, "read");
        return MS_POLL_READY;
    }
    ms_waker_store(&s->rwaker, ms_cx_waker(cx));
    pthread_mutex_unlock(&s->lock);
    return MS_POLL_PENDING;
}

ms_poll ms_stream_write(ms_stream *s, ms_cx *cx, const void *buf, size_t len, ssize_t *n,
                        ms_error *err) {
    if (!ms_coop_proceed(cx))
        return MS_POLL_PENDING;
    pthread_mutex_lock(&s->lock);
    if (s->write_err) {
        int e = s->write_err;
        pthread_mutex_unlock(&s->lock);
        *n = stream_uv_error(err, e, "write");
        return MS_POLL_READY;
    }
    if (s->shutdown_requested) {
        pthread_mutex_unlock(&s->lock);
        *n = ms_error_set(err, MS_E_CLOSED, "write after shutdown");
        return MS_POLL_READY;
    }
    size_t queued = s->wlen + s->inflight;
    if (queued >= MS_STREAM_WRITE_BUFFER) {
        ms_waker_store(&s->wwaker, ms_cx_waker(cx));
        pthread_mutex_unlock(&s->lock);
        return MS_POLL_PENDING;
    }
    size_t k = MS_STREAM_WRITE_BUFFER - queued;
    if (k > len)
        k = len;
    if (s->wlen + k > s->wcap) {
        size_t cap = s->wcap ? s->wcap : 4096;
        while (cap < s->wlen + k)
            cap *= 2;
        char *grown = realloc(s->wbuf, cap);
        if (!grown) {
            pthread_mutex_unlock(&s->lock);
            *n = ms_error_set(err, MS_E_NO_MEMORY, "no memory for %zu bytes of output", k);
            return MS_POLL_READY;
        }
        s->wbuf = grown;
        s->wcap = cap;
    }
    memcpy(s->wbuf + s->wlen, buf, k);
    bool first = s->wlen == 0;
    s->wlen += k;
    pthread_mutex_unlock(&s->lock);
    if (first)
        drv_submit(s->d, &s->op_flush);
    *n = (ssize_t)k;
    return MS_POLL_READY;
}

ms_poll ms_stream_flush(ms_stream *s, ms_cx *cx, int *rc, ms_error *err) {
    pthread_mutex_lock(&s->lock);
    if (s->write_err) {
        int e = s->write_err;
        pthread_mutex_unlock(&s->lock);
        *rc = stream_uv_error(err, e, "flush");
        return MS_POLL_READY;
    }
    if (s->wlen == 0 && s->inflight == 0) {
        pthread_mutex_unlock(&s->lock);
        *rc = 0;
        return MS_POLL_READY;
    }
    ms_waker_store(&s->wwaker, ms_cx_waker(cx));
    pthread_mutex_unlock(&s->lock);
    return MS_POLL_PENDING;
}

ms_poll ms_stream_shutdown(ms_stream *s, ms_cx *cx, int *rc, ms_error *err) {
    pthread_mutex_lock(&s->lock);
    if (s->shutdown_done) {
        int e = s->shutdown_rc;
        pthread_mutex_unlock(&s->lock);
        *rc = e ? stream_uv_error(err, e, "shutdown") : 0;
        return MS_POLL_READY;
    }
    bool submit = !s->shutdown_requested;
    s->shutdown_requested = true;
    ms_waker_store(&s->wwaker, ms_cx_waker(cx));
    pthread_mutex_unlock(&s->lock);
    if (submit && !drv_submit(s->d, &s->op_shutdown)) {
        *rc = ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
        return MS_POLL_READY;
    }
    return MS_POLL_PENDING;
}

int ms_stream_fd(const ms_stream *s) {
    return s->fd;
}

void ms_stream_close(ms_stream *s) {
    if (!s)
        return;
    if (!drv_submit(s->d, &s->op_close)) {
        drv_wait_finished(s->d);
        stream_close_now(s); /* the loop has ended: this frees */
    }
}
