/*
 * pty_drive.c - runs a program on a pseudo-terminal and plays a script
 * against it, the way a person at a terminal would: type, then look for
 * what should appear.  Used by ctest to check `ms-host repl` as seen on a
 * terminal (line editing, prompts, Ctrl-D), with nothing but libc and
 * libutil's forkpty, so it runs on a clean Debian without expect, tmux or
 * python.
 *
 *   pty_drive SCRIPT PROGRAM [ARGS...]
 *
 * The program runs with HOME set to a fresh temporary directory (removed
 * at the end) and TERM=xterm, on an 80x24 terminal.  SCRIPT holds one
 * command a line; text takes C-style escapes (\r \n \t \b \\ \xHH):
 *
 *   send TEXT          write TEXT to the terminal (what the keys send),
 *                      once the program reads it key by key (canonical
 *                      mode off: libedit, or top's raw mode)
 *   expect TEXT        wait until TEXT appears in the output after the
 *                      previous match (10 s at most)
 *   exit CODE          wait for the program to exit with status CODE
 *   home-file F TEXT   after exit: $HOME/F contains TEXT
 *   # ...              a comment; blank lines are ignored
 *
 * Why send waits: a line editor prints its prompt a moment before it takes
 * the terminal out of canonical mode, and keys typed ahead in that moment
 * are echoed and buffered by the kernel's line discipline instead (a
 * Ctrl-D among them is lost).  A person never types that fast; a script
 * does, so it waits as a person would.  On Linux, tcgetattr on the master
 * side reports the terminal's current settings.
 *
 * On the first failure it says which script line failed and prints the
 * output seen so far (control characters escaped), then exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PD_TIMEOUT_MS 10000

static char *pd_out;            /* everything the program wrote */
static size_t pd_len, pd_cap;
static size_t pd_mark;          /* where the next expect starts looking */
static int pd_master = -1;
static pid_t pd_child;
static char pd_home[] = "/tmp/pty_drive.XXXXXX";

static void pd_dump(void) {
    fprintf(stderr, "--- output so far (%zu bytes, match mark at %zu) ---\n", pd_len, pd_mark);
    for (size_t i = 0; i < pd_len; i++) {
        unsigned char c = (unsigned char)pd_out[i];
        if (c == '\n')
            fputs("\\n\n", stderr);
        else if (c == '\r')
            fputs("\\r", stderr);
        else if (c < 0x20 || c == 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fputs("\n---\n", stderr);
}

static void pd_cleanup(void) {
    if (pd_child > 0 && waitpid(pd_child, NULL, WNOHANG) == 0) {
        kill(pd_child, SIGKILL);
        waitpid(pd_child, NULL, 0);
    }
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", pd_home);
    if (system(cmd) != 0)
        fprintf(stderr, "pty_drive: could not remove %s\n", pd_home);
}

static void pd_fail(int lineno, const char *fmt, const char *what) {
    fprintf(stderr, "pty_drive: script line %d: ", lineno);
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    pd_dump();
    pd_cleanup();
    exit(1);
}

/* Decodes the escapes of s in place; returns the length. */
static size_t pd_unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '\\' || !r[1]) {
            *w++ = *r;
            continue;
        }
        r++;
        switch (*r) {
        case 'r': *w++ = '\r'; break;
        case 'n': *w++ = '\n'; break;
        case 't': *w++ = '\t'; break;
        case 'b': *w++ = '\b'; break;
        case 'x': {
            char hex[3] = {r[1], r[1] ? r[2] : 0, 0};
            *w++ = (char)strtol(hex, NULL, 16);
            r += 2;
            break;
        }
        default: *w++ = *r; break;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* Reads what is available within timeout_ms; false at end of output. */
static bool pd_read(int timeout_ms) {
    struct pollfd p = {.fd = pd_master, .events = POLLIN};
    int rc = poll(&p, 1, timeout_ms);
    if (rc <= 0)
        return rc == 0 || errno == EINTR;
    if (pd_len + 4096 > pd_cap) {
        pd_cap = pd_cap ? pd_cap * 2 : 65536;
        pd_out = realloc(pd_out, pd_cap);
        if (!pd_out) {
            fprintf(stderr, "pty_drive: out of memory\n");
            exit(1);
        }
    }
    ssize_t n = read(pd_master, pd_out + pd_len, 4096);
    if (n <= 0)
        return false; /* EIO: the program closed the terminal */
    pd_len += (size_t)n;
    return true;
}

static long pd_ms_since(const struct timespec *t0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

static void pd_wait_keyed(int lineno) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct termios t;
        if (tcgetattr(pd_master, &t) != 0)
            pd_fail(lineno, "tcgetattr on the terminal: %s", strerror(errno));
        if (!(t.c_lflag & ICANON))
            return;
        if (pd_ms_since(&t0) > PD_TIMEOUT_MS)
            pd_fail(lineno, "the program did not start reading keys within 10 s%s", "");
        pd_read(5);
    }
}

static void pd_expect(int lineno, const char *text, size_t len) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        char *hit = pd_len > pd_mark ? memmem(pd_out + pd_mark, pd_len - pd_mark, text, len)
                                     : NULL;
        if (hit) {
            pd_mark = (size_t)(hit - pd_out) + len;
            return;
        }
        long left = PD_TIMEOUT_MS - pd_ms_since(&t0);
        if (left <= 0)
            pd_fail(lineno, "timed out waiting for \"%s\"", text);
        if (!pd_read((int)left) &&
            !(pd_len > pd_mark && memmem(pd_out + pd_mark, pd_len - pd_mark, text, len)))
            pd_fail(lineno, "the program ended before \"%s\" appeared", text);
    }
}

static void pd_exit(int lineno, int want) {
    /* Drain the terminal so the program is never blocked writing. */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int status;
    pid_t r;
    while ((r = waitpid(pd_child, &status, WNOHANG)) == 0) {
        if (pd_ms_since(&t0) > PD_TIMEOUT_MS)
            pd_fail(lineno, "the program did not exit within 10 s%s", "");
        if (!pd_read(100))
            usleep(10000);
    }
    pd_child = 0;
    char got[64];
    if (WIFEXITED(status))
        snprintf(got, sizeof got, "exit status %d", WEXITSTATUS(status));
    else
        snprintf(got, sizeof got, "signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != want)
        pd_fail(lineno, "the program ended with %s", got);
}

static void pd_home_file(int lineno, char *args) {
    char *sp = strchr(args, ' ');
    if (!sp)
        pd_fail(lineno, "home-file needs a file and a text: %s", args);
    *sp = '\0';
    char *text = sp + 1;
    size_t tlen = pd_unescape(text);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", pd_home, args);
    FILE *f = fopen(path, "rb");
    if (!f)
        pd_fail(lineno, "cannot open $HOME/%s", args);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (!memmem(buf, n, text, tlen))
        pd_fail(lineno, "$HOME file does not contain \"%s\"", text);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: pty_drive SCRIPT PROGRAM [ARGS...]\n");
        return 2;
    }
    FILE *script = fopen(argv[1], "r");
    if (!script) {
        fprintf(stderr, "pty_drive: cannot open %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    if (!mkdtemp(pd_home)) {
        fprintf(stderr, "pty_drive: mkdtemp: %s\n", strerror(errno));
        return 2;
    }
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    pd_child = forkpty(&pd_master, NULL, NULL, &ws);
    if (pd_child < 0) {
        fprintf(stderr, "pty_drive: forkpty: %s\n", strerror(errno));
        return 2;
    }
    if (pd_child == 0) {
        setenv("HOME", pd_home, 1);
        setenv("TERM", "xterm", 1);
        execvp(argv[2], argv + 2);
        fprintf(stderr, "pty_drive: cannot run %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof line, script)) {
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        char *arg = strchr(line, ' ');
        arg = arg ? arg + 1 : line + strlen(line);
        if (!strncmp(line, "send ", 5)) {
            size_t n = pd_unescape(arg);
            pd_wait_keyed(lineno);
            if (write(pd_master, arg, n) != (ssize_t)n)
                pd_fail(lineno, "cannot write to the terminal: %s", strerror(errno));
        } else if (!strncmp(line, "expect ", 7)) {
            size_t n = pd_unescape(arg);
            pd_expect(lineno, arg, n);
        } else if (!strncmp(line, "exit ", 5)) {
            pd_exit(lineno, atoi(arg));
        } else if (!strncmp(line, "home-file ", 10)) {
            pd_home_file(lineno, arg);
        } else {
            pd_fail(lineno, "unknown command: %s", line);
        }
    }
    fclose(script);
    pd_cleanup();
    free(pd_out);
    return 0;
}
