/*
 * fuzz_http.c - fuzz target: the one HTTP request parser
 * (web/http_request.c, on http-parser) as the metrics endpoint drives it
 * (ms-host/metrics_http.c: examine and answer), fed in chunks as the
 * connection task feeds it; and the parser on its own, as ms.http.serve
 * drives it (keep-alive: request after request on one connection).
 *
 * Input: byte 0 is the chunk size (0: all at once), the rest the bytes a
 * client sends.
 *
 * What must hold, beyond no crash:
 *  - Where the bytes read so far are a request of a strict grammar (a
 *    model written here, not from the code: a method of http-parser's
 *    list other than CONNECT, a target of visible ASCII from '/', HTTP/1.0
 *    or HTTP/1.1, header lines "token: value" without control characters,
 *    no Content-Length, Transfer-Encoding or folded lines), the endpoint
 *    decides what the model says after every chunk: more to read while
 *    the header block is open, then 405 (a method other than GET and
 *    HEAD), 404 (another path), 200.  Outside that grammar http-parser
 *    decides, and only the properties below are checked.
 *  - The decision does not depend on how the bytes were cut: fed whole
 *    and fed in chunks, the endpoint answers the same status.
 *  - The response is well framed: a status line, headers ending in an
 *    empty line, and a Content-Length equal to the body's length (0
 *    bytes of body for HEAD).
 *  - On a keep-alive connection the parser never takes more bytes than
 *    it was given, never more than the header limit before the header
 *    block ends, and what it reports (target, fields) is within what it
 *    took; every request it completes is counted once.
 */
#define _GNU_SOURCE
#include "metrics_http.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static mh_server server;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    ms_config cfg;
    ms_config_default(&cfg);
    ms_error err;
    if (ms_config_set(&cfg, "worker_threads", "1", &err) != 0 ||
        ms_config_set(&cfg, "max_blocking_threads", "1", &err) != 0)
        abort();
    host *h = host_open(&cfg, "", "", &err);
    if (!h) {
        fprintf(stderr, "fuzz_http: %s\n", err.message);
        abort();
    }
    server.h = h;
    return 0;
}

/* ---- the model ---- */

enum { MODEL_MORE = 0, MODEL_OUTSIDE = -1 };

static bool token_char(unsigned char ch) {
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* The line starting at p, up to a '\n' before end: its length without
 * the newline and one '\r' before it; -1 if there is no newline. */
static long line_at(const char *p, const char *end, const char **next) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
        return -1;
    *next = nl + 1;
    long len = nl - p;
    if (len > 0 && p[len - 1] == '\r')
        len--;
    return len;
}

static bool known_method(const char *m, long len) {
    static const char *const methods[] = {
        "DELETE", "GET", "HEAD", "POST", "PUT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL",
        "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL",
        "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE",
        "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE", NULL};
    for (int i = 0; methods[i]; i++)
        if ((long)strlen(methods[i]) == len && memcmp(methods[i], m, (size_t)len) == 0)
            return true;
    return false;
}

static bool is_field(const char *p, long len, const char *name);
static bool name_starts(const char *p, long nlen, const char *prefix) {
    long n = (long)strlen(prefix);
    return nlen >= n && strncasecmp(p, prefix, (size_t)n) == 0;
}

/* Fields whose value http-parser interprets (framing, upgrade): outside
 * the strict grammar.  By prefix: http-parser 2.9 takes a name that only
 * begins with one of them ("Transfer-Encodinging") for that field. */
static bool special_field(const char *p, long nlen) {
    return name_starts(p, nlen, "content-length") || name_starts(p, nlen, "transfer-encoding") ||
           name_starts(p, nlen, "connection") || name_starts(p, nlen, "upgrade") ||
           name_starts(p, nlen, "proxy-connection");
}

static bool method_prefix(const char *m, long len) {
    static const char *const methods[] = {
        "DELETE", "GET", "HEAD", "POST", "PUT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL",
        "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL",
        "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE",
        "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE", NULL};
    for (int i = 0; methods[i]; i++)
        if ((long)strlen(methods[i]) >= len && memcmp(methods[i], m, (size_t)len) == 0)
            return true;
    return false;
}

/* Whether an unfinished request line (no newline yet; a final '\r' is
 * the start of its end) can still become one of the strict grammar. */
static bool request_line_viable(const char *p, long len) {
    bool cr = len > 0 && p[len - 1] == '\r';
    if (cr)
        len--;
    long m = 0;
    while (m < len && p[m] != ' ')
        m++;
    if (m == len)
        return !cr && method_prefix(p, m);
    if (m == 0 || !known_method(p, m) || (m == 7 && memcmp(p, "CONNECT", 7) == 0))
        return false;
    long t = m + 1, te = t;
    while (te < len && p[te] != ' ')
        te++;
    if (te > t && p[t] != '/')
        return false;
    for (long i = t; i < te; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f || p[i] == '#')
            return false;
    if (te == len)
        return !cr;
    if (te == t)
        return false;
    long v = len - (te + 1);
    return v <= 8 && (!cr || v == 8) && (memcmp(p + te + 1, "HTTP/1.1", (size_t)v) == 0 ||
                      memcmp(p + te + 1, "HTTP/1.0", (size_t)v) == 0);
}

/* The same for an unfinished header line. */
static bool header_line_viable(const char *p, long len) {
    bool cr = len > 0 && p[len - 1] == '\r';
    if (cr)
        len--;
    if (cr && len == 0)
        return true; /* the end of the header block is coming */
    const char *colon = memchr(p, ':', (size_t)len);
    const char *name_end = colon ? colon : p + len;
    for (const char *q = p; q < name_end; q++)
        if (!token_char((unsigned char)*q))
            return false;
    if (colon && colon == p)
        return false;
    if (!colon)
        return !cr;
    if (special_field(p, colon - p))
        return false;
    for (const char *q = colon + 1; q < p + len; q++)
        if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
            return false;
    return true;
}

static bool is_field(const char *p, long len, const char *name) {
    long n = (long)strlen(name);
    return len == n && strncasecmp(p, name, (size_t)n) == 0;
}

/* What the client's bytes call for in the strict grammar: MODEL_MORE (a
 * valid beginning, incomplete), a status, or MODEL_OUTSIDE; for a status
 * *end is the end of the header block (the byte after which the answer
 * must come) and *head whether it is HEAD. */
static int model(const char *buf, size_t n, bool *head, size_t *end_at) {
    if (memchr(buf, '\0', n))
        return MODEL_OUTSIDE;
    const char *end = buf + n, *next;
    long len = line_at(buf, end, &next);
    if (len < 0)
        return n >= MH_MAX_REQUEST || !request_line_viable(buf, (long)n) ? MODEL_OUTSIDE
                                                                          : MODEL_MORE;
    long m = 0;
    while (m < len && buf[m] != ' ')
        m++;
    if (m == 0 || m == len || !known_method(buf, m))
        return MODEL_OUTSIDE;
    long t = m + 1, te = t;
    while (te < len && buf[te] != ' ')
        te++;
    if (te == t || te == len || buf[t] != '/')
        return MODEL_OUTSIDE;
    for (long i = t; i < te; i++)
        if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f || buf[i] == '#')
            return MODEL_OUTSIDE;
    if (len - (te + 1) != 8 ||
        (memcmp(buf + te + 1, "HTTP/1.1", 8) != 0 && memcmp(buf + te + 1, "HTTP/1.0", 8) != 0))
        return MODEL_OUTSIDE;
    const char *p = next;
    for (int fields = 0;; fields++) {
        if (fields > 100)
            return MODEL_OUTSIDE; /* the parser's limit of header fields (431) */
        long hl = line_at(p, end, &next);
        if (hl < 0)
            return n >= MH_MAX_REQUEST || !header_line_viable(p, end - p) ? MODEL_OUTSIDE
                                                                           : MODEL_MORE;
        if (next - buf > MH_MAX_REQUEST)
            return MODEL_OUTSIDE;
        if (hl == 0) {
            *end_at = (size_t)(next - buf);
            break;
        }
        const char *colon = memchr(p, ':', (size_t)hl);
        if (!colon || colon == p)
            return MODEL_OUTSIDE;
        for (const char *q = p; q < colon; q++)
            if (!token_char((unsigned char)*q))
                return MODEL_OUTSIDE;
        for (const char *q = colon + 1; q < p + hl; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                return MODEL_OUTSIDE;
        if (special_field(p, colon - p))
            return MODEL_OUTSIDE;
        p = next;
    }
    bool get = m == 3 && memcmp(buf, "GET", 3) == 0;
    *head = m == 4 && memcmp(buf, "HEAD", 4) == 0;
    long pe = t;
    while (pe < te && buf[pe] != '?')
        pe++;
    if (pe - t >= 7 && memcmp(buf + t, "/debug/", 7) == 0)
        return MODEL_OUTSIDE; /* answered by a job on the blocking pool */
    if (!get && !*head)
        return 405;
    bool prom = pe - t == 8 && memcmp(buf + t, "/metrics", 8) == 0;
    bool json = pe - t == 13 && memcmp(buf + t, "/metrics.json", 13) == 0;
    return prom || json ? 200 : 404;
}

/* ---- the response ---- */

/* The response in c: its status.  A complete HEAD request's answer has
 * no body (but for 405's and a refusal's). */
static int check_response(const mh_conn *c) {
    bool head = c->parser.complete && strcmp(hreq_method(&c->parser), "HEAD") == 0;
    const char *r = c->out;
    size_t n = c->out_len;
    int status = 0;
    if (!r || n < 12 || sscanf(r, "HTTP/1.1 %3d ", &status) != 1) {
        fprintf(stderr, "fuzz_http: no status line\n");
        abort();
    }
    const char *hend = memmem(r, n, "\r\n\r\n", 4);
    const char *cl = memmem(r, hend ? (size_t)(hend - r) : 0, "\r\nContent-Length: ", 18);
    if (!hend || !cl) {
        fprintf(stderr, "fuzz_http: headers without an end or a Content-Length\n");
        abort();
    }
    size_t body = n - (size_t)(hend + 4 - r);
    unsigned long declared = strtoul(cl + 18, NULL, 10);
    bool head_response = head && status != 400 && status != 405 && !c->out_static;
    if ((head_response ? 0 : declared) != body) {
        fprintf(stderr, "fuzz_http: Content-Length %lu, body %zu bytes%s\n", declared, body,
                head_response ? " (HEAD)" : "");
        abort();
    }
    return status;
}

static mh_conn *conn_new(void) {
    mh_conn *c = calloc(1, sizeof *c);
    c->srv = &server;
    hreq_init(&c->parser, &(hreq_limits){.header_bytes = MH_MAX_REQUEST, .body = MH_MAX_BODY});
    return c;
}

static void conn_free(mh_conn *c) {
    if (c->job) {
        /* A /debug/ path started a job: it ends on the blocking pool. */
        ms_task_release(c->job_task);
        dump_job_unref(c->job);
    }
    hreq_free(&c->parser);
    if (!c->out_static)
        free(c->out);
    free(c);
}

/* The endpoint on data in chunks: the status it answered (0: none,
 * -1: a job started). */
static int endpoint(const uint8_t *data, size_t size, size_t chunk, bool check_model) {
    bool head = false;
    size_t end_at = 0;
    int want = check_model ? model((const char *)data, size, &head, &end_at) : MODEL_OUTSIDE;
    mh_conn *c = conn_new();
    size_t at = 0;
    bool answered = false;
    int status = 0;
    while (at < size && !answered) {
        size_t k = size - at < chunk ? size - at : chunk;
        answered = examine(c, (const char *)data + at, k);
        at += k;
    }
    if (want == MODEL_MORE && answered) {
        fprintf(stderr, "fuzz_http: answered after %zu bytes; the grammar says more\n", at);
        abort();
    }
    if (want > 0 && (!answered || at < end_at || at - end_at >= chunk)) {
        fprintf(stderr, "fuzz_http: %s after %zu bytes; the grammar says answer after %zu\n",
                answered ? "answered" : "no answer", at, end_at);
        abort();
    }
    if (answered && c->job) {
        status = -1;
    } else if (answered) {
        status = check_response(c);
        if (want > 0 && status != want && !(status == 500 && c->out_static)) {
            fprintf(stderr, "fuzz_http: status %d, the grammar says %d\n", status, want);
            abort();
        }
    }
    conn_free(c);
    return status;
}

/* The parser on a keep-alive connection: request after request. */
static void keep_alive(const uint8_t *data, size_t size, size_t chunk) {
    hreq r;
    hreq_init(&r, &(hreq_limits){.header_bytes = 512, .headers = 8, .body = 256});
    size_t at = 0, fed = 0;
    while (at < size) {
        size_t end = fed + chunk < size ? fed + chunk : size;
        if (end <= at)
            end = at + 1 <= size ? at + 1 : size;
        fed = end;
        size_t used;
        hreq_state st = hreq_feed(&r, (const char *)data + at, end - at, &used);
        if (used > end - at || (r.header_bytes > 512 && !r.headers_done)) {
            fprintf(stderr, "fuzz_http: took %zu of %zu bytes, %u header bytes\n", used,
                    end - at, r.header_bytes);
            abort();
        }
        at += used;
        if (st == HREQ_ERROR) {
            int s = hreq_error_status(&r);
            if ((s != 400 && s != 413 && s != 431 && s != 505 && s != 500) || !hreq_error(&r)[0])
                abort();
            break;
        }
        if (st == HREQ_DONE) {
            size_t tlen, blen;
            hreq_target(&r, &tlen);
            hreq_body(&r, &blen);
            if (tlen == 0 || blen > 256 || r.text_len > 512 || hreq_nfields(&r) > 8)
                abort();
            for (uint32_t i = 0; i < hreq_nfields(&r); i++) {
                const char *n, *v;
                size_t nl, vl;
                hreq_field_at(&r, i, &n, &nl, &v, &vl);
                if (n + nl > r.text + r.text_len || v + vl > r.text + r.text_len)
                    abort();
            }
            if (!hreq_keep_alive(&r) || hreq_upgrade(&r))
                break;
            hreq_next(&r);
        }
    }
    hreq_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t chunk = data[0] ? data[0] : size;
    data++;
    size--;
    if (size == 0)
        return 0;
    int in_chunks = endpoint(data, size, chunk, true);
    int whole = endpoint(data, size, size, false);
    if (in_chunks != whole) {
        fprintf(stderr, "fuzz_http: %d fed in chunks of %zu, %d fed whole\n", in_chunks, chunk,
                whole);
        abort();
    }
    keep_alive(data, size, chunk);
    return 0;
}
