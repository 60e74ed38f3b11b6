/*
 * fuzz_http.c - fuzz target: the metrics endpoint's request parser and router
 * (ms-host/metrics_http.c: examine, answer), fed as the connection task
 * feeds them, in chunks.
 *
 * Input: byte 0 is the chunk size (0: all at once), the rest the bytes a
 * client sends.  After each chunk (as much as fits in the request buffer)
 * examine runs on everything read so far, exactly as conn_poll calls it.
 *
 * What must hold, beyond no crash: examine's decision after each chunk is
 * what the grammar of docs/metrics.md says of the bytes read so far (a
 * model written here from the grammar, not from the code): more to read,
 * or 400 (NUL byte, bad request line, bad header line, more than 8192
 * bytes without the end of the headers), 405 (a method other than GET or
 * HEAD), 404 (another path), 200.  The response is well framed: a status
 * line, headers ending in an empty line, and a Content-Length that is the
 * body's length (0 bytes of body for HEAD).
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

enum { MODEL_MORE = 0 };

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

/* What the bytes read so far call for: MODEL_MORE or a status, and for
 * 200 whether it is HEAD. */
static int model(const char *buf, size_t n, bool *head) {
    if (memchr(buf, '\0', n))
        return 400;
    const char *end = buf + n, *next;
    long len = line_at(buf, end, &next);
    if (len < 0)
        return n == MH_MAX_REQUEST ? 400 : MODEL_MORE;
    /* METHOD SP TARGET SP VERSION, method a token of at most 32, target
     * from '/' of visible ASCII, version HTTP/1.1 or HTTP/1.0. */
    long m = 0;
    while (m < len && buf[m] != ' ')
        m++;
    if (m == 0 || m > 32 || m == len)
        return 400;
    for (long i = 0; i < m; i++)
        if (!token_char((unsigned char)buf[i]))
            return 400;
    long t = m + 1, te = t;
    while (te < len && buf[te] != ' ')
        te++;
    if (te == t || te == len || buf[t] != '/')
        return 400;
    for (long i = t; i < te; i++)
        if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f)
            return 400;
    if (len - (te + 1) != 8 ||
        (memcmp(buf + te + 1, "HTTP/1.1", 8) != 0 && memcmp(buf + te + 1, "HTTP/1.0", 8) != 0))
        return 400;
    /* Header lines until an empty one. */
    const char *p = next;
    for (;;) {
        long hl = line_at(p, end, &next);
        if (hl < 0)
            return n == MH_MAX_REQUEST ? 400 : MODEL_MORE;
        if (hl == 0)
            break;
        const char *colon = memchr(p, ':', (size_t)hl);
        if (!colon || colon == p)
            return 400;
        for (const char *q = p; q < colon; q++)
            if (!token_char((unsigned char)*q))
                return 400;
        for (const char *q = colon + 1; q < p + hl; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                return 400;
        p = next;
    }
    bool get = m == 3 && memcmp(buf, "GET", 3) == 0;
    *head = m == 4 && memcmp(buf, "HEAD", 4) == 0;
    if (!get && !*head)
        return 405;
    long pe = t;
    while (pe < te && buf[pe] != '?')
        pe++;
    bool prom = pe - t == 8 && memcmp(buf + t, "/metrics", 8) == 0;
    bool json = pe - t == 13 && memcmp(buf + t, "/metrics.json", 13) == 0;
    return prom || json ? 200 : 404;
}

/* ---- the response ---- */

static void check_response(const mh_conn *c, int want, bool head) {
    const char *r = c->out;
    size_t n = c->out_len;
    int status = 0;
    if (n < 12 || sscanf(r, "HTTP/1.1 %3d ", &status) != 1) {
        fprintf(stderr, "fuzz_http: no status line\n");
        abort();
    }
    if (status != want && !(status == 500 && c->out_static)) {
        fprintf(stderr, "fuzz_http: status %d, the grammar says %d\n", status, want);
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
    bool head_response = status != 400 && status != 405 && head;
    if ((head_response ? 0 : declared) != body) {
        fprintf(stderr, "fuzz_http: Content-Length %lu, body %zu bytes%s\n", declared, body,
                head_response ? " (HEAD)" : "");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t chunk = data[0] ? data[0] : size;
    data++;
    size--;
    mh_conn *c = calloc(1, sizeof *c);
    c->srv = &server;
    size_t at = 0;
    bool answered = false;
    while (at < size && !answered) {
        size_t room = MH_MAX_REQUEST - c->rlen, k = size - at < chunk ? size - at : chunk;
        if (k > room)
            k = room;
        memcpy(c->req + c->rlen, data + at, k);
        c->rlen += k;
        at += k;
        bool head = false;
        int want = model(c->req, c->rlen, &head);
        answered = examine(c);
        if (answered != (want != MODEL_MORE)) {
            fprintf(stderr, "fuzz_http: examine %s, the grammar says %s (after %zu bytes)\n",
                    answered ? "answered" : "wants more", want ? "answer" : "more", c->rlen);
            abort();
        }
        if (answered)
            check_response(c, want, head);
        if (c->rlen == MH_MAX_REQUEST)
            break;
    }
    if (!c->out_static)
        free(c->out);
    free(c);
    return 0;
}
