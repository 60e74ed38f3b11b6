/*
 * attach.c - `ms-host attach PATH`: the client of a host's console
 * (console.c; the protocol is docs/console.md).
 *
 * A plain, single-threaded program: no runtime, blocking socket calls.
 * Lines are read with libedit (editing, and history in
 * ~/.ms_host_history) when stdin is a terminal, plainly and without
 * prompts otherwise, so a script can pipe lines in.  Each line goes to
 * the host as one frame; the host answers each with one frame whose kind
 * says which prompt comes next ("more": the chunk is incomplete).  End of
 * input (Ctrl-D) closes the connection, which ends the host's session
 * agent and nothing else.
 *
 * Exit status: 0 at end of input, 1 when the connection fails or breaks,
 * 2 for bad usage.
 */
#include <editline/readline.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "attach.h"

#define AT_HISTORY_FILE ".ms_host_history"
#define AT_MAX_LINE (64u * 1024)         /* as the host accepts (console.c) */
#define AT_MAX_REPLY (256u * 1024 * 1024) /* a sanity bound, not a limit in practice */

static const char *at_path; /* the socket, for messages */

/* Connects, or prints why not (naming the path) and returns -1. */
static int at_connect(const char *path) {
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof un.sun_path) {
        fprintf(stderr, "ms-host attach: %s: the path is too long for a Unix socket (at most %zu "
                        "bytes)\n", path, sizeof un.sun_path - 1);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "ms-host attach: cannot connect to %s: not a socket\n", path);
        return -1;
    }
    memcpy(un.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "ms-host attach: socket: %s\n", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&un, sizeof un) != 0) {
        int e = errno;
        const char *hint = e == ENOENT         ? " (is a host running with --console?)"
                           : e == ECONNREFUSED ? " (no host is listening: a stale socket)"
                           : e == EACCES       ? " (the console belongs to another user)"
                                               : "";
        fprintf(stderr, "ms-host attach: cannot connect to %s: %s%s\n", path, strerror(e), hint);
        close(fd);
        return -1;
    }
    return fd;
}

static bool at_write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool at_read_all(int fd, char *p, size_t n) {
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* Reads one "<kind> <length>\n<payload>" frame; kind gets up to 15
 * characters.  The payload is malloc'd (NUL-terminated); NULL on a broken
 * connection or a malformed frame. */
static char *at_read_frame(int fd, char kind[16], size_t *len) {
    char head[48];
    size_t n = 0;
    for (;;) {
        if (n == sizeof head - 1 || !at_read_all(fd, head + n, 1))
            return NULL;
        if (head[n++] == '\n')
            break;
    }
    head[n] = '\0';
    unsigned long size;
    if (sscanf(head, "%15s %lu", kind, &size) != 2 || size > AT_MAX_REPLY)
        return NULL;
    char *payload = malloc(size + 1);
    if (!payload)
        return NULL;
    if (!at_read_all(fd, payload, size)) {
        free(payload);
        return NULL;
    }
    payload[size] = '\0';
    *len = size;
    return payload;
}

/* Reads a reply and prints it.  Returns the kind ("out", "more") or NULL
 * when the conversation is over. */
static const char *at_reply(int fd) {
    static char kind[16];
    size_t len;
    char *text = at_read_frame(fd, kind, &len);
    if (!text) {
        fprintf(stderr, "ms-host attach: %s: the host closed the connection\n", at_path);
        return NULL;
    }
    FILE *to = strcmp(kind, "error") == 0 ? stderr : stdout;
    fwrite(text, 1, len, to);
    fflush(to);
    free(text);
    if (strcmp(kind, "out") != 0 && strcmp(kind, "more") != 0)
        return NULL;
    return kind;
}

/* One line from the user without its newline (malloc'd), or NULL at end
 * of input. */
static char *at_read_line(bool tty, const char *prompt) {
    if (tty)
        return readline(prompt);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    if (n > 0 && line[n - 1] == '\n')
        line[n - 1] = '\0';
    return line;
}

int attach_main(const char *path) {
    at_path = path;
    /* A host that goes away must show as a failed write, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    int fd = at_connect(path);
    if (fd < 0)
        return 1;
    bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    char history[4096];
    const char *home = getenv("HOME");
    bool keep_history = tty && home && *home &&
                        (size_t)snprintf(history, sizeof history, "%s/%s", home,
                                         AT_HISTORY_FILE) < sizeof history;
    if (keep_history) {
        stifle_history(1000);
        read_history(history); /* a convenience: failures are ignored */
    }
    const char *kind = at_reply(fd); /* the banner */
    int status = kind ? 0 : 1;
    while (kind) {
        char *line = at_read_line(tty, strcmp(kind, "more") == 0 ? ">> " : "> ");
        if (!line) {
            if (tty)
                fputc('\n', stdout);
            break;
        }
        if (keep_history && line[strspn(line, " \t")])
            add_history(line);
        char head[32];
        size_t len = strlen(line);
        if (len > AT_MAX_LINE) {
            fprintf(stderr, "ms-host attach: a line may hold at most %u bytes; not sent\n",
                    AT_MAX_LINE);
            free(line);
            continue;
        }
        int hl = snprintf(head, sizeof head, "line %zu\n", len);
        bool sent = at_write_all(fd, head, (size_t)hl) && at_write_all(fd, line, len);
        free(line);
        if (!sent) {
            fprintf(stderr, "ms-host attach: %s: the host closed the connection\n", path);
            status = 1;
            break;
        }
        kind = at_reply(fd);
        if (!kind)
            status = 1;
    }
    if (keep_history)
        write_history(history);
    close(fd);
    return status;
}
