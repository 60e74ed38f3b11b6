/*
 * io_bench - loopback TCP echo throughput through the driver.
 *
 *   io_bench [--workers N] [--iters N]
 *
 * tcp_echo_16x1MiB: an echo server task per connection; 16 client tasks
 * each push 1 MiB in 16 KiB writes while reading the echo back, all at
 * once; timed from the first connect to the last byte back.  Prints
 * `NAME median_us=... min_us=... n=...` and, on stderr, the throughput.
 * (The Tokio peer has no I/O workload; this one tracks our own trend.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms.h"

#define CLIENTS 16
#define BYTES (1u << 20)
#define CHUNK 16384

static void die(const char *what, const ms_error *err) {
    fprintf(stderr, "io_bench: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

typedef struct conn {
    ms_stream *s;
    char buf[CHUNK];
    ssize_t have, sent;
    int phase;
} conn;

static ms_poll conn_poll(ms_cx *cx, void *state) {
    conn *c = state;
    for (;;) {
        ssize_t n;
        if (c->phase == 0) {
            if (ms_stream_read(c->s, cx, c->buf, sizeof c->buf, &n, NULL) == MS_POLL_PENDING)
                return MS_POLL_PENDING;
            if (n <= 0)
                return MS_POLL_READY;
            c->have = n;
            c->sent = 0;
            c->phase = 1;
        }
        while (c->sent < c->have) {
            if (ms_stream_write(c->s, cx, c->buf + c->sent, (size_t)(c->have - c->sent), &n,
                                NULL) == MS_POLL_PENDING)
                return MS_POLL_PENDING;
            if (n < 0)
                return MS_POLL_READY;
            c->sent += n;
        }
        c->phase = 0;
    }
}

static void conn_drop(void *state) {
    conn *c = state;
    ms_stream_close(c->s);
    free(c);
}

static ms_poll server_poll(ms_cx *cx, void *state) {
    ms_listener *l = state;
    for (;;) {
        ms_stream *s;
        int rc;
        ms_error err;
        if (ms_listener_accept(l, cx, &s, &rc, &err) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (rc != 0)
            return ms_cx_fail(cx, rc, "%s", err.message);
        conn *c = calloc(1, sizeof *c);
        c->s = s;
        if (ms_spawn(ms_cx_runtime(cx), conn_poll, c, conn_drop, NULL) != 0)
            conn_drop(c);
    }
}

typedef struct client {
    uint16_t port;
    ms_connect *cn;
    ms_stream *s;
    size_t sent, got;
} client;

static char out_chunk[CHUNK];

static ms_poll client_poll(ms_cx *cx, void *state) {
    client *c = state;
    int rc;
    ms_error err;
    if (!c->s) {
        if (!c->cn && ms_tcp_connect(ms_cx_runtime(cx), "127.0.0.1", c->port, &c->cn, &err) != 0)
            return ms_cx_fail(cx, err.code, "%s", err.message);
        if (ms_connect_poll(c->cn, cx, &c->s, &rc, &err) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        ms_connect_free(c->cn);
        c->cn = NULL;
        if (rc != 0)
            return ms_cx_fail(cx, rc, "%s", err.message);
    }
    while (c->got < BYTES) {
        bool progress = false;
        ssize_t n;
        if (c->sent < BYTES) {
            size_t k = BYTES - c->sent < CHUNK ? BYTES - c->sent : CHUNK;
            if (ms_stream_write(c->s, cx, out_chunk, k, &n, &err) == MS_POLL_READY) {
                if (n < 0)
                    return ms_cx_fail(cx, (int)n, "%s", err.message);
                c->sent += (size_t)n;
                progress = true;
            }
        }
        char in[CHUNK];
        if (ms_stream_read(c->s, cx, in, sizeof in, &n, &err) == MS_POLL_READY) {
            if (n <= 0)
                return ms_cx_fail(cx, MS_E_IO, "echo ended early");
            c->got += (size_t)n;
            progress = true;
        }
        if (!progress)
            return MS_POLL_PENDING;
    }
    ms_stream_close(c->s);
    c->s = NULL;
    return MS_POLL_READY;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    unsigned workers = 4, iters = 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            workers = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            iters = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "tcp_echo_16x1MiB") != 0) {
            fprintf(stderr, "io_bench: unknown argument '%s' (benchmarks: tcp_echo_16x1MiB)\n",
                    argv[i]);
            return 2;
        }
    }
    if (workers < 1 || iters < 1) {
        fprintf(stderr, "io_bench: --workers and --iters take whole numbers >= 1\n");
        return 2;
    }
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = workers;
    ms_runtime *rt;
    ms_error err;
    if (ms_runtime_new(&cfg, &rt, &err) != 0)
        die("runtime", &err);
    ms_listener *l;
    if (ms_tcp_listen(rt, "127.0.0.1", 0, 256, &l, &err) != 0)
        die("listen", &err);
    if (ms_spawn(rt, server_poll, l, NULL, NULL) != 0)
        die("spawn server", NULL);
    unsigned n = iters / 4 + 1;
    double *us = calloc(n, sizeof *us);
    for (unsigned r = 0; r <= n; r++) {
        client cs[CLIENTS] = {0};
        ms_task *h[CLIENTS];
        uint64_t t0 = ms_now_ns();
        for (int i = 0; i < CLIENTS; i++) {
            cs[i].port = ms_listener_port(l);
            if (ms_spawn(rt, client_poll, &cs[i], NULL, &h[i]) != 0)
                die("spawn client", NULL);
        }
        for (int i = 0; i < CLIENTS; i++) {
            if (ms_task_join(h[i], 60000, NULL, &err) != 0)
                die("client", &err);
            ms_task_release(h[i]);
        }
        if (r > 0) /* the first run warms up */
            us[r - 1] = (double)(ms_now_ns() - t0) / 1000.0;
    }
    qsort(us, n, sizeof *us, cmp);
    printf("tcp_echo_16x1MiB median_us=%.1f min_us=%.1f n=%u\n", us[n / 2], us[0], n);
    fprintf(stderr, "tcp_echo_16x1MiB: %.0f MiB/s each way at the median\n",
            CLIENTS * (BYTES / 1048576.0) / (us[n / 2] / 1e6));
    free(us);
    ms_runtime_shutdown(rt, MS_SHUTDOWN_CANCEL, 5000, NULL);
    ms_listener_close(l);
    ms_runtime_free(rt);
    return 0;
}
