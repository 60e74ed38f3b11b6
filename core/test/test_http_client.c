/*
 * test_http_client.c - libms's HTTP client (ms_http_request_*): a whole
 * response, a stream, failures named by what failed, a cancel, the
 * runtime stopping with a request in flight.  The peer is a plain
 * blocking server on a thread of this test (loopback, a port the kernel
 * picks); the Lua side and hostile peers are spec/http_client_spec.lua.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"
#include "test_rt.h"

#define BIG (1024 * 1024 + 17)

/* ---- the peer: one request per connection, then close ---- */

static int peer_fd;
static uint16_t peer_port;
static char big_body[BIG];      /* filled before the peer's threads start */

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static void *peer_conn(void *arg) {
    int c = (int)(intptr_t)arg;
    char head[4096];
    size_t len = 0;
    while (len < sizeof head - 1 && !memmem(head, len, "\r\n\r\n", 4)) {
        ssize_t k = read(c, head + len, sizeof head - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    head[len] = '\0';
    if (strstr(head, "GET /hello ")) {
        const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n"
                        "Connection: close\r\n\r\nhello";
        write_all(c, r, strlen(r));
    } else if (strstr(head, "GET /big ")) {
        char h[128];
        snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
                 BIG);
        write_all(c, h, strlen(h));
        write_all(c, big_body, sizeof big_body);
    } else { /* /hang: never answers; waits for the client to go */
        while (read(c, head, sizeof head) > 0) {
        }
    }
    close(c);
    return NULL;
}

static void *peer_main(void *arg) {
    (void)arg;
    for (;;) {
        int c = accept(peer_fd, NULL, NULL);
        if (c < 0)
            return NULL;
        pthread_t t;
        pthread_create(&t, NULL, peer_conn, (void *)(intptr_t)c);
        pthread_detach(t);
    }
}

static void start_peer(void) {
    if (peer_port)
        return;
    memset(big_body, 'b', sizeof big_body);
    peer_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (bind(peer_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(peer_fd, 64) != 0 ||
        getsockname(peer_fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("peer");
        exit(1);
    }
    peer_port = ntohs(sa.sin_port);
    pthread_t t;
    pthread_create(&t, NULL, peer_main, NULL);
    pthread_detach(t);
}

/* ---- requests ---- */

typedef struct req {
    ms_http_request *r;
    int rc;
    ms_error err;
    /* stream reading */
    char buf[70000];
    size_t total;
    ssize_t last;
} req;

static ms_poll req_poll(ms_cx *cx, void *state) {
    req *x = state;
    return ms_http_request_poll(x->r, cx, &x->rc, &x->err);
}

static ms_poll read_all_poll(ms_cx *cx, void *state) {
    req *x = state;
    for (;;) {
        if (ms_http_request_read(x->r, cx, x->buf, sizeof x->buf, &x->last, &x->err) ==
            MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (x->last <= 0)
            return MS_POLL_READY;
        for (ssize_t i = 0; i < x->last; i++)
            if (x->buf[i] != 'b')
                x->last = -1000;
        x->total += (size_t)x->last;
    }
}

static void url_of(char *buf, size_t len, const char *path) {
    snprintf(buf, len, "http://127.0.0.1:%u%s", peer_port, path);
}

static int start_req(ms_runtime *rt, req *x, const char *path, ms_http_opts *o) {
    char url[128];
    url_of(url, sizeof url, path);
    ms_http_opts d = {0};
    if (!o)
        o = &d;
    o->url = url;
    if (!o->timeout_ms)
        o->timeout_ms = 60000;
    return ms_http_request_start(rt, o, &x->r, &x->err);
}

TEST(a_response_comes_whole_with_its_status_headers_and_body) {
    start_peer();
    ms_runtime *rt = start(2);
    ms_error err;
    req x = {0};
    CHECK_INT_EQ(start_req(rt, &x, "/hello", NULL), 0);
    CHECK_INT_EQ(ms_block_on(rt, req_poll, &x, NULL, &err), 0);
    CHECK_INT_EQ(x.rc, 0);
    CHECK_INT_EQ(ms_http_request_failure(x.r), MS_HTTP_OK);
    CHECK(strcmp(ms_http_failure_name(MS_HTTP_OK), "ok") == 0);
    CHECK_INT_EQ(ms_http_request_status(x.r), 200);
    size_t len;
    const char *h = ms_http_request_headers(x.r, &len);
    CHECK_STR_CONTAINS(h, "X-A: 1\nX-A: 2\n");
    CHECK(strstr(h, "HTTP/1.1") == NULL); /* no status line */
    const char *b = ms_http_request_body(x.r, &len);
    CHECK_INT_EQ(len, 5);
    CHECK(memcmp(b, "hello", 5) == 0);
    ms_http_request_free(x.r);
    uint64_t open, opened;
    ms_http_client_connections(rt, &open, &opened);
    CHECK_INT_EQ(opened, 1);
    stop(rt);
}

TEST(a_stream_reads_a_large_body_in_pieces) {
    start_peer();
    ms_runtime *rt = start(2);
    ms_error err;
    static req x;
    memset(&x, 0, sizeof x);
    ms_http_opts o = {.stream = true};
    CHECK_INT_EQ(start_req(rt, &x, "/big", &o), 0);
    CHECK_INT_EQ(ms_block_on(rt, req_poll, &x, NULL, &err), 0);
    CHECK_INT_EQ(x.rc, 0);
    CHECK_INT_EQ(ms_http_request_status(x.r), 200);
    CHECK_INT_EQ(ms_block_on(rt, read_all_poll, &x, NULL, &err), 0);
    CHECK_INT_EQ(x.last, 0); /* the end, no error */
    CHECK_INT_EQ(x.total, BIG);
    ms_http_request_free(x.r);
    stop(rt);
}

TEST(failures_are_named_by_what_failed) {
    start_peer();
    ms_runtime *rt = start(2);
    ms_error err;
    /* Too large: max_size below the Content-Length. */
    req big = {0};
    ms_http_opts o = {.max_size = 1000};
    CHECK_INT_EQ(start_req(rt, &big, "/big", &o), 0);
    CHECK_INT_EQ(ms_block_on(rt, req_poll, &big, NULL, &err), 0);
    CHECK_INT_EQ(big.rc, MS_E_EXHAUSTED);
    CHECK_INT_EQ(ms_http_request_failure(big.r), MS_HTTP_TOO_LARGE);
    CHECK_STR_CONTAINS(big.err.message, "max_size");
    ms_http_request_free(big.r);
    /* A timeout. */
    req slow = {0};
    ms_http_opts t = {.timeout_ms = 200};
    CHECK_INT_EQ(start_req(rt, &slow, "/hang", &t), 0);
    CHECK_INT_EQ(ms_block_on(rt, req_poll, &slow, NULL, &err), 0);
    CHECK_INT_EQ(slow.rc, MS_E_TIMEOUT);
    CHECK(strcmp(ms_http_failure_name(ms_http_request_failure(slow.r)), "timeout") == 0);
    ms_http_request_free(slow.r);
    /* A scheme that is not http(s); a refused port; an empty URL. */
    req file = {0};
    ms_http_opts f = {.url = "file:///etc/passwd"};
    CHECK_INT_EQ(ms_http_request_start(rt, &f, &file.r, &err), 0);
    CHECK_INT_EQ(ms_block_on(rt, req_poll, &file, NULL, &err), 0);
    CHECK_INT_EQ(file.rc, MS_E_INVALID_ARGUMENT);
    CHECK_INT_EQ(ms_http_request_failure(file.r), MS_HTTP_URL);
    ms_http_request_free(file.r);
    req refused = {0};
    ms_http_opts r = {.url = "http://127.0.0.1:1/"};
    CHECK_INT_EQ(ms_http_request_start(rt, &r, &refused.r, &err), 0);
    CHECK_INT_EQ(ms_block_on(rt, req_poll, &refused, NULL, &err), 0);
    CHECK_INT_EQ(refused.rc, MS_E_IO);
    CHECK_INT_EQ(ms_http_request_failure(refused.r), MS_HTTP_CONNECT);
    ms_http_request_free(refused.r);
    ms_http_opts empty = {.url = ""};
    ms_http_request *none;
    CHECK_INT_EQ(ms_http_request_start(rt, &empty, &none, &err), MS_E_INVALID_ARGUMENT);
    stop(rt);
}

TEST(a_request_freed_unfinished_is_cancelled_and_its_connection_closed) {
    start_peer();
    ms_runtime *rt = start(2);
    req x = {0};
    ms_http_opts o = {.timeout_ms = 0};
    char url[128];
    url_of(url, sizeof url, "/hang");
    o.url = url;
    CHECK_INT_EQ(ms_http_request_start(rt, &o, &x.r, &x.err), 0);
    uint64_t open = 0, opened = 0;
    for (int i = 0; i < 40000 && open == 0; i++) {
        usleep(500);
        ms_http_client_connections(rt, &open, &opened);
    }
    CHECK_INT_EQ(open, 1);
    ms_http_request_free(x.r);
    for (int i = 0; i < 40000 && open != 0; i++) {
        usleep(500);
        ms_http_client_connections(rt, &open, &opened);
    }
    CHECK_INT_EQ(open, 0);
    stop(rt);
}

TEST(the_runtime_stopping_ends_a_request_in_flight) {
    start_peer();
    ms_runtime *rt = start(1);
    req x = {0};
    ms_http_opts o = {.timeout_ms = 0};
    char url[128];
    url_of(url, sizeof url, "/hang");
    o.url = url;
    CHECK_INT_EQ(ms_http_request_start(rt, &o, &x.r, &x.err), 0);
    uint64_t open = 0, opened = 0;
    for (int i = 0; i < 40000 && open == 0; i++) {
        usleep(500);
        ms_http_client_connections(rt, &open, &opened);
    }
    CHECK_INT_EQ(open, 1);
    ms_shutdown_report rep;
    ms_runtime_shutdown(rt, MS_SHUTDOWN_DRAIN, 30000, &rep);
    CHECK_INT_EQ(ms_http_request_failure(x.r), MS_HTTP_SHUTDOWN);
    ms_http_client_connections(rt, &open, &opened);
    CHECK_INT_EQ(open, 0);
    ms_http_request_free(x.r); /* after the driver stopped: freed on the spot */
    ms_runtime_free(rt);
}

TEST_MAIN()
