/*
 * http_request.c - the incremental request parser (http_request.h): the
 * grammar is http-parser's; this file adds what a server needs around it
 * and http-parser leaves to its callers: copies of the pieces it reports
 * (it hands them out in fragments as bytes arrive), per-request limits
 * on the header block, the number of fields and the body, a stop after
 * each request (so pipelined requests are taken one at a time), and a
 * status and message for every refusal.
 *
 * http-parser's own header limit (HTTP_MAX_HEADER_SIZE, 80 KiB) is one
 * process-wide setting, so the header limit here is kept by feeding it
 * no more bytes than the room left while the header block is open: it
 * can never have taken more than the limit when it says "more".
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_request.h"

#define HREQ_DEFAULT_HEADER_BYTES 8192
#define HREQ_DEFAULT_HEADERS 100

static int fail(hreq *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records a refusal (the first one wins) and returns -1, which stops
 * http-parser when returned from a callback. */
static int fail(hreq *r, int status, const char *fmt, ...) {
    if (r->error_status)
        return -1;
    r->error_status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    return -1;
}

static hreq *of(http_parser *p) {
    return p->data;
}

/* Appends n bytes to the text (within the header limit: the text is made
 * of bytes of the header block). */
static int text_add(hreq *r, const char *at, size_t n) {
    if ((size_t)r->text_len + n > r->text_cap) {
        size_t cap = r->text_cap ? r->text_cap : 256;
        while (cap < (size_t)r->text_len + n)
            cap *= 2;
        char *grown = realloc(r->text, cap);
        if (!grown)
            return fail(r, 500, "no memory for the request's headers");
        r->text = grown;
        r->text_cap = (uint32_t)cap;
    }
    memcpy(r->text + r->text_len, at, n);
    r->text_len += (uint32_t)n;
    return 0;
}

static int on_message_begin(http_parser *p) {
    of(p)->started = true;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
    hreq *r = of(p);
    r->started = true;
    if (text_add(r, at, n))
        return -1;
    r->target_len = r->text_len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
    hreq *r = of(p);
    if (r->last != 1) {
        /* http-parser takes a header line that starts with white space
         * right after the request line as a field whose name does;
         * RFC 9112 (section 2.2) says to refuse it. */
        if (n > 0 && (at[0] == ' ' || at[0] == '\t'))
            return fail(r, 400, "malformed request: a header line starts with white space");
        if (r->nfields == r->lim.headers)
            return fail(r, 431, "more than %u header fields", (unsigned)r->lim.headers);
        if (r->nfields == r->fields_cap) {
            uint32_t cap = r->fields_cap ? r->fields_cap * 2 : 16;
            hreq_field *grown = realloc(r->fields, cap * sizeof *grown);
            if (!grown)
                return fail(r, 500, "no memory for the request's headers");
            r->fields = grown;
            r->fields_cap = cap;
        }
        hreq_field *f = &r->fields[r->nfields++];
        f->name = r->text_len;
        f->name_len = 0;
        f->value = r->text_len;
        f->value_len = 0;
        r->last = 1;
    }
    if (text_add(r, at, n))
        return -1;
    r->fields[r->nfields - 1].name_len += (uint32_t)n;
    r->fields[r->nfields - 1].value = r->text_len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
    hreq *r = of(p);
    r->last = 2;
    if (text_add(r, at, n))
        return -1;
    r->fields[r->nfields - 1].value_len += (uint32_t)n;
    return 0;
}

static int on_headers_complete(http_parser *p) {
    hreq *r = of(p);
    r->headers_done = true;
    if (p->http_major != 1 || p->http_minor > 1)
        return fail(r, 505, "HTTP version %u.%u is not supported (HTTP/1.0 or HTTP/1.1)",
                    p->http_major, p->http_minor);
    if (r->target_len == 0)
        return fail(r, 400, "the request has no target");
    if (p->content_length != ULLONG_MAX && p->content_length > r->lim.body)
        return fail(r, 413, "a body of %llu bytes is over the limit of %llu",
                    (unsigned long long)p->content_length, (unsigned long long)r->lim.body);
    if (p->content_length != ULLONG_MAX && p->content_length > 0 &&
        p->content_length > r->body_cap) {
        char *grown = realloc(r->body, (size_t)p->content_length);
        if (!grown)
            return fail(r, 500, "no memory for a body of %llu bytes",
                        (unsigned long long)p->content_length);
        r->body = grown;
        r->body_cap = (size_t)p->content_length;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    hreq *r = of(p);
    if (r->body_len + n > r->lim.body)
        return fail(r, 413, "the body is over the limit of %llu bytes",
                    (unsigned long long)r->lim.body);
    if (r->body_len + n > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + n)
            cap *= 2;
        if (cap > r->lim.body)
            cap = (size_t)r->lim.body;
        char *grown = realloc(r->body, cap);
        if (!grown)
            return fail(r, 500, "no memory for the request's body");
        r->body = grown;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    return 0;
}

/* The request is complete: stop here, so that what follows (a pipelined
 * request) waits until the caller has answered this one. */
static int on_message_complete(http_parser *p) {
    hreq *r = of(p);
    r->complete = true;
    r->keep_alive = http_should_keep_alive(p) != 0;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void hreq_init(hreq *r, const hreq_limits *lim) {
    memset(r, 0, sizeof *r);
    r->lim = *lim;
    if (!r->lim.header_bytes)
        r->lim.header_bytes = HREQ_DEFAULT_HEADER_BYTES;
    if (!r->lim.headers)
        r->lim.headers = HREQ_DEFAULT_HEADERS;
    http_parser_init(&r->p, HTTP_REQUEST);
    r->p.data = r;
}

void hreq_free(hreq *r) {
    free(r->text);
    free(r->fields);
    free(r->body);
    r->text = NULL;
    r->fields = NULL;
    r->body = NULL;
    r->text_cap = r->fields_cap = 0;
    r->body_cap = 0;
}

void hreq_next(hreq *r) {
    r->text_len = r->target_len = 0;
    r->nfields = 0;
    r->body_len = 0;
    r->header_bytes = 0;
    r->last = 0;
    r->started = r->headers_done = r->complete = r->keep_alive = r->upgrade = false;
    r->error_status = 0;
    r->error[0] = '\0';
    http_parser_init(&r->p, HTTP_REQUEST);
    r->p.data = r;
}

static hreq_state refused_by_parser(hreq *r) {
    enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
    fail(r, 400, "malformed request: %s", http_errno_description(e));
    return HREQ_ERROR;
}

hreq_state hreq_feed(hreq *r, const char *data, size_t len, size_t *used) {
    *used = 0;
    if (r->error_status)
        return HREQ_ERROR;
    if (r->complete)
        return HREQ_DONE;
    while (*used < len) {
        size_t n = len - *used;
        bool in_headers = !r->headers_done;
        if (in_headers) {
            uint32_t room = r->lim.header_bytes - r->header_bytes;
            if (room == 0)
                break;
            if (n > room)
                n = room;
        }
        size_t took = http_parser_execute(&r->p, &settings, data + *used, n);
        if (in_headers)
            r->header_bytes += (uint32_t)took;
        *used += took;
        if (r->error_status)
            return HREQ_ERROR;
        enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
        if (e == HPE_PAUSED) {
            http_parser_pause(&r->p, 0);
            r->upgrade = r->p.upgrade != 0;
            return HREQ_DONE;
        }
        if (e != HPE_OK)
            return refused_by_parser(r);
        if (r->complete) {
            r->upgrade = r->p.upgrade != 0;
            return HREQ_DONE;
        }
        if (took < n)
            return refused_by_parser(r);
    }
    if (!r->headers_done && r->header_bytes >= r->lim.header_bytes) {
        fail(r, 431, "request line and headers exceed %u bytes", (unsigned)r->lim.header_bytes);
        return HREQ_ERROR;
    }
    return HREQ_MORE;
}

hreq_state hreq_eof(hreq *r) {
    if (r->error_status)
        return HREQ_ERROR;
    if (r->complete || !r->started)
        return HREQ_MORE;
    fail(r, 400, "the connection ended inside the request");
    return HREQ_ERROR;
}

bool hreq_started(const hreq *r) {
    return r->started && !r->complete;
}

const char *hreq_method(const hreq *r) {
    return http_method_str((enum http_method)r->p.method);
}

const char *hreq_target(const hreq *r, size_t *len) {
    *len = r->target_len;
    return r->text ? r->text : "";
}

void hreq_path(const hreq *r, const char **path, size_t *plen, const char **query, size_t *qlen) {
    size_t tlen;
    const char *t = hreq_target(r, &tlen);
    const char *q = memchr(t, '?', tlen);
    *path = t;
    *plen = q ? (size_t)(q - t) : tlen;
    *query = q ? q + 1 : NULL;
    *qlen = q ? tlen - *plen - 1 : 0;
}

unsigned hreq_version_minor(const hreq *r) {
    return r->p.http_minor;
}

uint32_t hreq_nfields(const hreq *r) {
    return r->nfields;
}

void hreq_field_at(const hreq *r, uint32_t i, const char **name, size_t *nlen, const char **value,
                   size_t *vlen) {
    const hreq_field *f = &r->fields[i];
    *name = r->text + f->name;
    *nlen = f->name_len;
    *value = r->text + f->value;
    *vlen = f->value_len;
}

const char *hreq_header(const hreq *r, const char *name, size_t *len) {
    size_t want = strlen(name);
    for (uint32_t i = 0; i < r->nfields; i++) {
        const hreq_field *f = &r->fields[i];
        if (f->name_len == want && strncasecmp(r->text + f->name, name, want) == 0) {
            *len = f->value_len;
            return r->text + f->value;
        }
    }
    *len = 0;
    return NULL;
}

const char *hreq_body(const hreq *r, size_t *len) {
    *len = r->body_len;
    return r->body ? r->body : "";
}

bool hreq_keep_alive(const hreq *r) {
    return r->keep_alive;
}

bool hreq_upgrade(const hreq *r) {
    return r->upgrade;
}

int hreq_error_status(const hreq *r) {
    return r->error_status;
}

const char *hreq_error(const hreq *r) {
    return r->error;
}
