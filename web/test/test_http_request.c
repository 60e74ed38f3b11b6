/*
 * test_http_request.c - the request parser (web/http_request.h): what a
 * server reads from it for well-formed requests fed whole and byte by
 * byte, pipelined requests, keep-alive, upgrade, and every refusal with
 * its status (400, 413, 431, 505) and a message naming what is wrong.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_request.h"

static int failures;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                   \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

static bool eq(const char *p, size_t n, const char *want) {
    return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

static bool target_is(const hreq *r, const char *want) {
    size_t n;
    const char *p = hreq_target(r, &n);
    return eq(p, n, want);
}

static bool header_is(const hreq *r, const char *name, const char *want) {
    size_t n;
    const char *p = hreq_header(r, name, &n);
    return eq(p, n, want);
}

static bool body_is(const hreq *r, const char *want) {
    size_t n;
    const char *p = hreq_body(r, &n);
    return eq(p, n, want);
}

/* Feeds text in pieces of `piece` bytes (0: whole) until the parser
 * stops asking for more; *used is the bytes taken. */
static hreq_state feed(hreq *r, const char *text, size_t len, size_t piece, size_t *used) {
    size_t at = 0;
    hreq_state st = HREQ_MORE;
    while (at < len && st == HREQ_MORE) {
        size_t n = piece && len - at > piece ? piece : len - at, took;
        st = hreq_feed(r, text + at, n, &took);
        at += took;
        if (st == HREQ_MORE && took < n)
            break;
    }
    *used = at;
    return st;
}

static void test_get(size_t piece) {
    const char *q = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example\r\nX-Two: a\r\nx-two: b\r\n\r\n";
    hreq r;
    hreq_init(&r, &(hreq_limits){0});
    size_t used, n, plen, qlen;
    CHECK(feed(&r, q, strlen(q), piece, &used) == HREQ_DONE);
    CHECK(used == strlen(q));
    CHECK(strcmp(hreq_method(&r), "GET") == 0);
    CHECK(target_is(&r, "/a/b?x=1&y=2"));
    const char *path, *query;
    hreq_path(&r, &path, &plen, &query, &qlen);
    CHECK(eq(path, plen, "/a/b"));
    CHECK(eq(query, qlen, "x=1&y=2"));
    CHECK(hreq_nfields(&r) == 3);
    CHECK(header_is(&r, "host", "example"));
    CHECK(header_is(&r, "X-TWO", "a"));
    CHECK(hreq_header(&r, "nope", &n) == NULL);
    CHECK(hreq_keep_alive(&r));
    CHECK(!hreq_upgrade(&r));
    CHECK(hreq_version_minor(&r) == 1);
    hreq_free(&r);
}

static void test_post_bodies(void) {
    const char *q = "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    hreq r;
    hreq_init(&r, &(hreq_limits){.body = 5});
    size_t used;
    CHECK(feed(&r, q, strlen(q), 1, &used) == HREQ_DONE);
    CHECK(body_is(&r, "hello"));
    hreq_free(&r);
    const char *c = "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    hreq_init(&r, &(hreq_limits){.body = 5});
    CHECK(feed(&r, c, strlen(c), 3, &used) == HREQ_DONE);
    CHECK(used == strlen(c));
    CHECK(body_is(&r, "abcde"));
    hreq_free(&r);
}

static void test_pipelined_and_keep_alive(void) {
    const char *q = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.0\r\n\r\nGET /3 HTTP/1.1\r\n";
    hreq r;
    hreq_init(&r, &(hreq_limits){0});
    size_t used, at = 0;
    CHECK(hreq_feed(&r, q, strlen(q), &used) == HREQ_DONE);
    CHECK(target_is(&r, "/1"));
    CHECK(hreq_keep_alive(&r));
    at += used;
    hreq_next(&r);
    CHECK(hreq_feed(&r, q + at, strlen(q) - at, &used) == HREQ_DONE);
    CHECK(target_is(&r, "/2"));
    CHECK(!hreq_keep_alive(&r)); /* 1.0 without keep-alive */
    at += used;
    hreq_next(&r);
    CHECK(hreq_feed(&r, q + at, strlen(q) - at, &used) == HREQ_MORE);
    CHECK(hreq_started(&r));
    CHECK(hreq_eof(&r) == HREQ_ERROR);
    CHECK(hreq_error_status(&r) == 400);
    CHECK(strstr(hreq_error(&r), "ended inside the request") != NULL);
    hreq_next(&r);
    CHECK(hreq_eof(&r) == HREQ_MORE); /* between requests: a clean end */
    const char *close = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    hreq_next(&r);
    CHECK(hreq_feed(&r, close, strlen(close), &used) == HREQ_DONE);
    CHECK(!hreq_keep_alive(&r));
    const char *ka = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    hreq_next(&r);
    CHECK(hreq_feed(&r, ka, strlen(ka), &used) == HREQ_DONE);
    CHECK(hreq_keep_alive(&r));
    hreq_free(&r);
}

static void test_upgrade(void) {
    const char *q = "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05";
    hreq r;
    hreq_init(&r, &(hreq_limits){0});
    size_t used;
    CHECK(hreq_feed(&r, q, strlen(q), &used) == HREQ_DONE);
    CHECK(hreq_upgrade(&r));
    CHECK(used == strlen(q) - 2); /* the frame's bytes are the caller's */
    hreq_free(&r);
}

/* The request is refused with status and a message containing what. */
static void refused(const char *q, size_t len, const hreq_limits *lim, size_t piece, int status,
                    const char *what) {
    hreq r;
    hreq_init(&r, lim);
    size_t used;
    hreq_state st = feed(&r, q, len, piece, &used);
    if (st != HREQ_ERROR || hreq_error_status(&r) != status || !strstr(hreq_error(&r), what)) {
        fprintf(stderr, "%.40s...: state %d status %d \"%s\", wanted %d \"%s\"\n", q, st,
                hreq_error_status(&r), hreq_error(&r), status, what);
        failures++;
    }
    hreq_free(&r);
}

static void test_refusals(void) {
    hreq_limits none = {0};
    refused("garbage\r\n\r\n", 11, &none, 0, 400, "malformed request");
    refused("GET /x HTTP/9.9\r\n\r\n", 19, &none, 0, 505, "version 9.9");
    refused("GET /x HTTP/1.1\r\n folded: x\r\n\r\n", 31, &none, 0, 400, "white space");
    refused("GET /a\0b HTTP/1.1\r\n\r\n", 21, &none, 0, 400, "malformed request");
    refused("GET / HTTP/1.1\r\nA\1: b\r\n\r\n", 25, &none, 1, 400, "malformed request");
    refused("POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\n", 38, &(hreq_limits){.body = 5}, 0,
            413, "6 bytes is over the limit of 5");
    const char *chunked =
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n";
    refused(chunked, strlen(chunked), &(hreq_limits){.body = 5}, 0, 413, "over the limit of 5");
    /* Header bytes: exactly the limit passes, one more is refused, fed
     * whole or a byte at a time. */
    char big[200];
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: %0*d\r\n\r\n", 100, 0);
    for (size_t piece = 0; piece < 2; piece++) {
        hreq r;
        hreq_init(&r, &(hreq_limits){.header_bytes = (uint32_t)n});
        size_t used;
        CHECK(feed(&r, big, (size_t)n, piece, &used) == HREQ_DONE);
        hreq_free(&r);
        refused(big, (size_t)n, &(hreq_limits){.header_bytes = (uint32_t)n - 1}, piece, 431,
                "exceed");
    }
    char many[400] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 11; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "H%d: v\r\n", i);
    strcat(many, "\r\n");
    refused(many, strlen(many), &(hreq_limits){.headers = 10}, 0, 431, "more than 10 header");
    hreq r;
    hreq_init(&r, &(hreq_limits){.headers = 11});
    size_t used;
    CHECK(hreq_feed(&r, many, strlen(many), &used) == HREQ_DONE);
    hreq_free(&r);
}

int main(void) {
    test_get(0);
    test_get(1);
    test_get(7);
    test_post_bodies();
    test_pipelined_and_keep_alive();
    test_upgrade();
    test_refusals();
    if (failures) {
        fprintf(stderr, "test_http_request: %d failures\n", failures);
        return 1;
    }
    printf("test_http_request: ok\n");
    return 0;
}
