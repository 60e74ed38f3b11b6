/*
 * http_request.h - an incremental HTTP/1.x request parser on http-parser
 * (libhttp-parser), the one parser of every HTTP request ms-host reads:
 * the metrics endpoint's (ms-host/metrics_http.c) and ms.http.serve's
 * (agents/lms_http_server.c).
 *
 * A connection feeds what it reads, in whatever pieces it arrives;
 * hreq_feed takes bytes until one request is complete (HREQ_DONE), more
 * are needed (HREQ_MORE) or the request is refused (HREQ_ERROR, with the
 * status to answer and a message naming what is wrong).  Bytes after a
 * complete request (a pipelined one, or what follows an upgrade) are not
 * taken: the caller keeps them and, for keep-alive, feeds them again
 * after hreq_next.
 *
 * Limits, checked as the bytes arrive (a hostile client never makes the
 * parser hold more than them):
 *   header_bytes  the request line and header block, bytes  -> 431
 *   headers       header fields                             -> 431
 *   body          body bytes (Content-Length or chunked)    -> 413
 * Malformed requests are 400; an HTTP version other than 1.0 or 1.1 is
 * 505; running out of memory is 500.
 *
 * What the request holds (method, target, fields, body) stays valid
 * until hreq_next or hreq_free.  Not thread-safe: one connection's.
 */
#ifndef MS_WEB_HTTP_REQUEST_H
#define MS_WEB_HTTP_REQUEST_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum hreq_state {
    HREQ_MORE,                  /* more bytes are needed */
    HREQ_DONE,                  /* a complete request is ready */
    HREQ_ERROR                  /* refused: hreq_error_status, hreq_error */
} hreq_state;

typedef struct hreq_limits {
    uint32_t header_bytes;      /* request line and headers; 0: 8192 */
    uint32_t headers;           /* header fields; 0: 100 */
    uint64_t body;              /* body bytes; 0: none allowed */
} hreq_limits;

/* A header field: offsets into the request's text. */
typedef struct hreq_field {
    uint32_t name, name_len, value, value_len;
} hreq_field;

typedef struct hreq {
    http_parser p;
    hreq_limits lim;
    char *text;                 /* the target, then the fields' names and values */
    uint32_t text_len, text_cap;
    uint32_t target_len;        /* the target is text[0 .. target_len) */
    hreq_field *fields;
    uint32_t nfields, fields_cap;
    char *body;
    size_t body_len, body_cap;
    uint32_t header_bytes;      /* of this request's line and headers, taken so far */
    uint8_t last;               /* the last piece: 0 target, 1 a name, 2 a value */
    bool started;               /* a byte of this request was taken */
    bool headers_done, complete, keep_alive, upgrade;
    int error_status;           /* 0, or the status to answer */
    char error[160];
} hreq;

/* Sets r up for a connection's first request; limits as above. */
void hreq_init(hreq *r, const hreq_limits *lim);
void hreq_free(hreq *r);
/* Takes bytes of data (len) until the request is complete, refused or
 * needs more; *used says how many were taken (after HREQ_DONE, the rest
 * belongs to the next request or the upgraded protocol). */
hreq_state hreq_feed(hreq *r, const char *data, size_t len, size_t *used);
/* The peer ended the connection: HREQ_ERROR (400) when it did so inside
 * a request, else HREQ_MORE (a clean end between requests). */
hreq_state hreq_eof(hreq *r);
/* After HREQ_DONE: ready for the next request of the connection. */
void hreq_next(hreq *r);
/* Whether a byte of a request not yet complete was taken. */
bool hreq_started(const hreq *r);

const char *hreq_method(const hreq *r);
const char *hreq_target(const hreq *r, size_t *len);
/* The target's path (before '?') and query (after it, or NULL). */
void hreq_path(const hreq *r, const char **path, size_t *plen, const char **query, size_t *qlen);
unsigned hreq_version_minor(const hreq *r);
uint32_t hreq_nfields(const hreq *r);
void hreq_field_at(const hreq *r, uint32_t i, const char **name, size_t *nlen, const char **value,
                   size_t *vlen);
/* The first field named name (any case), or NULL. */
const char *hreq_header(const hreq *r, const char *name, size_t *len);
const char *hreq_body(const hreq *r, size_t *len);
/* After HREQ_DONE: the connection may carry another request (HTTP/1.1
 * without "Connection: close", or 1.0 with "keep-alive"). */
bool hreq_keep_alive(const hreq *r);
/* After HREQ_DONE: the client asked to switch protocols (Upgrade). */
bool hreq_upgrade(const hreq *r);
int hreq_error_status(const hreq *r);
const char *hreq_error(const hreq *r);

#endif
