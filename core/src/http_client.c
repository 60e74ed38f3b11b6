/*
 * http_client.c - the HTTP client: libcurl's multi interface driven by
 * the driver's libuv loop.
 *
 * One multi handle per runtime (created on the first request), so every
 * request of every agent shares one connection pool: a finished exchange
 * leaves its connection in the multi's cache for the next request to the
 * same host, and HTTP/2 streams are multiplexed on one connection
 * (CURLOPT_PIPEWAIT: a request waits for a connection being set up
 * rather than opening a second).  libcurl asks, through two callbacks,
 * for a socket to be watched (on_socket: one uv_poll_t per socket) and
 * for a timeout (on_timer: one uv_timer_t); their events call
 * curl_multi_socket_action, after which finished transfers are collected
 * (collect_done).  All of that, and every call on the multi handle, runs
 * on the driver thread.  Name resolution runs on libcurl's own resolver
 * threads (AsynchDNS), never on the driver or a worker.
 *
 * A request meets its task under the request's lock:
 *
 *   starter: builds and configures the easy handle on its own thread
 *            (nobody else knows it yet), then submits op_start.
 *   driver:  op_start adds it to the multi; the header and body
 *            callbacks fill hdr and body; at the end (collect_done, or
 *            httpc_stop) it is taken out of the multi and `done` is set.
 *   task:    polls head_ready / done; reads a stream's body; frees with
 *            ms_http_request_free, which submits op_free: the driver takes
 *            an unfinished transfer out of the multi (cancelling it) and
 *            frees the easy handle and the request.  So the easy handle
 *            is only ever touched by the driver once it was submitted, and
 *            a request dies on the thread that owns the multi.
 *
 * A stream's body waits in `body` (at most MS_HTTP_STREAM_WINDOW plus
 * one write): when it is full the body callback returns
 * CURL_WRITEFUNC_PAUSE (libcurl keeps those bytes and stops reading the
 * socket, so the server's writes stall), and the reader, once it has
 * taken half, submits op_resume, which unpauses on the driver.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_client.h"
#include "runtime.h"

#define container(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

typedef struct httpc httpc;
typedef struct hsock hsock;

/* Bytes p[start, end) of cap. */
typedef struct hbuf {
    char *p;
    size_t start, end, cap;
} hbuf;

/* The client of one driver.  Driver thread only. */
struct httpc {
    driver *d;
    CURLM *multi;
    uv_timer_t timer;           /* libcurl's timeout (on_timer) */
    ms_http_request *active;    /* requests in the multi handle */
    hsock *socks;               /* sockets being watched */
    bool doomed;                /* some request in active is doomed */
    /* The sockets libcurl opened and has not closed through on_close_socket,
     * with their inode numbers: libcurl 7.88 closes some sockets without
     * the callback (a transfer removed while connecting or waiting), so
     * after a removal the ones no longer open are found and uncounted
     * (sweep_sockets). */
    struct tracked { int fd; ino_t ino; } *tracked;
    size_t ntracked, cap_tracked;
};

/* A socket libcurl asked us to watch.  Driver thread only; freed in its
 * handle's close callback. */
struct hsock {
    uv_poll_t poll;
    curl_socket_t fd;
    httpc *c;
    hsock *prev, *next;
};

struct ms_http_request {
    driver *d;                  /* immutable */
    CURL *easy;                 /* the starter's until submitted, then the driver's */
    struct curl_slist *headers; /* freed with the request */
    bool stream;                /* immutable */
    uint64_t max_size;          /* immutable; 0: none */
    drv_op op_start, op_free, op_resume;

    /* Driver thread only. */
    bool in_multi;
    ms_http_request *prev, *next;   /* httpc.active */
    bool head_sealed;           /* head_ready was set: header lines are ignored */
    int status_seen;            /* the latest status line's code */
    uint64_t total;             /* body bytes taken */
    bool too_large, no_memory;  /* why a callback refused */
    bool doomed;                /* its socket could not be watched: end it (reap_doomed) */
    char errbuf[CURL_ERROR_SIZE];

    pthread_mutex_t lock;
    /* Under lock.  hdr and status are written by the driver before it
     * sets head_ready and never after, so the task reads them without
     * the lock once it saw head_ready. */
    bool head_ready, done;
    bool paused;                /* stream: the body callback paused the transfer */
    bool resume_asked;          /* stream: op_resume is on its way */
    ms_http_failure failure;
    int rc;                     /* the ms_err code of failure */
    char message[CURL_ERROR_SIZE + 96];
    int status;
    hbuf hdr;
    /* Not a stream: written by the driver until done, then immutable.
     * A stream: under lock, filled by the driver, emptied by the reader. */
    hbuf body;
    ms_waker waker;
};

/* ---- small helpers ---- */

static bool hbuf_append(hbuf *b, const char *p, size_t len) {
    if (b->end + len > b->cap && b->start > 0) {
        memmove(b->p, b->p + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    if (b->end + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->end + len)
            cap *= 2;
        char *grown = realloc(b->p, cap + 1);
        if (!grown)
            return false;
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->end, p, len);
    b->end += len;
    b->p[b->end] = '\0';
    return true;
}

static void request_free_memory(ms_http_request *r) {
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    ms_waker_drop(&r->waker);
    pthread_mutex_destroy(&r->lock);
    free(r->hdr.p);
    free(r->body.p);
    free(r);
}

const char *ms_http_failure_name(ms_http_failure f) {
    static const char *const names[] = {
        [MS_HTTP_OK] = "ok",           [MS_HTTP_DNS] = "dns",
        [MS_HTTP_CONNECT] = "connect", [MS_HTTP_TLS] = "tls",
        [MS_HTTP_TIMEOUT] = "timeout", [MS_HTTP_TOO_LARGE] = "too_large",
        [MS_HTTP_PROTOCOL] = "protocol", [MS_HTTP_SEND] = "send",
        [MS_HTTP_RECEIVE] = "receive", [MS_HTTP_REDIRECTS] = "redirects",
        [MS_HTTP_PROXY] = "proxy",     [MS_HTTP_URL] = "url",
        [MS_HTTP_NO_MEMORY] = "no_memory", [MS_HTTP_SHUTDOWN] = "shutdown",
        [MS_HTTP_OTHER] = "other",
    };
    if ((unsigned)f >= sizeof names / sizeof names[0])
        return "other";
    return names[f];
}

static int failure_code(ms_http_failure f) {
    switch (f) {
    case MS_HTTP_OK: return 0;
    case MS_HTTP_TIMEOUT: return MS_E_TIMEOUT;
    case MS_HTTP_TOO_LARGE: return MS_E_EXHAUSTED;
    case MS_HTTP_NO_MEMORY: return MS_E_NO_MEMORY;
    case MS_HTTP_URL: return MS_E_INVALID_ARGUMENT;
    case MS_HTTP_SHUTDOWN: return MS_E_SHUTTING_DOWN;
    default: return MS_E_IO;
    }
}

/* What a libcurl result means for the caller. */
static ms_http_failure classify(const ms_http_request *r, CURLcode cc) {
    switch (cc) {
    case CURLE_OK:
        return MS_HTTP_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
        return MS_HTTP_DNS;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_PROXY:
        return MS_HTTP_PROXY;
    case CURLE_COULDNT_CONNECT:
        return MS_HTTP_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return MS_HTTP_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        return MS_HTTP_TLS;
    case CURLE_FILESIZE_EXCEEDED:
        return MS_HTTP_TOO_LARGE;
    case CURLE_WRITE_ERROR:
        return r->too_large ? MS_HTTP_TOO_LARGE
               : r->no_memory ? MS_HTTP_NO_MEMORY : MS_HTTP_OTHER;
    case CURLE_OUT_OF_MEMORY:
        return MS_HTTP_NO_MEMORY;
    case CURLE_UNSUPPORTED_PROTOCOL:
        /* Also what a response that is not HTTP gets: libcurl takes it for
         * HTTP/0.9, which it refuses. */
        return strstr(r->errbuf, "HTTP/0.9") ? MS_HTTP_PROTOCOL : MS_HTTP_URL;
    case CURLE_URL_MALFORMAT:
        return MS_HTTP_URL;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP_RETURNED_ERROR:
        return MS_HTTP_PROTOCOL;
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
        return MS_HTTP_RECEIVE;
    case CURLE_SEND_ERROR:
        return MS_HTTP_SEND;
    case CURLE_TOO_MANY_REDIRECTS:
        return MS_HTTP_REDIRECTS;
    default:
        return MS_HTTP_OTHER;
    }
}

/* ---- the request's side of libcurl (driver thread) ---- */

/* The head is final (the first body byte, or the end of the exchange):
 * the status and header lines are published to the task. */
static void seal_head(ms_http_request *r) {
    r->head_sealed = true;
    pthread_mutex_lock(&r->lock);
    r->head_ready = true;
    r->status = r->status_seen;
    ms_waker w = r->stream ? ms_waker_clone(&r->waker) : (ms_waker){0};
    pthread_mutex_unlock(&r->lock);
    ms_waker_wake(&w);
}

/* One header line (a status line starts a new head: 1xx, redirects). */
static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    ms_http_request *r = ud;
    size_t len = size * n, k = len;
    if (r->head_sealed)
        return len; /* trailers of a chunked body: not kept */
    while (k > 0 && (p[k - 1] == '\n' || p[k - 1] == '\r'))
        k--;
    if (k >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        r->hdr.start = r->hdr.end = 0;
        const char *sp = memchr(p, ' ', k);
        r->status_seen = 0;
        for (const char *q = sp ? sp + 1 : p + k; q < p + k && *q >= '0' && *q <= '9'; q++)
            r->status_seen = r->status_seen * 10 + (*q - '0');
        return len;
    }
    if (k == 0)
        return len;
    if (!hbuf_append(&r->hdr, p, k) || !hbuf_append(&r->hdr, "\n", 1)) {
        r->no_memory = true;
        return 0;
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    ms_http_request *r = ud;
    size_t len = size * n;
    if (!r->head_sealed)
        seal_head(r);
    if (r->max_size && r->total + len > r->max_size) {
        r->too_large = true;
        return 0; /* CURLE_WRITE_ERROR */
    }
    pthread_mutex_lock(&r->lock);
    if (r->stream && r->body.end - r->body.start >= MS_HTTP_STREAM_WINDOW) {
        r->paused = true; /* libcurl keeps these bytes for later */
        pthread_mutex_unlock(&r->lock);
        return CURL_WRITEFUNC_PAUSE;
    }
    bool ok = hbuf_append(&r->body, p, len);
    ms_waker w = r->stream && ok ? ms_waker_clone(&r->waker) : (ms_waker){0};
    pthread_mutex_unlock(&r->lock);
    ms_waker_wake(&w);
    if (!ok) {
        r->no_memory = true;
        return 0;
    }
    r->total += len;
    return len;
}

static void untrack(driver *d, httpc *c, size_t i) {
    c->tracked[i] = c->tracked[--c->ntracked];
    atomic_fetch_sub_explicit(&d->http_conns_open, 1, memory_order_relaxed);
}

/* Every socket libcurl opens: close-on-exec (a child process must not
 * inherit it) and counted (tracked, for sweep_sockets). */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    driver *d = ud;
    httpc *c = d->http;
    (void)purpose;
    if (c && c->ntracked == c->cap_tracked) {
        size_t cap = c->cap_tracked ? c->cap_tracked * 2 : 16;
        struct tracked *grown = realloc(c->tracked, cap * sizeof *grown);
        if (!grown)
            return CURL_SOCKET_BAD; /* the connect fails: "connect" */
        c->tracked = grown;
        c->cap_tracked = cap;
    }
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    struct stat st;
    if (c && fstat(fd, &st) == 0) {
        c->tracked[c->ntracked].fd = fd;
        c->tracked[c->ntracked].ino = st.st_ino;
        c->ntracked++;
        atomic_fetch_add_explicit(&d->http_conns_open, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&d->http_conns_opened, 1, memory_order_relaxed);
    return fd;
}

static int on_close_socket(void *ud, curl_socket_t fd) {
    driver *d = ud;
    httpc *c = d->http;
    for (size_t i = 0; c && i < c->ntracked; i++) {
        if (c->tracked[i].fd == fd) {
            untrack(d, c, i);
            break;
        }
    }
    return close(fd);
}

/* Uncounts the tracked sockets that are no longer open (or whose number
 * now belongs to another file: a different inode). */
static void sweep_sockets(httpc *c) {
    for (size_t i = 0; i < c->ntracked;) {
        struct stat st;
        if (fstat(c->tracked[i].fd, &st) != 0 || st.st_ino != c->tracked[i].ino)
            untrack(c->d, c, i);
        else
            i++;
    }
}

/* The exchange ended (taken out of the multi already). */
static void finish(ms_http_request *r, ms_http_failure f, const char *why) {
    if (f == MS_HTTP_OK && !r->head_sealed)
        seal_head(r);
    pthread_mutex_lock(&r->lock);
    r->done = true;
    r->failure = f;
    r->rc = failure_code(f);
    if (f == MS_HTTP_TOO_LARGE)
        snprintf(r->message, sizeof r->message,
                 "the response body passed its limit of %llu bytes (max_size)",
                 (unsigned long long)r->max_size);
    else if (f != MS_HTTP_OK)
        snprintf(r->message, sizeof r->message, "%s", why);
    ms_waker w = ms_waker_clone(&r->waker);
    pthread_mutex_unlock(&r->lock);
    ms_waker_wake(&w);
}

static void unlink_active(httpc *c, ms_http_request *r) {
    curl_multi_remove_handle(c->multi, r->easy);
    if (r->prev)
        r->prev->next = r->next;
    else
        c->active = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->in_multi = false;
}

/* ---- the multi handle on the loop (driver thread) ---- */

static void collect_done(httpc *c) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode cc = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        ms_http_request *r = (ms_http_request *)priv;
        unlink_active(c, r); /* m is invalid from here */
        ms_http_failure f = classify(r, cc);
        finish(r, f, r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
    }
}

/* Ends the requests whose sockets could not be watched (on_socket ran
 * out of memory).  Not from on_socket itself: libcurl forbids removing a
 * handle inside its callback, and a socket callback that returns -1
 * kills the whole multi handle, every agent's requests with it. */
static void reap_doomed(httpc *c) {
    if (!c->doomed)
        return;
    c->doomed = false;
    ms_http_request *r = c->active;
    while (r) {
        ms_http_request *next = r->next;
        if (r->doomed) {
            unlink_active(c, r);
            finish(r, MS_HTTP_NO_MEMORY, "out of memory watching a connection");
        }
        r = next;
    }
}

static void on_poll(uv_poll_t *p, int status, int events) {
    hsock *hs = p->data;
    httpc *c = hs->c;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    /* May call on_socket, which closes hs (freed later, in its close
     * callback). */
    curl_multi_socket_action(c->multi, hs->fd, flags, &running);
    collect_done(c);
    reap_doomed(c);
}

static void on_timeout(uv_timer_t *t) {
    httpc *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_done(c);
    reap_doomed(c);
}

/* libcurl wants its timeout in timeout_ms (-1: none).  Never call libcurl
 * from here: the timer fires on the next loop pass. */
static int on_timer(CURLM *m, long timeout_ms, void *ud) {
    httpc *c = ud;
    (void)m;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static void hsock_closed_cb(uv_handle_t *h) {
    free(h->data);
}

static void hsock_close(hsock *hs) {
    httpc *c = hs->c;
    if (hs->prev)
        hs->prev->next = hs->next;
    else
        c->socks = hs->next;
    if (hs->next)
        hs->next->prev = hs->prev;
    uv_close((uv_handle_t *)&hs->poll, hsock_closed_cb);
}

/* libcurl wants socket s watched for what (CURL_POLL_IN, _OUT, _INOUT),
 * or no longer (CURL_POLL_REMOVE). */
static int on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *sockp) {
    httpc *c = ud;
    hsock *hs = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (hs) {
            curl_multi_assign(c->multi, s, NULL);
            hsock_close(hs);
        }
        return 0;
    }
    if (!hs) {
        hs = calloc(1, sizeof *hs);
        if (!hs || uv_poll_init_socket(&c->d->loop, &hs->poll, s) != 0) {
            free(hs);
            char *priv = NULL;
            if (e && curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv) == CURLE_OK && priv) {
                ((ms_http_request *)priv)->doomed = true;
                c->doomed = true;
            }
            return 0; /* never -1: that would end every transfer of the host */
        }
        hs->poll.data = hs;
        hs->fd = s;
        hs->c = c;
        hs->next = c->socks;
        if (c->socks)
            c->socks->prev = hs;
        c->socks = hs;
        curl_multi_assign(c->multi, s, hs);
    }
    int ev = ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
    uv_poll_start(&hs->poll, ev, on_poll);
    return 0;
}

static httpc *engine(driver *d) {
    if (d->http)
        return d->http;
    httpc *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (!(c->multi = curl_multi_init())) {
        free(c);
        return NULL;
    }
    c->d = d;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* Idle connections kept for reuse, all hosts together. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 64L);
    uv_timer_init(&d->loop, &c->timer);
    c->timer.data = c;
    d->http = c;
    return c;
}

static void engine_closed_cb(uv_handle_t *h) {
    free(h->data);
}

void httpc_stop(driver *d) {
    if (d->http_stopped)
        return;
    d->http_stopped = true;
    httpc *c = d->http;
    if (!c)
        return;
    while (c->active) {
        ms_http_request *r = c->active;
        unlink_active(c, r);
        finish(r, MS_HTTP_SHUTDOWN, "the runtime stopped before the response ended");
    }
    curl_multi_cleanup(c->multi); /* closes the pooled connections */
    c->multi = NULL;
    sweep_sockets(c);
    free(c->tracked);
    c->tracked = NULL;
    while (c->socks)
        hsock_close(c->socks);
    uv_close((uv_handle_t *)&c->timer, engine_closed_cb);
    d->http = NULL;
}

static void op_start(driver *d, drv_op *op) {
    ms_http_request *r = container(op, ms_http_request, op_start);
    if (d->http_stopped) {
        finish(r, MS_HTTP_SHUTDOWN, "the runtime stopped before the request started");
        return;
    }
    httpc *c = engine(d);
    if (!c) {
        finish(r, MS_HTTP_NO_MEMORY, "out of memory starting the HTTP client");
        return;
    }
    CURLMcode mc = curl_multi_add_handle(c->multi, r->easy);
    if (mc != CURLM_OK) {
        finish(r, mc == CURLM_OUT_OF_MEMORY ? MS_HTTP_NO_MEMORY : MS_HTTP_OTHER,
               curl_multi_strerror(mc));
        return;
    }
    r->in_multi = true;
    r->next = c->active;
    if (c->active)
        c->active->prev = r;
    c->active = r;
}

static void op_free(driver *d, drv_op *op) {
    ms_http_request *r = container(op, ms_http_request, op_free);
    if (r->in_multi) {
        unlink_active(d->http, r); /* cancels the transfer */
        sweep_sockets(d->http);
    }
    request_free_memory(r);
}

static void op_resume(driver *d, drv_op *op) {
    ms_http_request *r = container(op, ms_http_request, op_resume);
    pthread_mutex_lock(&r->lock);
    bool paused = r->paused;
    r->paused = false;
    r->resume_asked = false;
    pthread_mutex_unlock(&r->lock);
    if (!paused || !r->in_multi)
        return;
    /* May deliver the kept bytes at once (on_body, which takes the lock:
     * not held here). */
    curl_easy_pause(r->easy, CURLPAUSE_CONT);
    if (d->http) {
        collect_done(d->http);
        reap_doomed(d->http);
    }
}

/* ---- starting (any thread) ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_ALL);
}

/* Configures r->easy from o, on the starter's thread. */
static int setup(ms_http_request *r, const ms_http_opts *o, ms_error *err) {
    CURL *e = r->easy;
    CURLcode cc = CURLE_OK;
    const char *what = "";
#define SET(opt, val)                                                                          \
    do {                                                                                       \
        if (cc == CURLE_OK && (cc = curl_easy_setopt(e, opt, val)) != CURLE_OK)                \
            what = #opt;                                                                       \
    } while (0)
    SET(CURLOPT_URL, o->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)r);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, (void *)r->d);
    SET(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SET(CURLOPT_CLOSESOCKETDATA, (void *)r->d);
    SET(CURLOPT_PIPEWAIT, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_USERAGENT, "ms-host/" MS_VERSION_STRING);
    SET(CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
    if (o->max_size)
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_size); /* by Content-Length, early */
    SET(CURLOPT_FOLLOWLOCATION, o->max_redirects ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, (long)o->max_redirects);
    SET(CURLOPT_SSL_VERIFYPEER, o->insecure ? 0L : 1L);
    SET(CURLOPT_SSL_VERIFYHOST, o->insecure ? 0L : 2L);
    if (o->ca_file)
        SET(CURLOPT_CAINFO, o->ca_file);
    SET(CURLOPT_PROXY, o->proxy ? o->proxy : ""); /* "": none, not even from the environment */
    const char *m = o->method ? o->method : "GET";
    if (o->body) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        SET(CURLOPT_COPYPOSTFIELDS, o->body_len ? (const char *)o->body : "");
        if (strcmp(m, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(m, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "POST") == 0) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        SET(CURLOPT_COPYPOSTFIELDS, "");
    } else {
        SET(CURLOPT_CUSTOMREQUEST, m);
    }
#undef SET
    if (cc != CURLE_OK)
        return ms_error_set(err, cc == CURLE_OUT_OF_MEMORY ? MS_E_NO_MEMORY : MS_E_INVALID_ARGUMENT,
                            "http request: libcurl refused %s: %s", what,
                            curl_easy_strerror(cc));
    /* libcurl adds a form Content-Type to a body and Expect: 100-continue
     * to a large one; neither unless asked for (an empty value removes). */
    bool has_ct = false, has_expect = false;
    for (size_t i = 0; i < o->nheaders; i++) {
        has_ct = has_ct || strncasecmp(o->headers[i], "content-type:", 13) == 0;
        has_expect = has_expect || strncasecmp(o->headers[i], "expect:", 7) == 0;
    }
    struct curl_slist *l = NULL, *t;
    for (size_t i = 0; i <= o->nheaders + 1; i++) {
        const char *line = i < o->nheaders ? o->headers[i]
                           : i == o->nheaders ? (has_ct ? NULL : "Content-Type:")
                                              : (has_expect ? NULL : "Expect:");
        if (!line)
            continue;
        if (!(t = curl_slist_append(l, line))) {
            curl_slist_free_all(l);
            return ms_error_set(err, MS_E_NO_MEMORY, "http request: out of memory");
        }
        l = t;
    }
    r->headers = l;
    if (curl_easy_setopt(e, CURLOPT_HTTPHEADER, l) != CURLE_OK)
        return ms_error_set(err, MS_E_NO_MEMORY, "http request: out of memory");
    return 0;
}

int ms_http_request_start(ms_runtime *rt, const ms_http_opts *o, ms_http_request **out,
                          ms_error *err) {
    if (!drv_of(rt, false, true, "the HTTP client", err))
        return MS_E_NOT_ENABLED;
    if (!o || !o->url || !*o->url)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT, "http request: the url is empty");
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return ms_error_set(err, MS_E_IO, "http request: libcurl did not initialise: %s",
                            curl_easy_strerror(curl_init_rc));
    ms_http_request *r = calloc(1, sizeof *r);
    if (!r)
        return ms_error_set(err, MS_E_NO_MEMORY, "http request: out of memory");
    pthread_mutex_init(&r->lock, NULL);
    r->d = rt->driver;
    r->stream = o->stream;
    r->max_size = o->max_size;
    r->op_start.fn = op_start;
    r->op_free.fn = op_free;
    r->op_resume.fn = op_resume;
    if (!(r->easy = curl_easy_init())) {
        request_free_memory(r);
        return ms_error_set(err, MS_E_NO_MEMORY, "http request: out of memory");
    }
    int rc = setup(r, o, err);
    if (rc != 0) {
        request_free_memory(r);
        return rc;
    }
    if (!drv_submit(r->d, &r->op_start)) {
        request_free_memory(r);
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    }
    *out = r;
    return 0;
}

/* ---- the task's side ---- */

ms_poll ms_http_request_poll(ms_http_request *r, ms_cx *cx, int *rc, ms_error *err) {
    pthread_mutex_lock(&r->lock);
    bool head = r->stream && r->head_ready;
    if (!head && !r->done) {
        ms_waker_store(&r->waker, ms_cx_waker(cx));
        pthread_mutex_unlock(&r->lock);
        return MS_POLL_PENDING;
    }
    *rc = head ? 0 : r->rc;
    if (*rc != 0)
        ms_error_set(err, *rc, "%s", r->message);
    pthread_mutex_unlock(&r->lock);
    return MS_POLL_READY;
}

ms_http_failure ms_http_request_failure(const ms_http_request *r) {
    ms_http_request *m = (ms_http_request *)r;
    pthread_mutex_lock(&m->lock);
    ms_http_failure f = m->done ? m->failure : MS_HTTP_OK;
    pthread_mutex_unlock(&m->lock);
    return f;
}

int ms_http_request_status(const ms_http_request *r) {
    return r->status;
}

const char *ms_http_request_headers(const ms_http_request *r, size_t *len) {
    *len = r->hdr.end - r->hdr.start;
    return r->hdr.p ? r->hdr.p + r->hdr.start : "";
}

const char *ms_http_request_body(const ms_http_request *r, size_t *len) {
    *len = r->body.end - r->body.start;
    return r->body.p ? r->body.p + r->body.start : "";
}

ms_poll ms_http_request_read(ms_http_request *r, ms_cx *cx, void *buf, size_t cap, ssize_t *n,
                             ms_error *err) {
    pthread_mutex_lock(&r->lock);
    size_t avail = r->body.end - r->body.start;
    if (avail > 0 && cap > 0) {
        size_t k = avail < cap ? avail : cap;
        memcpy(buf, r->body.p + r->body.start, k);
        r->body.start += k;
        if (r->body.start == r->body.end)
            r->body.start = r->body.end = 0;
        bool resume = r->paused && !r->resume_asked &&
                      r->body.end - r->body.start < MS_HTTP_STREAM_WINDOW / 2;
        if (resume)
            r->resume_asked = true;
        pthread_mutex_unlock(&r->lock);
        if (resume)
            drv_submit(r->d, &r->op_resume); /* refused only at the driver's stop */
        *n = (ssize_t)k;
        return MS_POLL_READY;
    }
    if (r->done) {
        *n = r->rc;
        if (r->rc != 0)
            ms_error_set(err, r->rc, "%s", r->message);
        pthread_mutex_unlock(&r->lock);
        return MS_POLL_READY;
    }
    ms_waker_store(&r->waker, ms_cx_waker(cx));
    pthread_mutex_unlock(&r->lock);
    return MS_POLL_PENDING;
}

void ms_http_request_free(ms_http_request *r) {
    if (!r)
        return;
    if (!drv_submit(r->d, &r->op_free)) {
        /* The driver has stopped: httpc_stop took every request out of
         * the multi handle. */
        drv_wait_finished(r->d);
        request_free_memory(r);
    }
}

void ms_http_client_connections(ms_runtime *rt, uint64_t *open, uint64_t *opened) {
    driver *d = rt ? rt->driver : NULL;
    *open = d ? atomic_load_explicit(&d->http_conns_open, memory_order_relaxed) : 0;
    *opened = d ? atomic_load_explicit(&d->http_conns_opened, memory_order_relaxed) : 0;
}
