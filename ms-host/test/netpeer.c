/*
 * netpeer - the network peers of spec/listeners_spec.lua: hostile clients
 * that hold connections open, a plain scraper, and a raw console client.
 * Plain sockets and poll(2), no libms, so that what it measures is the
 * host alone.  Every mode is bounded in connections and in time.
 *
 *   netpeer hold ADDR N SECONDS idle|slow
 *       Keeps N connections to ADDR open for SECONDS; each one the server
 *       closes (or resets) is opened again at once.  idle: they send
 *       nothing.  slow: each sends "GET /metrics HTTP/1.1\r\n" and then one
 *       more byte of a header that never ends every 200 ms.  Prints
 *       "hold opened=O closed=C" (connections opened, closed by the
 *       server).
 *   netpeer scrape ADDR COUNT TIMEOUT
 *       COUNT GET /metrics requests one after another, each given TIMEOUT
 *       seconds; prints "scrape ok=K of=COUNT" (ok: a 200 response whose
 *       body has the length Content-Length says).
 *   netpeer console ADDR read|leave
 *       A console client (docs/console.md's frames): reads the banner,
 *       sends a line whose reply is 2 MB, reads the reply's first bytes,
 *       then sends a malformed frame while the rest of the reply is still
 *       on its way.  read: then waits 1 s and reads to the end (20 s at
 *       most); prints "console out=O error=E eof=0|1" (frames of each
 *       kind received completely, and whether the host closed).  leave:
 *       waits 1 s without reading and disconnects; prints "console left".
 *
 * ADDR is tcp:HOST:PORT (numeric IPv4) or unix:PATH.  Exit status 0 when
 * the mode ran (its figures say how it went), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static int g_family;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool parse_addr(const char *a) {
    memset(&g_addr, 0, sizeof g_addr);
    if (strncmp(a, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&g_addr;
        if (strlen(a + 5) >= sizeof un->sun_path)
            return false;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, a + 5);
        g_addrlen = sizeof *un;
        g_family = AF_UNIX;
        return true;
    }
    if (strncmp(a, "tcp:", 4) == 0) {
        const char *colon = strrchr(a + 4, ':');
        if (!colon)
            return false;
        char host[64];
        size_t hl = (size_t)(colon - (a + 4));
        if (hl == 0 || hl >= sizeof host)
            return false;
        memcpy(host, a + 4, hl);
        host[hl] = '\0';
        struct sockaddr_in *in = (struct sockaddr_in *)&g_addr;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
            return false;
        g_addrlen = sizeof *in;
        g_family = AF_INET;
        return true;
    }
    return false;
}

/* A non-blocking connect started: the fd, or -1. */
static int start_connect(void) {
    int fd = socket(g_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&g_addr, g_addrlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A blocking connect within timeout seconds: the fd (blocking again), or -1. */
static int connect_within(double timeout) {
    int fd = start_connect();
    if (fd < 0)
        return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;
    if (poll(&p, 1, (int)(timeout * 1000)) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

/* ---- hold ---- */

typedef struct slot {
    int fd;
    bool connected;
    double next_byte, retry_at;
    size_t sent;
} slot;

static const char slow_head[] = "GET /metrics HTTP/1.1\r\nX-Slow: ";

static int cmd_hold(int n, double seconds, bool slow) {
    slot *s = calloc((size_t)n, sizeof *s);
    struct pollfd *p = calloc((size_t)n, sizeof *p);
    if (!s || !p)
        return 2;
    for (int i = 0; i < n; i++)
        s[i].fd = -1;
    unsigned long opened = 0, closed = 0;
    double end = now_s() + seconds;
    for (double t = now_s(); t < end; t = now_s()) {
        for (int i = 0; i < n; i++) {
            if (s[i].fd < 0 && t >= s[i].retry_at) {
                s[i].fd = start_connect();
                s[i].connected = false;
                s[i].sent = 0;
                s[i].next_byte = t;
                if (s[i].fd < 0)
                    s[i].retry_at = t + 0.01; /* backlog full: try again soon */
            }
            if (slow && s[i].fd >= 0 && s[i].connected && t >= s[i].next_byte) {
                char b = s[i].sent < sizeof slow_head - 1 ? slow_head[s[i].sent] : 'a';
                if (s[i].sent < sizeof slow_head - 1) {
                    /* The request line at once, the header byte by byte. */
                    ssize_t w = send(s[i].fd, slow_head, sizeof slow_head - 1, MSG_NOSIGNAL);
                    if (w > 0)
                        s[i].sent = (size_t)w;
                } else if (send(s[i].fd, &b, 1, MSG_NOSIGNAL) == 1) {
                    s[i].sent++;
                }
                s[i].next_byte = t + 0.2;
            }
            p[i].fd = s[i].fd;
            p[i].events = s[i].fd < 0 ? 0 : s[i].connected ? POLLIN : POLLOUT;
            p[i].revents = 0;
        }
        if (poll(p, (nfds_t)n, 20) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            if (s[i].fd < 0 || !p[i].revents)
                continue;
            if (!s[i].connected) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(s[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err == 0 && (p[i].revents & POLLOUT)) {
                    s[i].connected = true;
                    opened++;
                    continue;
                }
            } else {
                char buf[4096];
                ssize_t r = recv(s[i].fd, buf, sizeof buf, 0);
                if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR)))
                    continue; /* a 400 or a banner: read and wait for the close */
                closed++;
            }
            close(s[i].fd);
            s[i].fd = -1;
            s[i].retry_at = 0;
        }
    }
    for (int i = 0; i < n; i++)
        if (s[i].fd >= 0)
            close(s[i].fd);
    printf("hold opened=%lu closed=%lu\n", opened, closed);
    free(s);
    free(p);
    return 0;
}

/* ---- scrape ---- */

/* Reads until EOF or the deadline; the bytes, NUL-terminated, in *out. */
static size_t read_all(int fd, double deadline, char **out) {
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap + 1);
    while (buf) {
        double left = deadline - now_s();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) != 1)
            break;
        if (len == cap) {
            char *grown = realloc(buf, cap * 2 + 1);
            if (!grown)
                break;
            buf = grown;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    if (buf)
        buf[len] = '\0';
    *out = buf;
    return len;
}

static bool scrape_once(double timeout) {
    double deadline = now_s() + timeout;
    int fd = connect_within(timeout);
    if (fd < 0)
        return false;
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: netpeer\r\n\r\n";
    bool ok = send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1);
    char *resp = NULL;
    size_t len = ok ? read_all(fd, deadline, &resp) : 0;
    close(fd);
    ok = ok && resp && strncmp(resp, "HTTP/1.1 200 ", 13) == 0;
    if (ok) {
        char *cl = strcasestr(resp, "\r\ncontent-length:");
        char *body = strstr(resp, "\r\n\r\n");
        ok = cl && body && (size_t)atol(cl + 17) == len - (size_t)(body + 4 - resp);
    }
    free(resp);
    return ok;
}

static int cmd_scrape(int count, double timeout) {
    int ok = 0;
    for (int i = 0; i < count; i++)
        ok += scrape_once(timeout);
    printf("scrape ok=%d of=%d\n", ok, count);
    return 0;
}

/* ---- console ---- */

/* Reads one frame header "<kind> <len>\n" byte by byte (it is short):
 * kind into kind, the length in *len.  Returns 1 for a header, 0 when the
 * host closed the connection (before a header began), -1 on an error,
 * a malformed header or the deadline. */
static int read_header(int fd, double deadline, char *kind, size_t kcap, size_t *len) {
    char line[64];
    size_t n = 0;
    while (n < sizeof line - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        double left = deadline - now_s();
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) != 1)
            return -1;
        ssize_t r = recv(fd, line + n, 1, 0);
        if (r == 0 && n == 0)
            return 0;
        if (r != 1)
            return -1;
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    char *sp = strchr(line, ' ');
    if (!sp || (size_t)(sp - line) >= kcap)
        return -1;
    memcpy(kind, line, (size_t)(sp - line));
    kind[sp - line] = '\0';
    *len = (size_t)strtoull(sp + 1, NULL, 10);
    return 1;
}

/* Reads and discards len bytes (false on EOF, error or deadline). */
static bool skip_bytes(int fd, double deadline, size_t len) {
    char buf[65536];
    while (len > 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        double left = deadline - now_s();
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) != 1)
            return false;
        ssize_t r = recv(fd, buf, len < sizeof buf ? len : sizeof buf, 0);
        if (r <= 0)
            return false;
        len -= (size_t)r;
    }
    return true;
}

static bool send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static int cmd_console(bool read_to_end) {
    double deadline = now_s() + 20;
    int fd = connect_within(10);
    if (fd < 0) {
        printf("console connect-failed\n");
        return 0;
    }
    char kind[16];
    size_t len;
    if (read_header(fd, deadline, kind, sizeof kind, &len) != 1 ||
        !skip_bytes(fd, deadline, len)) {
        printf("console no-banner\n");
        close(fd);
        return 0;
    }
    static const char expr[] = "string.rep('x', 2000000)";
    char frame[64];
    int hl = snprintf(frame, sizeof frame, "line %zu\n", sizeof expr - 1);
    send_all(fd, frame, (size_t)hl);
    send_all(fd, expr, sizeof expr - 1);
    /* The reply has started: its header is here, most of it is not. */
    if (read_header(fd, deadline, kind, sizeof kind, &len) != 1 || len < 4096 ||
        !skip_bytes(fd, deadline, 4096)) {
        printf("console no-reply\n");
        close(fd);
        return 0;
    }
    send_all(fd, "garbage\n", 8);
    usleep(1000000);
    if (!read_to_end) {
        close(fd);
        printf("console left\n");
        return 0;
    }
    unsigned out = strcmp(kind, "out") == 0 && skip_bytes(fd, deadline, len - 4096);
    unsigned error = 0;
    bool eof = false;
    for (;;) {
        int h = read_header(fd, deadline, kind, sizeof kind, &len);
        if (h <= 0) {
            eof = h == 0;
            break;
        }
        if (!skip_bytes(fd, deadline, len))
            break;
        if (strcmp(kind, "out") == 0 || strcmp(kind, "more") == 0)
            out++;
        else if (strcmp(kind, "error") == 0)
            error++;
        if (error > 1000)
            break; /* it will not stop by itself */
    }
    close(fd);
    printf("console out=%u error=%u eof=%d\n", out, error, eof);
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 6 && strcmp(argv[1], "hold") == 0 && parse_addr(argv[2]) &&
        (strcmp(argv[5], "idle") == 0 || strcmp(argv[5], "slow") == 0)) {
        int n = atoi(argv[3]);
        double seconds = atof(argv[4]);
        if (n >= 1 && n <= 2000 && seconds > 0 && seconds <= 600)
            return cmd_hold(n, seconds, strcmp(argv[5], "slow") == 0);
    }
    if (argc >= 5 && strcmp(argv[1], "scrape") == 0 && parse_addr(argv[2])) {
        int count = atoi(argv[3]);
        double timeout = atof(argv[4]);
        if (count >= 1 && count <= 10000 && timeout > 0 && timeout <= 600)
            return cmd_scrape(count, timeout);
    }
    if (argc >= 4 && strcmp(argv[1], "console") == 0 && parse_addr(argv[2]) &&
        (strcmp(argv[3], "read") == 0 || strcmp(argv[3], "leave") == 0))
        return cmd_console(strcmp(argv[3], "read") == 0);
    fprintf(stderr, "usage: netpeer hold ADDR N SECONDS idle|slow | scrape ADDR COUNT TIMEOUT | "
                    "console ADDR read|leave\n");
    return 2;
}
